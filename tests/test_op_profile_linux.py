"""Per-operator profiles of the Linux runner (`--profile-runs`, LiteRT's own profiler), with real LiteRT.

Only structure is checked here (which ops, in which order, how many times, what the host accepts):
how the op times add up against a plain invoke depends on how busy the host is, so that is measured
by benchmarks/op_profile.py, not asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from arch_models import ds_cnn, fc_autoencoder

from harness.core.jobs import Job, RunOptions
from harness.models.inspect.analysis import analyze
from harness.profile.document import attach_analysis, from_dict
from harness.transports.base import runner_args

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runners" / "linux_runner.py"
FAST = ["--min-runs", "5", "--min-seconds", "0.02", "--warmup-runs", "1", "--warmup-seconds", "0.01"]
RUNS = 3


def _convert(model, path: Path, shape: tuple) -> Path:
    """Full-integer int8 conversion (the deployment form of the MLPerf Tiny references)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random((1, *shape), dtype=np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def _small(extra_dense: bool):
    import keras

    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
    ]
    if extra_dense:
        layers.append(keras.layers.Dense(16, activation="relu"))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A conv/dense model, its twin with one more Dense layer, and two MLPerf-Tiny-shaped nets, all int8."""
    d = tmp_path_factory.mktemp("opprof")
    return {
        "small": _convert(_small(False), d / "small.tflite", (12, 12, 3)),
        "twin": _convert(_small(True), d / "twin.tflite", (12, 12, 3)),
        "ds_cnn": _convert(ds_cnn(), d / "ds_cnn.tflite", (20, 10, 1)),
        "fc_autoencoder": _convert(fc_autoencoder(), d / "fc_autoencoder.tflite", (64,)),
    }


def run_runner(*args, python=None, prelude=""):
    """The runner in a process of its own (as on a device); (exit code, document, stderr)."""
    code = prelude + "import runpy, sys; sys.argv = ['linux_runner.py'] + sys.argv[1:]; "
    code += "runpy.run_path(%r, run_name='__main__')" % str(RUNNER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [python or sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def model_ops(path: Path) -> list[tuple[int, int, str]]:
    return [(op.subgraph, op.index, op.name) for op in analyze(path).operators]


def profiled_ops(doc: dict) -> list[tuple[int, int, str]]:
    return [(op["subgraph"], op["index"], op["type"]) for op in doc["ops"] if not op["delegated"]]


def check_contract(doc: dict, path: Path, source: str) -> None:
    """What the host does with a device's profile: validate it, then match it to the artifact's ops."""
    prof = from_dict(doc)
    assert prof.source == source and prof.unit == "us" and prof.invocations == RUNS
    assert prof.invoke is not None and len(prof.invoke) == RUNS and all(t > 0 for t in prof.invoke)
    assert all(len(op.times) == RUNS for op in prof.ops)
    attach_analysis(prof, analyze(path))
    by_index = {op.index: op for op in analyze(path).operators}
    for op in prof.ops:
        if not op.delegated:
            assert op.macs == by_index[op.index].macs and op.outputs  # shapes and MACs from the artifact
    assert len({(op.subgraph, op.index) for op in prof.ops}) == len(prof.ops)  # one entry per op


@pytest.fixture(scope="module")
def small_builtin(models):
    """The small model without XNNPACK, profiled together with its twin in one runner process."""
    code, doc, err = run_runner(
        "--model", models["small"], "--paired-model", models["twin"], "--no-xnnpack", "--profile-runs", RUNS, *FAST
    )
    assert code == 0, err
    return doc


def test_builtin_profile_is_the_models_ops_in_order(models, small_builtin):
    doc = small_builtin
    assert doc["warnings"] == [] and doc["config"]["profile_runs"] == RUNS
    prof = doc["op_profile"]
    assert profiled_ops(prof) == model_ops(models["small"])
    assert not any(op["delegated"] for op in prof["ops"]) and "op_profile_builtin" not in doc
    check_contract(prof, models["small"], "litert-builtin")
    # the timed window is the plain interpreter's: profiling never changes what latency measures
    assert doc["latency_us"]["count"] >= 5


def test_paired_profile_sees_the_extra_dense_layer(models, small_builtin):
    """The gate's confirmation explains a regression from the two profiles of one process."""
    a, b = small_builtin["op_profile"], small_builtin["paired_op_profile"]
    check_contract(b, models["twin"], "litert-builtin")
    assert profiled_ops(b) == model_ops(models["twin"])
    diff = Counter(op["type"] for op in b["ops"]) - Counter(op["type"] for op in a["ops"])
    assert diff == Counter({"FULLY_CONNECTED": 1})


@pytest.mark.parametrize("name", ["ds_cnn", "fc_autoencoder"])
def test_xnnpack_profile_and_its_builtin_twin(models, name):
    """With XNNPACK the delegated ops are XNNPACK's own (numbered after the model's ops, marked
    delegated); the built-in kernels' pass gives the model's ops for the same artifact."""
    path = models[name]
    code, doc, err = run_runner("--model", path, "--profile-runs", RUNS, *FAST)
    assert code == 0, err
    prof, builtin = doc["op_profile"], doc["op_profile_builtin"]
    check_contract(prof, path, "litert-xnnpack")
    n_ops = len(model_ops(path))
    delegated = [op for op in prof["ops"] if op["delegated"]]
    assert delegated and all(op["index"] >= n_ops and op["name"].startswith("XNNPACK") for op in delegated)
    check_contract(builtin, path, "litert-builtin")
    assert profiled_ops(builtin) == model_ops(path)


def test_profiling_off_never_loads_the_profiler(models, tmp_path):
    """Without --profile-runs: no op_profile, and the ctypes binding of the C API is never made."""
    mod = _fresh_runner("runner_profile_off")
    doc = mod.run(mod.parse_args(["--model", str(models["small"]), *FAST]))
    assert doc["status"] == "ok" and doc["config"]["profile_runs"] is None
    assert not [k for k in doc if "op_profile" in k]
    assert mod._LITERT_C == []
    mod.profile_pass(
        doc, "ai_edge_litert", np, mod.parse_args(["--model", str(models["small"]), "--profile-runs", "1"]), []
    )
    assert mod._LITERT_C != []  # the same call with profiling on does bind it (the check above can fail)


def _fresh_runner(name: str):
    """The runner module loaded anew, so that no other test's profile pass has bound the C API in it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, RUNNER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "runtime, version, why",
    [
        (
            "tflite_runtime",
            "2.14.0",
            "the tflite_runtime runtime has no per-operator profiler (install ai-edge-litert)",
        ),
        (
            "tensorflow.lite",
            "2.20.0",
            "the tensorflow.lite runtime has no per-operator profiler (install ai-edge-litert)",
        ),
        ("ai_edge_litert", "2.1.0", "ai_edge_litert 2.1.0 is older than 2.2, whose profiler C API this runner calls"),
    ],
)
def test_runtime_without_profiler_warns_and_keeps_the_result(models, runtime, version, why, capsys):
    """On a board with tflite_runtime, TensorFlow or an older LiteRT: one warning line in the result and
    on stderr, no op_profile, nothing else touched, no crash (the C API is never bound)."""
    mod = _fresh_runner("runner_no_profiler")
    args = mod.parse_args(["--model", str(models["small"]), "--profile-runs", "2"])
    result = {"warnings": [], "latency_us": {"count": 5}}
    mod.profile_pass(result, runtime, np, args, [("op_profile", str(models["small"]), [])], version)
    warning = "per-operator profile: %s; this result has no op_profile" % why
    assert result == {"warnings": [warning], "latency_us": {"count": 5}}
    assert "[linux_runner] warning: " + warning in capsys.readouterr().err
    assert mod._LITERT_C == []


def test_a_failing_profile_pass_keeps_the_measurement(models, tmp_path, capsys):
    """LiteRT refusing the model in the profile pass (here: the file went away) costs the profile only."""
    mod = _fresh_runner("runner_failing_profile")
    args = mod.parse_args(["--model", str(models["small"]), "--profile-runs", "2"])
    result = {"warnings": [], "latency_us": {"count": 5}}
    gone = tmp_path / "gone.tflite"
    mod.profile_pass(result, "ai_edge_litert", np, args, [("op_profile", str(gone), [])], "2.3.0")
    (warning,) = result["warnings"]
    assert warning.startswith("per-operator profile: LiteRT profiler: cannot load the model %s" % gone)
    assert "op_profile" not in result and result["latency_us"] == {"count": 5}


def test_bad_profile_runs_is_a_usage_error(models):
    code, doc, _ = run_runner("--model", models["small"], "--profile-runs", 0)
    assert code == 2 and doc["error_kind"] == "usage" and "--profile-runs" in doc["error"]


# events of the LiteRT profiler (type, tag, metadata1 = node index, metadata2 = subgraph, elapsed us)
def _events(conv_us, loop_us):
    return [
        (1, "LiteRT::Run[buffer registration]", 0, 0, 30),
        (1, "Invoke", 0, 0, 100),
        (8, "Convolution (NHWC, QC8) IGEMM", 0, 0, conv_us),
        (8, "Max Pooling (NHWC, S8)", 1, 0, 2),
        (2, "RESHAPE", 2, 0, 1),
        (8, "Fully Connected (NC, QS8, QC8W) GEMM", 0, 0, 4),
        (2, "ADD", 1, 1, loop_us),  # a loop body in subgraph 1, run twice in one invocation
        (2, "ADD", 1, 1, loop_us),
        (32, "Invoke", 0, 0, 4294967296),  # runtime instrumentation: not a time
    ]


def test_events_become_the_profile_document():
    mod = _fresh_runner("runner_events")
    doc = mod.op_profile_from_events([_events(10, 3), _events(12, 5)], 5, True)
    prof = from_dict(doc)
    assert prof.invoke == [100.0, 100.0] and prof.source == "litert-xnnpack"
    rows = [(o.index, o.subgraph, o.type, o.delegated, o.name, o.times) for o in prof.ops]
    assert rows == [
        (5, 0, "Convolution (NHWC, QC8) IGEMM", True, "XNNPACK partition 0 op 0", [10.0, 12.0]),
        (6, 0, "Max Pooling (NHWC, S8)", True, "XNNPACK partition 0 op 1", [2.0, 2.0]),
        (2, 0, "RESHAPE", False, None, [1.0, 1.0]),
        (7, 0, "Fully Connected (NC, QS8, QC8W) GEMM", True, "XNNPACK partition 1 op 0", [4.0, 4.0]),
        (1, 1, "ADD", False, None, [6.0, 10.0]),
    ]
    with pytest.raises(mod.RunnerError, match="invocation 2 ran other ops"):
        mod.op_profile_from_events([_events(1, 1), _events(1, 1)[:4]], 5, True)


def _job(profile_runs):
    from types import SimpleNamespace

    from harness.lab.config import load_profile

    prof = load_profile(ROOT / "device_profiles" / "localhost.yaml")
    return Job(SimpleNamespace(), SimpleNamespace(id="d"), prof, RunOptions(profile_runs=profile_runs))  # type: ignore[arg-type]


def test_runner_args_carry_profile_runs():
    """Local, SSH and labgrid (through its SSH transport) all build the runner's command line here."""
    args = runner_args(_job(7), "m.tflite", None)
    assert args[args.index("--profile-runs") + 1] == "7"
    assert "--profile-runs" not in runner_args(_job(None), "m.tflite", None)


@pytest.mark.sshd
def test_profile_over_local_and_ssh(workspace, models, sshd_server):
    """A job with profile_runs on a local device and on a device over SSH whose Python has numpy and
    ai-edge-litert only (labgrid places run their jobs through the same SSH transport)."""
    from device_venv import device_python
    from test_ssh import write_lab

    from harness.lab.config import load_inventory
    from harness.models.convert import ModelVariant
    from harness.transports.local import LocalTransport
    from harness.transports.ssh.transport import SshTransport

    known = workspace / "known_hosts"
    known.write_text(sshd_server.known_hosts_line())
    write_lab(workspace, sshd_server, device_python(), workdir=workspace / "dev", known_hosts=known, local=True)
    inv = load_inventory(workspace / "inventory.yaml")
    path = models["small"]
    variant = ModelVariant(
        "small", "0" * 64, "int8", "test", "k", path, hashlib.sha256(path.read_bytes()).hexdigest(), 1
    )
    options = RunOptions(min_runs=5, min_seconds=0, warmup_runs=0, warmup_seconds=0, profile_runs=2)
    for dev_id, kind in (("local", LocalTransport), ("pi", SshTransport)):
        dev = inv.device(dev_id)
        prof = inv.profile_of(dev)
        with kind(dev, prof, lambda m: None) as transport:
            doc = transport.benchmark(Job(variant, dev, prof, options.resolved(prof)))
        assert doc["status"] == "ok", doc
        assert doc["config"]["profile_runs"] == 2
        profile = from_dict(doc["op_profile"])
        assert profile.invocations == 2 and profile.ops
