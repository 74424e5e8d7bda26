"""What the user hands `hil run` (model files, calibration and eval data, input shapes) is checked
before a run exists, named as the user gave it, and never mixed up: real TF conversion, the real
TFLite interpreter in the real runner, the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, REPO

from harness.cli import main
from harness.core.jobs import RunOptions
from harness.errors import ConfigError
from harness.lab.config import load_default_inventory
from harness.models.convert import Calibration, Converter, ModelSource
from harness.models.inspect.analysis import analyze, format_table
from harness.models.mlperf import read_dataset
from harness.models.naming import unique_model_names
from harness.models.shapes import parse_input_shapes, resolve_input_shapes
from harness.run.orchestrate import ModelSpec, Orchestrator
from harness.store.results import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")

DYN_INPUT = "serving_default_image:0"


@pytest.fixture(scope="module")
def artifacts(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Two different real .tflite files of the tiny classifier (fp32, dynamic-range) and a model with
    unknown spatial dimensions (Input((None, None, 3)))."""
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("artifacts")
    conv = Converter(d / "cache", log=lambda m: None)
    src = ModelSource.open(tiny_model["path"])
    out = {}
    for v in ("fp32", "dynamic"):
        out[v] = d / f"tiny_{v}.tflite"
        out[v].write_bytes(conv.convert(src, v).artifact.read_bytes())
    keras.utils.set_random_seed(3)
    dyn = keras.Sequential(
        [
            keras.Input((None, None, 3), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    out["dyn"] = d / "dyn.tflite"
    out["dyn"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(dyn).convert())
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _runs(workspace: Path) -> int:
    db = workspace / "reports" / "results.sqlite"
    if not db.exists():
        return 0
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0]


class Hil:
    """`hil ...` through the real CLI entry point, in this process (TensorFlow is imported once)."""

    def __init__(self, code: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr

    @property
    def run_id(self) -> str:
        return self.stdout.strip().splitlines()[-1]


@pytest.fixture()
def hil(capsys):
    def call(*args: str, check: bool = False) -> Hil:
        capsys.readouterr()
        code = main(list(args))  # an exception here is a traceback the user would see: the test fails
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"hil {' '.join(args)} -> {code}\n{err[-3000:]}")
        return Hil(code, out, err)

    return call


def _error_line(p: Hil) -> str:
    lines = [line for line in p.stderr.splitlines() if line.startswith("hil: error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


# ------------------------------------------------------------------ 1. one name per model, never shared


def test_model_names_are_unique_readable_and_stable():
    assert unique_model_names(["a/net.tflite", "b/net.tflite"]) == ["a/net", "b/net"]
    assert unique_model_names(["net.keras", "net.tflite"]) == ["net.keras", "net.tflite"]
    assert unique_model_names(["a/net.tflite", "b/net.tflite", "b/net.keras"]) == [
        "a/net.tflite",
        "b/net.tflite",
        "b/net.keras",
    ]
    assert unique_model_names(["x/m/net.tflite", "y/m/net.tflite", "other.keras"]) == ["x/m/net", "y/m/net", "other"]
    assert unique_model_names(["net.tflite"]) == ["net"]  # alone: the plain stem, as always
    # the same files in another order get the same names
    assert unique_model_names(["b/net.tflite", "a/net.tflite"]) == ["b/net", "a/net"]
    with pytest.raises(ConfigError, match="model given twice"):
        unique_model_names(["net.tflite", "./net.tflite"])


def test_models_with_one_file_name_are_stored_and_reported_apart(workspace, tiny_model, artifacts, hil):
    for sub, src in (("a", artifacts["fp32"]), ("b", artifacts["dynamic"])):
        (workspace / sub).mkdir()
        (workspace / sub / "net.tflite").write_bytes(src.read_bytes())
    (workspace / "b" / "net.keras").write_bytes(tiny_model["path"].read_bytes())
    p = hil("run", "a/net.tflite", "b/net.tflite", "b/net.keras", *FAST, "--report", "r.md", check=True)
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(p.run_id)
    shas = dict(zip(wide["model"], wide["model_sha256"]))
    assert shas == {
        "a/net.tflite": _sha(workspace / "a" / "net.tflite"),
        "b/net.tflite": _sha(workspace / "b" / "net.tflite"),
        "b/net.keras": _sha(workspace / "b" / "net.keras"),
    }
    assert set(wide["status"]) == {"ok"} and len(wide) == 3
    report = (workspace / "r.md").read_text()
    for name in shas:
        assert f"| {name} |" in report


# ------------------------------------------------------------------ 2. only the variant that cannot be built fails


def test_variant_without_calibration_fails_alone(workspace, tiny_model, hil):
    model = workspace / "solo.keras"  # no sidecar calibration file next to it
    model.write_bytes(tiny_model["path"].read_bytes())
    p = hil("run", str(model), "--variants", "fp32,int8", *FAST)
    assert p.returncode == 3, p.stderr  # an input error is reported...
    assert "Traceback" not in p.stderr
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(p.run_id)
    by_variant = wide.set_index("variant")
    assert by_variant.loc["fp32", "status"] == "ok" and by_variant.loc["fp32", "latency_p50_us"] > 0  # fp32 measured
    assert by_variant.loc["int8", "status"] == "error"
    assert "needs representative data" in by_variant.loc["int8", "error"]
    assert "SKIPPED solo/int8:" in p.stderr


# ------------------------------------------------------------------ 3. a truncated .tflite stops before a run


def test_truncated_tflite_stops_before_a_run_naming_the_users_file(workspace, artifacts, hil):
    data = artifacts["fp32"].read_bytes()
    (workspace / "trunc.tflite").write_bytes(data[: len(data) * 2 // 3])
    p = hil("run", "trunc.tflite", *FAST)
    assert p.returncode == 3
    err = _error_line(p)
    assert err.startswith("hil: error: trunc.tflite: corrupt or truncated TFLite flatbuffer"), err
    assert str(workspace / "cache") not in p.stderr  # never the cache copy
    assert _runs(workspace) == 0
    # with other models the run goes on, and the broken one's rows name the user's file
    (workspace / "good.tflite").write_bytes(data)
    p = hil("run", "trunc.tflite", "good.tflite", *FAST)
    assert p.returncode == 3, p.stderr
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(p.run_id)
    rows = wide.set_index("model")
    assert rows.loc["good", "status"] == "ok" and rows.loc["trunc", "status"] == "error"
    assert rows.loc["trunc", "error"].startswith("trunc.tflite: corrupt or truncated")


def test_model_only_the_runtime_rejects_is_the_models_error(workspace, artifacts, hil):
    """A well-formed file with an op no runtime has passes the static checks; the runner's refusal is
    stored as `error` (the user's to fix), not as an infrastructure failure."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as sfb

    m = sfb.ModelT.InitFromPackedBuf(bytearray(artifacts["fp32"].read_bytes()), 0)
    m.operatorCodes[0].builtinCode = m.operatorCodes[0].deprecatedBuiltinCode = 32  # CUSTOM
    m.operatorCodes[0].customCode = b"HilNoSuchOp"
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    (workspace / "custom.tflite").write_bytes(bytes(b.Output()))
    p = hil("run", "custom.tflite", *FAST)
    assert p.returncode == 3, p.stderr
    (row,) = ResultStore(workspace / "reports" / "results.sqlite").wide(p.run_id).itertuples()
    assert row.status == "error" and "HilNoSuchOp" in row.error


# ------------------------------------------------------------------ 4. eval data checked at load time


def _plan_with_eval(workspace: Path, model: Path, eval_file: Path):
    inv = load_default_inventory()
    store = ResultStore(workspace / "results.sqlite")
    orch = Orchestrator(inv, store, Converter(workspace / "cache" / "artifacts", log=lambda m: None))
    spec = ModelSpec.from_args(str(model), None, str(eval_file))
    return orch.plan([spec], None, [inv.device("local")], RunOptions(min_runs=5, min_seconds=0, repeats=1))


N = 12


def _x(n=N):
    return np.random.default_rng(5).random((n, 8, 8, 1), dtype=np.float32)


BAD_EVAL = {
    # case: (arrays, expected message after "<file>: ")
    "soft_labels": (
        {"x": _x(), "y": np.full((N, 4), 0.25)},
        "array 'y' has shape (12, 4) but its rows are not one-hot",
    ),
    "multi_label": ({"x": _x(), "y": np.tile([1, 0, 1, 0], (N, 1))}, "rows are not one-hot"),
    "onehot_columns": (
        {"x": _x(), "y": np.eye(3)[np.arange(N) % 3]},
        "array 'y' is one-hot with 3 columns, but the model has 4 output classes",
    ),
    "empty_x": ({"x": np.zeros((0, 8, 8, 1), np.float32)}, "array 'x' is empty (shape (0, 8, 8, 1))"),
    "float_labels": (
        {"x": _x(), "y": np.r_[np.zeros(N - 1), 1.5]},
        "array 'y' holds non-integer labels (first at index 11: 1.5)",
    ),
    "nan_label": ({"x": _x(), "y": np.r_[np.nan, np.zeros(N - 1)]}, "array 'y' holds non-integer labels"),
    "label_too_big": (
        {"x": _x(), "y": np.r_[np.zeros(N - 1, np.int64), 7]},
        "array 'y': label 7 at index 11 is outside the model's 4 classes (0..3)",
    ),
    "negative_label": ({"x": _x(), "y": np.r_[-1, np.zeros(N - 1, np.int64)]}, "label -1 at index 0 is outside"),
    "nan_input": (
        {"x": np.where(np.arange(N)[:, None, None, None] == 3, np.nan, _x())},
        "array 'x' holds 64 NaN/inf value(s) (first in sample 3)",
    ),
    "inf_input": ({"x": np.r_[_x(N - 1), np.full((1, 8, 8, 1), np.inf, np.float32)]}, "NaN/inf value(s)"),
    "object_x": ({"x": np.array([object()] * N, dtype=object)}, "array 'x' holds Python objects (dtype object)"),
    "string_x": ({"x": np.array(["a"] * N)}, "array 'x' has dtype <U1; model inputs must be numbers"),
    "string_y": ({"x": _x(), "y": np.array(["cat"] * N)}, "array 'y' has dtype <U3; labels must be integer"),
    "bool_y": ({"x": _x(), "y": np.zeros(N, bool)}, "array 'y' is boolean"),
    "short_y": ({"x": _x(), "y": np.zeros(N - 2, np.int64)}, "array 'y' has 10 labels for 12 samples in x"),
    "3d_y": ({"x": _x(), "y": np.zeros((N, 2, 2), np.int64)}, "labels must be 1-D class indices"),
}


@pytest.mark.parametrize("case", sorted(BAD_EVAL))
def test_bad_eval_data_is_refused_at_load_naming_file_and_array(workspace, artifacts, case):
    arrays, expect = BAD_EVAL[case]
    ev = workspace / f"{case}.npz"
    np.savez(ev, **arrays)
    with pytest.raises(ConfigError) as ei:
        _plan_with_eval(workspace, artifacts["fp32"], ev)
    assert str(ei.value).startswith(f"{ev}: "), ei.value
    assert expect in str(ei.value), ei.value


def _prepared(job) -> dict[str, np.ndarray]:
    with np.load(job.eval_file) as z:
        return {k: z[k] for k in z.files}


def test_one_hot_and_whole_float_labels_are_accepted_as_class_indices(workspace, tiny_model, artifacts):
    y = np.arange(N) % 4
    ev = workspace / "onehot.npz"
    np.savez(ev, x=_x().reshape(N, 64), y=np.eye(4, dtype=np.float32)[y])  # flattened samples, one-hot rows
    (job,) = _plan_with_eval(workspace, tiny_model["path"], ev)  # .keras: the float reference is computed
    got = _prepared(job)
    assert got["y"].dtype == np.int64 and got["y"].tolist() == y.tolist()
    assert got["x"].shape == (N, 8, 8, 1) and got["ref"].shape == (N,)
    np.savez(ev, x=_x(), y=y.astype(np.float64), ref=y[::-1].copy())
    (job,) = _plan_with_eval(workspace, artifacts["fp32"], ev)  # .tflite: the user's own ref is kept
    got = _prepared(job)
    assert got["y"].tolist() == y.tolist() and got["ref"].tolist() == y[::-1].tolist()


def test_eval_and_calibration_files_with_objects_are_one_line_errors(workspace, artifacts, hil):
    obj = workspace / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, np.int64))
    p = hil("run", str(artifacts["fp32"]), "--eval", "obj.npz", *FAST)
    assert p.returncode == 3
    assert _error_line(p) == (
        "hil: error: obj.npz: array 'x' holds Python objects (dtype object), which hilbench "
        "does not load (that would need pickle); save numeric arrays"
    )
    assert _runs(workspace) == 0
    with pytest.raises(ConfigError, match="obj.npz: array 'x' holds Python objects"):
        Calibration.from_arg(str(obj)).arrays([(None, 8, 8, 1)])
    nan = workspace / "nan.npy"
    np.save(nan, np.full((3, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(ConfigError, match="nan.npy: array 'x' holds 192 NaN/inf"):
        Calibration.from_arg(str(nan)).arrays([(None, 8, 8, 1)])


def test_mlperf_labels_that_are_not_utf8_are_one_line_errors(workspace, artifacts, hil):
    """An MLPerf Tiny directory whose y_labels.csv was saved in another encoding: a UnicodeDecodeError
    traceback before; now the file and line, exit 3, before a run exists."""
    data = workspace / "dataset"
    data.mkdir()
    (data / "x.bin").write_bytes(bytes(64))
    (data / "café.bin").write_bytes(bytes(64))
    (data / "y_labels.csv").write_bytes("x.bin, 10, 1\ncafé.bin, 10, 7\n".encode("latin-1"))
    p = hil("run", str(artifacts["fp32"]), "--eval", "dataset", *FAST)
    assert p.returncode == 3 and "Traceback" not in p.stderr
    assert _error_line(p) == (
        "hil: error: dataset/y_labels.csv line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    )
    assert _runs(workspace) == 0
    # UTF-8 as a spreadsheet saves it, with a byte-order mark: the first file name is read as written
    (data / "y_labels.csv").write_bytes("\ufeffcafé.bin, 10, 7\n".encode())
    assert read_dataset(data).entries[0].file == "café.bin"


# ------------------------------------------------------------------ 6. dynamic input shapes


def test_input_shape_syntax():
    assert parse_input_shapes([f"{DYN_INPUT}:1,16,16,3"]) == ((DYN_INPUT, (1, 16, 16, 3)),)
    assert parse_input_shapes(["a:1,2,b:0:3"]) == (("a", (1, 2)), ("b:0", (3,)))
    assert parse_input_shapes(["a:1,2", "b:3,4"]) == (("a", (1, 2)), ("b", (3, 4)))
    assert parse_input_shapes(["1,8,8,1"]) == (("", (1, 8, 8, 1)),)
    assert parse_input_shapes(None) is None
    for bad, msg in (
        (["x:1,0"], "at least 1"),
        (["x:1,a"], "whole numbers"),
        (["1,x:2"], "expected NAME"),
        (["x:1", "x:2"], "more than once"),
        (["1,2", "3"], "single-input model only"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_input_shapes(bad)


def test_input_shapes_are_checked_against_the_model(artifacts):
    dyn, shown = artifacts["dyn"], "my/dyn.tflite"
    with pytest.raises(ConfigError) as ei:
        resolve_input_shapes(dyn, None, shown)
    assert str(ei.value) == (
        f"my/dyn.tflite: input '{DYN_INPUT}' has unknown dimensions (shape signature "
        f"[-1,-1,-1,3]); give the shape to measure with --input-shape {DYN_INPUT}:1,?,?,3 "
        "(each ? a size)"
    )
    assert resolve_input_shapes(dyn, parse_input_shapes([f"{DYN_INPUT}:2,16,20,3"]), shown) == [(2, 16, 20, 3)]
    assert resolve_input_shapes(dyn, parse_input_shapes(["1,9,9,3"]), shown) == [(1, 9, 9, 3)]
    for given, msg in (
        ("nope:1,2,2,3", f"names input 'nope', but the model's inputs are '{DYN_INPUT}'"),
        (f"{DYN_INPUT}:1,16,3", "has 3 dimensions, input"),
        (f"{DYN_INPUT}:1,16,16,4", "dimension 3 of input"),
    ):
        with pytest.raises(ConfigError, match=msg):
            resolve_input_shapes(dyn, parse_input_shapes([given]), shown)
    # a model whose only unknown dimension is the batch is measured at batch 1, no option needed
    assert resolve_input_shapes(artifacts["fp32"], None, shown) == [(1, 8, 8, 1)]
    # `hil analyze` shows what --input-shape has to fill in
    assert f"{DYN_INPUT}  [1,1,1,3] (signature [-1,-1,-1,3]) float32" in format_table(analyze(dyn))
    assert "signature" not in format_table(analyze(artifacts["fp32"]))


def test_dynamic_model_needs_input_shape_and_is_measured_at_it(workspace, artifacts, hil):
    (workspace / "dyn.tflite").write_bytes(artifacts["dyn"].read_bytes())
    p = hil("run", "dyn.tflite", *FAST)
    assert p.returncode == 3
    assert f"dyn.tflite: input '{DYN_INPUT}' has unknown dimensions" in _error_line(p)
    assert f"--input-shape {DYN_INPUT}:1,?,?,3" in p.stderr and "XNNPack" not in p.stderr
    assert _runs(workspace) == 0
    rng = np.random.default_rng(2)
    np.savez(workspace / "dyn_eval.npz", x=rng.random((6, 16, 16, 3), dtype=np.float32), y=np.arange(6) % 3)
    p = hil("run", "dyn.tflite", "--input-shape", f"{DYN_INPUT}:1,16,16,3", "--eval", "dyn_eval.npz", *FAST, check=True)
    run_id = p.run_id
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    status, raw = db.execute("SELECT status, raw FROM results WHERE run_id=?", (run_id,)).fetchone()
    doc = json.loads(raw)
    assert status == "ok"
    assert doc["config"]["input_shapes"] == {DYN_INPUT: [1, 16, 16, 3]}  # provenance of the measured shape
    assert doc["inputs"][0]["shape"] == [1, 16, 16, 3] and doc["inputs"][0]["shape_signature"] == [-1, -1, -1, 3]
    assert doc["accuracy"]["n"] == 6


def _runner(*args: str) -> dict:
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "runners" / "linux_runner.py"),
            "--min-runs",
            "3",
            "--min-seconds",
            "0",
            "--warmup-runs",
            "0",
            "--warmup-seconds",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    return json.loads(p.stdout)


def test_runner_resizes_dynamic_inputs_and_refuses_unknown_dims(artifacts):
    doc = _runner("--model", str(artifacts["dyn"]))
    assert doc["status"] == "error" and doc["error_kind"] == "usage"
    assert f"input '{DYN_INPUT}' has unknown dimensions (shape signature [-1,-1,-1,3])" in doc["error"]
    assert "XNNPack" not in doc["error"]
    doc = _runner("--model", str(artifacts["dyn"]), "--input-shape", "1,12,10,3")  # unnamed: the only input
    assert doc["status"] == "ok", doc.get("error")
    assert doc["inputs"][0]["shape"] == [1, 12, 10, 3] and doc["config"]["input_shapes"] == {DYN_INPUT: [1, 12, 10, 3]}
    doc = _runner("--model", str(artifacts["dyn"]), "--input-shape", f"{DYN_INPUT}:1,12,10,4")
    assert doc["status"] == "error" and "does not fit input" in doc["error"] and doc["error_kind"] == "usage"
    doc = _runner("--model", str(artifacts["fp32"]))  # batch-only dynamic: batch 1, nothing resized
    assert doc["status"] == "ok" and doc["config"]["input_shapes"] is None


# ------------------------------------------------------------------ 7. refused at once (issue 20)


def _usage_error(capsys, *args: str) -> str:
    """An argparse refusal: exit 3 and its one error line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hil: error:")]
    assert len(lines) == 1
    return lines[0]


def test_nonsense_numbers_and_empty_variants_are_refused_before_a_run(workspace, artifacts, hil, capsys):
    model = str(artifacts["fp32"])
    assert _usage_error(capsys, "run", model, "--repeats", "99999999999999999999") == (
        "hil: error: argument --repeats: 99999999999999999999 is more than 1000, the most allowed"
    )
    assert _usage_error(capsys, "run", model, "--min-seconds", "inf").endswith("'inf' is not a finite number")
    assert _usage_error(capsys, "run", model, "--max-seconds", "nan").endswith("'nan' is not a finite number")
    for empty in ("", ","):  # a run of 0 jobs would print a run id and exit 0
        p = hil("run", model, "--variants", empty, *FAST)
        assert p.returncode == 3 and p.stdout == ""
        assert _error_line(p).startswith("hil: error: --variants: no variant given")
    assert _runs(workspace) == 0
    # the planned job count is bounded too, before any model is converted
    inv = load_default_inventory()
    orch = Orchestrator(inv, ResultStore(workspace / "plan.sqlite"), Converter(workspace / "c", log=lambda m: None))
    orch.check_plan_size(100, ["fp32"], [inv.device("local")], RunOptions(repeats=1000))  # 100,000: the most
    with pytest.raises(ConfigError, match=r"the run would plan 101,000 jobs \(101 model\(s\) x 1 variant"):
        orch.check_plan_size(101, ["fp32"], [inv.device("local")], RunOptions(repeats=1000))


def test_data_files_are_checked_before_any_conversion(workspace, tiny_model, hil):
    """Calibration data was checked after TensorFlow's import and the fp32 conversion (12-15 s), and a
    text file named .npz read as "holds Python objects" (issue 20)."""
    model = workspace / "fresh.keras"  # not converted yet in this cache
    model.write_bytes(tiny_model["path"].read_bytes())
    (workspace / "notes.npz").write_text("x = 1, 2, 3\n")
    p = hil("run", str(model), "--variants", "fp32,int8", "--calibration", "notes.npz", *FAST)
    assert p.returncode == 3, p.stderr
    assert _error_line(p) == (
        "hil: error: notes.npz: not an .npz or .npy file (starts with b'x = 1, 2'); save the arrays with "
        "numpy.savez or numpy.save"
    )
    np.savez(workspace / "nan.npz", x=np.full((4, 8, 8, 1), np.nan, np.float32), y=np.zeros(4, np.int64))
    p = hil("run", str(model), "--eval", "nan.npz", *FAST)
    assert p.returncode == 3 and "nan.npz: array 'x' holds 256 NaN/inf value(s)" in _error_line(p)
    np.savez(workspace / "short.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(3, np.int64))
    p = hil("run", str(model), "--eval", "short.npz", *FAST)
    assert p.returncode == 3 and "short.npz: array 'y' has 3 labels for 4 samples in x" in _error_line(p)
    assert not (workspace / "cache" / "artifacts").exists()  # nothing was converted
    assert _runs(workspace) == 0
    # a pickle is named as one; calibration that only int8 needs is not held against fp32
    import pickle

    (workspace / "pickled.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ConfigError, match=r"pickled.npy: not an .npz or .npy file \(a Python pickle\)"):
        Calibration.from_arg(str(workspace / "pickled.npy")).check()
    p = hil("run", str(model), "--variants", "fp32", "--calibration", "notes.npz", *FAST)
    assert p.returncode == 0, p.stderr


def test_resume_with_a_changed_option_names_it(workspace, artifacts, hil):
    """`--resume` with one option changed started a new full run without a word (issue 20)."""
    shutil.copyfile(artifacts["fp32"], workspace / "net.tflite")
    store = ResultStore(workspace / "reports" / "results.sqlite")
    first = ["run", "net.tflite", *FAST, "--label", "nightly"]
    old = store.start_run(["k1"], "an-older-plan", first, "0", "host", None, "nightly")
    store.finish_run(old, "interrupted")
    changed = [a if a != "5" else "7" for a in first]  # --min-runs 7
    p = hil(*changed, "--resume", "--no-pair")
    assert p.returncode == 3 and _runs(workspace) == 1
    assert _error_line(p) == (
        f"hil: error: --resume: unfinished run {old} of net.tflite was started with --min-runs 5, no "
        "--no-pair; this command has --min-runs 7, --no-pair. Give the same options to resume it, or "
        "leave out --resume to start a new run"
    )
    # the same options (another label): resumed if the plan matches; here the model changed since
    p = hil(*first[:-1], "other-label", "--resume", check=True)
    assert f"nothing to resume for this plan; starting a new run (run {old} had this command line" in p.stderr
    # that run finished: an older unfinished run with other options no longer blocks --resume
    p = hil(*changed, "--resume", "--no-pair", check=True)
    assert "nothing to resume for this plan; starting a new run" in p.stderr
    # that run left unfinished: the same options in another order resume it
    store.finish_run(store.latest_run_id(), "interrupted")
    p = hil("run", "--no-pair", "--resume", *changed[1:], check=True)
    assert "resuming run" in p.stderr, p.stderr
