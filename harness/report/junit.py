"""JUnit XML for CI dashboards (Jenkins, GitLab): one testcase per model x variant x device x metric.

Layout: ``<testsuites>`` with one ``<testsuite name="hilbench.<device>">`` per device; testcases
have ``classname="hilbench.<device>.<model>.<variant>"`` and ``name=<metric>``. A regression or an
exceeded budget is a ``<failure>``; a job without a measurement (infrastructure) is one testcase
``name="measurement"`` with an ``<error>``; inconclusive metrics (too few samples, all windows
disturbed) are ``<error type="inconclusive">``; metrics missing from the run are ``<skipped>``.
Every suite carries consistent tests/failures/errors/skipped counts and a time (the steady-state
measurement time of its results).
"""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET

from harness.gate.evaluate import GateResult
from harness.report.gate_markdown import check_message


def _seg(text: str) -> str:
    """A classname segment: dots would split it into packages in the CI's tree view."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", str(text)) or "_"


def render_junit(res: GateResult) -> str:
    root = ET.Element("testsuites", name="hilbench gate")
    suites: dict[str, ET.Element] = {}
    counts: dict[str, dict[str, float]] = {}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())

    def suite(device: str) -> tuple[ET.Element, dict]:
        if device not in suites:
            s = ET.SubElement(
                root,
                "testsuite",
                name=f"hilbench.{_seg(device)}",
                timestamp=stamp,
                hostname=str(res.run.get("host") or socket.gethostname()),
            )
            props = ET.SubElement(s, "properties")
            for name, value in (
                ("run_id", res.run_id),
                ("baseline", str(res.spec)),
                ("alpha", f"{res.alpha:g}"),
                ("device", device),
            ):
                ET.SubElement(props, "property", name=name, value=value)
            suites[device] = s
            counts[device] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        return suites[device], counts[device]

    for k in res.keys:
        s, n = suite(k.device_id)
        cls = f"hilbench.{_seg(k.device_id)}.{_seg(k.model)}.{_seg(k.variant)}"
        if k.infra:
            tc = ET.SubElement(s, "testcase", classname=cls, name="measurement", time="0")
            err = ET.SubElement(tc, "error", type=k.status, message=(k.error or k.status)[:500])
            err.text = k.error or ""
            n["tests"] += 1
            n["errors"] += 1
            continue
        n["time"] += k.seconds
        for i, c in enumerate(k.checks):
            t = k.seconds if i == 0 else 0.0  # the measurement time is counted once per result
            tc = ET.SubElement(s, "testcase", classname=cls, name=c.metric, time=f"{t:.3f}")
            n["tests"] += 1
            msg = check_message(c)
            if c.failed:
                kind = "regression" if c.regression else "budget"
                if c.regression and c.over_budget:
                    kind = "regression,budget"
                f = ET.SubElement(tc, "failure", type=kind, message=msg[:500])
                f.text = msg
                n["failures"] += 1
            elif c.inconclusive:  # not enough trustworthy data: never a pass (gate exit 2)
                err = ET.SubElement(tc, "error", type="inconclusive", message=msg[:500])
                err.text = msg
                n["errors"] += 1
            elif c.skipped:
                ET.SubElement(tc, "skipped", message=msg[:500])
                n["skipped"] += 1
            else:
                ET.SubElement(tc, "system-out").text = msg
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for device, s in suites.items():
        for key, value in counts[device].items():
            s.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
            total[key] += value
    for key, value in total.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
