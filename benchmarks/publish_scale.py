#!/usr/bin/env python3
"""`hil publish` at scale: publish time from scratch and after one more nightly, site size, largest page.

Usage: python benchmarks/publish_scale.py [--runs 100,1000] [--series 100] [--processes 1] [--dir DIR]

For each run count, a synthetic store is built through the store API (tests/site_store.py: every series
measured every night, verdicts recorded, one step regression with its confirmation, a pin, a drifting
night), then published into an empty directory, re-published unchanged, and re-published after one more
night was added. Building the store takes most of the time (one transaction per result, as `hil run`
records them); it is not part of the numbers. A store kept in --dir is reused when it has the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np
import site_store

from harness.report.site.writer import publish
from harness.store.results import ResultStore


def site_size(site: Path) -> tuple[int, int, str]:
    files = [p for p in site.rglob("*") if p.is_file()]
    largest = max(
        (p for p in files if p.suffix in (".html", ".js") and "assets" not in p.parts), key=lambda p: p.stat().st_size
    )
    return sum(p.stat().st_size for p in files), largest.stat().st_size, str(largest.relative_to(site))


def one(runs: int, series: int, processes: int, work: Path) -> dict:
    pristine = work / f"store-{runs}x{series}x{processes}.sqlite"
    meta_file = work / f"{pristine.name}.json"
    t0 = time.perf_counter()
    if not meta_file.exists():
        syn = site_store.build(pristine, runs, series, processes)
        meta_file.write_text(json.dumps({"run_ids": syn.run_ids, "step_at": syn.step_at}))
    built = time.perf_counter() - t0
    db = work / "store.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(pristine) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    site = work / f"site-{runs}"
    shutil.rmtree(site, ignore_errors=True)
    snap = work / "snapshot.pickle"  # `hil publish` keeps it in the hilbench cache
    snap.unlink(missing_ok=True)
    store = ResultStore(db, read_only=True)
    scratch, scratch_cpu = timed(lambda: publish(store, site, snapshot=snap))
    unchanged, unchanged_cpu = timed(lambda: publish(store, site, snapshot=snap))
    unchanged_full, unchanged_full_cpu = timed(lambda: publish(store, site))
    store.close()
    total, largest, largest_name = site_size(site)
    before = work / f"site-{runs}-before-nightly"
    shutil.rmtree(before, ignore_errors=True)
    shutil.copytree(site, before)
    # one more nightly, through the store API, then publish again
    meta = json.loads(meta_file.read_text())
    syn = site_store.Synthetic(db, run_ids=meta["run_ids"], step_at=meta["step_at"])
    names = site_store.series_names(series)
    syn.keys = [f"{m}/{v}@{d}" for m, v, d, _ in names]
    syn.regressed = syn.keys[0]
    writer = ResultStore(db)
    syn.run_ids.append(site_store.add_night(writer, syn, len(syn.run_ids), names, np.random.default_rng(1), processes))
    writer.close()
    site_store.backdate(db, syn.run_ids)
    store = ResultStore(db, read_only=True)
    nightly, nightly_cpu = timed(lambda: publish(store, site, snapshot=snap))
    store.close()
    # the same nightly without a snapshot (a fresh CI runner): every series read and hashed again
    store = ResultStore(db, read_only=True)
    nightly_full, nightly_full_cpu = timed(lambda: publish(store, before))
    store.close()
    shutil.rmtree(before)
    return {
        "runs": runs,
        "series": series,
        "processes": processes,
        "store_build_s": round(built, 1),
        "scratch_s": round(scratch.seconds, 2),
        "scratch_cpu_s": round(scratch_cpu, 2),
        "scratch_files": len(scratch.written),
        "unchanged_s": round(unchanged.seconds, 2),
        "unchanged_cpu_s": round(unchanged_cpu, 2),
        "unchanged_files": len(unchanged.written),
        "unchanged_no_snapshot_s": round(unchanged_full.seconds, 2),
        "unchanged_no_snapshot_cpu_s": round(unchanged_full_cpu, 2),
        "nightly_s": round(nightly.seconds, 2),
        "nightly_cpu_s": round(nightly_cpu, 2),
        "nightly_files": len(nightly.written),
        "nightly_no_snapshot_s": round(nightly_full.seconds, 2),
        "nightly_no_snapshot_cpu_s": round(nightly_full_cpu, 2),
        "site_bytes": total,
        "largest_page_bytes": largest,
        "largest_page": largest_name,
        "load_average": round(os.getloadavg()[0], 1),
    }


def timed(fn):
    """The publish and the CPU time it took: on a shared 2-core machine the wall time also counts
    everyone else's work."""
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="100,1000")
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--dir", help="keep stores and sites here (default: a temporary directory)")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="publish-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    for n in [int(x) for x in args.runs.split(",")]:
        print(json.dumps(one(n, args.series, args.processes, work)), flush=True)
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
