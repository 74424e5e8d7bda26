"""`hil report`: Markdown summary of a run (by default the latest a user started)."""

from __future__ import annotations

from pathlib import Path

from harness.commands import common
from harness.report.op_profiles import markdown_section, run_profiles
from harness.report.run_markdown import render_run
from harness.store.results import ResultStore


def register(sub) -> None:
    p = sub.add_parser("report", help="write a Markdown report of a run")
    p.add_argument("--run", help=f"run id (default: {common.LATEST})")
    p.add_argument("-o", "--output", default="reports/report.md", help="output file (default: %(default)s)")
    p.set_defaults(func=cmd_report)


def write_report(store: ResultStore, run_id: str | None, output: Path) -> str:
    run = store.run_row(run_id)
    text = render_run(store.wide(run["run_id"]), run)
    section = markdown_section(run_profiles(store, run["run_id"]))  # where the time goes, when profiled
    if section:
        text += "\n" + "\n".join(section)
    common.write_output(output, "report", lambda out: out.write_text(text))
    return text


def cmd_report(args) -> int:
    out = common.output_file(args.output, "report")
    print(write_report(common.store(args, read_only=True), args.run, out))
    common.log(f"report written to {out}")
    return 0
