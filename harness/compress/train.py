"""Keras 3 plumbing shared by the training steps: loading, seeded fitting with a progress bar, I/O shapes.

Training runs on the CPU, or on a GPU when TensorFlow sees one (nothing to configure). Seeds: every
fit starts with `keras.utils.set_random_seed(seed)` (Python, NumPy and TensorFlow generators), so a
step with the same inputs trains the same way; the lineage ID (lineage.py) never depends on that.
Keras prints its own progress on stdout, which is for results here: epochs are shown as a bar on
stderr (harness/progress.py) and logged at debug level instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import progress
from harness.errors import ConfigError, ModelError, NotApplicable
from harness.models import tf_quiet

_log = logging.getLogger(__name__)


def keras_module():
    tf_quiet.prepare_env()
    import keras

    return keras


def load_model(path: Path, where: str = ""):
    keras = keras_module()
    try:  # often TensorFlow's first work in a process: its device set-up (cuInit errors) is chatter
        with tf_quiet.captured(f"loading {path}"):
            return keras.models.load_model(path, compile=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        prefix = f"{where}: " if where else ""
        raise ModelError(f"{prefix}{path}: cannot load Keras model ({exc.__class__.__name__}: {first})") from None


def io_shapes(model) -> tuple[tuple, tuple]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotApplicable(
            f"model '{model.name}': compression steps support one input and one output "
            f"(it has {len(model.inputs)} and {len(model.outputs)})"
        )
    return tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)


def classes_of(model) -> int:
    out = io_shapes(model)[1]
    return int(np.prod([d for d in out[1:] if d is not None]))


def outputs_probabilities(model) -> bool:
    """Whether the model ends in a softmax (its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", "") if act is not None else ""
    return name == "softmax" or type(last).__name__ == "Softmax"


class _EpochBar:
    """Keras callback: one progress bar advance and one debug log line per epoch."""

    def __init__(self, label: str, bar: progress.Bar):
        keras = keras_module()

        base: Any = keras.callbacks.Callback

        class Callback(base):
            def on_epoch_end(cb, epoch: int, logs: dict[str, Any] | None = None) -> None:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
                _log.debug("%s: epoch %d: %s", label, epoch + 1, shown)
                bar.advance()

        self.callback = Callback()


def fit(
    model,
    x: np.ndarray,
    y: Any,
    *,
    label: str,
    epochs: int,
    batch_size: int,
    seed: int,
    validation: tuple | None = None,
    callbacks: list | None = None,
    shuffle: bool = True,
) -> dict:
    """model.fit with a seed and an epoch bar; returns the last epoch's logs."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    with progress.task(f"training {label}", epochs) as bar, tf_quiet.captured(f"training {label}"):
        hist = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            shuffle=shuffle,
            validation_data=validation,
            callbacks=[_EpochBar(label, bar).callback, *(callbacks or [])],
        )
    return {k: float(v[-1]) for k, v in hist.history.items()}


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with tf_quiet.captured(f"predictions of {model.name}"):
        pred = model.predict(x, verbose=0, batch_size=256)
    return float((np.asarray(pred).reshape(len(x), -1).argmax(axis=1) == y).mean())


def compile_classifier(model, learning_rate: float, loss: Any = None, metrics: list | None = None) -> None:
    keras = keras_module()
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=metrics if metrics is not None else ["accuracy"],
    )


def save_model(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


def chain_layers(model, where: str) -> list:
    """The layers of a model that is one chain (Sequential, or functional without branches), input
    layer excluded; structured pruning and QAT rebuild such models layer by layer."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if type(model).__name__ == "Sequential":
        return layers
    for layer in layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        inbound = nodes[0].input_tensors if nodes else []
        if len(inbound) != 1:
            raise ConfigError(
                f"{where}: model '{model.name}' has a layer with {len(inbound)} inputs "
                f"('{layer.name}'); only chains of layers (no branches) are supported"
            )
    return layers


def rebuild_chain(model, make: Callable[[Any, Any], Any], input_shape: tuple | None = None):
    """A functional model of the same chain, each layer replaced by `make(layer, tensor) -> tensor`."""
    keras = keras_module()
    shape = input_shape or io_shapes(model)[0]
    inp = keras.Input(shape[1:], name=model.inputs[0].name.split(":")[0] if model.inputs else None)
    h = inp
    for layer in chain_layers(model, model.name):
        h = make(layer, h)
    return keras.Model(inp, h, name=model.name)


def _functional(model) -> Any:
    """The functional graph of a model (a built Sequential keeps one inside)."""
    functional = getattr(model, "_functional", None) if type(model).__name__ == "Sequential" else model
    if functional is None or not hasattr(functional, "_nodes_by_depth"):
        raise ModelError(f"model '{model.name}': not a functional or built Sequential Keras model")
    return functional


def graph_nodes(model) -> list:
    """The call nodes of a functional or Sequential model in an order where every node comes after the
    nodes that produce its inputs (input layers excluded). Keras keeps this order per depth; a shared
    layer appears once per call."""
    by_depth = _functional(model)._nodes_by_depth
    return [
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if type(node.operation).__name__ != "InputLayer"
    ]


def graph_inputs(model) -> list:
    return list(_functional(model).inputs)


def graph_outputs(model) -> list:
    return list(_functional(model).outputs)


def rebuild_graph(model, make: Callable[[Any, tuple, dict], Any] | None = None, name: str | None = None):
    """A functional model with the same topology as `model` (any DAG: branches, Add, Concatenate,
    shared layers), each call node replaced by `make(layer, args, kwargs) -> output tensor(s)`, where
    args/kwargs are the node's call arguments with its input tensors replaced by the new ones.

    The default `make` calls the original layer (weights shared). The structural steps pass a `make`
    that builds a narrower or fake-quantized twin and copies weights; the topology always follows the
    original, so nothing is limited to chains.
    """
    keras = keras_module()
    from keras import tree

    make = make or (lambda layer, args, kwargs: layer(*args, **kwargs))
    new: dict[int, Any] = {}
    inputs = []
    for old in graph_inputs(model):
        inp = keras.Input(
            tuple(old.shape[1:]), batch_size=None, dtype=old.dtype, name=getattr(old, "name", None) or None
        )
        new[id(old)] = inp
        inputs.append(inp)
    for node in graph_nodes(model):
        args, kwargs = node.arguments.fill_in(new)
        out = make(node.operation, tuple(args), dict(kwargs))
        for o_old, o_new in zip(tree.flatten(node.outputs), tree.flatten(out)):
            new[id(o_old)] = o_new
    outputs = [new[id(t)] for t in graph_outputs(model)]
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=name or model.name
    )


def clone_layer(layer, **overrides):
    """A fresh layer of the same class and configuration (weights not copied)."""
    cfg = layer.get_config()
    cfg.update(overrides)
    return type(layer).from_config(cfg)
