"""Tests of runners/linux_runner.py against tiny real TFLite models built with TensorFlow."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runners" / "linux_runner.py"
FAST = ["--min-runs", "5", "--min-seconds", "0.05", "--warmup-runs", "1", "--warmup-seconds", "0.01"]
RUN_TIMEOUT = 180


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


runner_mod = _load("hilbench_linux_runner_under_test", RUNNER)


def _env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_runner(*args, python=None, timeout=RUN_TIMEOUT):
    """Run the runner; return (exit code, parsed stdout JSON, stderr)."""
    proc = subprocess.run(
        [python or sys.executable, str(RUNNER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=_env(),
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout must be exactly one JSON line, got:\n%s\nstderr:\n%s" % (
        proc.stdout,
        proc.stderr[-3000:],
    )
    return proc.returncode, json.loads(lines[0]), proc.stderr


def run_ok(*args, **kw):
    code, doc, err = run_runner(*args, **kw)
    assert code == 0 and doc["status"] == "ok", (code, doc, err[-3000:])
    return doc


# ------------------------------------------------------------------------ models


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """fp32 + full-int8 conv classifier, a two-input model, and eval data (built once)."""
    tf = pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("runner_models")
    tf.keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(1234)
    n_cls, shape = 6, (12, 12, 3)

    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape),
            tf.keras.layers.Conv2D(8, 3, activation="relu"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(n_cls),
        ]
    )
    fp32 = out / "fp32.tflite"
    fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    rep = rng.normal(size=(32, 1) + shape).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8 = out / "int8.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8.write_bytes(conv.convert())

    a = tf.keras.Input((8,), name="a")
    b = tf.keras.Input((4,), name="b")
    h = tf.keras.layers.Concatenate()([tf.keras.layers.Dense(5)(a), tf.keras.layers.Dense(5)(b)])
    two = tf.keras.Model([a, b], tf.keras.layers.Dense(3)(h))
    two_in = out / "two_inputs.tflite"
    two_in.write_bytes(tf.lite.TFLiteConverter.from_keras_model(two).convert())

    n = 48
    x = rng.normal(size=(n,) + shape).astype(np.float32)
    ref = np.argmax(model.predict(x, verbose=0), axis=1).astype(np.int64)
    y = ref.copy()
    flip = rng.random(n) < 0.4  # make top1 non-trivial (neither 0 nor 1)
    y[flip] = (y[flip] + 1 + rng.integers(0, n_cls - 1, flip.sum())) % n_cls
    eval_full = out / "eval.npz"
    np.savez(eval_full, x=x, y=y, ref=ref)
    eval_x_only = out / "eval_x_only.npz"
    np.savez(eval_x_only, x=x[:10])
    return {
        "fp32": fp32,
        "int8": int8,
        "two_inputs": two_in,
        "eval": eval_full,
        "eval_x_only": eval_x_only,
        "x": x,
        "y": y,
        "ref": ref,
        "dir": out,
    }


def expected_accuracy(model_path, x, y, ref, xnnpack):
    """Independent computation with tf.lite.Interpreter."""
    import tensorflow as tf

    kw = {}
    if not xnnpack:
        kw["experimental_op_resolver_type"] = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated in favour of LiteRT
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(model_path=str(model_path), **kw)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    s_in, z_in = ind["quantization"]
    s_out, z_out = outd["quantization"]
    preds = []
    for xi in x:
        xi = xi[None]
        if ind["dtype"] == np.int8:
            xi = np.clip(np.round(xi / s_in + z_in), -128, 127).astype(np.int8)
        it.set_tensor(ind["index"], xi)
        it.invoke()
        o = it.get_tensor(outd["index"]).astype(np.float64)
        if outd["dtype"] == np.int8:
            o = (o - z_out) * s_out
        preds.append(int(np.argmax(o)))
    preds = np.array(preds)
    return (None if y is None else float(np.mean(preds == y)), None if ref is None else float(np.mean(preds == ref)))


# ------------------------------------------------------------------- the schema


def check_schema(doc, min_runs):
    assert doc["schema"] == "hilbench.runner/1"
    assert doc["status"] == "ok"
    for key in (
        "runtime",
        "python",
        "platform",
        "model",
        "config",
        "init_us",
        "first_inference_us",
        "warmup",
        "latency_us",
        "memory",
        "telemetry",
        "energy",
        "accuracy",
    ):
        assert key in doc, key
    assert doc["runtime"]["name"] in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
    assert isinstance(doc["runtime"]["version"], str) and doc["runtime"]["version"]
    assert set(doc["platform"]) >= {"machine", "system", "release", "node"}
    assert set(doc["config"]) >= {
        "num_threads",
        "xnnpack",
        "min_runs",
        "min_seconds",
        "max_seconds",
        "warmup_runs",
        "warmup_seconds",
    }
    assert doc["init_us"] > 0 and doc["first_inference_us"] > 0
    w = doc["warmup"]
    assert w["count"] >= doc["config"]["warmup_runs"]
    assert all(s > 0 for s in w["samples_us"])

    lat = doc["latency_us"]
    for k in (
        "count",
        "min",
        "max",
        "mean",
        "std",
        "p50",
        "p90",
        "p95",
        "p99",
        "median_ci_low",
        "median_ci_high",
        "ci_level",
        "samples",
    ):
        assert k in lat, k
    assert lat["count"] >= min_runs
    assert len(lat["samples"]) == lat["count"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert lat["min"] == min(lat["samples"]) and lat["max"] == max(lat["samples"])
    assert lat["p50"] == pytest.approx(float(np.median(lat["samples"])))
    assert lat["p99"] == pytest.approx(float(np.percentile(lat["samples"], 99)))
    assert lat["mean"] == pytest.approx(float(np.mean(lat["samples"])))
    assert lat["median_ci_low"] <= lat["p50"] <= lat["median_ci_high"]
    assert lat["ci_level"] == 0.95
    assert math.fsum(lat["samples"]) <= lat["window_s"] * 1e6 + 1e-6

    mem = doc["memory"]
    for k in ("rss_before_load_kb", "rss_after_load_kb", "peak_rss_kb", "peak_rss_delta_kb"):
        assert isinstance(mem[k], int) and mem[k] >= 0, k
    assert mem["peak_rss_kb"] >= mem["rss_after_load_kb"] >= 0
    assert mem["peak_rss_delta_kb"] == mem["peak_rss_kb"] - mem["rss_before_load_kb"]

    tel = doc["telemetry"]
    for side in ("before", "after"):
        assert set(tel[side]) >= {"cpu_temp_c", "cpu_freq_khz", "throttled_raw", "loadavg"}
    assert tel["throttled"] in (None, True, False)
    if tel["before"]["throttled_raw"] is None and tel["after"]["throttled_raw"] is None:
        assert tel["throttled"] is None

    if doc["energy"] is not None:
        e = doc["energy"]
        assert e["meter"] == "rapl" and e["estimate"] is False and e["includes_idle"] is True
        assert e["energy_per_inference_uj"] >= 0
    elif os.access("/sys/class/powercap/intel-rapl:0/energy_uj", os.R_OK):
        pytest.fail("RAPL is readable but energy is null")


def test_fp32_schema_and_stats(models):
    doc = run_ok("--model", models["fp32"], "--num-threads", 1, *FAST, "--warmup-runs", 3)
    check_schema(doc, 5)
    assert doc["config"]["num_threads"] == 1 and doc["config"]["xnnpack"] is True
    assert doc["config"]["min_runs"] == 5 and doc["config"]["warmup_runs"] == 3
    data = models["fp32"].read_bytes()
    assert doc["model"]["size_bytes"] == len(data)
    assert doc["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["model"]["path"] == str(models["fp32"].resolve())
    assert doc["accuracy"] is None
    assert doc["latency_us"]["window_s"] >= 0.05


def test_defaults_use_one_thread_and_no_xnnpack(models):
    """One thread by default, like benchmark_model: on a shared 2-core host two threads were 47 %
    slower and twice as noisy."""
    doc = run_ok("--model", models["int8"], "--no-xnnpack", *FAST)
    check_schema(doc, 5)
    assert doc["config"]["xnnpack"] is False
    assert doc["config"]["num_threads"] == 1


def test_min_runs_honoured(models):
    doc = run_ok(
        "--model", models["int8"], "--min-runs", 300, "--min-seconds", 0, "--warmup-runs", 0, "--warmup-seconds", 0
    )
    check_schema(doc, 300)
    assert doc["latency_us"]["count"] == 300
    assert doc["latency_us"]["stop_reason"] == "min_reached"
    assert doc["warmup"]["count"] == 0


def test_min_seconds_honoured(models):
    doc = run_ok(
        "--model", models["int8"], "--min-runs", 1, "--min-seconds", 0.3, "--warmup-runs", 1, "--warmup-seconds", 0.05
    )
    check_schema(doc, 1)
    lat = doc["latency_us"]
    assert lat["window_s"] >= 0.3
    assert lat["stop_reason"] == "min_reached"
    # stopped by the first check after 0.3 s: at most one more sample (+ loop overhead)
    assert lat["window_s"] <= 0.3 + lat["max"] / 1e6 + 0.1
    assert sum(doc["warmup"]["samples_us"]) <= doc["warmup"]["total_us"] + 1e-6


def test_max_seconds_honoured(models):
    doc = run_ok(
        "--model",
        models["int8"],
        "--min-runs",
        10**9,
        "--min-seconds",
        1000,
        "--max-seconds",
        0.25,
        "--warmup-seconds",
        0,
    )
    lat = doc["latency_us"]
    assert lat["stop_reason"] == "max_seconds"
    assert 0.25 <= lat["window_s"] <= 0.25 + lat["max"] / 1e6 + 0.1
    assert 1 <= lat["count"] < 10**9
    assert len(lat["samples"]) == lat["count"]


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
def test_int8_accuracy_matches_tf_lite(models, xnnpack):
    flags = [] if xnnpack else ["--no-xnnpack"]
    doc = run_ok("--model", models["int8"], "--eval", models["eval"], *flags, *FAST)
    check_schema(doc, 5)
    acc = doc["accuracy"]
    top1, agreement = expected_accuracy(models["int8"], models["x"], models["y"], models["ref"], xnnpack)
    assert acc["n"] == len(models["x"])
    assert acc["top1"] == pytest.approx(top1, abs=1e-12)
    assert acc["agreement"] == pytest.approx(agreement, abs=1e-12)
    assert doc["inputs"][0]["dtype"] == "int8"


def test_fp32_eval_without_labels(models):
    doc = run_ok("--model", models["fp32"], "--eval", models["eval_x_only"], *FAST)
    assert doc["accuracy"]["n"] == 10
    assert doc["accuracy"]["top1"] is None and doc["accuracy"]["agreement"] is None


def test_fp32_eval_agreement_matches_tf_lite(models):
    doc = run_ok("--model", models["fp32"], "--eval", models["eval"], *FAST)
    top1, agreement = expected_accuracy(models["fp32"], models["x"], models["y"], models["ref"], True)
    assert doc["accuracy"]["top1"] == pytest.approx(top1, abs=1e-12)
    assert doc["accuracy"]["agreement"] == pytest.approx(agreement, abs=1e-12)


def test_multi_input_model(models):
    doc = run_ok("--model", models["two_inputs"], *FAST)
    check_schema(doc, 5)
    assert len(doc["inputs"]) == 2
    assert sorted(tuple(i["shape"]) for i in doc["inputs"]) == [(1, 4), (1, 8)]


# ------------------------------------------------------------------------ errors


def check_error(code, doc, *needles):
    assert code == 2
    assert doc["schema"] == "hilbench.runner/1" and doc["status"] == "error"
    assert isinstance(doc["error"], str) and "\n" not in doc["error"]
    for needle in needles:
        assert str(needle) in doc["error"], (needle, doc["error"])


def test_missing_model(tmp_path):
    missing = tmp_path / "nope.tflite"
    code, doc, _ = run_runner("--model", missing, *FAST)
    check_error(code, doc, missing, "not found")


@pytest.mark.parametrize("kind", ["text", "truncated", "garbled", "empty"])
def test_corrupt_model(models, tmp_path, kind):
    data = models["fp32"].read_bytes()
    bad = tmp_path / ("bad_%s.tflite" % kind)
    if kind == "text":
        bad.write_text("this is not a model\n" * 10)
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    elif kind == "garbled":
        rng = np.random.default_rng(7)
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        idx = rng.integers(8, len(arr), 300)  # keep the 'TFL3' header intact
        arr[idx] = rng.integers(0, 256, len(idx))
        bad.write_bytes(arr.tobytes())
    else:
        bad.write_bytes(b"")
    code, doc, _ = run_runner("--model", bad, *FAST)
    check_error(code, doc, bad)


@pytest.mark.parametrize("kind", ["missing", "not_npz", "no_x", "bad_shape", "bad_labels"])
def test_bad_eval_file(models, tmp_path, kind):
    path = tmp_path / ("eval_%s.npz" % kind)
    x = models["x"][:4]
    if kind == "not_npz":
        path.write_text("nope")
    elif kind == "no_x":
        np.savez(path, y=np.arange(4))
    elif kind == "bad_shape":
        np.savez(path, x=np.zeros((4, 5, 5), np.float32))
    elif kind == "bad_labels":
        np.savez(path, x=x, y=np.arange(7))
    code, doc, _ = run_runner("--model", models["int8"], "--eval", path, *FAST)
    check_error(code, doc, path.name)


def test_no_runtime(models):
    """With no runtime importable the runner reports it as error JSON (exit 2)."""
    code = (
        "import sys, runpy; "
        "[sys.modules.__setitem__(m, None) for m in "
        "('ai_edge_litert', 'tflite_runtime', 'tensorflow')]; "
        "sys.argv = ['linux_runner.py'] + sys.argv[1:]; "
        "runpy.run_path(%r, run_name='__main__')" % str(RUNNER)
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--model", str(models["fp32"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=RUN_TIMEOUT,
        env=_env(),
    )
    check_error(proc.returncode, json.loads(proc.stdout), "no TFLite runtime")


def test_bad_usage_is_error_json(models):
    code, doc, _ = run_runner("--model", models["int8"], "--min-runs", "many")
    check_error(code, doc, "--min-runs")


# -------------------------------------------------------------------- statistics


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 10, 11, 30, 50, 101, 400])
def test_median_ci_matches_exact_binomial(n):
    xs = list(range(n))
    lo, hi, cov = runner_mod.median_ci(xs, 0.95)
    total = 2**n
    cdf = [sum(math.comb(n, i) for i in range(k + 1)) / total for k in range(n + 1)]
    ks = [k for k in range(n // 2 + 1) if cdf[k] <= 0.025]
    if ks:
        k = max(ks)  # interval = [x_(k+1), x_(n-k)] (1-based)
        assert (lo, hi) == (xs[k], xs[n - k - 1])
        assert cov == pytest.approx(1 - 2 * cdf[k], abs=1e-9)
        assert cov >= 0.95
    else:
        assert (lo, hi) == (xs[0], xs[-1])
    assert lo <= runner_mod.percentile(xs, 0.5) <= hi


def test_median_ci_large_n_is_fast_and_sane():
    rng = np.random.default_rng(0)
    xs = sorted(rng.exponential(size=200000).tolist())
    lo, hi, cov = runner_mod.median_ci(xs, 0.95)
    med = float(np.median(xs))
    assert lo < med < hi and 0.95 <= cov < 0.96
    # the normal approximation of the rank half-width: 1.96 * sqrt(n) / 2
    n = len(xs)
    assert abs(xs.index(hi) - xs.index(lo) - 1.96 * math.sqrt(n)) <= 3


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    xs = sorted(rng.normal(size=37).tolist())
    for q in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert runner_mod.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q * 100)))


def test_throttled_decoding():
    assert runner_mod.decode_throttled(None) is None
    assert runner_mod.decode_throttled("0x0") is False
    assert runner_mod.decode_throttled("0x50000") is False  # only "has occurred" bits
    for bit in (0x1, 0x2, 0x4, 0x8):
        assert runner_mod.decode_throttled(hex(bit | 0x50000)) is True
    assert runner_mod.combine_throttled({"throttled_raw": None}, {"throttled_raw": None}) is None
    assert runner_mod.combine_throttled({"throttled_raw": "0x0"}, {"throttled_raw": "0x4"}) is True


# ------------------------------------------------------- device-like environments


def test_runs_in_device_venv_without_tensorflow(models):
    """numpy + ai-edge-litert only, as on a board: the runner must not need TensorFlow."""
    device_venv = _load("hilbench_device_venv", Path(__file__).with_name("device_venv.py"))
    py = device_venv.device_python()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = subprocess.run(
        [py, "-c", "import tensorflow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120
    )
    assert probe.returncode != 0, "tensorflow must not be importable in the device venv"
    proc = subprocess.run(
        [py, str(RUNNER), "--model", str(models["int8"]), "--eval", str(models["eval"]), *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    check_schema(doc, 5)
    assert doc["runtime"]["name"] == "ai_edge_litert"
    assert doc["accuracy"]["n"] == len(models["x"])


def _python39():
    """A working Python 3.9 (PATH, or a pyenv install), or None."""
    cands = [shutil.which("python3.9")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    cands += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.9*", "bin", "python3.9")))
    for c in cands:
        if not c:
            continue
        try:
            ok = subprocess.run(
                [c, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0 and ok.stdout.strip() == "True":
            return c
    return None


def test_python39_compatible(tmp_path):
    """The runner must at least start on Python 3.9 (syntax, module-level code, error path)."""
    py39 = _python39()
    if py39 is None:
        pytest.skip("no usable Python 3.9 found")
    missing = tmp_path / "missing.tflite"
    code, doc, _ = run_runner("--model", missing, python=py39)
    check_error(code, doc, missing)


def test_power_file_sampling_gives_energy_per_inference(tmp_path, models):
    """hwmon INA2xx files hold microwatts; the runner averages them over the steady window."""
    power = tmp_path / "power1_input"
    power.write_text("3500000\n")  # 3.5 W constant
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--model",
            str(models["fp32"]),
            "--min-runs",
            "20",
            "--min-seconds",
            "0.2",
            "--warmup-runs",
            "0",
            "--warmup-seconds",
            "0",
            "--power-file",
            str(power),
            "--power-rate",
            "200",
            "--idle-power-mw",
            "2700",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(proc.stdout)
    e = doc["energy"]
    assert e["meter"] == "hwmon" and e["estimate"] is False and e["samples"] >= 2
    assert e["mean_power_mw"] == pytest.approx(3500.0)
    assert e["energy_per_inference_uj"] == pytest.approx(800.0 * doc["latency_us"]["mean"] / 1000.0)
    missing = subprocess.run(
        [sys.executable, str(RUNNER), "--model", str(models["fp32"]), "--power-file", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    # a missing meter costs the energy, not the measurement (issue 10; tests/test_devices_check_meter.py)
    missing_doc = json.loads(missing.stdout)
    assert missing.returncode == 0 and missing_doc["energy"] is None
    assert missing_doc["warnings"] == [
        f"energy meter: power file {tmp_path / 'nope'} does not exist; this result has no energy"
    ]


def test_paired_model_is_timed_in_the_same_process(tmp_path):
    """--paired-model: the gate's in-process confirmation. Both models get their own latency statistics
    from one process, in blocks, with the paired model identified by its sha256 (timing values are not
    asserted: they depend on the host)."""
    from fixed_lab import tflite_model

    model = tflite_model()
    other = tmp_path / "other.tflite"
    other.write_bytes(model.read_bytes())
    p = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--model",
            str(model),
            "--paired-model",
            str(other),
            "--min-runs",
            "40",
            "--min-seconds",
            "0",
            "--warmup-runs",
            "2",
            "--warmup-seconds",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    paired = doc["paired"]
    assert paired["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest() and paired["order"] == "ABBA"
    assert paired["block"] >= 1 and paired["latency_us"]["count"] >= 40 and doc["latency_us"]["count"] >= 40
    # whole blocks of A B B A: both models got the same number of invocations
    assert doc["latency_us"]["count"] == paired["latency_us"]["count"]
    assert "paired model: p50" in p.stderr
    bad = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--model",
            str(model),
            "--paired-model",
            str(tmp_path / "missing.tflite"),
            "--min-runs",
            "5",
            "--min-seconds",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "missing.tflite" in bad.stdout + bad.stderr
