"""`hil demo`: the embedded default end to end: example model -> fp32 + int8 -> `local` -> report."""

from __future__ import annotations

import sys
from pathlib import Path

from ..jobs import RunOptions
from ..orchestrate import ModelSpec, Orchestrator
from . import common
from .report import write_report

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "digits.keras"


def register(sub) -> None:
    p = sub.add_parser("demo", help="benchmark the bundled digits model (fp32, int8) on this machine")
    p.add_argument("-o", "--output", default="reports/report.md", help="report file (default: %(default)s)")
    p.add_argument("--device", default="local", help="device id (default: %(default)s)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    if not EXAMPLE.exists():
        common.log(f"{EXAMPLE} missing: building it from scikit-learn's digits")
        sys.path.insert(0, str(EXAMPLE.parents[1]))
        from build_digits_model import build  # type: ignore

        build()
    if not Path(args.inventory).exists() and args.inventory == "inventory.yaml":
        args.inventory = str(REPO / "inventory.yaml")
    inv = common.inventory(args)
    store = common.store(args)
    conv = common.converter(args)
    orch = Orchestrator(inv, store, conv, common.log)
    spec = ModelSpec.from_args(str(EXAMPLE), None, None)
    jobs = orch.plan([spec], ["fp32", "int8"], [inv.device(args.device)], RunOptions())
    common.log(f"conversion: {conv.hits} cache hit(s), {conv.misses} conversion(s)")
    summary = orch.run(jobs, ["demo"], label="demo")
    out = write_report(store, summary.run_id, Path(args.output))
    print(out.read_text())
    common.log(f"report written to {out} (results in {store.path})")
    return summary.exit_code
