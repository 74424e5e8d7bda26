"""`hil calibrate`: dedicated A/A runs that teach the gate a device's noise.

The gate's noise model per series (device x model x variant x metric) comes from the series'
history; a new device or model starts from the profile's `noise_prior`, which is deliberately
conservative. Calibration measures the same models several times in a row, as separate runs of
fresh processes, and accepts them as references, so that the next nightly gate knows both the
level and the run-to-run noise of every series instead of guessing.
"""

from __future__ import annotations

import sys

from harness.commands import common
from harness.core.resources import demo_model
from harness.errors import ConfigError, InfraError
from harness.gate import baselines as bl
from harness.gate.levels import noise_sigma
from harness.report.run_markdown import markdown_table
from harness.run.orchestrate import ModelSpec, Orchestrator
from harness.store import verdicts as db

METRICS = ("latency_min_us", "latency_p50_us", "latency_p90_us", "model_memory_kb")


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="A/A runs that measure each series' run-to-run noise for the gate")
    p.add_argument("models", nargs="*", help="models to calibrate with (default: the bundled example)")
    p.add_argument("--device", required=True, help="device id to calibrate")
    p.add_argument("--variants", help="comma list (default fp32; .tflite: asis)")
    p.add_argument("--runs", type=common.count(2), default=5, help="A/A runs (default: %(default)s)")
    common.add_measurement_options(p)
    common.add_lock_options(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    inv = common.inventory(args)
    device = inv.device(args.device)
    common.work_dirs(args)
    store = common.store(args)
    conv = common.converter(args)
    specs = [ModelSpec.from_args(m, None, None) for m in (args.models or [str(demo_model())])]
    for i in range(args.runs):
        orch = Orchestrator(inv, store, conv, common.log)
        jobs = orch.plan(specs, common.split_csv(args.variants), [device], common.options_from(args))
        summary = orch.run(jobs, sys.argv[1:], label="calibration", wait=args.wait, kind="calibrate")
        if summary.spooled:
            raise InfraError(
                f"calibration run {summary.run_id} on '{device.id}': {summary.spooled} result(s) are in the spool, "
                "not in the database; store them with `hil db recover`, then calibrate again"
            )
        if summary.infra_errors or summary.errors:
            raise ConfigError(
                f"calibration run {summary.run_id} on '{device.id}' had failures: " + "; ".join(summary.failures[:3])
            )
        keys = sorted({(j.variant.model_name, j.variant.variant) for j in jobs})
        db.replace_verdicts(
            store,
            summary.run_id,
            [
                {
                    "key": bl.key_of(m, v, device.id),
                    "verdict": "pass",
                    "model": m,
                    "variant": v,
                    "device_id": device.id,
                    "profile": inv.profile_of(device).name,
                    "baseline": "calibration",
                }
                for m, v in keys
            ],
        )
        common.log(f"calibration run {i + 1}/{args.runs}: {summary.run_id}")
    rows = []
    before = float("inf")
    for m, v in keys:
        for metric in METRICS:
            hist = db.series_values(store, m, v, device.id, metric, before, 10 * args.runs)
            est = noise_sigma([lv for _, lv, _ in hist])
            rows.append(
                [
                    m,
                    v,
                    device.id,
                    metric,
                    str(est.n_runs),
                    str(est.n_levels),
                    f"{est.sigma_within * 100:.2f} %",
                    f"{est.sigma_between * 100:.2f} %",
                    f"{est.sigma * 100:.2f} %",
                ]
            )
    print(
        markdown_table(
            ["model", "variant", "device", "metric", "runs", "levels", "within run", "between runs", "sigma_run"], rows
        )
    )
    return 0
