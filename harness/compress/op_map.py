"""Which channel groups a TFLite operator's time belongs to: profiled ops mapped back to Keras layers.

The converter names an op's output tensor after the Keras ops it was made from, joined by ';' when it
fused several (`model/activation_1/Relu;model/conv2d_1_2/convolution`: a conv with its BatchNorm
folded in and its ReLU fused), but TensorFlow's name scopes append `_1`, `_2`... to make names unique,
so `conv2d_1_2` may be the layer `conv2d_1` or `conv2d_1_2`: layer names cannot be read back reliably.
The model is therefore converted for profiling with every layer renamed to a token that cannot be
mistaken (`hbop<i>`, the i-th layer of the channel graph) and the same weights: the converted model
computes exactly what the original does, and each op's output tensor names the layers it came from.
An op names one or more layers (everything fused into it: BatchNorm, activation); its time goes to
every prunable channel group those layers read or write (a conv's input channels and its filters, a
depthwise conv's channels, an Add's channels). Ops that name no layer (a QUANTIZE at the model input,
a SOFTMAX named after the output) are counted as unattributed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.compress.channels import ChannelGraph
from harness.compress.train import clone_layer, rebuild_graph

TAG = "hbop"
_TAG_RE = re.compile(rf"(?:^|[/;]){TAG}(\d+)(?=[_/;:]|$)")


def tagged(graph: ChannelGraph):
    """The graph's model with every layer renamed `hbop<i>` (i: its position in `graph.first`), weights
    shared by value; a layer that cannot be rebuilt from its configuration keeps its name (its ops stay
    unattributed)."""
    index = {key: i for i, key in enumerate(graph.first)}
    twins: dict[int, Any] = {}

    def make(layer, args, kwargs):
        key = id(layer)
        if key not in twins:
            try:
                twins[key] = clone_layer(layer, name=f"{TAG}{index[key]}")
            except Exception:
                twins[key] = layer
        return twins[key](*args, **kwargs)

    model = rebuild_graph(graph.model, make, name=f"{TAG}model")
    for key, twin in twins.items():
        layer = graph.first[key].layer
        if twin is not layer and layer.weights:
            twin.set_weights(layer.get_weights())
    return model


def layer_tags(names: Iterable[str]) -> list[int]:
    """The `hbop<i>` indices named in tensor names, in order of first appearance."""
    out: list[int] = []
    for name in names:
        for m in _TAG_RE.finditer(name or ""):
            i = int(m.group(1))
            if i not in out:
                out.append(i)
    return out


@dataclass
class OpShare:
    """One profiled op and where its time went."""

    index: int
    type: str
    time: float
    layers: list[str]  # original layer names
    groups: list[int]  # indices into graph.prunable()


@dataclass
class Attribution:
    """Profiled time per prunable group (every op touching the group counts whole: the time at stake
    when that group is narrowed), and the ops behind it."""

    stake: np.ndarray  # per prunable group
    ops: list[OpShare] = field(default_factory=list)
    unattributed: float = 0.0  # time of ops naming no layer
    total: float = 0.0

    def ranked(self) -> list[int]:
        """Prunable groups, most time at stake first (ties: graph order)."""
        return sorted(range(len(self.stake)), key=lambda g: (-self.stake[g], g))


def attribute(graph: ChannelGraph, profile, analysis) -> Attribution:
    """Each op's mean time (`profile`: an OpProfile of the *tagged* model's conversion, `analysis`: that
    .tflite's ModelAnalysis) on the prunable groups of the layers its output tensors name."""
    calls = list(graph.first.values())
    prunable = graph.prunable()
    group_of: dict[int, int] = {}
    for gi, g in enumerate(prunable):
        for c in g.channels:
            group_of[int(c)] = gi
    ops_by_key = {(op.subgraph, op.index): op for op in analysis.operators}
    out = Attribution(np.zeros(len(prunable)))
    for o in profile.ops:
        t = o.mean
        out.total += t
        info = ops_by_key.get((o.subgraph, o.index))
        if info is None or o.delegated:
            out.unattributed += t
            continue
        names = [analysis.tensor(i, info.subgraph).name for i in info.outputs if i >= 0]
        tags = [i for i in layer_tags(names) if i < len(calls)]
        groups: list[int] = []
        for i in tags:
            arrays = [*calls[i].inputs, *calls[i].outputs]
            elements = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
            for root in np.unique(graph.root[elements]).tolist():
                found = group_of.get(int(root))
                if found is not None and found not in groups:
                    groups.append(found)
        if not tags:
            out.unattributed += t
        for gi in groups:
            out.stake[gi] += t
        out.ops.append(OpShare(o.index, o.type, t, [calls[i].layer.name for i in tags], sorted(groups)))
    return out
