"""Depth multiplier for distillation students: the teacher's graph with its later repeatable blocks dropped.

A *block* is a part of the graph that can go without changing any other layer's shapes:

- a **residual block**: the layers between a tensor `s` and a tensor `y` of the same shape where `s`
  also feeds an `Add(s, y)` (ResNet basic blocks, MobileNetV2 inverted residuals); the layers between
  them are used by nothing else. Dropping it replaces the Add's output by `s` (the identity the
  shortcut already carries);
- a **chain segment**: a run of single-input, single-consumer layers, starting at a weighted layer,
  whose output shape equals its input's (a 'same' conv with as many filters as inputs, a stride-1
  depthwise conv, a Dense of equal width, each with the normalisation/activation layers after it).
  Dropping it connects its input to what consumed its output. The first and the last weighted layer
  of the model (stem and classifier) are never part of one.

Blocks are found in topological order, residual blocks first (a chain segment inside a residual branch
belongs to that residual block). `depth` keeps the first `floor(depth x blocks)` of them and drops the
rest, as the depth multipliers of MobileNet-style families drop the later repeats. Works on any
functional or Sequential Keras graph (branches, Concatenate, shared layers are left as they are);
layers shared between several calls are never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.compress.train import clone_layer, graph_inputs, graph_nodes, graph_outputs, keras_module
from harness.errors import NotApplicable

NORMALISERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization")
SHAPE_KEEPERS = NORMALISERS + (
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "Softmax",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Identity",
)
MAX_SEGMENT = 12  # layers a chain segment may span before its shape comes back


@dataclass
class Block:
    kind: str  # "residual" | "chain"
    nodes: list[Any]  # the call nodes dropped with the block
    source: Any  # the block's input tensor
    target: Any  # the tensor replaced by `source`: the Add's output, or the segment's last output
    layers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.kind} {self.layers[0]}..{self.layers[-1]}" if len(self.layers) > 1 else self.layers[0]


def _shape(t) -> tuple:
    return tuple(t.shape[1:])


def weighted(node) -> bool:
    op = node.operation
    return bool(op.weights) and type(op).__name__ not in NORMALISERS


class _Graph:
    """Tensor producers and consumers of a Keras graph."""

    def __init__(self, model):
        self.nodes = graph_nodes(model)
        self.producer: dict[int, Any] = {}
        self.consumers: dict[int, list[Any]] = {}
        for n in self.nodes:
            for t in n.outputs:
                self.producer[id(t)] = n
            for t in n.input_tensors:
                self.consumers.setdefault(id(t), []).append(n)
        self.outputs = {id(t) for t in graph_outputs(model)}
        learned = [n for n in self.nodes if weighted(n)]
        self.edge_weighted = {id(learned[0]), id(learned[-1])} if learned else set()

    def shared(self, node) -> bool:
        return len(getattr(node.operation, "_inbound_nodes", [])) > 1

    def descendants(self, tensor) -> set[int]:
        seen: set[int] = set()
        todo = list(self.consumers.get(id(tensor), []))
        while todo:
            n = todo.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            for t in n.outputs:
                todo += self.consumers.get(id(t), [])
        return seen

    def ancestors(self, tensor) -> set[int]:
        seen: set[int] = set()
        todo = [self.producer[id(tensor)]] if id(tensor) in self.producer else []
        while todo:
            n = todo.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            todo += [self.producer[id(t)] for t in n.input_tensors if id(t) in self.producer]
        return seen


def _residual(g: _Graph, add) -> Block | None:
    ins = add.input_tensors
    if type(add.operation).__name__ != "Add" or len(ins) != 2 or _shape(ins[0]) != _shape(ins[1]):
        return None
    for s, y in ((ins[0], ins[1]), (ins[1], ins[0])):
        between = g.descendants(s) & g.ancestors(y)
        if not between or id(add) in between:
            continue
        nodes = [n for n in g.nodes if id(n) in between]
        inside = {id(t) for n in nodes for t in n.outputs}
        if any(id(t) != id(s) and id(t) not in inside for n in nodes for t in n.input_tensors):
            continue  # another tensor enters the branch
        if any(
            c is not add and id(c) not in between for n in nodes for t in n.outputs for c in g.consumers.get(id(t), [])
        ):
            continue  # a branch tensor is used outside the block
        if any(id(t) in g.outputs for n in nodes for t in n.outputs) or any(g.shared(n) for n in nodes + [add]):
            continue
        if not any(weighted(n) for n in nodes):
            continue
        return Block("residual", nodes + [add], s, add.outputs[0], [n.operation.name for n in nodes + [add]])
    return None


def _single(g: _Graph, node) -> bool:
    return len(node.input_tensors) == 1 and len(node.outputs) == 1 and not g.shared(node)


def _chain(g: _Graph, start, claimed: set[int]) -> Block | None:
    if not weighted(start) or id(start) in g.edge_weighted or not _single(g, start):
        return None
    source = start.input_tensors[0]
    nodes, out = [start], start.outputs[0]
    while True:
        users = g.consumers.get(id(out), [])
        nxt = users[0] if len(users) == 1 and id(out) not in g.outputs else None
        if nxt is None or id(nxt) in claimed or not _single(g, nxt):
            nxt = None
        if _shape(out) == _shape(source):
            if nxt is not None and type(nxt.operation).__name__ in SHAPE_KEEPERS:
                nodes.append(nxt)
                out = nxt.outputs[0]
                continue
            return Block("chain", nodes, source, out, [n.operation.name for n in nodes])
        if nxt is None or len(nodes) >= MAX_SEGMENT or id(nxt) in g.edge_weighted:
            return None
        nodes.append(nxt)
        out = nxt.outputs[0]


def removable_blocks(model) -> list[Block]:
    """The model's blocks in topological order (see the module doc)."""
    g = _Graph(model)
    blocks: list[Block] = []
    claimed: set[int] = set()
    for n in g.nodes:
        b = _residual(g, n)
        if b is not None and not claimed & {id(m) for m in b.nodes}:
            blocks.append(b)
            claimed |= {id(m) for m in b.nodes}
    for n in g.nodes:
        if id(n) in claimed:
            continue
        b = _chain(g, n, claimed)
        if b is not None:
            blocks.append(b)
            claimed |= {id(m) for m in b.nodes}
    order = {id(n): i for i, n in enumerate(g.nodes)}
    return sorted(blocks, key=lambda b: min(order[id(m)] for m in b.nodes))


def depth_multiplied(model, depth: float, where: str):
    """The teacher with only the first `depth` share of its blocks, fresh weights (see the module doc)."""
    blocks = removable_blocks(model)
    if not blocks:
        raise NotApplicable(
            f"{where}: the model has no block whose output keeps its input's shape (a residual block "
            f"with an identity shortcut, or e.g. a 'same' conv with as many filters as inputs), so there "
            f"is nothing a depth multiplier can drop; use 'width' or a 'student' file"
        )
    keep = math.floor(len(blocks) * depth + 1e-9)
    if keep >= len(blocks):
        raise NotApplicable(
            f"{where}: depth {depth:g} of the model's {len(blocks)} repeatable block(s) keeps all of them "
            f"(it keeps floor(depth x blocks)); use a smaller depth, 'width' or a 'student' file"
        )
    return drop_blocks(model, blocks[keep:], name=f"{model.name}_depth{depth:g}")


def drop_blocks(model, blocks: list[Block], name: str | None = None):
    """A functional model of the same graph without `blocks`, every other layer cloned (fresh weights)."""
    keras = keras_module()
    dropped = {id(n) for b in blocks for n in b.nodes}
    bypass = {id(b.target): b.source for b in blocks}
    new: dict[int, Any] = {}
    inputs = []
    for old in graph_inputs(model):
        inp = keras.Input(tuple(old.shape[1:]), dtype=old.dtype, name=getattr(old, "name", None) or None)
        new[id(old)] = inp
        inputs.append(inp)
    for node in graph_nodes(model):
        if id(node) not in dropped:
            args, kwargs = node.arguments.fill_in(new)
            out = clone_layer(node.operation)(*args, **kwargs)
            outs = out if isinstance(out, (list, tuple)) else [out]
            for o_old, o_new in zip(node.outputs, outs):
                new[id(o_old)] = o_new
        for t in node.outputs:
            if id(t) in bypass:
                new[id(t)] = new[id(bypass[id(t)])]
    outputs = [new[id(t)] for t in graph_outputs(model)]
    student = keras.Model(
        inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=name or model.name
    )
    return student
