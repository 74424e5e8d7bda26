"""`hil compare`: device profiles side by side for the same models (latency, memory, energy, speed-up);
`--ops`: two per-operator profiles op by op (harness/profile/compare_ops.py)."""

from __future__ import annotations

from harness.commands import common
from harness.errors import ConfigError
from harness.report.compare import comparison, render_markdown
from harness.report.run_markdown import run_label


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare device profiles on the same models")
    p.add_argument("--run", help=f"run id (default: {common.LATEST})")
    p.add_argument("--reference", help="device the others are compared with (default: the first)")
    p.add_argument("--devices", help="comma list of device ids (default: all in the run)")
    p.add_argument("--html", help="also write a single-file HTML page with a chart")
    p.add_argument("--csv", help="also write the comparison table as CSV")
    p.add_argument(
        "--ops",
        nargs=2,
        metavar=("REF", "CAND"),
        help="per-operator profiles of two series, [RUN:]MODEL/VARIANT@DEVICE each (two artifacts on one "
        "device, one on two devices, or two runs of one series): each op's time in both and the ops behind "
        "80 %% of the change (the newest profile of each; of RUN, or --run, when given)",
    )
    p.set_defaults(func=cmd_compare)


def cmd_compare_ops(args) -> int:
    from harness.profile.compare_ops import find, render

    store = common.store(args, create=False, read_only=True)
    ref, cand = args.ops
    print(render(ref, cand, find(store, ref, args.run), find(store, cand, args.run)))
    return 0


def cmd_compare(args) -> int:
    if args.ops:
        return cmd_compare_ops(args)
    csv = common.output_file(args.csv, "comparison CSV") if args.csv else None
    html = common.output_file(args.html, "comparison page") if args.html else None
    store = common.store(args, create=False, read_only=True)
    run = store.run_row(args.run)  # an unknown run, or no run to be the latest: one line
    run_id = run["run_id"]
    wide = store.wide(run_id)
    if wide.empty:
        raise ConfigError(f"{store.path}: no results for run '{run_id}'")
    devices = common.split_csv(args.devices)
    table, ref = comparison(wide, devices, args.reference, where=f"{store.path}: run {run_id}")
    if table["device_id"].nunique() < 2:
        common.log(f"note: run {run_id} has results from one device only ({ref}); nothing to compare with")
    label = run_label(run)
    print(render_markdown(table, ref, run_id, label))
    if csv:
        common.write_output(csv, "comparison CSV", lambda out: table.to_csv(out, index=False))
        common.log(f"wrote {csv}")
    if html:
        from harness.report.html import render_compare_html

        page = render_compare_html(table, ref, run_id, label)
        common.write_output(html, "comparison page", lambda out: out.write_text(page))
        common.log(f"wrote {html}")
    return 0
