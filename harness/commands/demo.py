"""`hil demo`: the embedded default end to end: example model -> fp32 + int8 -> `local` -> report."""

from __future__ import annotations

from harness.commands import common
from harness.commands.report import write_report
from harness.core.resources import demo_model
from harness.run.orchestrate import ModelSpec, Orchestrator


def register(sub) -> None:
    p = sub.add_parser("demo", help="benchmark the bundled digits model (fp32, int8) on this machine")
    p.add_argument("-o", "--output", default="reports/report.md", help="report file (default: %(default)s)")
    p.add_argument("--device", default="local", help="device id (default: %(default)s)")
    common.add_measurement_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    report = common.output_file(args.output, "report")  # before the measurements it would report
    example = demo_model()
    inv = common.inventory(args)
    common.work_dirs(args)
    store = common.store(args)
    conv = common.converter(args)
    orch = Orchestrator(inv, store, conv, common.log)
    spec = ModelSpec.from_args(str(example), None, None)
    jobs = orch.plan([spec], ["fp32", "int8"], [inv.device(args.device)], common.options_from(args))
    common.log(f"conversion: {conv.hits} cache hit(s), {conv.misses} conversion(s)")
    summary = orch.run(jobs, ["demo"], label="demo")
    print(write_report(store, summary.run_id, report))
    common.log(f"report written to {report} (results in {store.path})")
    return summary.exit_code
