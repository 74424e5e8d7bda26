"""Structured (filter/unit) pruning: a narrower dense model, smaller and faster on TFLite and TFLM.

No maintained library removes filters from Keras 3 models (tfmot has no filter pruning and rejects
Keras 3; kerassurgeon fails on Keras 3), so this module rebuilds the model: each Conv2D / Dense layer
except the last keeps its `keep` highest-norm filters (L1 or L2 of the filter's weights), and every
layer after it is sliced to match: the next Conv2D/Dense keeps the matching input channels, a
DepthwiseConv2D and BatchNormalization keep the matching channels, and a Dense after Flatten keeps the
rows of the kept channels at every spatial position. The network's input and output stay as they were.

One keep ratio applies to every pruned layer; it is the largest ratio whose MACs (or parameters)
fall by at least the requested `reduction`, found by bisection on counts computed from the layer shapes
the same way `hil analyze` counts the converted model (conv: output pixels x kernel x in x out, depthwise:
output pixels x kernel x channels, dense: in x out). Models with branches are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.compress.train import chain_layers, clone_layer, io_shapes, keras_module
from harness.errors import ConfigError

PRODUCERS = ("Conv2D", "Dense")
PASSTHROUGH = (
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "ZeroPadding2D",
    "SpatialDropout2D",
    "GaussianNoise",
    "Identity",
)


@dataclass
class _Layer:
    layer: Any
    kind: str
    in_shape: tuple
    out_shape: tuple


def _layers(model, where: str) -> list[_Layer]:
    out = []
    for layer in chain_layers(model, where):
        kind = type(layer).__name__
        if kind not in PRODUCERS + PASSTHROUGH + ("DepthwiseConv2D", "BatchNormalization", "Flatten"):
            if layer.weights:
                raise ConfigError(f"{where}: layer '{layer.name}' ({kind}) is not supported by structured pruning")
            if kind not in ("Reshape", "InputLayer"):
                raise ConfigError(f"{where}: layer '{layer.name}' ({kind}) is not supported by structured pruning")
        out.append(_Layer(layer, kind, tuple(layer.input.shape), tuple(layer.output.shape)))
    return out


def _prunable(layers: list[_Layer]) -> list[int]:
    """Indices of the producers whose outputs may shrink: every Conv2D/Dense but the last weighted layer."""
    weighted = [i for i, ly in enumerate(layers) if ly.kind in PRODUCERS + ("DepthwiseConv2D",)]
    last = weighted[-1] if weighted else -1
    return [i for i in weighted if layers[i].kind in PRODUCERS and i != last]


def _width(ly: _Layer) -> int:
    return int(ly.out_shape[-1])


def plan_counts(layers: list[_Layer], keep: dict[int, int]) -> tuple[int, int]:
    """(MACs, parameters) of the chain when producer i keeps keep[i] outputs (others: all)."""
    macs = params = 0
    frac = 1.0  # kept fraction of the current tensor's channels
    for i, ly in enumerate(layers):
        w = ly.layer.get_weights() if ly.kind in PRODUCERS + ("DepthwiseConv2D", "BatchNormalization") else []
        if ly.kind in PRODUCERS:
            k = w[0]
            cin = k.shape[-2] if ly.kind == "Conv2D" else k.shape[0]
            cout = k.shape[-1]
            out_frac = keep.get(i, cout) / cout
            cin_new = round(cin * frac)
            cout_new = keep.get(i, cout)
            pixels = int(np.prod(ly.out_shape[1:-1])) if ly.kind == "Conv2D" else 1
            kernel = int(np.prod(k.shape[:-2])) if ly.kind == "Conv2D" else 1
            macs += pixels * kernel * cin_new * cout_new
            params += kernel * cin_new * cout_new + (cout_new if len(w) > 1 else 0)
            frac = out_frac
        elif ly.kind == "DepthwiseConv2D":
            k = w[0]
            c_new = round(k.shape[2] * frac)
            pixels = int(np.prod(ly.out_shape[1:-1]))
            kernel = int(np.prod(k.shape[:2]))
            macs += pixels * kernel * c_new * k.shape[3]
            params += kernel * c_new * k.shape[3] + (c_new * k.shape[3] if len(w) > 1 else 0)
        elif ly.kind == "BatchNormalization":
            params += 4 * round(w[0].shape[0] * frac)
    return macs, params


def _filter_order(ly: _Layer, criterion: str) -> np.ndarray:
    k = ly.layer.get_weights()[0]
    flat = k.reshape(-1, k.shape[-1])
    norms = np.abs(flat).sum(axis=0) if criterion == "l1" else np.sqrt((flat**2).sum(axis=0))
    return np.argsort(-norms, kind="stable")  # strongest first


def choose_keep(layers: list[_Layer], reduction: float, target: str) -> tuple[dict[int, int], float]:
    """Keep counts per prunable producer and the achieved reduction (>= `reduction`)."""
    prunable = _prunable(layers)
    if not prunable:
        raise ValueError("no prunable Conv2D/Dense layer before the output layer")
    base = plan_counts(layers, {})[0 if target == "macs" else 1]

    def keep_at(r: float) -> dict[int, int]:
        return {i: max(1, int(round(_width(layers[i]) * r))) for i in prunable}

    def reduction_at(r: float) -> float:
        return 1.0 - plan_counts(layers, keep_at(r))[0 if target == "macs" else 1] / base

    if reduction_at(0.0) < reduction:
        raise ValueError(
            f"cannot remove {reduction:.0%} of the {target}: at most "
            f"{reduction_at(0.0):.0%} with one filter left per layer"
        )
    lo, hi = 0.0, 1.0  # reduction_at(lo) >= reduction > reduction_at(hi)
    for _ in range(40):
        mid = (lo + hi) / 2
        if reduction_at(mid) >= reduction:
            lo = mid
        else:
            hi = mid
    return keep_at(lo), reduction_at(lo)


def prune_filters(
    model,
    reduction: float,
    target: str = "macs",
    criterion: str = "l1",
    where: str = "structured_prune",
    keep_weights: bool = True,
):
    """The narrower model (kept filters' weights copied, or fresh weights with keep_weights=False: a
    width-multiplied student for distillation) and the achieved reduction."""
    layers = _layers(model, where)
    try:
        keep, achieved = choose_keep(layers, reduction, target)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return rebuild(model, layers, keep, criterion, keep_weights), achieved


def width_multiplied(model, width: float, where: str):
    """The teacher's architecture with every prunable layer `width` times as wide, fresh weights."""
    layers = _layers(model, where)
    prunable = _prunable(layers)
    keep = {i: max(1, int(round(_width(layers[i]) * width))) for i in prunable}
    return rebuild(model, layers, keep, "l1", keep_weights=False)


def rebuild(model, layers: list[_Layer], keep: dict[int, int], criterion: str, keep_weights: bool):
    keras = keras_module()
    in_shape, _ = io_shapes(model)
    inp = keras.Input(in_shape[1:], name=model.inputs[0].name.split(":")[0])
    h = inp
    kept: np.ndarray | None = None  # channel indices of the current tensor kept (None: all)
    copies: list[tuple[Any, list[np.ndarray]]] = []
    for i, ly in enumerate(layers):
        layer = ly.layer
        if ly.kind in PRODUCERS:
            w = layer.get_weights()
            k = w[0]
            n_out = k.shape[-1]
            out_idx = np.sort(_filter_order(ly, criterion)[: keep[i]]) if i in keep else np.arange(n_out)
            if ly.kind == "Conv2D":
                k = k if kept is None else k[:, :, kept, :]
                new = clone_layer(layer, filters=len(out_idx))
            else:
                k = k if kept is None else k[kept, :]
                new = clone_layer(layer, units=len(out_idx))
            nw = [k[..., out_idx]] + ([w[1][out_idx]] if len(w) > 1 else [])
            h = new(h)
            copies.append((new, nw))
            kept = out_idx if i in keep else None
        elif ly.kind == "DepthwiseConv2D":
            w = layer.get_weights()
            mult = w[0].shape[3]
            new = clone_layer(layer)
            if kept is not None:
                nw = [w[0][:, :, kept, :]] + ([w[1].reshape(-1, mult)[kept].reshape(-1)] if len(w) > 1 else [])
                kept = (kept[:, None] * mult + np.arange(mult)[None, :]).reshape(-1) if mult > 1 else kept
            else:
                nw = w
            h = new(h)
            copies.append((new, nw))
        elif ly.kind == "BatchNormalization":
            w = layer.get_weights()
            new = clone_layer(layer)
            h = new(h)
            copies.append((new, [a[kept] for a in w] if kept is not None else w))
        elif ly.kind == "Flatten":
            if kept is not None:
                c = int(ly.in_shape[-1])
                positions = int(np.prod(ly.in_shape[1:-1]))
                kept = (np.arange(positions)[:, None] * c + kept[None, :]).reshape(-1)
            h = clone_layer(layer)(h)
        else:
            if ly.kind == "Reshape" and kept is not None:
                raise ConfigError(f"structured_prune: a Reshape ('{layer.name}') after a pruned layer is not supported")
            h = clone_layer(layer)(h)
    out = keras.Model(inp, h, name=model.name)
    if keep_weights:
        for new, nw in copies:
            new.set_weights(nw)
    return out
