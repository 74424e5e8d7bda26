"""ai-edge-quantizer's static methods: integer I/O of the activation width, ranges over all calibration
samples (real quantizer, real LiteRT interpreter)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def mlp() -> dict:
    """An MLP whose inputs reach about +-10 (a sensor's raw units), with a float .tflite."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((800, 16)) * 3.0).astype(np.float32)
    y = ((x[:, :4].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, 4:8].sum(axis=1) > 0)).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x[:600], y[:600], epochs=20, batch_size=32, verbose=0)
    return {"float": bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert()), "x": x, "y": y}


@pytest.mark.parametrize("method,dtype", [("static_int16", np.int16), ("static_int8", np.int8)])
def test_static_methods_give_integer_io_and_cover_the_calibration_range(mlp, method, dtype):
    from ai_edge_litert.interpreter import Interpreter

    from harness.compress.ptq import aeq_quantize, tflite_accuracy

    calib = mlp["x"][:200]
    blob = aeq_quantize(mlp["float"], method, "channel", calib, "test")
    it = Interpreter(model_content=blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == dtype and out["dtype"] == dtype  # integer in and out, as documented
    s, z = inp["quantization"]
    lo, hi = (np.iinfo(dtype).min - z) * s, (np.iinfo(dtype).max - z) * s
    # the input range holds every calibration value (ai-edge-quantizer's default moving average of
    # per-sample extremes gave about half of it here, saturating ~10 % of the inputs)
    assert lo <= calib.min() + s and hi >= calib.max() - s, (lo, hi, calib.min(), calib.max())
    xe, ye = mlp["x"][600:], mlp["y"][600:]
    ref = tflite_accuracy(mlp["float"], xe, ye)
    assert ref > 0.8
    assert tflite_accuracy(blob, xe, ye) >= ref - (0.01 if dtype == np.int16 else 0.03)
