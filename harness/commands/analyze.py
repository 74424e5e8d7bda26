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


def cmd_analyze(args) -> int:
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
