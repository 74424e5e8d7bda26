#!/usr/bin/env python3
"""Does one `hil run` controller scale with the number of boards? Throughput and memory, measured.

The largest N in --boards simulated MCU boards are started once (`hil mcu-sim` on ptys, the real
TFLite Micro interpreter running a tiny model, with a fixed per-inference time on the board's clock so
that a board costs almost no CPU and every board is equally fast); every configuration (store, N)
writes an inventory of the first N of them and times one `hil run` that measures the same short job
(the model committed in a small git repository, as a lab's models are) on every board `--repeats`
times (one lane per board, all lanes concurrent), into a fresh store:
an SQLite file, or a new database on a private PostgreSQL server (initdb into a temporary directory,
127.0.0.1 and a free port, as tests/postgres.py does; stopped at the end). Reported per (store, N):

- jobs/s: measurements per second of the measuring phase (from the run's start in the store to its
  last result, so the controller's fixed start-up -- imports, planning -- is left out), and the wall
  time of the whole `hil run` process and when its first job started (start-up and planning);
- efficiency: jobs/s / (N x the one-board jobs/s of the same store); target >= 0.9 up to 50 boards;
  the same from wall times (start-up and planning included: every board has the same work, so the
  ideal wall time does not depend on N);
- the controller's peak RSS and CPU time (the `hil run` process, from wait4's rusage; target < 500 MB
  at 50); --profile runs it under cProfile, every thread (benchmarks/_profile_hil.py);
- the rows in the store afterwards: one `ok` result per measurement, every job key once, measurements
  stored with each, no claim left, the run `complete` (anything else is reported as an error);
- per job in a lane (from the controller's log lines, timestamped as they arrive): the time from
  "measuring" to "done" (the board's work + recording) and from one "done" to the lane's next
  "measuring" (claiming the next job), mean and max: where the controller makes a board wait.

Usage:
    .venv/bin/python benchmarks/controller_scale.py                         # both stores, 1, 10, 25, 50
    .venv/bin/python benchmarks/controller_scale.py --store sqlite --boards 1,5 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STORES = ("sqlite", "postgresql")


def sine_model() -> Path:
    spec = importlib.util.find_spec("tflite_micro")
    assert spec is not None and spec.submodule_search_locations, "tflite-micro is a dependency of hilbench"
    return Path(list(spec.submodule_search_locations)[0]) / "python" / "tflite_micro" / "sine_float.tflite"


def model_in_git(base: Path) -> Path:
    """The model, committed in a small git repository as a lab's models are (the controller records
    the commit of each job's model in its provenance, which costs it `git` calls)."""
    repo = base / "models"
    repo.mkdir(exist_ok=True)
    model = repo / "sine_float.tflite"
    shutil.copyfile(sine_model(), model)
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for cmd in (["init", "-q"], ["add", model.name], ["commit", "-q", "-m", "model"]):
        subprocess.run([*git, *cmd], check=True, capture_output=True)
    return model


def pg_helpers() -> Any:
    """tests/postgres.py: the private PostgreSQL server the store tests use (one implementation)."""
    spec = importlib.util.spec_from_file_location("hilbench_tests_postgres", ROOT / "tests" / "postgres.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def start_boards(n: int, model: Path, where: Path, inference_us: int) -> list[subprocess.Popen]:
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
                str(where / f"dut{i}"),
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
    for p in procs:  # keep reading what they print (a full pipe would stall a board)
        threading.Thread(target=_drain, args=(p,), daemon=True).start()
    return procs


def _drain(p: subprocess.Popen) -> None:
    assert p.stdout is not None
    for _ in p.stdout:
        pass


def write_lab(work: Path, boards: Path, n: int, window_s: float) -> None:
    import yaml

    (work / "device_profiles").mkdir(exist_ok=True)
    prof = yaml.safe_load((ROOT / "device_profiles" / "stm32h7.yaml").read_text())
    prof.update(
        name="sim-board",
        energy_meter={"type": "none"},
        benchmark={"windows": 2, "window_seconds": window_s, "min_runs": 2, "warmup_runs": 0, "warmup_seconds": 0.0},
    )
    (work / "device_profiles" / "sim-board.yaml").write_text(yaml.safe_dump(prof))
    devices = [
        {
            "id": f"b{i:02d}",
            "profile": "sim-board",
            "transport": {
                "type": "serial",
                "port": str(boards / f"dut{i}"),
                "timeout": 5.0,
                "infer_timeout": 30.0,
                "flash": "never",
                "accuracy_samples": 0,
            },
        }
        for i in range(n)
    ]
    (work / "inventory.yaml").write_text(yaml.safe_dump({"devices": devices}))


def timed_run(work: Path, model: Path, repeats: int, db: str, profile: bool) -> dict:
    """Run the controller; wall seconds, peak RSS (MB), exit code, its log lines with arrival times."""
    env = {**os.environ, "HILBENCH_CACHE": str(work / "cache"), "HILBENCH_DB": db}
    hil = [sys.executable, "-m", "harness"]
    if profile:  # cProfile of the controller's main thread (and, with threading.setprofile, its lanes)
        hil = [sys.executable, str(ROOT / "benchmarks" / "_profile_hil.py"), str(work / "controller.prof")]
    cmd = [*hil, "run", str(model), "--repeats", str(repeats), "--warmup-seconds", "0"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert p.stderr is not None
        for line in p.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    reader.join(timeout=10)
    (work / "controller.log").write_text("".join(f"{t:9.3f} {m}\n" for t, m in lines))
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024.0,
        "exit": os.waitstatus_to_exitcode(status),
        "log": lines,
    }


_MEASURING = re.compile(r"^measuring (\S+@(\S+) \[\d+/\d+\]) \.\.\.$")
_DONE = re.compile(r"^done (\S+@(\S+) \[\d+/\d+\])")


def lane_times(log: list[tuple[float, str]]) -> dict:
    """Per job in a lane: "measuring" -> "done" (board + recording), "done" -> next "measuring"."""
    started: dict[str, float] = {}
    last_done: dict[str, float] = {}
    busy, gaps = [], []
    for t, line in log:
        if m := _MEASURING.match(line):
            started[m.group(1)] = t
            if m.group(2) in last_done:
                gaps.append(t - last_done[m.group(2)])
        elif (m := _DONE.match(line)) and m.group(1) in started:
            busy.append(t - started[m.group(1)])
            last_done[m.group(2)] = t

    def stats(xs: list[float]) -> dict:
        return {"mean": round(statistics.fmean(xs), 3), "max": round(max(xs), 3)} if xs else {}

    first = next((t for t, line in log if _MEASURING.match(line)), None)
    return {
        "job_s": stats(busy),
        "between_jobs_s": stats(gaps),
        "first_job_at_s": round(first, 2) if first is not None else None,
    }


def check_store(db: str, n: int, repeats: int) -> dict:
    """What the store holds after the run, read with plain SQLAlchemy."""
    import sqlalchemy as sa

    url = db.replace("postgresql://", "postgresql+pg8000://", 1) if db.startswith("postgresql") else f"sqlite:///{db}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            q = lambda sql: c.execute(sa.text(sql)).all()
            (run_id, status, started), *more_runs = q("SELECT run_id, status, started_at FROM runs")
            rows = q("SELECT status, COUNT(*), COUNT(DISTINCT job_key), MAX(timestamp) FROM results GROUP BY status")
            no_metrics = q(
                "SELECT COUNT(*) FROM results r WHERE NOT EXISTS "
                "(SELECT 1 FROM measurements m WHERE m.result_id = r.result_id)"
            )[0][0]
            claims = q("SELECT COUNT(*) FROM job_claims")[0][0]
    finally:
        engine.dispose()
    by_status = {s: (int(total), int(distinct), last) for s, total, distinct, last in rows}
    ok, distinct, last = by_status.get("ok", (0, 0, None))
    out: dict[str, Any] = {"ok_results": ok, "distinct_jobs": distinct, "run_status": status}
    problems = []
    if more_runs:
        problems.append(f"{1 + len(more_runs)} runs")
    if ok != n * repeats or distinct != n * repeats:
        problems.append(f"{ok} ok results, {distinct} distinct jobs for {n * repeats} measurements")
    if set(by_status) - {"ok"}:
        problems.append("other results: " + ", ".join(f"{s} {v[0]}" for s, v in by_status.items() if s != "ok"))
    if no_metrics:
        problems.append(f"{no_metrics} results without measurements")
    if claims:
        problems.append(f"{claims} claims left")
    if status != "complete":
        problems.append(f"run {status}")
    if problems:
        out["error"] = "; ".join(problems)
    out["measuring_s"] = (last - started) if last is not None else None
    return out


def measure(
    store: str,
    n: int,
    repeats: int,
    window_s: float,
    model: Path,
    boards: Path,
    base: Path,
    pg: Any,
    profile: bool = False,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"{store}-{n:02d}-", dir=base))
    write_lab(work, boards, n, window_s)
    db = pg.createdb() if store == "postgresql" else str(work / "results.sqlite")
    run = timed_run(work, model, repeats, db, profile)
    out: dict[str, Any] = {
        "store": store,
        "boards": n,
        "repeats": repeats,
        "measurements": n * repeats,
        "wall_s": round(run["wall"], 2),
        "jobs_per_wall_s": round(n * repeats / run["wall"], 3),
        "controller_peak_rss_mb": round(run["rss_mb"], 1),
        "controller_cpu_s": round(run["cpu"], 2),
        "exit": run["exit"],
        **lane_times(run["log"]),
    }
    try:
        out.update(check_store(db, n, repeats))
    except Exception as exc:  # no run at all, or an unreadable store: the row says so
        out["error"] = f"store: {type(exc).__name__}: {exc}"
    if run["exit"] != 0:
        tail = "\n".join(m for _, m in run["log"][-8:])
        out["error"] = f"exit {run['exit']}: {tail}" + (f"; {out['error']}" if "error" in out else "")
    if out.get("measuring_s"):
        out["jobs_per_s"] = round(n * repeats / out["measuring_s"], 3)
        out["measuring_s"] = round(out["measuring_s"], 2)
    out["work"] = str(work)
    return out


def print_row(row: dict) -> None:
    job, gap = row.get("job_s", {}), row.get("between_jobs_s", {})
    print(
        f"{row['store']:10s} {row['boards']:3d} boards: {row['measurements']:4d} jobs, measuring "
        f"{row.get('measuring_s') or 0:7.2f} s -> {row.get('jobs_per_s') or 0:7.3f} jobs/s "
        f"(wall {row['wall_s']:6.2f} s, first job at {row.get('first_job_at_s') or 0:5.2f} s, "
        f"controller CPU {row['controller_cpu_s']:5.1f} s), peak RSS {row['controller_peak_rss_mb']:4.0f} MB, "
        f"rows {row.get('ok_results', 0)}/{row['measurements']}, job {job.get('mean', 0):.3f} s "
        f"(max {job.get('max', 0):.2f}), between jobs {gap.get('mean', 0):.3f} s (max {gap.get('max', 0):.2f})"
        + (f"\n    ERROR {row['error']}" if "error" in row else ""),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="sqlite,postgresql", help="comma list of stores (default: %(default)s)")
    ap.add_argument("--boards", default="1,10,25,50", help="comma list of board counts (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=12, help="measurements of the job per board (default: %(default)s)")
    ap.add_argument(
        "--window-seconds",
        type=float,
        default=1.0,
        help="each job times 2 windows of this length on the board (default: %(default)s)",
    )
    ap.add_argument(
        "--inference-us", type=int, default=5000, help="simulated time per inference (default: %(default)s)"
    )
    ap.add_argument("--keep", help="keep each configuration's directory (controller.log, SQLite file) under this one")
    ap.add_argument("--profile", action="store_true", help="cProfile the controller (controller.prof per config)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    stores = [s.strip() for s in a.store.split(",") if s.strip()]
    if not stores or set(stores) - set(STORES):
        ap.error(f"--store: a comma list of {', '.join(STORES)}")
    counts = [int(x) for x in a.boards.split(",")]
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="hil-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    pg = server = None
    t0 = time.perf_counter()
    boards = base / "boards"
    boards.mkdir(exist_ok=True)
    model = model_in_git(base)
    procs = start_boards(max(counts), model, boards, a.inference_us)
    rows: list[dict] = []
    try:
        if "postgresql" in stores:
            pg = pg_helpers()
            server = pg.start_postgres()
        if not a.json:
            print(f"{max(counts)} boards started in {time.perf_counter() - t0:.1f} s", flush=True)
        for store in stores:
            for n in counts:
                row = measure(store, n, a.repeats, a.window_seconds, model, boards, base, server, a.profile)
                rows.append(row)
                if not a.json:
                    print_row(row)
    finally:
        if server is not None:
            server.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    for store in stores:
        mine = [r for r in rows if r["store"] == store and r.get("jobs_per_s")]
        one = next((r for r in mine if r["boards"] == 1), mine[0] if mine else None)
        for r in mine:
            assert one is not None
            r["efficiency"] = round(r["jobs_per_s"] / (r["boards"] * one["jobs_per_s"] / one["boards"]), 3)
            ideal = r["boards"] * one["jobs_per_wall_s"] / one["boards"]
            r["wall_efficiency"] = round(r["jobs_per_wall_s"] / ideal, 3)
    total = time.perf_counter() - t0
    if a.json:
        print(json.dumps({"host_cpus": os.cpu_count(), "total_s": round(total, 1), "rows": rows}, indent=1))
        return 0
    print(
        f"\nhost CPUs {os.cpu_count()}, {a.repeats} jobs per board (2 windows of {a.window_seconds} s, "
        f"{a.inference_us} us per inference), whole benchmark {total:.0f} s"
    )
    print(
        "| store | boards | jobs | jobs/s | efficiency | peak RSS (MB) | rows ok | wall (s) | first job (s) "
        "| efficiency (wall) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['store']} | {r['boards']} | {r['measurements']} | {r.get('jobs_per_s', 0):.2f} | "
            f"{r.get('efficiency', 0):.2f} | {r['controller_peak_rss_mb']:.0f} | "
            f"{'yes' if 'error' not in r else 'NO'} ({r.get('ok_results', 0)}) | {r['wall_s']:.1f} | "
            f"{r.get('first_job_at_s') or 0:.1f} | {r.get('wall_efficiency', 0):.2f} |"
        )
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
