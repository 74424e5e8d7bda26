"""An explicit per-operator cost model: a profile computed from the artifact, for boards not at hand.

Not a stand-in for a measurement: it is the arithmetic a cycle-counting simulator does (the simulated
MCU, `hil mcu-sim`, splits its ticks per op the same way), stated as parameters so that a recipe says
which board it assumes. Each op costs `per_op` ticks (dispatch, im2col set-up) + its MACs (`hil
analyze`'s count) x `per_mac`, times the op type's weight in `op_weights` (a board without an optimised
depthwise kernel: `{DEPTHWISE_CONV_2D: 10}`) + its output elements x `per_element` (pooling,
elementwise, reshapes move every element once). Deterministic: the same artifact gives the same times.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.models.inspect.analysis import analyze
from harness.profile.document import OpProfile, OpTime, attach_analysis


def cost_profile(
    path: Path, per_mac: float, per_element: float, per_op: float, op_weights: dict[str, float]
) -> OpProfile:
    """The model's per-op ticks under the cost model (one invocation; shapes and MACs attached)."""
    a = analyze(path)
    ops = []
    for op in a.operators:
        elements = sum(math.prod(a.tensor(t, op.subgraph).shape or [1]) for t in op.outputs if t >= 0)
        ticks = per_op + op_weights.get(op.name, 1.0) * op.macs * per_mac + elements * per_element
        ops.append(OpTime(index=op.index, type=op.name, times=[float(ticks)], subgraph=op.subgraph))
    profile = OpProfile(source="cost-model", unit="ticks", invocations=1, ops=ops)
    profile.invoke = [profile.total]
    return attach_analysis(profile, a)
