"""`hil sweep`: compression recipes -> candidates -> measured on devices -> Pareto fronts + a choice per device."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.commands import common
from harness.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="compress a model with recipes, measure the candidates, choose per device",
        description="Runs each compression recipe (shipped name or YAML file) on MODEL, measures "
        "every candidate and the uncompressed model through the run path, and picks "
        "per device the best candidate within the profile's budgets (docs/COMPRESSION.md).",
    )
    p.add_argument("model", nargs="?", help=".keras model (a .tflite accepts ai-edge-quantizer recipes only)")
    p.add_argument("--recipes", help="comma list of recipe names (shipped) or .yaml files")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    p.add_argument(
        "--grid",
        action="append",
        metavar="STEP.PARAM=V1,V2",
        help="sweep a parameter over values, e.g. prune.sparsity=0.5,0.8 (repeatable: all combinations)",
    )
    p.add_argument(
        "--data",
        help="training data: .npz with x, y (optional x_val, y_val) or module:function "
        "(default: <model>.train.npz beside the model)",
    )
    p.add_argument("--calibration", help="representative data .npy/.npz (default: <model>.calibration.npz)")
    p.add_argument(
        "--eval",
        dest="eval_file",
        help="evaluation data .npz with x, y; x alone for an autoencoder (reconstruction error) "
        "(default: <model>.eval.npz)",
    )
    p.add_argument("--devices", help="comma list of device ids (default: all enabled devices)")
    p.add_argument("--tags", help="comma list: devices having any of these tags")
    p.add_argument(
        "--budget",
        action="append",
        metavar="NAME=VALUE",
        help="a budget for every device beside its profile's (e.g. max_latency_p50_us=500, "
        "min_accuracy_top1=0.95, max_model_size_bytes=65536; repeatable)",
    )
    p.add_argument(
        "--prefer",
        default="accuracy",
        choices=["accuracy", "latency", "size", "energy", "arena"],
        help="what the choice maximises within budgets (default: %(default)s)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not measure the uncompressed model beside the candidates",
    )
    p.add_argument("--json", dest="json_out", help="write the choice per device as JSON to this file")
    p.add_argument("--html", dest="html_out", help="write an HTML page with the fronts per device to this file")
    p.add_argument(
        "--compress-only",
        action="store_true",
        help="build the candidates (training, conversion, host accuracy) without measuring on devices",
    )
    common.add_measurement_options(p)
    common.add_robustness_options(p)
    p.add_argument("--resume", action="store_true", help="continue the last unfinished run of this sweep")
    common.add_lock_options(p)
    p.add_argument("--label", help="free-text label stored with the run")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from harness.compress import recipes

    if args.list_recipes:
        for name, path in recipes.library().items():
            r = recipes.load(path)
            print(f"{name:24s} {' -> '.join(s.type for s in r.steps):40s} {r.description}")
        return 0
    if not args.model or not args.recipes:
        raise ConfigError("hil sweep needs MODEL and --recipes R1,R2,... (see --list-recipes)")
    from harness.compress.pareto import parse_budgets
    from harness.compress.pipeline import FAILED, Compressor, EvalData, Refused
    from harness.compress.sweep import format_table, run_sweep, write_outputs
    from harness.models.convert import Calibration, ModelSource
    from harness.run.orchestrate import Orchestrator

    grid = recipes.parse_grid(args.grid)
    chosen = recipes.expand(common.split_csv(args.recipes) or [], grid)
    budgets = parse_budgets(args.budget)
    src = ModelSource.open(args.model)
    stem = src.path.parent / src.path.stem
    data_ref = args.data or (str(stem) + ".train.npz" if Path(f"{stem}.train.npz").exists() else None)
    calib_ref = args.calibration or next(
        (c for c in (f"{stem}.calibration.npz", f"{stem}.calibration.npy") if Path(c).exists()), None
    )
    eval_ref = args.eval_file or (f"{stem}.eval.npz" if Path(f"{stem}.eval.npz").exists() else None)
    if eval_ref is not None and not Path(eval_ref).is_file():
        raise ConfigError(f"{eval_ref}: evaluation data file not found")
    eval_data = EvalData.load(Path(eval_ref)) if eval_ref else None
    inv = common.inventory(args)
    devices = inv.select(common.split_csv(args.devices), common.split_csv(args.tags))
    if not devices and not args.compress_only:
        raise ConfigError(f"{inv.path}: no enabled devices")
    # --robustness, and the perturbations a budget names (--budget or a device profile's): checked
    # before anything trains
    profile_robust = {k: 0.0 for d in devices if (b := inv.profile_of(d).budgets) is not None for k in b.robust}
    robustness = common.robustness_from(args, {**budgets, **profile_robust})
    if robustness and eval_ref is None:
        raise ConfigError(
            f"--robustness / robustness budgets: need evaluation data (--eval, or {stem}.eval.npz beside the model)"
        )
    common.work_dirs(args)
    conv = common.converter(args)
    comp = Compressor(src, conv, Calibration.from_arg(calib_ref), eval_data, data_ref, log=common.log)
    for r in chosen:
        comp.preflight(r)  # a missing input stops the sweep here, before anything trains
    t0 = time.perf_counter()
    candidates = [comp.baseline()] if args.baseline else []
    refused: list[Refused] = []
    targets = _targets(chosen, devices, inv, conv.cache_dir.parent, args.wait)
    for r in chosen:
        for target in (targets or [None]) if r.needs_target() else [None]:
            got = comp.try_run(r, target)
            if isinstance(got, Refused):
                refused.append(got)
            else:
                candidates.append(got)
    common.log(
        f"compression: {len(candidates)} candidate(s), {comp.cache.hits} cached step(s), "
        f"{comp.cache.misses} computed ({comp.trained} trained), {conv.misses} conversion(s), "
        f"{time.perf_counter() - t0:.1f} s" + (f"; {len(refused)} recipe(s) gave none (listed)" if refused else "")
    )
    if args.compress_only:
        for c in candidates:
            m = c.metrics
            acc = f"{m['host_accuracy'] * 100:.2f} %" if m.get("host_accuracy") is not None else "-"
            score = f"mse {m['host_mse']:>8.5f}" if m.get("host_mse") is not None else f"acc {acc:>8s}"
            print(
                f"{c.name:40s} {c.variant:8s} {score}  size {m['size_bytes']:>9,d} B  "
                f"MACs {m['macs']:>11,d}  {c.artifact}"
            )
        for x in refused:
            print(f"{x.name:40s} {'-':8s} {x.describe()}")
        return 3 if any(x.status == FAILED for x in refused) else 0
    if not candidates:
        for x in refused:
            print(f"{x.name:40s} {x.describe()}")
        common.log("sweep: no candidate to measure (every recipe gave none, and --no-baseline)")
        return 3
    store = common.store(args)
    orch = Orchestrator(inv, store, conv, common.log)
    orch.robustness, orch.robustness_seed = robustness, args.robustness_seed
    res = run_sweep(
        orch,
        comp,
        candidates,
        devices,
        common.options_from(args),
        sys.argv[1:],
        Path(eval_ref) if eval_ref else None,
        budgets,
        args.prefer,
        resume=args.resume,
        label=args.label,
        wait=args.wait,
        refused=refused,
    )
    _record_lineage(store, candidates)
    print(format_table(res))
    write_outputs(
        res, src.path, Path(args.json_out) if args.json_out else None, Path(args.html_out) if args.html_out else None
    )
    for what, path in (("choice JSON", args.json_out), ("HTML page", args.html_out)):
        if path:
            common.log(f"{what} written to {path}")
    common.log(
        f"sweep run {res.run.run_id}: {res.run.ok} ok, {res.run.infra_errors} infrastructure failure(s), "
        f"{res.run.errors} error(s)"
    )
    return res.exit_code


def _targets(chosen, devices, inv, cache_root=None, wait: bool = True) -> list:
    """One profiler per device profile among the devices, for recipes that prune for the target's
    measured profile (profile_prune without a cost model): one candidate per board type."""
    if not any(r.needs_target() for r in chosen):
        return []
    from harness.compress.profilers import device_profiler

    first: dict[str, object] = {}
    for d in devices:
        first.setdefault(inv.profile_of(d).name, d)
    return [device_profiler(d, inv, cache_root=cache_root, wait=wait) for d in first.values()]


def _record_lineage(store, candidates) -> None:
    """Every node of every candidate into the results database (`hil lineage` reads it)."""
    from harness.compress.lineage import store_nodes

    store_nodes(store, candidates)
