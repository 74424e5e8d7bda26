"""`hil bisect MODEL --good REV --bad REV`: the first commit whose artifact is worse than the good one.

Exit codes: 0 the commit was found (printed with its subject and the paired effect); 2 the device or
runner failed (infrastructure: measure again); 3 a usage error: the model file is not tracked by git,
has uncommitted changes, a revision is not a commit or not an ancestor of the other, the file did not
exist at a revision, or the good revision is already bad (the bad one is not worse than it). A
bisection never returns 1: finding the commit is its success.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from harness.commands import common
from harness.errors import ConfigError
from harness.gate import bisect as search
from harness.gate.bisect import Step
from harness.gate.revisions import Revision
from harness.gate.stats import DEFAULT_ALPHA
from harness.gate.thresholds import load_threshold_file, resolve
from harness.models.convert import ASIS, VARIANTS

# --metric: the gate's metric a bisection decides on (the short names: the usual question)
METRICS = {
    "latency": "latency_p50_us",
    "size": "model_size_bytes",
    "accuracy": "accuracy_top1",
    "latency_min_us": "latency_min_us",
    "latency_p50_us": "latency_p50_us",
    "latency_p90_us": "latency_p90_us",
    "model_size_bytes": "model_size_bytes",
    "accuracy_top1": "accuracy_top1",
}


def register(sub) -> None:
    p = sub.add_parser(
        "bisect",
        help="find the first commit whose model artifact is slower, larger or less accurate than a good revision",
    )
    p.add_argument("model", help="a .keras or .tflite model file tracked in git")
    p.add_argument("--good", required=True, help="a commit whose artifact is good (tag, branch, sha)")
    p.add_argument("--bad", default="HEAD", help="a later commit whose artifact is worse (default: %(default)s)")
    p.add_argument("--device", help="device id to measure on (latency and accuracy; not needed for size)")
    p.add_argument(
        "--metric",
        default="latency",
        choices=list(METRICS),
        help="what 'worse' means: latency (the p50, paired in-process with the good artifact; default), "
        "size (exact, from the artifact), accuracy (needs --eval), or a gated metric's name",
    )
    p.add_argument(
        "--variant",
        choices=[*VARIANTS, ASIS],
        help="the variant each revision is converted to (default fp32; a .tflite is measured as it is)",
    )
    p.add_argument("--calibration", help="representative data for int8/int16x8 (default: the model's sidecar)")
    p.add_argument("--eval", dest="eval_file", help="evaluation data .npz (x, y) for --metric accuracy")
    p.add_argument("--thresholds", help="YAML: model (or '*') -> metric -> threshold; overrides the profile")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="false-alarm rate of each step (default: %(default)s)"
    )
    p.add_argument(
        "--pairs",
        type=common.count(5),
        default=None,
        help="paired levels per latency step (default: 8 runner processes each timing both artifacts on a "
        "Linux device, 5 + 5 alternating flashed processes on an MCU board)",
    )
    common.add_measurement_options(p)
    common.add_lock_options(p)
    p.set_defaults(func=cmd_bisect)


def cmd_bisect(args) -> int:
    from harness.gate.revisions import history as read_history

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: must be between 0 and 1")
    metric = METRICS[args.metric]
    kind = metric.split("_")[0]  # latency | model | accuracy
    if kind != "model" and not args.device:
        raise ConfigError(f"--device: needed for --metric {args.metric} (size needs none)")
    if kind == "accuracy" and not args.eval_file:
        raise ConfigError("--eval: --metric accuracy needs evaluation data (.npz with x and y)")
    if args.eval_file and not Path(args.eval_file).exists():
        raise ConfigError(f"{args.eval_file}: evaluation data file not found")
    overrides = load_threshold_file(args.thresholds)
    hist = read_history(Path(args.model), args.good, args.bad)
    inventory = common.inventory(args) if args.device else None
    device = inventory.device(args.device) if inventory is not None and args.device else None
    profile = inventory.profile_of(device) if inventory is not None and device is not None else None
    thresholds = profile.thresholds if profile else None
    model = Path(hist.relpath).stem
    common.work_dirs(args)
    converter = common.converter(args)
    from harness.gate.bisect_steps import AccuracyJudge, Artifacts, LatencyJudge, SizeJudge

    artifacts = Artifacts(hist, converter, args.variant, _calibration(args, Path(args.model)))
    good = artifacts(hist.good)
    threshold = resolve(metric, model, thresholds, overrides)
    options = common.options_from(args)
    judge: Callable[[Revision], Step]
    if kind == "model":
        judge = SizeJudge(artifacts, good, threshold)
    elif kind == "latency":
        assert inventory is not None and device is not None and profile is not None
        from harness.gate.remeasure import RUNNER_TRANSPORTS
        from harness.lab.config import link_type

        if link_type(device, profile) in RUNNER_TRANSPORTS:  # judged on in-process ratios, as the gate does
            threshold = min(threshold, resolve("latency_paired_threshold", model, thresholds, overrides))
        store = common.store(args)
        judge = LatencyJudge(
            store,
            inventory,
            converter,
            device,
            profile,
            artifacts,
            good,
            hist.good,
            model,
            metric,
            threshold,
            resolve("latency_min_change_us", model, thresholds, overrides),
            args.pairs,
            args.alpha,
            options,
            args.wait,
            list(args.argv),
        )
    else:
        assert device is not None and profile is not None
        eval_file = _eval(args, good, common.cache_root(args))
        judge = AccuracyJudge(
            device, profile, artifacts, good, eval_file, threshold, options, args.wait, common.cache_root(args), metric
        )
    common.log(
        f"bisecting {hist.relpath} ({args.metric}) from {hist.good.short} to {hist.bad.short}: "
        f"{len(hist.commits)} commit(s), {len(hist.changes)} of which change the file"
    )
    out = search.bisect(hist, judge, metric, common.log)
    rev = out.first_bad
    print(f"first bad commit: {rev.commit} {rev.subject}")
    print(f"{args.metric}: {out.step.text}")
    print(
        f"steps: {len(out.steps)} measured (at most {search.max_steps(out.changes)}) over {out.commits} commit(s), "
        f"{out.changes} changing {hist.relpath}"
    )
    sys.stdout.flush()
    return 0


def _calibration(args, model: Path):
    from harness.models.convert import Calibration

    if args.calibration:
        return Calibration.from_arg(args.calibration)
    stem = model.parent / model.stem
    for cand in (f"{stem}.calibration.npz", f"{stem}.calibration.npy"):
        if Path(cand).exists():
            return Calibration.from_arg(cand)
    return None


def _eval(args, good, cache_root: Path) -> Path:
    from harness.models.evaldata import prepare_eval

    return prepare_eval(Path(args.eval_file), good.artifact, cache_root, reference=False)
