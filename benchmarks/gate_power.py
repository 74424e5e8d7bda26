#!/usr/bin/env python3
"""Measure the regression gate on real runs of the `local` device: false alarms and detection power.

* False-alarm rate: A/A pairs, i.e. baseline and current are two different runs of the *same*
  model (target <= 1 %). A pair is a false alarm when the gate would fail the key: a latency p50
  or p90 regression at the profile's thresholds.
* Detection rate: A/B pairs, baseline = a run of the base model, current = a run of a *really*
  slower model (target >= 95 %): the same architecture plus one small 1x1 convolution whose width
  is calibrated by measurement so that the model is ~5 % slower; the script prints the slowdown it
  actually measured.

Every run is a fresh `runners/linux_runner.py` process with the localhost profile's default run
length (min 50 runs / 1 s, warmup 1 run / 0.5 s, 1 thread, XNNPACK), as `hil run` would start it.
Hundreds of real pairs would take hours, so N runs per model are collected (interleaved A, B, B,
A, ... so that slow drift hits both models alike) and the gate decision (`harness.gate.evaluate.check_metric`,
the code `hil gate` runs) is evaluated on every ordered pair of distinct runs: N(N-1) A/A pairs per
model and N^2 A/B pairs. Pairs share runs, so they are not independent: read the rates as
"fraction of baseline/current combinations that would have failed", with the number of runs as the
real sample size.

Usage:
    .venv/bin/python benchmarks/gate_power.py                 # ~3-4 minutes
    .venv/bin/python benchmarks/gate_power.py --runs 30 --json
    .venv/bin/python benchmarks/gate_power.py --save s.npz    # keep the samples; --load s.npz re-evaluates
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.gate.evaluate import check_metric
from harness.gate.stats import block_stats, level
from harness.lab.config import load_profile

RUNNER = ROOT / "runners" / "linux_runner.py"
FA_TARGET, DET_TARGET = 0.01, 0.95
SWEEP = (0.02, 0.03, 0.04, 0.05, 0.06)


def build_models(out: Path, widths: list[int]) -> dict[int, Path]:
    """Base conv net (width 0) and variants with one extra 1x1 conv of the given widths."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    layers = tf.keras.layers
    paths = {}
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # the converter prints to fd 1; keep stdout for our results
    try:
        for w in [0] + widths:
            tf.keras.utils.set_random_seed(0)
            stack = [tf.keras.Input((48, 48, 3)), layers.Conv2D(16, 3, strides=2, activation="relu"),
                     layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                     layers.Conv2D(32, 3, activation="relu")]
            if w:
                stack.append(layers.Conv2D(w, 1, activation="relu"))
            stack += [layers.GlobalAveragePooling2D(), layers.Dense(10)]
            path = out / f"gate_power_w{w}.tflite"
            path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Sequential(stack)).convert())
            paths[w] = path
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return paths


def run_once(py: str, model: Path, opts: dict, min_seconds: float | None = None) -> tuple[np.ndarray, list]:
    cmd = [py, str(RUNNER), "--model", str(model), "--num-threads", str(opts["num_threads"]),
           "--min-runs", str(opts["min_runs"]),
           "--min-seconds", str(opts["min_seconds"] if min_seconds is None else min_seconds),
           "--max-seconds", str(opts["max_seconds"]), "--warmup-runs", str(opts["warmup_runs"]),
           "--warmup-seconds", str(opts["warmup_seconds"])]
    if not opts["xnnpack"]:
        cmd.append("--no-xnnpack")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    doc = json.loads(p.stdout)
    if doc.get("status") != "ok":
        raise SystemExit(f"runner failed on {model}: {doc.get('error')}")
    load = (doc.get("telemetry") or {}).get("before", {}).get("loadavg") or [float("nan")]
    return np.asarray(doc["latency_us"]["samples"], dtype=float), load


def run_level(samples: np.ndarray) -> float:
    return level(block_stats(samples))


def calibrate(py: str, paths: dict[int, Path], opts: dict, target: float, rounds: int) -> tuple[int, dict]:
    """Short interleaved runs of every candidate: pick the width whose slowdown is closest to target."""
    ratios: dict[int, list[float]] = {w: [] for w in paths if w}
    for r in range(rounds):
        base = run_level(run_once(py, paths[0], opts, min_seconds=0.3)[0])
        for w in ratios:
            ratios[w].append(run_level(run_once(py, paths[w], opts, min_seconds=0.3)[0]) / base)
        base2 = run_level(run_once(py, paths[0], opts, min_seconds=0.3)[0])
        for w in ratios:  # against the mean of the bracketing base runs
            ratios[w][-1] = ratios[w][-1] * base / ((base + base2) / 2)
    med = {w: float(np.median(v)) for w, v in ratios.items()}
    best = min(med, key=lambda w: abs(med[w] - target))
    return best, med


def collect(py: str, base: Path, slow: Path, opts: dict, n: int) -> tuple[list, list, list]:
    a, b, loads = [], [], []
    for i in range(n):
        order = ((base, a), (slow, b)) if i % 2 == 0 else ((slow, b), (base, a))
        for model, sink in order:
            s, load = run_once(py, model, opts)
            sink.append(s)
            loads.append(load[0])
        print(f"  pair {i + 1}/{n}: base p50 {np.median(a[-1]):.2f} us ({a[-1].size} samples), "
              f"slow p50 {np.median(b[-1]):.2f} us, load {loads[-1]:.2f}", file=sys.stderr, flush=True)
    return a, b, loads


def decisions(pairs, thresholds: dict[str, float]) -> list[dict]:
    """The gate's p50 and p90 checks for each (baseline samples, current samples) pair."""
    out = []
    for base, cur in pairs:
        row = {}
        for metric in ("latency_p50_us", "latency_p90_us"):
            c = check_metric(metric, thresholds[metric], 1.0, [1.0], cur_samples=cur, base_samples=[base], ci=False)
            row[metric] = (c.verdict, c.effect, c.p_value)
        out.append(row)
    return out


def rate(rows: list[dict], metric: str, threshold: float | None = None) -> float:
    """Fraction of pairs flagged as regression (at the gate's threshold, or at `threshold`)."""
    if not rows:
        return float("nan")
    if threshold is None:
        return float(np.mean([r[metric][0] == "regression" for r in rows]))
    return float(np.mean([r[metric][2] is not None and r[metric][2] < 0.01 and r[metric][1] > threshold
                          for r in rows]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=24, help="runs per model (default: %(default)s)")
    ap.add_argument("--profile", default=str(ROOT / "device_profiles" / "localhost.yaml"))
    ap.add_argument("--candidates", default="48,56,64,72,80,96", help="widths of the extra 1x1 conv")
    ap.add_argument("--target", type=float, default=1.05, help="slowdown to calibrate for (default: %(default)s)")
    ap.add_argument("--calibration-rounds", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--save", help="save the collected samples (.npz)")
    ap.add_argument("--load", help="evaluate samples saved with --save instead of measuring")
    ap.add_argument("--p50-threshold", type=float,
                    help="evaluate at this latency p50 threshold instead of the profile's")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    prof = load_profile(Path(a.profile))
    b = prof.benchmark
    opts = {"num_threads": prof.num_threads or 1, "xnnpack": prof.xnnpack, "min_runs": b.min_runs,
            "min_seconds": b.min_seconds, "max_seconds": b.max_seconds, "warmup_runs": b.warmup_runs,
            "warmup_seconds": b.warmup_seconds}
    thresholds = {"latency_p50_us": prof.thresholds.get("latency_p50_us", 0.05),
                  "latency_p90_us": prof.thresholds.get("latency_p90_us", 0.10)}
    if a.p50_threshold is not None:
        thresholds["latency_p50_us"] = a.p50_threshold
    calib: dict = {}
    if a.load:
        data = np.load(a.load, allow_pickle=True)
        base_runs, slow_runs = list(data["base"]), list(data["slow"])
        width, loads = int(data["width"]), list(data["loads"])
    else:
        widths = [int(w) for w in a.candidates.split(",")]
        with tempfile.TemporaryDirectory(prefix="hilbench-gate-power-") as tmp:
            print(f"building base model and {len(widths)} slower candidates ...", file=sys.stderr, flush=True)
            paths = build_models(Path(tmp), widths)
            width, calib = calibrate(a.python, paths, opts, a.target, a.calibration_rounds)
            print("calibration (level ratio vs base): " + ", ".join(f"w{w}: {r:.4f}" for w, r in calib.items())
                  + f" -> extra 1x1 conv of width {width}", file=sys.stderr, flush=True)
            print(f"collecting {a.runs} runs per model (interleaved) ...", file=sys.stderr, flush=True)
            base_runs, slow_runs, loads = collect(a.python, paths[0], paths[width], opts, a.runs)
        if a.save:
            np.savez_compressed(a.save, base=np.array(base_runs, dtype=object), slow=np.array(slow_runs, dtype=object),
                                width=width, loads=np.array(loads))
    n = len(base_runs)
    lv_base = np.array([run_level(s) for s in base_runs])
    lv_slow = np.array([run_level(s) for s in slow_runs])
    p50_base = np.array([np.median(s) for s in base_runs])
    p50_slow = np.array([np.median(s) for s in slow_runs])
    slowdown = float(np.median(lv_slow) / np.median(lv_base) - 1)
    slowdown_p50 = float(np.median(p50_slow) / np.median(p50_base) - 1)

    aa_pairs = [(base_runs[i], base_runs[j]) for i, j in itertools.permutations(range(n), 2)]
    aa_pairs += [(slow_runs[i], slow_runs[j]) for i, j in itertools.permutations(range(n), 2)]
    ab_pairs = [(base_runs[i], slow_runs[j]) for i in range(n) for j in range(n)]
    print(f"evaluating {len(aa_pairs)} A/A and {len(ab_pairs)} A/B pairs ...", file=sys.stderr, flush=True)
    aa = decisions(aa_pairs, thresholds)
    ab = decisions(ab_pairs, thresholds)
    fa_key = float(np.mean([r["latency_p50_us"][0] == "regression" or r["latency_p90_us"][0] == "regression"
                            for r in aa]))
    res = {
        "runs_per_model": n, "aa_pairs": len(aa), "ab_pairs": len(ab),
        "run_length": {k: opts[k] for k in ("min_runs", "min_seconds", "warmup_runs", "warmup_seconds",
                                             "num_threads")},
        "thresholds": thresholds, "alpha": 0.01, "extra_conv_width": width, "calibration": calib,
        "base_level_us": float(np.median(lv_base)), "slow_level_us": float(np.median(lv_slow)),
        "measured_slowdown": slowdown, "measured_slowdown_plain_p50": slowdown_p50,
        "samples_per_run_median": int(np.median([s.size for s in base_runs])),
        "base_level_spread": float(lv_base.max() / lv_base.min() - 1),
        "base_plain_p50_spread": float(p50_base.max() / p50_base.min() - 1),
        "false_alarm_rate": fa_key,
        "false_alarm_rate_p50": rate(aa, "latency_p50_us"), "false_alarm_rate_p90": rate(aa, "latency_p90_us"),
        "detection_rate": rate(ab, "latency_p50_us"),
        "sweep": {f"{t:g}": {"false_alarm_p50": rate(aa, "latency_p50_us", t),
                             "detection_p50": rate(ab, "latency_p50_us", t)} for t in SWEEP},
        "loadavg_range": [float(np.nanmin(loads)), float(np.nanmax(loads))] if len(loads) else None,
        "targets": {"false_alarm_max": FA_TARGET, "detection_min": DET_TARGET},
        "seconds": time.perf_counter() - t0,
    }
    res["ok"] = res["false_alarm_rate"] <= FA_TARGET and res["detection_rate"] >= DET_TARGET
    if a.json:
        print(json.dumps(res))
        return 0
    thr = thresholds["latency_p50_us"]
    print(f"runs: {n} per model ({res['samples_per_run_median']} samples/run, default run length "
          f"{opts['min_runs']} runs / {opts['min_seconds']} s, warmup {opts['warmup_runs']} / "
          f"{opts['warmup_seconds']} s, {opts['num_threads']} thread(s)); host load average "
          f"{res['loadavg_range'][0]:.2f}-{res['loadavg_range'][1]:.2f}" if res["loadavg_range"] else "")
    print(f"slower model: +1x1 conv of width {width}; measured slowdown {slowdown * 100:+.2f} % (robust level), "
          f"{slowdown_p50 * 100:+.2f} % (plain p50); base {res['base_level_us']:.2f} us, "
          f"slow {res['slow_level_us']:.2f} us")
    print(f"run-to-run spread of the base model (max/min - 1): robust level {res['base_level_spread'] * 100:.2f} %, "
          f"plain p50 {res['base_plain_p50_spread'] * 100:.2f} %")
    source = "profile" if a.p50_threshold is None else "given"
    print(f"gate at the {source} thresholds (p50 {thr:g}, p90 {thresholds['latency_p90_us']:g}, alpha 0.01):")
    print(f"  false-alarm rate (A/A, p50 or p90 fails): {fa_key * 100:.2f} % of {len(aa)} pairs "
          f"(p50 {res['false_alarm_rate_p50'] * 100:.2f} %, p90 {res['false_alarm_rate_p90'] * 100:.2f} %)"
          f"  target <= {FA_TARGET * 100:.0f} % -> {'OK' if fa_key <= FA_TARGET else 'MISS'}")
    print(f"  detection rate (A/B, p50):                {res['detection_rate'] * 100:.2f} % of {len(ab)} pairs"
          f"  target >= {DET_TARGET * 100:.0f} % -> {'OK' if res['detection_rate'] >= DET_TARGET else 'MISS'}")
    print("p50 threshold sweep (false alarms / detection):  " + "  ".join(
        f"{float(t) * 100:.0f} %: {v['false_alarm_p50'] * 100:.1f} / {v['detection_p50'] * 100:.1f}"
        for t, v in res["sweep"].items()))
    print(f"({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
