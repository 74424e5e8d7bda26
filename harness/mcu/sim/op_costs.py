"""The simulator's per-operator cost model: how `hil mcu-sim` splits one inference's time over the ops.

The TFLM Python interpreter the simulator runs has no profiler API, so `hb-profile%` cannot report
what each operator took. What it reports instead is a model of it, labelled as such (source
``tflm-sim``): every operator of the main subgraph costs its multiply-accumulates plus its
element-wise work plus a fixed per-operator overhead (interpreter dispatch, kernel setup), in
MAC-equivalents, and the simulated inference time is divided in proportion. Integer ticks add up
exactly to the inference time (largest remainders), so tests can rely on the sum; the split says
nothing about a real board.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.inspect.analysis import ModelAnalysis

# Fixed cost of one operator, in MAC-equivalents: a TFLM op's dispatch and setup take a few thousand
# cycles on a Cortex-M, around as long as ~1000 int8 MACs of a reference kernel.
OP_OVERHEAD_MACS = 1000


@dataclass(frozen=True)
class OpCost:
    index: int
    type: str
    weight: int  # MAC-equivalents


def op_costs(analysis: ModelAnalysis) -> list[OpCost]:
    """The operators TFLM runs for one inference (subgraph 0, in order) with their modelled cost."""
    return [
        OpCost(op.index, op.name, op.macs + op.elementwise + OP_OVERHEAD_MACS)
        for op in analysis.operators
        if op.subgraph == 0
    ]


def split_ticks(total: int, weights: list[int]) -> list[int]:
    """`total` ticks divided in proportion to `weights`, as integers that add up to exactly `total`
    (floors, then one more tick each to the largest remainders; ties to the earlier op)."""
    if total < 0:
        raise ValueError(f"negative total {total}")
    if not weights:
        return []
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
