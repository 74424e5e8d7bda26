"""QAT on any functional model: the fake-quant twin of each architecture in tests/arch_models.py, its
full-int8 conversion, and agreement between the twin and the converted model (real Keras training,
real TFLite conversion, the host LiteRT interpreter)."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import numpy as np
import pytest
from arch_models import ARCHITECTURES, digits_task

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLES = {"mobilenet_v2": 32}  # MobileNetV2 traces slowly: fewest samples, one epoch like all


def _keras():
    import keras

    return keras


def _randomise_batchnorm(model, seed: int = 0) -> None:
    """Moving statistics and affine weights away from the identity, so that folding them matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                    if "variance" in v.path or "gamma" in v.path
                    else rng.normal(0.0, 0.1, w.shape).astype(np.float32)
                    for v, w in zip(layer.weights, layer.get_weights())
                ]
            )


def _interpreter(blob: bytes, sample_shape: tuple):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [1, *sample_shape])
    it.allocate_tensors()
    return it


def tflite_outputs(blob: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs of an int8-I/O model, one sample at a time."""
    it = _interpreter(blob, x.shape[1:])
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = inp["quantization"], out["quantization"]
    rows = []
    for xi in x:
        it.set_tensor(inp["index"], np.clip(np.round(xi[None] / si + zi), -128, 127).astype(np.int8))
        it.invoke()
        rows.append(((it.get_tensor(out["index"]).astype(np.float32) - zo) * so).reshape(-1))
    return np.array(rows)


def analyze_blob(blob: bytes):
    import tempfile

    from harness.models.inspect.analysis import analyze

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name)


def op_counts(blob: bytes) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    return Counter(op["op_name"] for op in Interpreter(model_content=blob)._get_ops_details())


def ptq_int8(model, calib: np.ndarray) -> bytes:
    """What the converter's int8 variant does (harness/models/convert.py): calibrated, int8 I/O."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def qat_of():
    """name -> (original, QAT twin, int8 .tflite, eval x); each architecture built, fine-tuned and
    converted once for the tests that look at it."""
    from harness.compress.qat import convert_int8, train_qat
    from harness.compress.recipes import QatStep

    done: dict[str, tuple] = {}

    def get(name: str):
        if name not in done:
            keras = _keras()
            keras.utils.set_random_seed(0)
            model = ARCHITECTURES[name]()
            _randomise_batchnorm(model)
            n = SAMPLES.get(name, 96)
            x, y, xe, _ = digits_task(model.inputs[0].shape[1:], n=n + 32, seed=0)
            ae = name == "fc_autoencoder"
            q, _ = train_qat(
                model,
                QatStep(),
                x,
                x if ae else y,
                label=name,
                epochs=1,
                batch_size=16,
                learning_rate=1e-4,
                seed=0,
                loss="mse" if ae else None,
            )
            done[name] = (model, q, convert_int8(q, x[:32], name), xe)
        return done[name]

    return get


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_qat_applies_to_each_architecture_and_converts_to_int8_io(qat_of, name):
    model, q, blob, xe = qat_of(name)
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    twin = Counter(type(layer).__name__ for layer in q.layers)
    kernels = sum(kinds[k] for k in ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense"))
    assert twin["QuantizedLayer"] == kernels  # every Conv/Dense fake-quantizes its kernel
    assert twin["BatchNormalization"] == 0  # each follows a Conv/Dense that feeds only it: folded
    assert not any(k in twin for k in ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense"))

    a = analyze_blob(blob)
    assert a.inputs[0].dtype == "int8" and a.outputs[0].dtype == "int8"
    weighted = [op for op in a.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(weighted) == kernels and all(a.tensor(op.inputs[1]).dtype == "int8" for op in weighted)
    assert "DEQUANTIZE" not in op_counts(blob)  # integer only, nothing left in float

    # the twin computes what the int8 model computes
    keras_out = np.asarray(q(xe, training=False)).reshape(len(xe), -1)  # predict()'s result, nothing traced
    lite_out = tflite_outputs(blob, xe)
    spread = float(np.abs(keras_out - keras_out.mean(axis=0)).mean()) + 1e-6
    assert float(np.abs(keras_out - lite_out).mean()) < 0.2 * spread + 0.004, name


def test_fake_quants_sit_where_the_converter_quantizes():
    """Placement rules, read off the plan of real graphs: after the fused ReLU, not between; on Add and
    Concatenate outputs; nothing on scale-keeping ops (padding, pooling, upsampling); BatchNormalization
    folded only into a Conv/Dense that feeds nothing else."""
    from harness.compress.qat import _plan

    keras = _keras()
    layers = keras.layers

    def plan_by_name(model):
        nodes, plans = _plan(model)
        return {node.operation.name: plans[id(node)] for node in nodes}

    resnet = ARCHITECTURES["resnet8"]()
    p = plan_by_name(resnet)
    adds = [layer.name for layer in resnet.layers if type(layer).__name__ == "Add"]
    for add in adds:  # Add -> ReLU: the converter fuses the ReLU into ADD; quantized after it
        assert not p[add].quantize_out
        relu = resnet.get_layer(add)._outbound_nodes[0].operation.name
        assert p[relu].quantize_out and p[relu].role == "activation"
    shortcut = [
        lay.name
        for lay in resnet.layers
        if type(lay).__name__ == "Conv2D" and lay.get_config()["kernel_size"] == (1, 1)
    ]
    assert shortcut and all(p[s].quantize_out and p[s].batchnorm is None for s in shortcut)  # into the Add
    assert (
        sum(pl.role == "folded" for pl in p.values())
        == Counter(type(x).__name__ for x in resnet.layers)["BatchNormalization"]
    )

    mnv2 = ARCHITECTURES["mobilenet_v2"]()
    p = plan_by_name(mnv2)
    assert all(p[lay.name].role == "same" for lay in mnv2.layers if type(lay).__name__ == "ZeroPadding2D")
    assert p["block_1_project"].quantize_out and p["block_1_project"].batchnorm.name == "block_1_project_BN"
    assert not p["block_1_expand"].quantize_out and p["block_1_expand_relu"].quantize_out  # ReLU6 fused
    assert p["predictions"].role == "kernel" and not p["predictions"].quantize_out  # softmax: fixed range

    unet = ARCHITECTURES["unet"]()
    p = plan_by_name(unet)
    for lay in unet.layers:
        kind = type(lay).__name__
        if kind == "Concatenate":
            assert p[lay.name].quantize_out
        if kind in ("UpSampling2D", "MaxPooling2D"):
            assert p[lay.name].role == "same" and not p[lay.name].quantize_out
        if kind == "Conv2D":  # Conv2D(activation="relu"): quantized after its own activation
            assert p[lay.name].quantize_out

    # a BatchNormalization after an Add, and one after a conv whose output is used twice, stay
    inp = keras.Input((8, 8, 1))
    c = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    bn1 = layers.BatchNormalization(name="bn1")(c)
    s = layers.Add(name="add")([c, bn1])
    bn2 = layers.BatchNormalization(name="bn2")(s)
    out = layers.Dense(3, name="d")(layers.Flatten(name="f")(layers.ReLU(name="r")(bn2)))
    p = plan_by_name(keras.Model(inp, out))
    assert p["bn1"].role == "batchnorm" and p["bn1"].quantize_out and p["c"].batchnorm is None
    assert p["bn2"].role == "batchnorm" and not p["bn2"].quantize_out and p["r"].quantize_out  # ADD + ReLU
    assert p["add"].quantize_out and p["f"].role == "same" and p["d"].quantize_out


@pytest.fixture(scope="module")
def trained_dag():
    """A small DAG trained on the 8x8 digits: Conv+BN+ReLU, a residual Add with ReLU, a Concatenate,
    a BatchNormalization that cannot be folded, padding, ReLU6 depthwise, global pooling, softmax."""
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    x, y, xe, ye = digits_task((8, 8, 1), seed=0)
    inp = keras.Input((8, 8, 1))
    a = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(12, 3, padding="same", use_bias=False)(inp)))
    b = layers.BatchNormalization()(layers.Conv2D(12, 3, padding="same")(a))
    c = layers.ReLU()(layers.Add()([a, b]))
    d = layers.Conv2D(8, 1, activation="relu")(c)
    e = layers.BatchNormalization()(layers.Concatenate()([c, d]))
    f = layers.ZeroPadding2D(1)(layers.MaxPooling2D(2)(e))
    g = layers.ReLU(6.0)(layers.BatchNormalization()(layers.DepthwiseConv2D(3, strides=2)(f)))
    out = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(g))
    model = keras.Model(inp, out, name="dag")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model, (x, y, xe, ye)


def test_a_trained_dag_twin_agrees_with_its_int8_tflite_and_qat_is_not_below_ptq(trained_dag):
    from harness.compress.qat import convert_int8, train_qat
    from harness.compress.recipes import QatStep

    model, (x, y, xe, ye) = trained_dag
    calib = x[:100]
    ptq = ptq_int8(model, calib)
    ptq_acc = float((tflite_outputs(ptq, xe).argmax(1) == ye).mean())
    q, _ = train_qat(model, QatStep(), x, y, label="dag", epochs=2, batch_size=32, learning_rate=1e-4, seed=0)
    blob = convert_int8(q, calib, "dag")
    lite = tflite_outputs(blob, xe).argmax(1)
    twin = np.asarray(q.predict(xe, verbose=0)).argmax(1)
    assert float((twin == lite).mean()) >= 0.97  # the fake-quants are the converter's quantization
    qat_acc = float((lite == ye).mean())
    assert qat_acc >= ptq_acc - 0.005, (qat_acc, ptq_acc)
    assert ptq_acc > 0.5  # a trained model, not chance
    # the same ops as the converter's own int8 model (every ReLU fused, nothing left in float), but for
    # the Concatenate: its range is its own, an input of another scale is requantized to it
    ops, ref = op_counts(blob), op_counts(ptq)
    assert ops.pop("QUANTIZE", 0) <= 1 and ops == ref, (ops, ref)


def test_the_sweep_pipeline_gives_a_dag_model_a_qat_candidate(tmp_path, trained_dag):
    from harness.compress import recipes
    from harness.compress.pipeline import Compressor, EvalData
    from harness.models.convert import Calibration, Converter, ModelSource

    model, (x, y, xe, ye) = trained_dag
    d = tmp_path / "m"
    d.mkdir()
    model.save(d / "dag.keras")
    np.savez(d / "dag.train.npz", x=x[:128], y=y[:128])
    np.savez(d / "dag.calibration.npz", x=x[:32])
    np.savez(d / "dag.eval.npz", x=xe[:64], y=ye[:64])
    recipe = tmp_path / "qat.yaml"
    shutil.copy(recipes.library()["qat-int8"], recipe)
    recipe.write_text(recipe.read_text().replace("epochs: 2", "epochs: 1"))
    comp = Compressor(
        ModelSource.open(d / "dag.keras"),
        Converter(tmp_path / "cache" / "artifacts", log=lambda m: None),
        Calibration.from_arg(str(d / "dag.calibration.npz")),
        EvalData.load(d / "dag.eval.npz"),
        str(d / "dag.train.npz"),
        log=lambda m: None,
    )
    cand = comp.run(recipes.load(recipe))
    assert cand.name == "dag+qat-int8" and cand.variant == "asis" and cand.artifact.is_file()
    assert cand.metrics["host_accuracy"] > 0.5


def test_a_layer_called_twice_keeps_one_set_of_weights():
    """A shared Dense (called on the input's projection and on its own output) has one twin: the
    twin's weights are the model's, BatchNormalization included, and it converts to int8 I/O."""
    from harness.compress.qat import convert_int8, train_qat
    from harness.compress.recipes import QatStep

    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    x, y, xe, _ = digits_task((64,), n=256, seed=0)
    inp = keras.Input((64,))
    h = layers.Dense(16, activation="relu")(inp)
    shared = layers.Dense(16, activation="relu", name="shared")
    h2 = shared(shared(h))
    out = layers.Dense(10, activation="softmax")(layers.BatchNormalization()(layers.Add()([h, h2])))
    model = keras.Model(inp, out)
    q, _ = train_qat(model, QatStep(), x, y, label="shared", epochs=1, batch_size=32, learning_rate=1e-4, seed=0)
    assert Counter(type(lay).__name__ for lay in q.layers)["QuantizedLayer"] == 3
    assert len(q.trainable_weights) == len(model.trainable_weights) - 2  # the frozen BN's gamma/beta
    blob = convert_int8(q, x[:32], "shared")
    assert op_counts(blob)["FULLY_CONNECTED"] == 4
    keras_out, lite_out = np.asarray(q.predict(xe, verbose=0)), tflite_outputs(blob, xe)
    assert float(np.abs(keras_out - lite_out).mean()) < 0.02
