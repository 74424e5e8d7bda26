"""The one per-operator profile document every device kind returns (the contract between runners and host).

Why one document: a Linux runner (LiteRT profiler), the generated MCU firmware (MicroProfiler over
the serial protocol), `hil mcu-sim` and QEMU all measure different clocks, but the store, the tables,
the diff and the gate must not care. Devices report only what they can know on the device (op index,
type, the time of each profiled invocation); the host adds what it knows better from the artifact
(tensor shapes, MACs) with :func:`attach_analysis`, so ops can be matched across runs and devices.

Wire form (JSON object; the Linux runner emits it under the key ``"op_profile"`` of its document, the
serial session builds the same dict)::

    {
      "source": "litert-builtin" | "litert-xnnpack" | "tflm-micro-profiler" | "tflm-sim"
                | "cost-model",               # computed, not measured (harness/compress/cost_model.py)
      "unit": "us" | "ticks",
      "ticks_per_us": float | null,     # known tick rate when unit == "ticks" (null: not known)
      "cycles": bool,                   # the ticks are CPU cycles (DWT CYCCNT or equivalent)
      "invocations": int,               # profiled invocations (each op's "times" has this many values)
      "invoke": [float, ...] | null,    # whole-invoke time of each profiled invocation, same unit
      "ops": [
        {"index": int, "subgraph": int, "type": "CONV_2D", "name": str | null,
         "delegated": bool,            # a delegate node (e.g. XNNPACK) standing for several model ops
         "times": [float, ...]}       # one value per profiled invocation
      ]
    }
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ModelError

SOURCES = ("litert-builtin", "litert-xnnpack", "tflm-micro-profiler", "tflm-sim", "cost-model")
UNITS = ("us", "ticks")


@dataclass
class OpTime:
    index: int
    type: str
    times: list[float]
    subgraph: int = 0
    name: str | None = None
    delegated: bool = False
    # filled on the host from the artifact's analysis (attach_analysis)
    inputs: list[list[int]] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)
    macs: int = 0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times) if self.times else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else 0.0


@dataclass
class OpProfile:
    source: str
    unit: str
    invocations: int
    ops: list[OpTime]
    ticks_per_us: float | None = None
    cycles: bool = False
    invoke: list[float] | None = None

    @property
    def total(self) -> float:
        """Sum of the ops' mean times: one invocation as the profiler saw it."""
        return sum(op.mean for op in self.ops)

    def share(self, op: OpTime) -> float:
        total = self.total
        return op.mean / total if total > 0 else 0.0

    def to_us(self, value: float) -> float | None:
        """A time of this profile in microseconds (None: ticks at an unknown rate)."""
        if self.unit == "us":
            return value
        return value / self.ticks_per_us if self.ticks_per_us else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "unit": self.unit,
            "ticks_per_us": self.ticks_per_us,
            "cycles": self.cycles,
            "invocations": self.invocations,
            "invoke": self.invoke,
            "ops": [
                {
                    "index": o.index,
                    "subgraph": o.subgraph,
                    "type": o.type,
                    "name": o.name,
                    "delegated": o.delegated,
                    "times": o.times,
                    "inputs": o.inputs,
                    "outputs": o.outputs,
                    "macs": o.macs,
                }
                for o in self.ops
            ],
        }


def from_dict(doc: Any, where: str = "op_profile") -> OpProfile:
    """Validate a device's profile document; a malformed one is a ModelError naming the field."""

    def bad(msg: str) -> ModelError:
        return ModelError(f"{where}: {msg}")

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    source, unit = doc.get("source"), doc.get("unit")
    if source not in SOURCES:
        raise bad(f"source {source!r} is not one of {', '.join(SOURCES)}")
    if unit not in UNITS:
        raise bad(f"unit {unit!r} is not one of {', '.join(UNITS)}")
    n = doc.get("invocations")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad(f"invocations {n!r} is not a positive whole number")
    raw_ops = doc.get("ops")
    if not isinstance(raw_ops, list):
        raise bad("ops is not a list")
    ops = []
    for i, o in enumerate(raw_ops):
        if not isinstance(o, dict) or not isinstance(o.get("index"), int) or not isinstance(o.get("type"), str):
            raise bad(f"ops[{i}] lacks an integer index or a type")
        times = o.get("times")
        if not isinstance(times, list) or len(times) != n or not all(_finite(t) and t >= 0 for t in times):
            raise bad(f"ops[{i}] ({o.get('type')}) times: need {n} finite, non-negative values")
        ops.append(
            OpTime(
                index=o["index"],
                type=o["type"],
                times=[float(t) for t in times],
                subgraph=int(o.get("subgraph") or 0),
                name=o.get("name"),
                delegated=bool(o.get("delegated", False)),
                inputs=[list(s) for s in o.get("inputs") or []],
                outputs=[list(s) for s in o.get("outputs") or []],
                macs=int(o.get("macs") or 0),
            )
        )
    invoke = doc.get("invoke")
    if invoke is not None and (not isinstance(invoke, list) or not all(_finite(t) for t in invoke)):
        raise bad("invoke is not a list of numbers")
    tpu = doc.get("ticks_per_us")
    if tpu is not None and (not _finite(tpu) or tpu <= 0):
        raise bad(f"ticks_per_us {tpu!r} is not a positive number")
    return OpProfile(
        source=source,
        unit=unit,
        invocations=n,
        ops=ops,
        ticks_per_us=float(tpu) if tpu is not None else None,
        cycles=bool(doc.get("cycles", False)),
        invoke=[float(t) for t in invoke] if invoke is not None else None,
    )


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def attach_analysis(profile: OpProfile, analysis: Any) -> OpProfile:
    """Add tensor shapes and MACs from `hil analyze`'s ModelAnalysis of the profiled artifact.

    Ops are matched by (subgraph, index); a delegated node has no single model op and keeps empty
    shapes. A type that disagrees with the artifact's op at that index means the profile is not of
    this artifact: refused rather than silently mislabelled."""
    by_key = {(op.subgraph, op.index): op for op in analysis.operators}
    for o in profile.ops:
        if o.delegated:
            continue
        info = by_key.get((o.subgraph, o.index))
        if info is None:
            raise ModelError(f"op_profile: op #{o.index} is not in {analysis.path}")
        if info.name != o.type:
            raise ModelError(f"op_profile: op #{o.index} is {o.type} on the device but {info.name} in {analysis.path}")
        o.inputs = [analysis.tensor(t, info.subgraph).shape for t in info.inputs if t >= 0]
        o.outputs = [analysis.tensor(t, info.subgraph).shape for t in info.outputs if t >= 0]
        o.macs = info.macs
    return profile
