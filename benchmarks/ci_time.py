#!/usr/bin/env python3
"""Where the suite's time goes: pytest with a JUnit report, summed per test file, with CPU time.

Why CPU time: CI must stay under 30 minutes on a quiet 2-core machine, but the machines it is
measured on are often shared. Wall time then says more about the neighbours than about the tests;
the CPU time of pytest and of every process it started (`hil` subprocesses, runners, TensorFlow
conversions) barely moves with the load, so compare CPU seconds between two versions of a file,
and use the wall seconds only on a quiet machine. Time spent waiting (a timed window, a poll for a
port) shows as wall time without CPU time.

Usage: python benchmarks/ci_time.py [PYTEST ARGS...]  (default: the whole suite, as CI runs it)
       python benchmarks/ci_time.py tests/test_compress_qat.py tests/test_compress_graph.py
       python benchmarks/ci_time.py -m labgrid tests/   (from .venv-labgrid, like .ci/run)

Prints the slowest tests (`--durations`), then one line per file: wall seconds (setup, call and
teardown of its tests; module and session fixtures count where they are first used), share of the
run, tests; then the run's wall and CPU seconds.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def per_file(junit: Path) -> dict[str, tuple[float, int]]:
    """file -> (seconds, tests) from a JUnit XML report (classname is the dotted module path)."""
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = "/".join(p for p in module if not p[:1].isupper()) + ".py"  # drop test classes
        totals[name][0] += float(case.get("time", 0.0))
        totals[name][1] += 1
    return {k: (v[0], v[1]) for k, v in totals.items()}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "--durations=25", f"--junitxml={junit}", *argv]
        start = time.monotonic()
        code = subprocess.call(cmd, cwd=REPO)
        wall = time.monotonic() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # pytest and everything it waited for
        if not junit.exists():
            return code
        files = per_file(junit)
    total = sum(s for s, _ in files.values()) or 1.0
    print(f"\n{'seconds':>8} {'share':>6} {'tests':>5}  file")
    for name, (secs, tests) in sorted(files.items(), key=lambda kv: -kv[1][0]):
        print(f"{secs:8.1f} {secs / total:6.1%} {tests:5d}  {name}")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"\nwall {wall:.0f} s, CPU {cpu:.0f} s (user {usage.ru_utime:.0f} s, system {usage.ru_stime:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
