"""Channel dependency graph of a Keras 3 model: which channels of which layers must go together.

Removing filter j of a Conv2D also removes input channel j of every layer that reads it, the j-th
BatchNormalization parameters after it and, through an Add, filter j of the conv on the other side.
Torch-Pruning's DepGraph ("Towards Any Structural Pruning", CVPR 2023) made this a graph problem;
this module is the same idea written for Keras graphs: every channel of every tensor (channels last)
is an element of a union-find, producers (Conv/Dense/...) create fresh elements for their outputs,
shape-keeping layers pass their input's elements on, Add/Multiply/... unite their inputs' elements one
by one, Concatenate lays its inputs' elements side by side, Flatten repeats them once per position (the
rows of the next Dense that each channel feeds). A *channel* is a set of united elements: removing it
removes every element in it. A *group* is the channels the same producers create, pruned with one keep
ratio and ranked by importance summed over every layer they touch.

What the graph cannot reason about (Lambda, custom layers, attention, reshapes that move the channel
axis, grouped convolutions, depth multipliers > 1) freezes the channels it touches: their groups stay
whole and are reported by name; the rest of the model is still pruned. The model's inputs and outputs
are frozen too (an output's classes are never pruned).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.compress.train import graph_inputs, graph_nodes, graph_outputs

# layers whose output has their input's channels, in order, and no weights tied to them
PASS = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Identity",
    "ActivityRegularization",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
}
ELEMENTWISE = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
NORM = {"BatchNormalization", "LayerNormalization"}
CONV = {"Conv1D", "Conv2D", "Conv3D"}
TRANSPOSE = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}
# roles of a layer in the graph
PRODUCER_ROLES = ("conv", "dense", "transpose", "separable")


@dataclass
class Call:
    """One call of a layer: its role and the channel elements of its inputs and outputs."""

    layer: Any
    role: str  # conv | dense | transpose | separable | depthwise | norm | pass | merge | flatten | reshape | frozen
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    in_shapes: list[tuple]
    out_shapes: list[tuple]


@dataclass
class Group:
    """Channels created by the same producers: pruned together with one keep ratio."""

    channels: list[int]  # channel ids (element roots)
    producers: list[str]  # layer names whose output filters these are
    frozen: list[str] = field(default_factory=list)  # why it cannot be pruned (empty: prunable)


class ChannelGraph:
    """The channel elements of every tensor of a model, their unions (channels) and groups."""

    def __init__(self, model) -> None:
        self.model = model
        self._parent: list[int] = []
        self._reasons: dict[int, list[str]] = {}
        self.calls: list[Call] = []
        self.first: dict[int, Call] = {}  # id(layer) -> its first call (whose weights are sliced)
        self._tensors: dict[int, np.ndarray] = {}
        self._produced: dict[int, np.ndarray] = {}  # id(layer) -> output elements (shared layers)
        self._trace()
        self.root = np.array([self._find(i) for i in range(len(self._parent))], dtype=np.int64)
        self.groups = self._group()

    # ------------------------------------------------------------------ union-find
    def _fresh(self, n: int) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def _find(self, i: int) -> int:
        p = self._parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def _unite(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self._find(x), self._find(y)
            if rx != ry:
                self._parent[max(rx, ry)] = min(rx, ry)

    def _freeze(self, arrs: Iterable[np.ndarray], reason: str) -> None:
        for a in arrs:
            for e in a.tolist():
                why = self._reasons.setdefault(e, [])
                if reason not in why:
                    why.append(reason)

    # ------------------------------------------------------------------ tracing
    @staticmethod
    def _channels(t) -> int:
        shape = tuple(t.shape)
        return int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 0

    def _produce(self, layer, n: int) -> np.ndarray:
        """A layer's output elements, the same for every call of a shared layer (one set of filters)."""
        if id(layer) not in self._produced:
            self._produced[id(layer)] = self._fresh(n)
        return self._produced[id(layer)]

    def _elements(self, t) -> np.ndarray:
        if id(t) not in self._tensors:  # a tensor the graph did not produce (a constant): frozen
            arr = self._fresh(self._channels(t))
            self._freeze([arr], "a tensor from outside the graph")
            self._tensors[id(t)] = arr
        return self._tensors[id(t)]

    def _trace(self) -> None:
        from keras import tree

        for t in graph_inputs(self.model):
            arr = self._fresh(self._channels(t))
            self._freeze([arr], "model input")
            self._tensors[id(t)] = arr
        for node in graph_nodes(self.model):
            layer = node.operation
            ins_t = list(node.input_tensors)
            outs_t = list(tree.flatten(node.outputs))
            ins = [self._elements(t) for t in ins_t]
            role, outs = self._propagate(layer, ins, ins_t, outs_t)
            for t, arr in zip(outs_t, outs):
                self._tensors[id(t)] = arr
            call = Call(layer, role, ins, outs, [tuple(t.shape) for t in ins_t], [tuple(t.shape) for t in outs_t])
            self.calls.append(call)
            self.first.setdefault(id(layer), call)
        for t in graph_outputs(self.model):
            self._freeze([self._elements(t)], "model output")

    def _propagate(self, layer, ins: list[np.ndarray], ins_t: list, outs_t: list) -> tuple[str, list[np.ndarray]]:
        """The layer's role and its outputs' elements; unites and freezes on the way."""
        kind = type(layer).__name__
        cfg = _config(layer)
        n_out = [self._channels(t) for t in outs_t]
        channels_last = cfg.get("data_format", "channels_last") in (None, "channels_last")
        one = len(ins) == 1 and len(outs_t) == 1
        merge = kind in ELEMENTWISE or kind == "Concatenate"
        role = _role(kind, cfg, ins_t, outs_t) if (one or merge) and ins and _is_layer(layer) else "frozen"
        if not channels_last:
            role = "frozen"
        shared = self.first.get(id(layer))
        if shared is not None and role in ("conv", "dense", "transpose", "separable", "depthwise", "norm"):
            self._unite(shared.inputs[0], ins[0])  # one set of weights: every call prunes alike
        if role in PRODUCER_ROLES or (role == "pass" and kind == "Activation"):
            if cfg.get("activation") in ("softmax", "log_softmax"):  # each output depends on all channels
                reason = f"layer '{layer.name}' ({kind}, {cfg['activation']} over the channels)"
                out = self._produce(layer, n_out[0])
                self._freeze([out] if role in PRODUCER_ROLES else [ins[0], out], reason)
                return "frozen" if role == "pass" else role, [out]
        if role in PRODUCER_ROLES:
            if role == "separable" and int(cfg.get("depth_multiplier", 1)) != 1:
                self._freeze(ins, f"layer '{layer.name}' ({kind}, depth_multiplier {cfg['depth_multiplier']})")
            return role, [self._produce(layer, n_out[0])]
        if role in ("pass", "norm"):
            return role, [ins[0]]
        if role == "depthwise":
            if int(cfg.get("depth_multiplier", 1)) == 1:
                return role, [ins[0]]
            reason = f"layer '{layer.name}' ({kind}, depth_multiplier {cfg['depth_multiplier']})"
            out = self._produce(layer, n_out[0])
            self._freeze([ins[0], out], reason)
            return role, [out]
        if role == "merge":
            if kind == "Concatenate" and _axis_is_last(cfg.get("axis", -1), len(outs_t[0].shape)):
                return role, [np.concatenate(ins)]
            if all(len(a) == len(ins[0]) for a in ins):
                for a in ins[1:]:
                    self._unite(ins[0], a)
                return role, [ins[0]]
        if role == "flatten":  # position-major: element p * C + c is channel c at position p
            positions = int(np.prod([int(d) for d in tuple(ins_t[0].shape)[1:-1]]))
            return role, [np.tile(ins[0], positions)]
        if role == "reshape":
            if n_out[0] == len(ins[0]):
                return role, [ins[0]]
            return role, [np.tile(ins[0], n_out[0] // max(len(ins[0]), 1))]
        # anything else: its inputs and outputs are frozen
        reason = f"layer '{getattr(layer, 'name', kind)}' ({kind})"
        self._freeze(ins, reason)
        outs = [self._fresh(n) for n in n_out]
        self._freeze(outs, reason)
        return "frozen", outs

    # ------------------------------------------------------------------ groups
    def _group(self) -> list[Group]:
        """Channels made by one producer belong to one group; groups that share a channel merge."""
        parent: dict[int, int] = {}

        def find(c: int) -> int:
            parent.setdefault(c, c)
            while parent[c] != c:
                parent[c] = parent[parent[c]]
                c = parent[c]
            return c

        producers: dict[int, list[str]] = {}
        for call in self.calls:
            if call.role in PRODUCER_ROLES and call is self.first[id(call.layer)]:
                chans = np.unique(self.root[call.outputs[0]]).tolist()
                for c in chans[1:]:
                    a, b = find(chans[0]), find(c)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                if chans:
                    producers.setdefault(chans[0], []).append(call.layer.name)
        members: dict[int, list[int]] = {}
        for c in np.unique(self.root).tolist():
            members.setdefault(find(c), []).append(c)
        names: dict[int, list[str]] = {}
        for c, ns in producers.items():
            names.setdefault(find(c), []).extend(ns)
        reasons: dict[int, list[str]] = {}
        for e, whys in self._reasons.items():
            g = find(int(self.root[e]))
            for why in whys:
                if why not in reasons.setdefault(g, []):
                    reasons[g].append(why)
        out = []
        for g, chans in sorted(members.items()):
            frozen = reasons.get(g, [])
            if g not in names and not frozen:
                frozen = ["no layer produces these channels"]
            out.append(Group(chans, names.get(g, []), frozen))
        return out

    def prunable(self) -> list[Group]:
        return [g for g in self.groups if not g.frozen and len(g.channels) > 1]

    def frozen_report(self) -> list[str]:
        """One line per frozen group that a producer makes, with why (the model's outputs are frozen
        anyway: not reported)."""
        lines = []
        for g in self.groups:
            if g.frozen and g.producers and "model output" not in g.frozen:
                why = [r for r in g.frozen if r != "model input"]
                if why:
                    lines.append(f"{', '.join(g.producers)} ({len(g.channels)} channels): {'; '.join(why)}")
        return lines

    def kept(self, arr: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Indices along a tensor's channel axis that survive (keep: per element id, by channel)."""
        return np.nonzero(keep[self.root[arr]])[0]

    def all_kept(self) -> np.ndarray:
        return np.ones(len(self.root), dtype=bool)

    def counts(self, keep: np.ndarray) -> tuple[int, int]:
        """(MACs, parameters) of the model with only the kept channels, counted the way `hil analyze`
        counts the converted model: conv output pixels x kernel x in x out, depthwise output pixels x
        kernel x channels, transposed conv input pixels x kernel x in x out, dense output rows x in x
        out; a separable conv is a depthwise and a 1x1 conv. Parameters: weights and biases once per
        layer, 2 per normalised channel (BatchNormalization folds into a scale and an offset)."""
        kept = keep[self.root]
        macs = params = 0
        seen: set[int] = set()
        for call in self.calls:
            layer, role = call.layer, call.role
            first = id(layer) not in seen
            seen.add(id(layer))

            def n(arr: np.ndarray) -> int:
                return int(kept[arr].sum())

            pixels = int(np.prod(call.out_shapes[0][1:-1])) if call.out_shapes and call.out_shapes[0] else 1
            cfg_bias = bool(getattr(layer, "use_bias", False))
            if role in ("conv", "transpose", "separable", "depthwise"):
                k = int(np.prod(layer.kernel_size))
                cin, cout = n(call.inputs[0]), n(call.outputs[0])
                if role == "conv":
                    m, p = pixels * k * cin * cout, k * cin * cout + (cout if cfg_bias else 0)
                elif role == "transpose":
                    in_pixels = int(np.prod(call.in_shapes[0][1:-1]))
                    m, p = in_pixels * k * cin * cout, k * cin * cout + (cout if cfg_bias else 0)
                elif role == "depthwise":
                    mult = int(layer.depth_multiplier)
                    m, p = pixels * k * cin * mult, k * cin * mult + (cin * mult if cfg_bias else 0)
                else:
                    mid = cin * int(layer.depth_multiplier)
                    m = pixels * k * mid + pixels * mid * cout
                    p = k * mid + mid * cout + (cout if cfg_bias else 0)
            elif role == "dense":
                cin, cout = n(call.inputs[0]), n(call.outputs[0])
                m, p = pixels * cin * cout, cin * cout + (cout if cfg_bias else 0)
            elif role == "norm":
                m, p = 0, 2 * n(call.outputs[0])
            elif role == "frozen":
                m = _frozen_macs(layer, call)
                p = sum(int(np.prod(w.shape)) for w in getattr(layer, "weights", []))
            else:
                m, p = 0, 0
            macs += m
            params += p if first else 0
        return macs, params


def _frozen_macs(layer, call: Call) -> int:
    """MACs of a layer left whole: a grouped convolution (its kernel holds in/groups inputs) or a Dense
    or conv the graph froze; 0 for anything else (counted the same before and after pruning)."""
    kind = type(layer).__name__
    if not call.out_shapes or not call.out_shapes[0] or None in call.out_shapes[0][1:]:
        return 0
    pixels = int(np.prod(call.out_shapes[0][1:-1]))
    if kind in CONV | {"Dense"} and getattr(layer, "kernel", None) is not None:
        shape = tuple(layer.kernel.shape)
        return pixels * int(np.prod(shape[:-1])) * int(call.out_shapes[0][-1])
    return 0


def _is_layer(op) -> bool:
    """Keras layers only: a bare keras.ops call (also named Add, ...) is not reasoned about."""
    import keras

    return isinstance(op, keras.layers.Layer)


def _config(layer) -> dict:
    try:
        return dict(layer.get_config())
    except Exception:
        return {}


def _axis_is_last(axis, rank: int) -> bool:
    return axis == -1 or axis == rank - 1


def _role(kind: str, cfg: dict, ins_t: list, outs_t: list) -> str:
    in_shape, out_shape = tuple(ins_t[0].shape), tuple(outs_t[0].shape)
    if kind in PASS:
        return "pass"
    if kind in ELEMENTWISE or kind == "Concatenate":
        return "merge"
    if kind in CONV:
        return "conv" if int(cfg.get("groups", 1)) == 1 else "frozen"
    if kind in TRANSPOSE:
        return "transpose"
    if kind == "Dense":
        return "dense"
    if kind in DEPTHWISE:
        return "depthwise"
    if kind in SEPARABLE:
        return "separable"
    if kind in NORM:
        axis = cfg.get("axis", -1)
        axes = axis if isinstance(axis, list | tuple) else [axis]
        return "norm" if len(axes) == 1 and _axis_is_last(axes[0], len(in_shape)) else "frozen"
    if kind == "Flatten":
        return "flatten" if len(in_shape) >= 3 else "pass"
    if kind == "Reshape" and None not in in_shape[1:] and None not in out_shape[1:]:
        if len(out_shape) >= 3 and out_shape[-1] == in_shape[-1]:
            return "reshape"  # positions regrouped, each keeps its channel vector
        if len(out_shape) == 2 and len(in_shape) >= 3:
            return "reshape"  # flattened: like Flatten
    return "frozen"
