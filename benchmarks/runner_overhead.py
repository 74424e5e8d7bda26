#!/usr/bin/env python3
"""Measure the overhead of runners/linux_runner.py against a bare ``interpreter.invoke()`` loop.

Both sides run as fresh subprocesses of the same Python, with the same runtime, thread count,
number of warmup and timed runs, and per-invoke ``perf_counter_ns`` timing. Rounds are
interleaved in ABBA order (runner, bare, bare, runner, ...) so that slow drift (thermal,
frequency, neighbours) cancels. The figure of merit is

    ratio = median(runner p50 over rounds) / median(bare p50 over rounds)   (target <= 1.02)

Usage:
    .venv/bin/python benchmarks/runner_overhead.py                 # builds a small conv model
    .venv/bin/python benchmarks/runner_overhead.py --model m.tflite --num-threads 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runners" / "linux_runner.py"
TARGET = 1.02

# The bare loop: same runtime preference as the runner, inputs set once, per-invoke timing.
BARE = r"""
import sys, time, json
import numpy as np
model, threads, warmup, runs, xnnpack = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5] == "1"
try:
    from ai_edge_litert import interpreter as rt
except ImportError:
    try:
        from tflite_runtime import interpreter as rt
    except ImportError:
        import tensorflow as tf
        class rt:
            Interpreter = tf.lite.Interpreter
            OpResolverType = tf.lite.experimental.OpResolverType
kw = {} if xnnpack else {
    "experimental_op_resolver_type": rt.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
it = rt.Interpreter(model_path=model, num_threads=threads, **kw)
it.allocate_tensors()
rng = np.random.default_rng(0)
for d in it.get_input_details():
    dt = np.dtype(d["dtype"])
    if np.issubdtype(dt, np.floating):
        v = rng.uniform(-0.5, 0.5, size=d["shape"]).astype(dt)
    else:
        info = np.iinfo(dt)
        v = rng.integers(max(info.min, -127), min(info.max, 254) + 1, size=d["shape"]).astype(dt)
    it.set_tensor(d["index"], v)
invoke = it.invoke
pc = time.perf_counter_ns
invoke()
for _ in range(warmup):
    invoke()
s = []
for _ in range(runs):
    t0 = pc(); invoke(); t1 = pc()
    s.append(t1 - t0)
s.sort()
n = len(s)
med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0
print(json.dumps({"p50_us": med / 1000.0, "count": n}))
"""


def build_model(out_dir: Path) -> Path:
    """A small fp32 conv net (~sub-millisecond to a few ms on one core)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    m = tf.keras.Sequential(
        [
            tf.keras.Input((64, 64, 3)),
            tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            tf.keras.layers.Conv2D(32, 3, activation="relu"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Conv2D(32, 3, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10),
        ]
    )
    path = out_dir / "overhead_conv.tflite"
    # The converter prints to fd 1; keep stdout for our own output (--json).
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return path


def _env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_runner(py, model, threads, warmup, runs, xnnpack):
    cmd = [
        py,
        str(RUNNER),
        "--model",
        str(model),
        "--num-threads",
        str(threads),
        "--min-runs",
        str(runs),
        "--min-seconds",
        "0",
        "--max-seconds",
        "600",
        "--warmup-runs",
        str(warmup),
        "--warmup-seconds",
        "0",
    ]
    if not xnnpack:
        cmd.append("--no-xnnpack")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), timeout=600)
    doc = json.loads(p.stdout)
    if doc.get("status") != "ok":
        raise SystemExit("runner failed: %s" % doc.get("error"))
    lat = doc["latency_us"]
    assert lat["count"] == runs, lat["count"]
    return lat["p50"]


def run_bare(py, model, threads, warmup, runs, xnnpack):
    p = subprocess.run(
        [py, "-c", BARE, str(model), str(threads), str(warmup), str(runs), "1" if xnnpack else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        timeout=600,
    )
    if p.returncode != 0:
        raise SystemExit("bare loop failed:\n%s" % p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])["p50_us"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a .tflite model (default: build a small conv net)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for both subprocesses (default: this one)")
    ap.add_argument("--num-threads", type=int, default=1)
    ap.add_argument("--no-xnnpack", action="store_true")
    ap.add_argument("--runs", type=int, default=0, help="timed runs per process (default: ~0.6 s worth, >= 200)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=6, help="ABBA pairs of processes")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--check", action="store_true", help="exit 1 if ratio > %.2f" % TARGET)
    a = ap.parse_args(argv)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hilbench-overhead-") as tmp:
        model = Path(a.model) if a.model else build_model(Path(tmp))
        xnn = not a.no_xnnpack
        runs = a.runs
        if runs <= 0:  # calibrate: one bare probe of 50 runs
            probe = run_bare(a.python, model, a.num_threads, a.warmup, 50, xnn)
            runs = int(min(20000, max(200, 0.6e6 / max(probe, 1e-3))))
        runner_p50, bare_p50 = [], []
        for r in range(a.rounds):
            order = ("runner", "bare") if r % 2 == 0 else ("bare", "runner")
            for who in order:
                if who == "runner":
                    runner_p50.append(run_runner(a.python, model, a.num_threads, a.warmup, runs, xnn))
                else:
                    bare_p50.append(run_bare(a.python, model, a.num_threads, a.warmup, runs, xnn))
            print(
                "round %d: runner p50 %.2f us, bare p50 %.2f us" % (r + 1, runner_p50[-1], bare_p50[-1]),
                file=sys.stderr,
            )

    ratio = statistics.median(runner_p50) / statistics.median(bare_p50)
    pair_ratios = [x / y for x, y in zip(runner_p50, bare_p50)]
    res = {
        "model": str(model) if a.model else "built-in conv net (64x64x3)",
        "python": a.python,
        "num_threads": a.num_threads,
        "xnnpack": xnn,
        "runs_per_process": runs,
        "warmup": a.warmup,
        "rounds": a.rounds,
        "runner_p50_us": runner_p50,
        "bare_p50_us": bare_p50,
        "runner_median_us": statistics.median(runner_p50),
        "bare_median_us": statistics.median(bare_p50),
        "ratio": ratio,
        "pair_ratio_median": statistics.median(pair_ratios),
        "pair_ratio_min": min(pair_ratios),
        "pair_ratio_max": max(pair_ratios),
        "target": TARGET,
        "ok": ratio <= TARGET,
        "seconds": time.perf_counter() - t_start,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print("runner p50s (us): %s" % ", ".join("%.2f" % v for v in runner_p50))
        print("bare   p50s (us): %s" % ", ".join("%.2f" % v for v in bare_p50))
        print(
            "median runner %.2f us / bare %.2f us -> ratio %.4f (target <= %.2f) %s"
            % (res["runner_median_us"], res["bare_median_us"], ratio, TARGET, "OK" if res["ok"] else "OVER")
        )
        print(
            "per-round ratios: median %.4f, range [%.4f, %.4f]; %d runs/process, %.1f s"
            % (res["pair_ratio_median"], res["pair_ratio_min"], res["pair_ratio_max"], runs, res["seconds"])
        )
    return 1 if (a.check and not res["ok"]) else 0


if __name__ == "__main__":
    sys.exit(main())
