"""Per-operator quantization sensitivity and mixed precision (issue 24), on real models through the real
ai-edge-quantizer and LiteRT: a model with one deliberately sensitive layer (its activations' range made
1000x wider by a function-preserving rescaling) has that layer ranked first, and keeping it in int16
recovers most of what int8 loses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from arch_models import ARCHITECTURES, digits_task
from conftest import REPO, hil

from harness.compress.ptq import tflite_accuracy
from harness.compress.sensitivity import MAX_SAMPLES, _outputs, mixed_quantize, rank, sqnr_db
from harness.mcu.bundle import integer_only
from harness.models.inspect.analysis import analyze

DIGITS = REPO / "examples" / "digits"


def _sensitive_mlp():
    """An MLP on the digits whose middle layer `sensitive` has one unit scaled by 1000 and the next
    layer's weights for it divided by 1000: the float function is unchanged, the activation range of
    `sensitive` is ~1000x what int8 can resolve next to the other units."""
    import keras

    keras.utils.set_random_seed(0)
    d = np.load(DIGITS / "digits.train.npz")
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Reshape((64,))(inp)
    h = keras.layers.Dense(32, activation="relu", name="d1")(h)
    h = keras.layers.Dense(32, activation="relu", name="sensitive")(h)
    h = keras.layers.Dense(32, activation="relu", name="d3")(h)
    m = keras.Model(inp, keras.layers.Dense(10, name="head")(h))
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(d["x"], d["y"], epochs=30, verbose=0)
    w, b = m.get_layer("sensitive").get_weights()
    w[:, 0] *= 1000
    b[0] *= 1000
    m.get_layer("sensitive").set_weights([w, b])
    w3, b3 = m.get_layer("d3").get_weights()
    w3[0, :] /= 1000
    m.get_layer("d3").set_weights([w3, b3])
    return m


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    import tensorflow as tf

    d = tmp_path_factory.mktemp("sensitive")
    m = _sensitive_mlp()
    m.save(d / "sens.keras")
    blob = tf.lite.TFLiteConverter.from_keras_model(m).convert()
    train, ev = np.load(DIGITS / "digits.train.npz"), np.load(DIGITS / "digits.eval.npz")
    np.savez(d / "sens.calibration.npz", x=train["x"][:100])
    np.savez(d / "sens.eval.npz", x=ev["x"], y=ev["y"])
    np.savez(d / "sens.train.npz", x=train["x"], y=train["y"])
    return {"dir": d, "blob": blob, "calib": train["x"][:100], "ex": ev["x"], "ey": ev["y"]}


def test_the_sensitive_layer_ranks_first_and_int16_recovers_most_of_the_int8_loss(sensitive):
    r = rank(sensitive["blob"], sensitive["calib"], sensitive["ex"], sensitive["ey"], top=2)
    first = r.ops[0]
    assert first.type == "FULLY_CONNECTED" and "/sensitive" in first.tensor
    assert first.gain_db > 10 + max(s.gain_db for s in r.ops[1:])  # not a close call
    assert len(first.readers) == 1 and "/d3" in r.tensors[first.readers[0]]
    loss = r.float_top1 - r.int8_top1
    assert loss > 0.3  # int8 everywhere ruins this model ...
    assert first.accuracy_drop > 0.3 and r.ops[2].accuracy_drop is None  # ... and this layer alone does
    blob16, kept = mixed_quantize(sensitive["blob"], 1, "int16", sensitive["calib"], ranking=r)
    assert kept == sorted(first.keeps)
    acc16 = tflite_accuracy(blob16, sensitive["ex"], sensitive["ey"])
    assert acc16 - r.int8_top1 >= 0.8 * loss, (acc16, r.int8_top1, r.float_top1)
    blobf, _ = mixed_quantize(sensitive["blob"], 1, "float", sensitive["calib"], ranking=r)
    accf = tflite_accuracy(blobf, sensitive["ex"], sensitive["ey"])
    assert accf - r.int8_top1 >= 0.8 * loss
    path16, pathf = sensitive["dir"] / "m16.tflite", sensitive["dir"] / "mf.tflite"
    path16.write_bytes(blob16)
    pathf.write_bytes(blobf)
    # an MCU without an FPU can run the int16-kept model, never the float-kept one
    assert integer_only(analyze(path16)) and not integer_only(analyze(pathf))


def test_hil_analyze_sensitivity_prints_and_exports_the_ranking(sensitive):
    d = sensitive["dir"]
    p = hil(
        "analyze", str(d / "sens.keras"), "--sensitivity", "--calibration", str(d / "sens.calibration.npz"),
        "--eval", str(d / "sens.eval.npz"), "--json", cwd=d, env={"HILBENCH_CACHE": str(d / "cache")},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert doc["ops"][0]["rank"] == 1 and "/sensitive" in doc["ops"][0]["tensor"]
    assert doc["float_top1"] - doc["int8_top1"] > 0.3
    assert [o["accuracy_drop"] is not None for o in doc["ops"]][:4] == [True, True, True, False]
    text = hil(
        "analyze", str(d / "sens.keras"), "--sensitivity", "--calibration", str(d / "sens.calibration.npz"),
        cwd=d, env={"HILBENCH_CACHE": str(d / "cache")}, check=True,
    ).stdout  # fmt: skip
    row1 = next(line for line in text.splitlines() if line.strip().startswith("1 "))
    assert "FULLY_CONNECTED" in row1 and "/sensitive" in row1
    p = hil("analyze", str(d / "sens.keras"), "--sensitivity", cwd=d)
    assert p.returncode == 3 and "--sensitivity: needs --calibration" in p.stderr


def test_a_sweep_explores_how_many_operators_to_keep(sensitive):
    """`--grid mixed.keep=1,2`: one candidate per k, each more accurate than plain int8 on this model."""
    d = sensitive["dir"]
    (d / "aeq-static-int8.yaml").write_text("name: aeq-static-int8\nsteps:\n  - quantize: {aeq: static_int8}\n")
    p = hil(
        "sweep", str(d / "sens.keras"), "--recipes", "mixed-int8,aeq-static-int8.yaml", "--grid", "mixed.keep=1,2",
        "--compress-only", cwd=d, env={"HILBENCH_CACHE": str(d / "cache")},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    acc = {
        line.split()[0]: float(line.split("acc")[1].split("%")[0]) for line in p.stdout.splitlines() if " acc " in line
    }
    assert set(acc) == {"sens", "sens+mixed-int8[keep=1]", "sens+mixed-int8[keep=2]", "sens+aeq-static-int8"}
    assert min(acc["sens+mixed-int8[keep=1]"], acc["sens+mixed-int8[keep=2]"]) > acc["sens+aeq-static-int8"] + 30
    assert "mixed precision keeps operator(s)" in p.stderr


@pytest.mark.parametrize("arch", ["resnet8", "ds_cnn"])
def test_mixed_precision_on_residual_and_depthwise_models(arch):
    """The MLPerf-Tiny-shaped models: every operator gets a score, and the mixed model (top 2 kept in
    int16) is integer-only and no further from the float model's outputs than plain int8 (fidelity,
    not accuracy: briefly trained, these models are near chance on the task)."""
    import tensorflow as tf

    model = ARCHITECTURES[arch]()
    xt, yt, _, _ = digits_task(model.input_shape[1:], n=600)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(xt, yt, epochs=2, verbose=0)
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    r = rank(blob, xt[:32])
    n_ops = len([o for o in analyze_blob(blob).operators if o.subgraph == 0])
    assert len(r.ops) == n_ops and all(np.isfinite(s.gain_db) for s in r.ops)
    mixed, kept = mixed_quantize(blob, 2, "int16", xt[:32], ranking=r)
    assert set(r.ops[0].keeps) <= set(kept)
    a = analyze_blob(mixed)
    assert integer_only(a) and any(t.dtype == "int16" for t in a.tensors)
    x = xt[:MAX_SAMPLES]
    assert sqnr_db(_outputs(blob, x), _outputs(mixed, x)) >= r.base_db - 0.5


def analyze_blob(blob: bytes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(blob)
        return analyze(p)
