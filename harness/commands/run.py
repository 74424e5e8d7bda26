"""`hil run`: benchmark models x variants x devices and store every result as it lands."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from harness.commands import common
from harness.commands.run_resume import check_resume
from harness.errors import ConfigError, HilError
from harness.models.convert import check_variant_names
from harness.models.naming import unique_model_names
from harness.models.shapes import parse_input_shapes
from harness.run.orchestrate import ModelSpec, Orchestrator


def register(sub) -> None:
    p = sub.add_parser("run", help="convert and benchmark models on devices")
    p.add_argument("models", nargs="+", help=".keras, .tflite or SavedModel directory")
    p.add_argument("--variants", help="comma list: fp32,fp16,dynamic,int8,int16x8 (default fp32; .tflite: asis)")
    p.add_argument("--devices", help="comma list of device ids (default: all enabled devices)")
    p.add_argument("--tags", help="comma list: devices having any of these tags")
    p.add_argument("--calibration", help="representative data .npy/.npz for int8/int16x8, or 'random'")
    p.add_argument(
        "--eval",
        dest="eval_file",
        help="accuracy data: an .npz with x (inputs), y (labels) and optionally ref (the float model's "
        "classes), or an MLPerf Tiny dataset directory (y_labels.csv + .bin files)",
    )
    common.add_measurement_options(p)
    common.add_profile_option(p)
    common.add_robustness_options(p)
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME:D1,D2,...",
        help="shape to measure a dynamic input at, e.g. serving_default_x:0:1,224,224,3 (repeatable, "
        "or several comma-separated; the name may be left out for a single-input model). "
        "Needed when an input has unknown dimensions other than the batch (which is 1)",
    )
    p.add_argument(
        "--no-pair",
        dest="pair",
        action="store_false",
        help="do not time changed artifacts together with their series' reference artifact in the same "
        "runner processes (the gate then compares nightly process levels only)",
    )
    p.add_argument("--resume", action="store_true", help="continue the last unfinished run of this plan")
    common.add_lock_options(p)
    p.add_argument("--label", help="free-text label stored with the run (e.g. nightly)")
    p.add_argument("--report", help="also write the Markdown report to this file")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    report = common.output_file(args.report, "report") if args.report else None  # before measuring
    variants = common.split_csv(args.variants)
    check_variant_names(variants)  # before any model is opened
    robustness = common.robustness_from(args)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    inv = common.inventory(args)
    if len(args.models) > 1 and (args.calibration or args.eval_file):
        raise ConfigError(
            "--calibration/--eval apply to one model; with several models use sidecar "
            "files <model>.calibration.npz and <model>.eval.npz"
        )
    devices = inv.select(common.split_csv(args.devices), common.split_csv(args.tags))
    if not devices:
        raise ConfigError(f"{inv.path}: no enabled devices")
    common.work_dirs(args)  # before the store: a run must not be created that cannot go on
    store = common.store(args)
    same_command, mismatch = check_resume(store, argv) if args.resume else (None, None)
    conv = common.converter(args)
    orch = Orchestrator(inv, store, conv, common.log)
    orch.resume_candidate, orch.resume_mismatch = same_command, mismatch
    orch.robustness, orch.robustness_seed = robustness, args.robustness_seed
    options = replace(common.options_from(args), input_shapes=parse_input_shapes(args.input_shape))
    specs = []
    names = unique_model_names(args.models)  # a/net.tflite b/net.tflite: 'a/net', 'b/net', never one name
    for m, name in zip(args.models, names):  # with several models, a missing/corrupt one must not stop the others
        try:
            specs.append(ModelSpec.from_args(m, args.calibration, args.eval_file, name=name))
        except HilError as exc:
            if len(args.models) == 1:
                raise
            orch.add_broken(name, "", variants, devices, str(exc))
    t0 = time.perf_counter()
    jobs = orch.plan(specs, variants, devices, options, pair=args.pair)
    conv_s = time.perf_counter() - t0
    common.detail(f"conversion: {conv.hits} cache hit(s), {conv.misses} conversion(s), {conv_s:.2f} s")
    summary = orch.run(jobs, argv, resume=args.resume, label=args.label, wait=args.wait)
    common.log(
        f"run {summary.run_id}: {summary.ok} ok, {summary.infra_errors} infrastructure failure(s), "
        f"{summary.errors} error(s), {summary.skipped} already measured"
    )
    print(summary.run_id)  # first: a report that cannot be written must not hide the stored run
    if report:
        from harness.commands.report import write_report

        write_report(store, summary.run_id, report)
        common.log(f"report written to {report}")
    return summary.exit_code
