"""Structured (filter/unit) pruning: a narrower dense model, smaller and faster on TFLite and TFLM.

No maintained library removes filters from Keras 3 models (tfmot has no filter pruning and rejects
Keras 3; kerassurgeon fails on Keras 3), so the model is rebuilt with fewer channels. Which channels
must go together (through Add, Concatenate, BatchNormalization, depthwise convs, Flatten -> Dense...)
is the channel dependency graph's business (channels.py); the rebuild with the surviving weights is
narrow.py's. This step picks the channels: each prunable group keeps its strongest channels (L1 or
L2 of the coupled filters summed over the group's layers, or BatchNormalization gamma), one keep ratio
for every group, the largest whose MACs (or parameters) fall by at least the requested `reduction`,
found by bisection on counts computed from the graph the same way `hil analyze` counts the converted
model. The network's inputs and outputs stay as they were; groups the graph froze are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from harness.compress.channels import PRODUCER_ROLES, ChannelGraph
from harness.compress.narrow import narrowed
from harness.errors import NotApplicable

_log = logging.getLogger(__name__)


def importance(graph: ChannelGraph, criterion: str) -> np.ndarray:
    """A score per channel (indexed by its root element), summed over every layer the channel touches:
    the L1/L2 norm of each producer's filter (and of a depthwise kernel's channel), each layer's norms
    divided by their mean so that layers of different sizes weigh alike; with `bn_gamma`, the summed
    |gamma| of the BatchNormalization layers on the channel (groups without one fall back to L1)."""
    norms = np.zeros(len(graph.root))
    gammas = np.zeros(len(graph.root))
    order = 1 if criterion in ("l1", "bn_gamma") else 2

    def add(into: np.ndarray, arr: np.ndarray, values: np.ndarray) -> None:
        mean = float(values.mean()) if values.size else 0.0
        np.add.at(into, graph.root[arr], values / mean if mean > 0 else values)

    def norm(k: np.ndarray, axis: int) -> np.ndarray:
        flat = np.moveaxis(k, axis, -1).reshape(-1, k.shape[axis])
        return np.abs(flat).sum(axis=0) if order == 1 else np.sqrt((flat**2).sum(axis=0))

    for key, call in graph.first.items():
        w = call.layer.get_weights() if call.role != "frozen" else []
        if call.role in ("conv", "dense"):
            add(norms, call.outputs[0], norm(w[0], -1))
        elif call.role == "transpose":
            add(norms, call.outputs[0], norm(w[0], -2))
        elif call.role == "separable":
            add(norms, call.outputs[0], norm(w[1], -1))
        elif call.role == "depthwise" and int(call.layer.depth_multiplier) == 1:
            add(norms, call.inputs[0], norm(w[0][..., 0], -1))
        elif call.role == "norm" and type(call.layer).__name__ == "BatchNormalization" and call.layer.scale:
            add(gammas, call.outputs[0], np.abs(w[0]))
    if criterion != "bn_gamma":
        return norms
    with_bn = np.zeros(len(graph.root), dtype=bool)
    for g in graph.groups:
        if (gammas[g.channels] > 0).any():
            with_bn[g.channels] = True
    return np.where(with_bn, gammas, norms)


class _Planner:
    """Which channels survive at a keep ratio: each prunable group keeps its round(ratio x size)
    strongest channels (at least one), and every producer at least one of its filters. Groups whose
    size is a multiple of `align` (and at least twice it) keep a multiple of `align`: int8 kernels on
    CPUs (XNNPACK, CMSIS-NN) run whole blocks of 4-16 channels, so 23 channels cost what 24 do (ResNet-8
    at 32x32 pruned to (11, 23, 45) filters: 0.50x MACs, 0.85x p50; to (8, 24, 48): 0.42x, 0.51x)."""

    def __init__(self, graph: ChannelGraph, criterion: str, align: int = 1):
        self.graph = graph
        score = importance(graph, criterion)
        self.ranked = [np.array(sorted(g.channels, key=lambda c: -score[c])) for g in graph.prunable()]
        self.step = [align if len(c) % align == 0 and len(c) >= 2 * align else 1 for c in self.ranked]
        self.producers = [np.unique(graph.root[c.outputs[0]]) for c in graph.first.values() if c.role in PRODUCER_ROLES]
        self.score = score

    def sizes(self, ratio: float) -> list[int]:
        return [max(s, s * int(round(len(chans) * ratio / s))) for chans, s in zip(self.ranked, self.step)]

    def keep(self, ratio: float, sizes: list[int] | None = None) -> np.ndarray:
        keep = self.graph.all_kept()
        for chans, n in zip(self.ranked, sizes or self.sizes(ratio)):
            keep[chans[n:]] = False
        for chans in self.producers:
            if len(chans) and not keep[chans].any():
                keep[chans[np.argmax(self.score[chans])]] = True
        return keep


def _graph(model, where: str, log: Callable[[str], None]) -> ChannelGraph:
    graph = ChannelGraph(model)
    for line in graph.frozen_report():
        log(f"{where}: left unpruned: {line}")
    if not graph.prunable():
        raise NotApplicable(f"{where}: model '{model.name}' has no channel group that can be pruned")
    return graph


def choose_keep(
    graph: ChannelGraph, reduction: float, target: str, criterion: str, align: int = 1
) -> tuple[np.ndarray, float]:
    """The channels kept at the largest keep ratio whose MACs (or parameters) fall by at least
    `reduction`, and the reduction achieved (bisection on counts from the graph)."""
    planner = _Planner(graph, criterion, align)
    which = 0 if target == "macs" else 1
    base = graph.counts(graph.all_kept())[which]

    def reduction_at(r: float) -> float:
        return 1.0 - graph.counts(planner.keep(r))[which] / base

    if reduction_at(0.0) < reduction:
        raise ValueError(
            f"cannot remove {reduction:.0%} of the {target}: at most "
            f"{reduction_at(0.0):.0%} with one channel left per group"
        )
    lo, hi = 0.0, 1.0  # reduction_at(lo) >= reduction > reduction_at(hi)
    for _ in range(30):
        mid = (lo + hi) / 2
        if reduction_at(mid) >= reduction:
            lo = mid
        else:
            hi = mid
    # small groups and `align` make the ratio coarse: give channels back one step at a time while the
    # target holds, to the group that keeps the smallest share of its channels first (evenly)
    sizes = planner.sizes(lo)
    full = [len(c) for c in planner.ranked]
    tried: set[int] = set()
    for _ in range(4 * len(sizes) + 8):
        open_ = [i for i in range(len(sizes)) if i not in tried and sizes[i] + planner.step[i] <= full[i]]
        if not open_:
            break
        i = min(open_, key=lambda j: (sizes[j] / full[j], -full[j]))
        sizes[i] += planner.step[i]
        if 1.0 - graph.counts(planner.keep(lo, sizes))[which] / base < reduction:
            sizes[i] -= planner.step[i]
            tried.add(i)  # too costly now: never cheaper later
    keep = planner.keep(lo, sizes)
    return keep, 1.0 - graph.counts(keep)[which] / base


def prune_filters(
    model,
    reduction: float,
    target: str = "macs",
    criterion: str = "l1",
    where: str = "structured_prune",
    keep_weights: bool = True,
    log: Callable[[str], None] = _log.info,
    align: int = 8,
):
    """The narrower model (kept channels' weights copied, or fresh weights with keep_weights=False)
    and the achieved reduction. Any functional or Sequential model: coupled channels go together
    (channels.py); what the graph cannot reason about stays whole and is logged. Groups of a multiple
    of `align` channels keep a multiple of `align` (1: any count)."""
    graph = _graph(model, where, log)
    try:
        keep, achieved = choose_keep(graph, reduction, target, criterion, align)
    except ValueError as exc:
        raise NotApplicable(f"{where}: {exc}") from None
    return narrowed(graph, keep, keep_weights), achieved


def width_multiplied(model, width: float, where: str):
    """The teacher's architecture with every channel group `width` times as wide, fresh weights."""
    graph = _graph(model, where, _log.info)
    return narrowed(graph, _Planner(graph, "l1").keep(width), keep_weights=False)
