#!/usr/bin/env python3
"""How far a per-operator profile can be trusted: op times against a plain invoke, and what profiling costs.

For the bundled digits example and the MLPerf-Tiny-shaped models of tests/arch_models.py (ResNet-8,
DS-CNN, MobileNetV1-0.25, FC autoencoder), all int8, on each device kind (here: this Linux host, with
the built-in kernels and with XNNPACK), one runner process per model and mode measures the plain
latency (the runner's timed window, no profiler) and then profiles N invocations (`--profile-runs`).
Printed per row:

  ops/plain     median over invocations of the sum of the op times, / the plain p50 (target 0.9-1.1)
  ops/invoke    the same sum / the profiler's own whole-invoke time of that invocation
  overhead      wall time of one LiteRT run with the profiler started / without it (same compiled model)
  top 3         the three slowest ops (type#index, median time) and their share of the sum of medians

LiteRT's profiler counts whole microseconds per event: ops shorter than about 1 us read 0, so the op
sum of a model of a few us (or of many tiny XNNPACK ops) falls short of its invoke time.

Timings depend on the host's load: this is a benchmark, never a test. Other device kinds add their
rows through `DEVICE_KINDS` (a function of the model list and the number of profiled runs).

Usage: python benchmarks/op_profile.py [--models digits,resnet8,...] [--runs 50] [--kinds linux-builtin,linux-xnnpack]
       [--workdir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

RUNNER = REPO / "runners" / "linux_runner.py"
MODELS = ("digits", "resnet8", "ds_cnn", "mobilenet_v1", "fc_autoencoder")


def build_models(names: list[str], workdir: Path) -> dict[str, Path]:
    """int8 .tflite of each model (built once per work dir): digits from examples/, the others untrained
    (weights do not change the time), calibrated on their digits-derived inputs."""
    import keras
    import tensorflow as tf
    from arch_models import ARCHITECTURES, digits_task

    out = {}
    for name in names:
        path = workdir / f"{name}.int8.tflite"
        out[name] = path
        if path.exists():
            continue
        if name == "digits":
            model = keras.models.load_model(REPO / "examples" / "digits" / "digits.keras")
            calib = np.load(REPO / "examples" / "digits" / "digits.calibration.npz")["x"].astype(np.float32)
        else:
            keras.utils.set_random_seed(0)
            model = ARCHITECTURES[name]()
            calib = digits_task(model.inputs[0].shape[1:], n=200)[0]
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda c=calib: ([c[i : i + 1]] for i in range(min(100, len(c))))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        path.write_bytes(conv.convert())
    return out


def _runner_module():
    spec = importlib.util.spec_from_file_location("op_profile_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def profiler_overhead(model: Path, xnnpack: bool, runs: int) -> float:
    """Wall time of LiteRtRunCompiledModel with the profiler started / not started, median of each,
    interleaved in blocks so that drift cancels."""
    mod = _runner_module()
    api = mod.litert_c_api("ai_edge_litert")
    from ai_edge_litert import interpreter

    interp = interpreter.Interpreter(model_path=str(model))
    m = mod.LiteRtProfiledModel(api, str(model), 1, xnnpack, mod.seeded_inputs(np, interp.get_input_details(), 0))
    lib, pc = api["lib"], time.perf_counter_ns
    for _ in range(20):
        m.run()
    on: list[int] = []
    off: list[int] = []
    for block in range(max(4, runs // 5)):
        for profiled in (block % 2 == 0, block % 2 == 1):
            if profiled:
                lib.LiteRtResetProfiler(m.profiler)
                lib.LiteRtStartProfiler(m.profiler)
            for _ in range(5):
                t0 = pc()
                m.run()
                (on if profiled else off).append(pc() - t0)
            if profiled:
                lib.LiteRtStopProfiler(m.profiler)
    return statistics.median(on) / statistics.median(off)


def run_profiled(model: Path, xnnpack: bool, runs: int) -> dict:
    argv = [sys.executable, str(RUNNER), "--model", str(model), "--profile-runs", str(runs), "--min-seconds", "1"]
    if not xnnpack:
        argv.append("--no-xnnpack")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    if doc.get("status") != "ok":
        raise SystemExit(f"{model}: runner failed: {doc.get('error')}")
    return doc


def linux_rows(kind: str, models: dict[str, Path], runs: int) -> list[dict]:
    xnnpack = kind == "linux-xnnpack"
    rows = []
    for name, path in models.items():
        doc = run_profiled(path, xnnpack, runs)
        prof = doc["op_profile"]
        sums = [sum(op["times"][i] for op in prof["ops"]) for i in range(prof["invocations"])]
        op_sum = statistics.median(sums)
        ratio_invoke = statistics.median(s / t for s, t in zip(sums, prof["invoke"]) if t > 0)
        means = sorted(
            ((statistics.median(op["times"]), f"{op['type']}#{op['index']}") for op in prof["ops"]), reverse=True
        )
        total = sum(m for m, _ in means) or 1.0
        rows.append(
            {
                "kind": kind,
                "model": name,
                "source": prof["source"],
                "ops": len(prof["ops"]),
                "plain_p50_us": doc["latency_us"]["p50"],
                "profiled_invoke_us": statistics.median(prof["invoke"]),
                "op_sum_us": op_sum,
                "ops_over_plain": op_sum / doc["latency_us"]["p50"],
                "ops_over_invoke": ratio_invoke,
                "overhead": profiler_overhead(path, xnnpack, runs),
                "top3": [{"type": t, "share": m / total} for m, t in means[:3]],
            }
        )
        print(f"  {kind} {name}: done", file=sys.stderr)
    return rows


# device kind -> rows of each model; the MCU side adds its kinds here (e.g. "mcu-sim", "qemu")
DEVICE_KINDS: dict[str, Callable[[str, dict[str, Path], int], list[dict]]] = {
    "linux-builtin": linux_rows,
    "linux-xnnpack": linux_rows,
}


def table(rows: list[dict]) -> str:
    head = f"{'kind':<14} {'model':<15} {'ops':>4} {'plain us':>9} {'invoke us':>10} {'op sum us':>10} "
    head += f"{'ops/plain':>9} {'ops/invoke':>10} {'overhead':>8}  top 3 (share of op sum)"
    lines = [head, "-" * len(head)]
    for r in rows:
        top = ", ".join(f"{t['type']} {100 * t['share']:.0f}%" for t in r["top3"])
        times = f"{r['plain_p50_us']:>9.1f} {r['profiled_invoke_us']:>10.1f} {r['op_sum_us']:>10.1f}"
        ratios = f"{r['ops_over_plain']:>9.2f} {r['ops_over_invoke']:>10.2f} {r['overhead']:>8.2f}"
        lines.append(f"{r['kind']:<14} {r['model']:<15} {r['ops']:>4} {times} {ratios}  {top}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--kinds", default="linux-builtin,linux-xnnpack", help="device kinds: " + ", ".join(DEVICE_KINDS))
    ap.add_argument("--runs", type=int, default=50, help="profiled invocations per model")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the converted models here (reused)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    a = ap.parse_args(argv)
    unknown = [k for k in a.kinds.split(",") if k not in DEVICE_KINDS]
    if unknown:
        ap.error(f"unknown device kind {unknown[0]!r} (known: {', '.join(DEVICE_KINDS)})")
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="op-profile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):  # the converter's chatter; stdout is the table
        models = build_models(a.models.split(","), workdir)
    rows = []
    for kind in a.kinds.split(","):
        rows += DEVICE_KINDS[kind](kind, models, a.runs)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps({"runs": a.runs, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
