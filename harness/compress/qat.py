"""Quantization-aware training with Keras 3 layers, converted to a full-int8 TFLite model.

`tensorflow-model-optimization` only works through tf-keras and rejects Keras 3 models, so QAT is
built here on `keras.quantizers.fake_quant_with_min_max_vars`, which on the TensorFlow backend is
TensorFlow's FakeQuantWithMinMaxVars(PerChannel) op that the TFLite converter reads as quantization
ranges. Any functional or Sequential model is rebuilt node by node (`train.rebuild_graph`), and the
fake-quant ops sit where the int8 converter puts a quantized tensor of its own, so that what is
trained is what the converted model computes:

- weights: symmetric int8 with a narrow range (-127..127), min/max from the current kernel: per
  output channel for Conv1D, Conv2D and DepthwiseConv2D, per tensor for Dense (TFLite's int8
  FULLY_CONNECTED kernel is per-tensor; a per-channel fake-quant on a Dense kernel fails to convert);
- BatchNormalization whose input comes only from a Conv/Dense without activation is folded into its
  kernel and bias (as the converter folds it); any other BatchNormalization is kept, frozen (it
  becomes MUL/ADD in the converted model), its output quantized;
- activations: a range kept as a running (exponential moving average) min/max of the training
  batches, used as-is at inference, on the input and on the output of every op that rescales (Conv,
  Dense, Add, Concatenate, Multiply, global average pooling, a kept BatchNormalization, activations,
  anything unknown). An op whose only consumer is a ReLU/ReLU6 is quantized after that activation,
  which the converter fuses into it. Ops that keep their input's scale in int8 TFLite (max/average
  pooling, padding, reshapes, upsampling, dropout) get no range of their own, nor do softmax,
  sigmoid and tanh, whose int8 output range is fixed.

After `epochs` of fine-tuning the model is converted with int8 inputs and outputs; the representative
data only fills ranges the fake-quant ops do not give (a kept BatchNormalization's intermediate).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.compress.recipes import QatStep
from harness.compress.train import (
    clone_layer,
    compile_classifier,
    fit,
    graph_nodes,
    graph_outputs,
    io_shapes,
    keras_module,
    rebuild_graph,
)
from harness.errors import ModelError

KERNEL = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")
# int8 TFLite ops that keep their input's scale (no range of their own)
SAME_SCALE = (
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Reshape",
    "Permute",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "Cropping1D",
    "Cropping2D",
    "UpSampling1D",
    "UpSampling2D",
    "Identity",
)
FUSED = ("relu", "relu6")  # activations the converter fuses into the op before them
FIXED = ("softmax", "sigmoid", "tanh")  # int8 output range fixed by TFLite


def activation_name(layer) -> str | None:
    """The activation a layer applies ('linear' for none), or None when it is not an activation layer."""
    kind = type(layer).__name__
    if kind == "Softmax":
        return "softmax"
    if kind == "ReLU":
        cfg = layer.get_config()
        if cfg.get("negative_slope") or cfg.get("threshold"):
            return "leaky"
        mv = cfg.get("max_value")
        return "relu" if mv is None else "relu6" if float(mv) == 6.0 else "relu_n"
    if kind == "Activation" or kind in KERNEL:
        act = getattr(layer, "activation", None)
        return getattr(act, "__name__", "other") if act is not None else "linear"
    return None


@dataclass
class _Plan:
    """What the QAT twin does at one call node of the original graph."""

    role: str  # kernel | folded | batchnorm | activation | same | other
    quantize_out: bool = False
    batchnorm: Any = None  # the BatchNormalization folded into this kernel node


def _plan(model) -> tuple[list, dict[int, _Plan]]:
    nodes = graph_nodes(model)
    outputs = {id(t) for t in graph_outputs(model)}
    consumers: dict[int, list] = {}
    for node in nodes:
        for t in {id(t): t for t in node.input_tensors}.values():
            consumers.setdefault(id(t), []).append(node)

    def sole_consumer(t):
        users = consumers.get(id(t), [])
        return users[0] if len(users) == 1 and id(t) not in outputs else None

    def fused_next(t) -> bool:
        """Whether the converter fuses the tensor's only consumer (a ReLU/ReLU6) into its producer."""
        user = sole_consumer(t)
        return (
            user is not None
            and type(user.operation).__name__ not in KERNEL
            and activation_name(user.operation) in FUSED
        )

    plans: dict[int, _Plan] = {}
    for node in nodes:
        if id(node) in plans:
            continue
        layer = node.operation
        kind = type(layer).__name__
        outs = node.output_tensors
        out = outs[0] if len(outs) == 1 else None
        if kind in KERNEL and _kernel_supported(layer):
            act = activation_name(layer)
            plan = _Plan("kernel")
            user = sole_consumer(out) if out is not None and act == "linear" else None
            if user is not None and out is not None and _foldable(user.operation, len(out.shape)):
                plan.batchnorm = user.operation
                plans[id(user)] = _Plan("folded")
                out = user.output_tensors[0]
            if act in FUSED:
                plan.quantize_out = True
            elif act == "linear":
                plan.quantize_out = not fused_next(out)
            else:  # an activation of its own: quantized before it (preact) and after it unless fixed
                plan.quantize_out = act not in FIXED
            plans[id(node)] = plan
        elif kind == "BatchNormalization":
            plans[id(node)] = _Plan("batchnorm", quantize_out=out is not None and not fused_next(out))
        elif activation_name(layer) is not None:
            act = activation_name(layer)
            plans[id(node)] = _Plan("activation", quantize_out=act not in FIXED and act != "linear")
        elif kind in SAME_SCALE:
            plans[id(node)] = _Plan("same")
        else:  # Add, Concatenate, Multiply, pooling to a mean, Rescaling, anything unknown
            plans[id(node)] = _Plan("other", quantize_out=out is not None and not fused_next(out))
    return nodes, plans


def _kernel_supported(layer) -> bool:
    cfg = layer.get_config()
    return cfg.get("data_format", "channels_last") == "channels_last" and int(cfg.get("groups", 1)) == 1


def _foldable(bn, rank: int) -> bool:
    if type(bn).__name__ != "BatchNormalization":
        return False
    axis = bn.get_config().get("axis", -1)
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis in (-1, rank - 1)


def _fold(layer, kernel: np.ndarray, bias: np.ndarray | None, bn) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of a Conv/Dense with the (inference-mode) BatchNormalization after it folded in,
    the arithmetic the converter applies."""
    gamma, beta, mean, var = _bn_weights(bn)
    scale = gamma / np.sqrt(var + bn.get_config()["epsilon"])
    if type(layer).__name__ == "DepthwiseConv2D":
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])[None, None]
    else:
        kernel = kernel * scale
    b = bias if bias is not None else np.zeros_like(beta)
    return kernel, beta + (b - mean) * scale


def _bn_weights(layer) -> list[np.ndarray]:
    cfg, w = layer.get_config(), list(layer.get_weights())
    gamma = w.pop(0) if cfg.get("scale", True) else None
    beta = w.pop(0) if cfg.get("center", True) else None
    mean, var = w
    return [np.ones_like(mean) if gamma is None else gamma, np.zeros_like(mean) if beta is None else beta, mean, var]


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
                # the range follows the data; no gradient flows through the batch's extremes
                lo = ops.stop_gradient(ops.minimum(ops.min(x), 0.0))
                hi = ops.stop_gradient(ops.maximum(ops.max(x), 0.0))
                first = ops.equal(self.seen, 0.0)
                lo = ops.where(first, lo, self.decay * self.range_min + (1.0 - self.decay) * lo)
                hi = ops.where(first, hi, self.decay * self.range_max + (1.0 - self.decay) * hi)
                self.range_min.assign(lo)
                self.range_max.assign(hi)
                self.seen.assign(1.0)
                return fq(x, lo, hi, num_bits=8)
            return fq(x, self.range_min, self.range_max, num_bits=8)

    class QuantizedLayer(keras.layers.Layer):
        """A Conv1D / Conv2D / DepthwiseConv2D / Dense whose kernel is fake-quantised on every call;
        `activation` is none or one the converter fuses (relu, relu6)."""

        def __init__(self, kind: str, config: dict, kernel: np.ndarray, bias: np.ndarray | None, activation, **kw):
            super().__init__(**kw)
            self.kind, self.config_ = kind, config
            self.kernel0, self.bias0 = kernel, bias
            self.activation = keras.activations.get(activation)

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=self.kernel0.shape, initializer="zeros", name="kernel")
            self.kernel.assign(self.kernel0)
            self.bias = None
            if self.bias0 is not None:
                self.bias = self.add_weight(shape=self.bias0.shape, initializer="zeros", name="bias")
                self.bias.assign(self.bias0)

        def _per_channel(self, k, axis: int):
            reduce = tuple(i for i in range(len(k.shape)) if i != axis)
            m = ops.maximum(ops.max(ops.abs(k), axis=reduce), 1e-8)
            return fq(k, -m, m, num_bits=8, narrow_range=True, axis=axis)

        def _per_tensor(self, k):
            m = ops.maximum(ops.max(ops.abs(k)), 1e-8)
            return fq(k, -m, m, num_bits=8, narrow_range=True)

        def call(self, x):
            k, c = self.kernel, self.config_
            if self.kind == "Dense":
                y = ops.matmul(x, self._per_tensor(k))
            elif self.kind == "Conv1D":
                # the converter runs Conv1D as CONV_2D on (n, 1, t, c): quantize that 4-D kernel
                kq = self._per_channel(ops.expand_dims(k, 0), 3)
                (s,), (d,), padding = c["strides"], c["dilation_rate"], c["padding"]
                if padding == "causal":
                    x = ops.pad(x, [[0, 0], [d * (int(k.shape[0]) - 1), 0], [0, 0]])
                    padding = "valid"
                y = ops.conv(ops.expand_dims(x, 1), kq, strides=(1, s), padding=padding, dilation_rate=(1, d))
                y = ops.squeeze(y, 1)
            elif self.kind == "Conv2D":
                kq = self._per_channel(k, 3)
                y = ops.conv(x, kq, strides=c["strides"], padding=c["padding"], dilation_rate=c["dilation_rate"])
            else:  # DepthwiseConv2D: one channel per input channel unless a depth multiplier spreads them
                kq = self._per_channel(k, 2) if int(k.shape[3]) == 1 else self._per_tensor(k)
                y = ops.depthwise_conv(
                    x, kq, strides=c["strides"], padding=c["padding"], dilation_rate=c["dilation_rate"]
                )
            if self.bias is not None:
                y = y + self.bias
            return self.activation(y)

    return ActivationQuant, QuantizedLayer


def qat_model(model, step: QatStep, where: str = "qat"):
    """The fake-quant twin of a functional or Sequential model (any DAG), starting from its weights."""
    keras = keras_module()
    from keras import tree

    ActivationQuant, QuantizedLayer = _layer_classes()
    io_shapes(model)
    nodes, plans = _plan(model)
    order = iter(nodes)
    inputs_q: dict[int, Any] = {}

    def quantized_input(t):
        history = getattr(t, "_keras_history", None)
        if history is None or type(history[0]).__name__ != "InputLayer":
            return t
        if id(t) not in inputs_q:
            name = "qat_input" if not inputs_q else f"qat_input_{len(inputs_q)}"
            inputs_q[id(t)] = (t, ActivationQuant(step.ema_decay, name=name)(t))
        return inputs_q[id(t)][1]

    twins: dict[tuple, Any] = {}  # a layer called more than once keeps one twin (weights shared)
    calls: Counter = Counter()

    def twin_of(key: tuple, build):
        if key not in twins:
            twins[key] = build()
        return twins[key]

    def make(layer, args: tuple, kwargs: dict):
        node = next(order)
        if node.operation is not layer:  # pragma: no cover - rebuild_graph walks graph_nodes' order
            raise ModelError(f"{where}: model '{model.name}': graph walk out of order at '{layer.name}'")
        plan = plans[id(node)]
        args, kwargs = tree.map_structure(quantized_input, (args, kwargs))
        if plan.role == "folded":
            return args[0]
        kind = type(layer).__name__
        calls[layer.name] += 1
        name = layer.name if calls[layer.name] == 1 else f"{layer.name}_call{calls[layer.name]}"
        if plan.role == "kernel":
            act = activation_name(layer) or "linear"
            cfg = layer.get_config()
            fused = act if act in FUSED else "linear"

            def build():
                w = layer.get_weights()
                kernel, bias = w[0], (w[1] if len(w) > 1 else None)
                if plan.batchnorm is not None:
                    kernel, bias = _fold(layer, kernel, bias, plan.batchnorm)
                n = sum(1 for key in twins if key[0] == id(layer))  # folded with another BN elsewhere
                return QuantizedLayer(kind, cfg, kernel, bias, fused, name=f"qat_{layer.name}" + (f"_{n}" if n else ""))

            y = twin_of((id(layer), id(plan.batchnorm)), build)(args[0])
            if fused != act:  # the converter keeps this activation as an op of its own
                y = ActivationQuant(step.ema_decay, name=f"qat_{name}_preact")(y)
                y = keras.layers.Activation(cfg["activation"], name=f"qat_{name}_act")(y)
        elif getattr(layer, "weights", None):  # a kept BatchNormalization (frozen: MUL/ADD once converted), or unknown
            twin = twin_of((id(layer),), lambda: clone_layer(layer))
            fresh = not twin.built
            y = twin(*args, **kwargs)
            if fresh:
                twin.set_weights(layer.get_weights())
                twin.trainable = plan.role != "batchnorm"
        else:
            y = layer(*args, **kwargs)
        if plan.quantize_out:
            y = ActivationQuant(step.ema_decay, name=f"qat_{name}_out")(y)
        return y

    q = rebuild_graph(model, make, name=f"{model.name}_qat")
    if not inputs_q:  # pragma: no cover - a model whose input feeds nothing
        raise ModelError(f"{where}: model '{model.name}': its input feeds no layer")
    return q


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
    loss: Any = None,
):
    """Fine-tunes the QAT twin; `loss` defaults to classification (the sweep's tasks)."""
    q = qat_model(model, step, where)
    compile_classifier(q, learning_rate, loss=loss, metrics=None if loss is None else [])
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
