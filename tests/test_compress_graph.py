"""Structured pruning and width students through the channel dependency graph, on the shapes edge teams
deploy (tests/arch_models.py): real training on the digits task, real TFLite conversion and interpreters,
MACs checked with `hil analyze`'s own counter."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from arch_models import ARCHITECTURES, trained

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_models: dict[str, tuple] = {}


def model_and_task(name: str):
    """Each architecture trained once per module (MobileNetV2, the slowest, on few samples)."""
    if name not in _models:
        _models[name] = trained(name, epochs=1, n=240) if name == "mobilenet_v2" else trained(name, epochs=2, n=480)
    return _models[name]


def analyze_blob(blob: bytes):
    from harness.models.inspect.analysis import analyze

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name)


def int8_tflite(model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def run_tflite(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for row in x:
        it.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0])
    return np.stack(rows)


def zeroed(graph, keep):
    """The original model with the pruned channels' filters, biases and BatchNorm scale/offset set to 0:
    the function the pruned model must compute before any fine-tuning."""
    from harness.compress.narrow import narrowed

    copy = narrowed(graph, graph.all_kept())  # an exact copy (every layer cloned, weights copied)
    for call in graph.first.values():
        if call.role in ("pass", "merge", "flatten", "reshape", "frozen"):
            continue
        layer = copy.get_layer(call.layer.name)
        w = layer.get_weights()
        chans = call.inputs[0] if call.role == "depthwise" else call.outputs[0]
        drop = np.nonzero(~keep[graph.root[chans]])[0]
        if call.role == "transpose":
            w[0][..., drop, :] = 0
        elif call.role == "separable":
            w[1][..., drop] = 0
        elif call.role == "depthwise":
            w[0][..., drop, :] = 0
        elif call.role in ("conv", "dense"):
            w[0][..., drop] = 0
        for a in w[-1:] if call.role != "norm" else w[:2]:  # the bias / gamma and beta
            if call.role == "norm" or a.ndim == 1:
                a[drop] = 0
        layer.set_weights(w)
    return copy


def assert_same_function(graph, keep, pruned, x):
    expected = zeroed(graph, keep).predict(x, verbose=0)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_filters_50_removes_real_channels_on_each_architecture(name):
    """Half the MACs go (0.45-0.50x as `hil analyze` counts the int8 TFLite), the pruned model is the
    original with the pruned channels zeroed, and it fine-tunes, converts to int8 and runs."""
    import keras

    from harness.compress.channels import ChannelGraph
    from harness.compress.narrow import narrowed
    from harness.compress.structured import choose_keep

    model, (x, y, xe, ye) = model_and_task(name)
    graph = ChannelGraph(model)
    assert graph.prunable() and not graph.frozen_report()
    keep, achieved = choose_keep(graph, 0.5, "macs", "l1")
    pruned = narrowed(graph, keep)
    assert_same_function(graph, keep, pruned, xe[:32])

    target = x if name == "fc_autoencoder" else y
    pruned.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="mse" if name == "fc_autoencoder" else "sparse_categorical_crossentropy",
    )
    pruned.fit(x[:128], target[:128], epochs=1, batch_size=32, verbose=0)
    blob = int8_tflite(pruned, x[:16])
    out = run_tflite(blob, xe[:4])
    assert out.shape == (4, *model.output_shape[1:]) and np.isfinite(out).all()

    a = analyze_blob(blob)
    base_macs, base_params = graph.counts(graph.all_kept())
    after = ChannelGraph(pruned)
    assert a.total_macs == after.counts(after.all_kept())[0]  # the graph counts as `hil analyze` does
    ratio = a.total_macs / base_macs
    assert 0.45 <= ratio <= 0.5 and ratio == pytest.approx(1 - achieved), (name, ratio)
    assert pruned.count_params() < 0.6 * model.count_params()
