"""`hil gate`: judge a run against its baselines and budgets; exit 0 pass, 1 regression, 2 infra, 3 usage."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.commands import common
from harness.errors import EXIT_OK, EXIT_USAGE, ConfigError, HilError, StorageError
from harness.gate import baselines
from harness.gate import evaluate as gate
from harness.gate.stats import DEFAULT_ALPHA, MIN_SAMPLES
from harness.gate.thresholds import load_threshold_file


def register(sub) -> None:
    p = sub.add_parser("gate", help="regression gate: compare a run with its baseline and budgets")
    p.add_argument("--run", help=f"run id (default: {common.LATEST})")
    p.add_argument(
        "--baseline",
        default="last-pass",
        help="last-pass[:K] (default: the last 5 accepted runs), pinned, or rolling:K",
    )
    p.add_argument("--thresholds", help="YAML: model (or '*') -> metric -> threshold; overrides the profile")
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="family-wise false-alarm budget of the whole gate (default: %(default)s)",
    )
    p.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="do not re-measure tripped or screened comparisons (reference and candidate "
        "interleaved); the nightly Holm verdict is final",
    )
    p.add_argument(
        "--confirm-pairs",
        type=common.count(2),
        default=None,
        help="pairs of levels in a confirmation (default: 8 runner processes that each time both "
        "artifacts on a Linux device, 5 + 5 alternating flashed processes on an MCU board)",
    )
    p.add_argument(
        "--min-samples",
        type=int,
        default=MIN_SAMPLES,
        help="latency samples a runner process needs for its level to count (default: %(default)s)",
    )
    p.add_argument("--junit", help="write JUnit XML here")
    p.add_argument("--html", help="write a single-file HTML report with plots here")
    p.add_argument("--markdown", help="write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--csv", help="write the verdict table here")
    p.add_argument("--trend-runs", type=int, default=20, help="runs shown in the HTML trend (default: %(default)s)")
    p.add_argument(
        "--no-record", action="store_true", help="do not store the verdicts (they decide the next `last-pass` baseline)"
    )
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown summary")
    common.add_lock_options(p)  # confirmation re-measures on the device
    p.set_defaults(func=cmd_gate)


def profiles_dir(args) -> Path:
    return Path(args.profiles) if args.profiles else Path(args.inventory).parent / "device_profiles"


def cmd_gate(args) -> int:
    # before the gate's work: a path that cannot be written must not cost a re-measurement
    outputs = {
        what: common.output_file(path, what) if path else None
        for what, path in (
            ("Markdown summary", args.markdown),
            ("JUnit XML", args.junit),
            ("verdict CSV", args.csv),
            ("HTML report", args.html),
        )
    }
    spec = baselines.BaselineSpec.parse(args.baseline)
    overrides = load_threshold_file(args.thresholds)
    warnings: list[str] = []
    profiles = gate.load_gate_profiles(profiles_dir(args), warnings)
    try:
        store = common.store(args, create=False, read_only=args.no_record)  # --no-record never writes
    except StorageError as exc:
        if args.no_record:
            raise
        raise StorageError(f"{exc}; or judge without recording the verdicts: hil gate --no-record") from None
    res = gate.evaluate(
        store, args.run, spec, profiles, overrides, alpha=args.alpha, min_samples=args.min_samples, warnings=warnings
    )
    if args.confirm and (res.failed_checks or res.screened_checks):
        from harness.gate.remeasure import confirm_regressions

        try:
            inventory = common.inventory(args)
        except HilError as exc:
            common.log(f"confirmation not possible: {exc}")
            inventory = None
        confirm_regressions(
            store, res, inventory, common.converter(args), pairs=args.confirm_pairs, log=common.log, wait=args.wait
        )
        from harness.gate.drift import note_device_drift

        note_device_drift(res, common.log)
    if not args.no_record:
        gate.record(store, res)
    from harness.report.gate_markdown import render_gate_markdown

    md = render_gate_markdown(res)
    unwritten: list[str] = []

    def write(what: str, render: Callable[[], str]) -> None:
        out = outputs[what]
        if out is None:
            return
        try:
            common.write_output(out, what, lambda path: path.write_text(render()))
        except ConfigError as exc:  # the verdict is decided (and recorded): the other files are still written
            unwritten.append(str(exc))
            return
        common.log(f"wrote {out}")

    write("Markdown summary", lambda: md)
    if outputs["JUnit XML"]:
        from harness.report.junit import render_junit

        write("JUnit XML", lambda: render_junit(res))
    write("verdict CSV", lambda: pd.DataFrame(res.rows()).to_csv(index=False))
    if outputs["HTML report"]:
        from harness.report.html import render_gate_html

        write("HTML report", lambda: render_gate_html(res, store, args.trend_runs))
    if not args.quiet:
        print(md)
    n = res.counts()
    common.log(
        f"gate {res.verdict}: {n['regressions']} regression(s), {n['over_budget']} over budget, "
        f"{n['infra']} infrastructure failure(s) -> exit {res.exit_code}"
    )
    kept = "recorded" if not args.no_record else "not recorded (--no-record)"
    for msg in unwritten:
        print(f"hil: error: {msg} (gate verdict {res.verdict}, {kept})", file=sys.stderr)
    # a regression or an infrastructure failure keeps its own code; a pass with a missing file is no pass
    return res.exit_code or (EXIT_USAGE if unwritten else EXIT_OK)
