"""Rebuild a Keras model with fewer channels: the kept ones of a channel graph, weights sliced.

The topology follows the original node by node (train.rebuild_graph); each layer the channel graph
reasons about becomes a twin with its kept width (filters/units, a Reshape's channel axis) and, when
weights are kept, the slices of its weights that survive: a conv's kernel at the kept input and output
channels, a Dense's rows at the kept input elements (after Flatten: each kept channel at every
position), a depthwise kernel's and a normalisation layer's kept channels. Layers the graph froze are
cloned whole (their channels never change) or, when they cannot be cloned, reused as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.compress.channels import Call, ChannelGraph
from harness.compress.train import clone_layer, rebuild_graph


def narrowed(graph: ChannelGraph, keep: np.ndarray, keep_weights: bool = True, name: str | None = None):
    """The model with only the kept channels (keep: per channel element); fresh weights unless keep_weights."""
    twins: dict[int, Any] = {}

    def make(layer, args, kwargs):
        if id(layer) not in twins:
            twins[id(layer)] = _twin(graph, graph.first[id(layer)], keep)
        return twins[id(layer)](*args, **kwargs)

    model = rebuild_graph(graph.model, make, name=name)
    if keep_weights:
        for key, twin in twins.items():
            call = graph.first[key]
            if twin is not call.layer and call.layer.weights:
                twin.set_weights(_sliced(graph, call, keep))
    return model


def _twin(graph: ChannelGraph, call: Call, keep: np.ndarray):
    layer, role = call.layer, call.role
    out_n = len(graph.kept(call.outputs[0], keep)) if call.outputs else 0
    try:
        if role in ("conv", "transpose", "separable"):
            return clone_layer(layer, filters=out_n)
        if role == "dense":
            return clone_layer(layer, units=out_n)
        if role == "reshape":
            shape = tuple(layer.get_config()["target_shape"])
            return clone_layer(layer, target_shape=shape[:-1] + (out_n,))
        return clone_layer(layer)
    except Exception:
        if role != "frozen":
            raise
        return layer  # a layer that cannot be rebuilt from its config: its channels never change


def _sliced(graph: ChannelGraph, call: Call, keep: np.ndarray) -> list[np.ndarray]:
    w = call.layer.get_weights()
    role = call.role
    if role == "frozen" or role == "pass":
        return w
    i = graph.kept(call.inputs[0], keep)
    o = graph.kept(call.outputs[0], keep)
    if role in ("conv", "dense"):
        return [w[0][..., i, :][..., o]] + [b[o] for b in w[1:]]
    if role == "transpose":  # kernel (..., out, in)
        return [w[0][..., o, :][..., i]] + [b[o] for b in w[1:]]
    if role == "depthwise":
        if int(call.layer.depth_multiplier) != 1:
            return w
        return [w[0][..., i, :]] + [b[i] for b in w[1:]]
    if role == "separable":
        mult = int(call.layer.depth_multiplier)
        if mult != 1:  # inputs frozen: only the pointwise outputs change
            return [w[0], w[1][..., o]] + [b[o] for b in w[2:]]
        return [w[0][..., i, :], w[1][..., i, :][..., o]] + [b[o] for b in w[2:]]
    if role == "norm":
        return [a[o] for a in w]
    return w
