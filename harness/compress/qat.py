"""Quantization-aware training with Keras 3 layers, converted to a full-int8 TFLite model.

`tensorflow-model-optimization` only works through tf-keras and rejects Keras 3 models, so QAT is
built here on `keras.quantizers.fake_quant_with_min_max_vars`, which on the TensorFlow backend is
TensorFlow's FakeQuantWithMinMaxVars(PerChannel) op that the TFLite converter reads as quantization
ranges:

- weights: symmetric int8 with a narrow range (-127..127), min/max from the current kernel: per
  output channel for Conv2D and DepthwiseConv2D, per tensor for Dense (TFLite's int8 FULLY_CONNECTED
  kernel is per-tensor; a per-channel fake-quant on a Dense kernel fails to convert);
- activations: after the input and after every Conv/Dense layer (activation included), a range kept
  as a running (exponential moving average) min/max of the training batches, used as-is at inference.

Batch normalisation after a Conv/Dense layer is folded into it before training (the converter folds it
the same way). After `epochs` of fine-tuning the model is converted with int8 inputs and outputs;
the representative data only fills ranges the fake-quant ops do not give.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np

from harness.compress.recipes import QatStep
from harness.compress.train import chain_layers, clone_layer, compile_classifier, fit, io_shapes, keras_module
from harness.errors import ConfigError, ModelError

QUANTIZED = ("Conv2D", "DepthwiseConv2D", "Dense")
PASSTHROUGH = (
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "ZeroPadding2D",
    "SpatialDropout2D",
    "Identity",
)


def _layer_classes():
    keras = keras_module()
    ops = keras.ops
    fq = keras.quantizers.fake_quant_with_min_max_vars

    class ActivationQuant(keras.layers.Layer):
        """Fake-quantises its input to int8 with a running min/max range."""

        def __init__(self, decay: float = 0.99, **kwargs):
            super().__init__(**kwargs)
            self.decay = decay

        def build(self, input_shape):
            self.range_min = self.add_weight(shape=(), initializer="zeros", trainable=False, name="range_min")
            self.range_max = self.add_weight(shape=(), initializer="zeros", trainable=False, name="range_max")
            self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

        def call(self, x, training=False):
            if training:
                lo, hi = ops.minimum(ops.min(x), 0.0), ops.maximum(ops.max(x), 0.0)
                first = ops.equal(self.seen, 0.0)
                lo = ops.where(first, lo, self.decay * self.range_min + (1.0 - self.decay) * lo)
                hi = ops.where(first, hi, self.decay * self.range_max + (1.0 - self.decay) * hi)
                self.range_min.assign(lo)
                self.range_max.assign(hi)
                self.seen.assign(1.0)
                return fq(x, lo, hi, num_bits=8)
            return fq(x, self.range_min, self.range_max, num_bits=8)

    class QuantizedLayer(keras.layers.Layer):
        """A Conv2D / DepthwiseConv2D / Dense whose kernel is fake-quantised on every call."""

        def __init__(self, kind: str, config: dict, kernel: np.ndarray, bias: np.ndarray | None, **kwargs):
            super().__init__(name=f"qat_{config['name']}", **kwargs)
            self.kind, self.config_ = kind, config
            self.kernel0, self.bias0 = kernel, bias
            self.act = keras.activations.get(config.get("activation") or "linear")

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=self.kernel0.shape, initializer="zeros", name="kernel")
            self.kernel.assign(self.kernel0)
            self.bias = None
            if self.bias0 is not None:
                self.bias = self.add_weight(shape=self.bias0.shape, initializer="zeros", name="bias")
                self.bias.assign(self.bias0)

        def call(self, x):
            k, c = self.kernel, self.config_
            if self.kind == "Dense":
                m = ops.maximum(ops.max(ops.abs(k)), 1e-8)
                y = ops.matmul(x, fq(k, -m, m, num_bits=8, narrow_range=True))
            else:
                axis = 2 if self.kind == "DepthwiseConv2D" else 3
                reduce = tuple(i for i in range(4) if i != axis)
                m = ops.maximum(ops.max(ops.abs(k), axis=reduce), 1e-8)
                kq = fq(k, -m, m, num_bits=8, narrow_range=True, axis=axis)
                conv = ops.conv if self.kind == "Conv2D" else ops.depthwise_conv
                y = conv(x, kq, strides=c["strides"], padding=c["padding"], dilation_rate=c["dilation_rate"])
            if self.bias is not None:
                y = y + self.bias
            return self.act(y)

    return ActivationQuant, QuantizedLayer


def _fold_batchnorm(layers: list) -> list[tuple[Any, list[np.ndarray] | None]]:
    """(layer, weights to use or None) with each BatchNormalization folded into the Conv/Dense before it."""
    out: list[tuple[Any, list[np.ndarray] | None]] = []
    for layer in layers:
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            if (
                not out
                or type(out[-1][0]).__name__ not in QUANTIZED
                or (out[-1][0].get_config().get("activation") or "linear") != "linear"
            ):
                raise ConfigError(
                    f"qat: BatchNormalization '{layer.name}' must follow a Conv/Dense layer without "
                    "activation to be folded"
                )
            prev, w = out[-1]
            assert w is not None
            cfg = layer.get_config()
            gamma, beta, mean, var = (
                layer.get_weights() if cfg.get("scale", True) and cfg.get("center", True) else _bn_weights(layer)
            )
            scale = gamma / np.sqrt(var + cfg["epsilon"])
            k = w[0]
            if type(prev).__name__ == "DepthwiseConv2D":
                k = k * scale.reshape(k.shape[2], k.shape[3])[None, None]
            else:
                k = k * scale
            b = w[1] if len(w) > 1 else np.zeros_like(beta)
            out[-1] = (prev, [k, beta + (b - mean) * scale])
        elif kind in QUANTIZED:
            out.append((layer, layer.get_weights()))
        else:
            out.append((layer, None))
    return out


def _bn_weights(layer) -> list[np.ndarray]:
    cfg, w = layer.get_config(), list(layer.get_weights())
    gamma = w.pop(0) if cfg.get("scale", True) else None
    beta = w.pop(0) if cfg.get("center", True) else None
    mean, var = w
    return [np.ones_like(mean) if gamma is None else gamma, np.zeros_like(mean) if beta is None else beta, mean, var]


def qat_model(model, step: QatStep, where: str = "qat"):
    """The fake-quant twin of a chain model, starting from its weights."""
    keras = keras_module()
    ActivationQuant, QuantizedLayer = _layer_classes()
    in_shape, _ = io_shapes(model)
    inp = keras.Input(in_shape[1:], name=model.inputs[0].name.split(":")[0])
    h = ActivationQuant(step.ema_decay, name="qat_input")(inp)
    for layer, weights in _fold_batchnorm(chain_layers(model, where)):
        kind = type(layer).__name__
        if kind in QUANTIZED:
            assert weights is not None
            cfg = layer.get_config()
            h = QuantizedLayer(kind, cfg, weights[0], weights[1] if len(weights) > 1 else None)(h)
            if cfg.get("activation") == "softmax":
                continue  # TFLite's int8 softmax has a fixed output range
            h = ActivationQuant(step.ema_decay, name=f"qat_{layer.name}_out")(h)
        elif kind in PASSTHROUGH:
            h = clone_layer(layer)(h)
        elif kind in ("Activation", "ReLU", "Softmax"):
            h = clone_layer(layer)(h)
            if kind != "Softmax" and getattr(layer, "activation", None) is not keras.activations.softmax:
                h = ActivationQuant(step.ema_decay, name=f"qat_{layer.name}_out")(h)
        else:
            raise ConfigError(f"{where}: layer '{layer.name}' ({kind}) is not supported by QAT")
    return keras.Model(inp, h, name=f"{model.name}_qat")


def train_qat(
    model,
    step: QatStep,
    x,
    y,
    *,
    label: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    validation=None,
    where: str = "qat",
):
    q = qat_model(model, step, where)
    compile_classifier(q, learning_rate)
    logs = fit(q, x, y, label=label, epochs=epochs, batch_size=batch_size, seed=seed, validation=validation)
    return q, logs


def convert_int8(q, representative: np.ndarray, source: str) -> bytes:
    """Full-integer TFLite (int8 inputs and outputs) of a fake-quant model."""
    from harness.models import tf_quiet

    tf_quiet.prepare_env()
    import tensorflow as tf

    samples = representative[:200]
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with tf_quiet.captured(f"QAT conversion of {source}"), contextlib.redirect_stdout(sys.stderr):
            return bytes(conv.convert())
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{source}: int8 conversion of the QAT model failed: {first}") from None
