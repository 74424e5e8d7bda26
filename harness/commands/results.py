"""`hil results`: the stored measurements as a table, CSV or parquet."""

from __future__ import annotations

import pandas as pd

from harness.commands import common
from harness.errors import ConfigError
from harness.report.run_markdown import ABANDONED

# accuracy_auc: the score of an anomaly detector (MLPerf Tiny ad01) instead of top-1; shown when a result has it
DEFAULT_METRICS = [
    "latency_p50_us",
    "latency_p90_us",
    "peak_rss_kb",
    "model_size_bytes",
    "accuracy_top1",
    "accuracy_auc",
    "agreement",
]


def register(sub) -> None:
    p = sub.add_parser("results", help="show or export stored results")
    p.add_argument("--run", help="run id (default: all runs)")
    p.add_argument("--latest", action="store_true", help=f"only the latest run: {common.LATEST}")
    p.add_argument("--long", action="store_true", help="long format: one row per metric")
    p.add_argument("--csv", help="export to this CSV file")
    p.add_argument("--parquet", help="export to this parquet file")
    p.set_defaults(func=cmd_results)


def cmd_results(args) -> int:
    csv = common.output_file(args.csv, "CSV export") if args.csv else None
    parquet = common.output_file(args.parquet, "parquet export") if args.parquet else None
    store = common.store(args, read_only=True)
    runs = store.runs()
    if args.latest or args.run:
        # an unknown run id, or no run to be the latest: an error (as `report`/`gate`), not an empty table
        run_id = store.run_row(None if args.latest else args.run)["run_id"]
        runs = runs[runs["run_id"] == run_id]
    elif runs.empty:
        raise ConfigError(f"{store.path}: no runs recorded yet (run `hil run` first)")
    else:
        run_id = None
    for run in runs[runs["status"] == "abandoned"]["run_id"]:
        common.log(f"note: run {run} was abandoned: {ABANDONED}")
    df = store.dataframe(run_id) if args.long else store.wide(run_id)
    if csv:
        common.write_output(csv, "CSV export", lambda out: df.to_csv(out, index=False))
        common.log(f"wrote {len(df)} rows to {csv}")
    if parquet:
        try:
            common.write_output(parquet, "parquet export", lambda out: df.to_parquet(out, index=False))
        except ImportError as exc:
            raise ConfigError(f"{parquet}: parquet export needs pyarrow ({exc})") from None
        common.log(f"wrote {len(df)} rows to {parquet}")
    if not (args.csv or args.parquet):
        if df.empty:
            print("no results")
            return 0
        if not args.long:
            cols = ["run_id", "model", "variant", "device_id", "status"] + [m for m in DEFAULT_METRICS if m in df]
            if "power_cycles" in df:  # a board hung and was measured again after a power cycle
                cols.append("power_cycles")
                df = df.assign(power_cycles=df["power_cycles"].astype("Int64"))
            df = df[cols]
        with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 30):
            print(df.to_string(index=False, na_rep="-"))  # a failed job has no numbers: "-", never NaN
    return 0
