"""`hil profile`: where the time goes in one model on one device, now (benchmark_model's op tables).

A quick look, not a measurement for the record of a series: one runner process per variant, a short
timed window, then the per-operator pass. It goes through the normal run path (conversion cache,
device lock, store, spool), so the profile is kept and `hil report --run ID` can show it again, but
as a run of kind `profile`: never the latest run, a reference, or part of a series' history.
"""

from __future__ import annotations

import sys

from harness.commands import common
from harness.core.jobs import RunOptions
from harness.models.shapes import parse_input_shapes
from harness.profile import tables
from harness.run.orchestrate import ModelSpec, Orchestrator

# the short timed window of a quick look (the profile pass after it is what is asked for)
QUICK = RunOptions(min_runs=10, min_seconds=0.0, warmup_runs=1, warmup_seconds=0.0, repeats=1)


def register(sub) -> None:
    p = sub.add_parser("profile", help="per-operator profile of a model on one device (where the time goes)")
    p.add_argument("model", help=".keras, .tflite or SavedModel directory")
    p.add_argument("--device", required=True, help="device id to profile on")
    p.add_argument("--variants", help="comma list: fp32,fp16,dynamic,int8,int16x8 (default fp32; .tflite: asis)")
    p.add_argument("--calibration", help="representative data .npy/.npz for int8/int16x8, or 'random'")
    p.add_argument(
        "--profile-runs",
        type=common.count(1, common.MAX_REPEATS),
        default=common.DEFAULT_PROFILE_RUNS,
        metavar="N",
        help="profiled invocations (default: %(default)s)",
    )
    p.add_argument(
        "--top",
        type=common.count(1),
        default=tables.DEFAULT_TOP,
        metavar="N",
        help="operators in the 'top by time' table (default: %(default)s)",
    )
    p.add_argument("--num-threads", type=common.count(1), metavar="N", help="interpreter threads")
    p.add_argument(
        "--no-xnnpack",
        dest="xnnpack",
        action="store_false",
        default=None,
        help="profile the built-in CPU kernels instead of the XNNPACK delegate",
    )
    p.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...", help="as for `hil run`")
    common.add_lock_options(p)
    p.set_defaults(func=cmd_profile)


def cmd_profile(args) -> int:
    variants = common.split_csv(args.variants)
    inv = common.inventory(args)
    device = inv.device(args.device)
    common.work_dirs(args)
    store = common.store(args)
    conv = common.converter(args)
    orch = Orchestrator(inv, store, conv, common.log)
    options = RunOptions(
        **{
            **QUICK.__dict__,
            "num_threads": args.num_threads,
            "xnnpack": args.xnnpack,
            "input_shapes": parse_input_shapes(args.input_shape),
            "profile_runs": args.profile_runs,
        }
    )
    spec = ModelSpec.from_args(args.model, args.calibration, None)
    jobs = orch.plan([spec], variants, [device], options, pair=False)
    summary = orch.run(jobs, sys.argv[1:], wait=args.wait, kind="profile")
    common.log(f"run {summary.run_id} (kind profile): {summary.ok} ok, {summary.infra_errors + summary.errors} failed")
    profiled = store.op_profiles(run_id=summary.run_id)
    for row, profile in profiled:
        title = f"{row['model']}/{row['variant']}@{row['device_id']} (result {row['result_id']})"
        print(tables.render(profile, title, top=args.top))
        twin = store.op_profile(row["result_id"], "op_profile_builtin")
        if twin is not None:  # XNNPACK ran its own fused ops: the model's ops, with shapes and MACs, here
            print(tables.render(twin, f"{title}, the same model on the built-in kernels", top=args.top))
    code = summary.exit_code
    have = {r["result_id"] for r, _ in profiled}
    missing = [r for r in _ok_results(store, summary.run_id) if r["result_id"] not in have]
    for r in missing:
        common.log(
            f"no per-operator profile from device '{r['device_id']}' for {r['model']}/{r['variant']}: its runner "
            "returned none (a runner without the profiler, or a profile the warning above refused)"
        )
    return max(code, 2) if missing else code


def _ok_results(store, run_id: str) -> list[dict]:
    wide = store.wide(run_id)
    if wide.empty:
        return []
    ok = wide[wide["status"] == "ok"]
    return ok[["result_id", "model", "variant", "device_id"]].to_dict("records")
