"""`hil analyze`: what is inside a .tflite (ops, shapes, quantisation, MACs), no TensorFlow needed;
plus, when the results database has measured this exact file (same sha256), what it costs on each
device: latency, inferences per second, arena, flash, RAM and energy."""

from __future__ import annotations

import json
import math

from harness.models.inspect.analysis import analyze, format_table, to_dict

MEASURED = ("latency_p50_us", "arena_bytes", "flash_bytes", "ram_bytes", "peak_rss_kb", "energy_per_inference_uj")


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="show operators, tensors, quantisation and MACs of a .tflite",
        description="Static analysis of a .tflite; with a results database (--db) that holds "
        "results of this exact file, also its measured cost per device.",
    )
    p.add_argument("model", help=".tflite file (a .keras model: `hil convert` it first)")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="rank the operators of a float model by what their int8 quantization costs "
        "(needs --calibration; --eval adds the top-1 drop of the top few)",
    )
    p.add_argument("--calibration", help="with --sensitivity: representative inputs (.npz/.npy, x)")
    p.add_argument("--eval", dest="eval_file", help="with --sensitivity: labelled data (.npz: x, y) for accuracy drops")
    p.add_argument("--top", type=int, default=3, metavar="N", help="with --sensitivity: accuracy drops of the top N")
    p.set_defaults(func=cmd_analyze)


def measured(db: str, sha256: str) -> list[dict]:
    """Newest successful result of this artifact per device (empty without a database file)."""
    from harness.store.location import locate

    where = locate(db).path
    if where is not None and not where.exists():
        return []
    from harness.report.run_markdown import per_second
    from harness.store.results import ResultStore

    store = ResultStore(db, create=False, read_only=True)
    try:
        wide = store.measured_artifact(sha256)
    finally:
        store.close()
    out = []
    for _, r in wide.iterrows():
        row = {"device": r["device_id"], "profile": r["profile"], "run_id": r["run_id"]}
        for m in MEASURED:
            v = r.get(m)
            row[m] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        row["inferences_per_second"] = per_second(row["latency_p50_us"])
        out.append(row)
    return out


def format_measured(rows: list[dict]) -> str:
    from harness.report.run_markdown import fmt_num, fmt_us, markdown_table

    headers = [
        "device",
        "profile",
        "p50",
        "inf/s",
        "arena (KiB)",
        "flash (KiB)",
        "RAM (KiB)",
        "peak RSS (MB)",
        "energy/inf (uJ)",
        "run",
    ]
    kib = [("arena_bytes", 1024), ("flash_bytes", 1024), ("ram_bytes", 1024), ("peak_rss_kb", 1024)]
    body = [
        [r["device"], r["profile"], fmt_us(r["latency_p50_us"]), fmt_num(r["inferences_per_second"], ".1f")]
        + [fmt_num(r[key], ".1f", scale) for key, scale in kib]
        + [fmt_num(r["energy_per_inference_uj"], ".3f"), r["run_id"]]
        for r in rows
    ]
    return "Measured (newest result of this file per device):\n" + markdown_table(headers, body)


def cmd_sensitivity(args) -> int:
    """`hil analyze MODEL --sensitivity`: harness/compress/sensitivity.py on the model's float .tflite."""
    from pathlib import Path

    import numpy as np

    from harness.commands import common
    from harness.compress.sensitivity import format_ranking, rank
    from harness.errors import ConfigError
    from harness.models.convert import Calibration, ModelSource

    if not args.calibration:
        raise ConfigError("--sensitivity: needs --calibration DATA (representative inputs, x)")
    if args.top < 0:
        raise ConfigError(f"--top: {args.top} is below 0")
    src = ModelSource.open(args.model)
    calib = Calibration.from_arg(args.calibration)
    if calib is None:
        raise ConfigError("--calibration: give a data file (random data ranks nothing real)")
    calib.check()
    if src.kind == "tflite":
        float_path = src.path
    else:
        float_path = Path(common.converter(args).convert(src, "fp32", None, quiet=True).artifact)
    a = analyze(float_path)
    if len(a.inputs) != 1:
        raise ConfigError(f"{args.model}: --sensitivity supports single-input models; it has {len(a.inputs)} inputs")
    shape = tuple(max(1, d) for d in a.inputs[0].shape)
    x = np.concatenate([s[0] for s in calib.arrays([(None, *shape[1:])])]).astype(np.float32)
    ex = ey = None
    if args.eval_file:
        from harness.models.evaldata import load_eval

        ev = Path(args.eval_file)
        arrays = load_eval(ev, tuple(shape[1:]), None)  # x of the model's sample shape, y class indices
        if "y" not in arrays:
            raise ConfigError(f"{ev}: --sensitivity --eval needs labels 'y' for the top-1 drops")
        ex, ey = arrays["x"], arrays["y"]
    ranking = rank(float_path.read_bytes(), x, ex, ey, top=args.top)
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(args.model),
                    "float_model": str(float_path),
                    "int8_output_sqnr_db": ranking.base_db,
                    "float_top1": ranking.float_top1,
                    "int8_top1": ranking.int8_top1,
                    "ops": [
                        {
                            "rank": i,
                            "index": s.index,
                            "type": s.type,
                            "tensor": s.tensor,
                            "gain_db": s.gain_db,
                            "sqnr_db": s.sqnr_db,
                            "readers": list(s.readers),
                            "accuracy_drop": s.accuracy_drop,
                        }
                        for i, s in enumerate(ranking.ops, 1)
                    ],
                },
                indent=1,
            )
        )
    else:
        print(format_ranking(ranking, args.top))
    return 0


def cmd_analyze(args) -> int:
    if args.sensitivity:
        return cmd_sensitivity(args)
    if args.calibration or args.eval_file:
        from harness.errors import ConfigError

        raise ConfigError("--calibration/--eval: only with --sensitivity")
    a = analyze(args.model)
    rows = measured(args.db, a.sha256)
    if args.json:
        print(json.dumps({**to_dict(a), "measured": rows}, indent=1))
    else:
        print(format_table(a))
        if rows:
            print()
            print(format_measured(rows))
    return 0
