#!/usr/bin/env python3
"""Does one `hil run` controller scale with the number of boards? Throughput and memory, measured.

For N in --boards (default 1, 10, 25, 50) this starts N simulated MCU boards (`hil mcu-sim` on ptys,
the real TFLite Micro interpreter running a tiny model, with a fixed per-inference time on the
board's clock so that a board costs almost no CPU and every board is equally fast), writes an
inventory of N serial devices, and times one `hil run` that measures the same short job on every
board `--repeats` times (one lane per board, all lanes concurrent). Reported per N:

- throughput: measurements per second; ideal scaling is N x the one-board figure, and the ratio
  (throughput / (N x one-board throughput)) is the efficiency (target >= 0.9 up to 50 boards);
- the controller's peak RSS (the `hil run` process, from wait4's rusage; target < 500 MB at 50);
- the results database after the run (rows; a result lost or doubled is reported as an error).

The store is SQLite (`--db`); a PostgreSQL store is not implemented yet (issue 13).

Usage:
    .venv/bin/python benchmarks/controller_scale.py                 # 1, 10, 25, 50 boards
    .venv/bin/python benchmarks/controller_scale.py --boards 1,5 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sine_model() -> Path:
    spec = importlib.util.find_spec("tflite_micro")
    assert spec is not None and spec.submodule_search_locations, "tflite-micro is a dependency of hilbench"
    return Path(list(spec.submodule_search_locations)[0]) / "python" / "tflite_micro" / "sine_float.tflite"


def start_boards(n: int, model: Path, work: Path, inference_us: int) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "mcu-sim",
                str(model),
                "--inference-us",
                str(inference_us),
                "--link",
                str(work / f"dut{i}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(p)
    for p in procs:  # each says where it serves once it is ready
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("serving on "):
                break
        else:
            raise SystemExit(f"mcu-sim exited early (rc {p.wait()})")
    return procs


def write_lab(work: Path, n: int) -> None:
    import yaml

    (work / "device_profiles").mkdir(exist_ok=True)
    prof = yaml.safe_load((ROOT / "device_profiles" / "stm32h7.yaml").read_text())
    prof.update(
        name="sim-board",
        energy_meter={"type": "none"},
        benchmark={"windows": 2, "window_seconds": 0.05, "min_runs": 2, "warmup_runs": 0, "warmup_seconds": 0.0},
    )
    (work / "device_profiles" / "sim-board.yaml").write_text(yaml.safe_dump(prof))
    devices = [
        {
            "id": f"b{i:02d}",
            "profile": "sim-board",
            "transport": {
                "type": "serial",
                "port": str(work / f"dut{i}"),
                "timeout": 5.0,
                "infer_timeout": 30.0,
                "flash": "never",
                "accuracy_samples": 0,
            },
        }
        for i in range(n)
    ]
    (work / "inventory.yaml").write_text(yaml.safe_dump({"devices": devices}))


def timed_run(work: Path, model: Path, repeats: int) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MB of the controller, exit code, stderr tail)."""
    env = {**os.environ, "HILBENCH_CACHE": str(work / "cache")}
    cmd = [sys.executable, "-m", "harness", "run", str(model), "--repeats", str(repeats), "--warmup-seconds", "0"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    return wall, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status), err[-1500:]


def count_results(work: Path) -> tuple[int, int]:
    db = sqlite3.connect(work / "reports" / "results.sqlite")
    total = db.execute("SELECT COUNT(*) FROM results WHERE status='ok'").fetchone()[0]
    distinct = db.execute("SELECT COUNT(DISTINCT job_key) FROM results WHERE status='ok'").fetchone()[0]
    return int(total), int(distinct)


def measure(n: int, repeats: int, inference_us: int, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"hil-scale-{n}-", dir=keep))
    model = sine_model()
    boards = start_boards(n, model, work, inference_us)
    try:
        write_lab(work, n)
        wall, rss_mb, code, err = timed_run(work, model, repeats)
        total, jobs = count_results(work) if code == 0 else (0, 0)
    finally:
        for b in boards:
            b.terminate()
        for b in boards:
            b.wait(timeout=10)
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "boards": n,
        "repeats": repeats,
        "measurements": n * repeats,
        "wall_s": round(wall, 2),
        "throughput_per_s": round(n * repeats / wall, 3),
        "controller_peak_rss_mb": round(rss_mb, 1),
        "exit": code,
        "ok_results": total,
        "jobs": jobs,
    }
    if code != 0:
        out["error"] = err
    elif total != n * repeats:
        out["error"] = f"{total} ok results for {n * repeats} measurements (lost or doubled)"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="1,10,25,50", help="comma list of board counts (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=5, help="measurements of the job per board (default: %(default)s)")
    ap.add_argument("--inference-us", type=int, default=1000, help="simulated time per inference")
    ap.add_argument("--keep", help="keep each lab directory under this directory")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = []
    for n in [int(x) for x in a.boards.split(",")]:
        row = measure(n, a.repeats, a.inference_us, Path(a.keep) if a.keep else None)
        rows.append(row)
        if not a.json:
            print(
                f"{n:3d} boards: {row['measurements']:4d} measurements in {row['wall_s']:7.2f} s -> "
                f"{row['throughput_per_s']:7.3f}/s, controller peak RSS {row['controller_peak_rss_mb']:.0f} MB"
                + (f"  ERROR {row['error']}" if "error" in row else ""),
                flush=True,
            )
    base = rows[0]["throughput_per_s"] / rows[0]["boards"]
    for row in rows:
        row["efficiency"] = round(row["throughput_per_s"] / (row["boards"] * base), 3)
    if a.json:
        print(json.dumps({"host_cpus": os.cpu_count(), "rows": rows}, indent=1))
    else:
        print(
            "efficiency (throughput / (boards x one-board throughput)): "
            + ", ".join(f"{r['boards']}: {r['efficiency']:.2f}" for r in rows)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
