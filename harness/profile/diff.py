"""Two per-operator profiles side by side, op by op, and which ops account for the change.

Why match ops rather than positions: a candidate that differs from its reference by one inserted
layer shifts every later op index, so comparing op #7 with op #7 would blame the wrong ops. Ops are
matched by what they are (type and tensor shapes, from `attach_analysis`):

- the same graph (same index, type and shapes everywhere): op by op;
- otherwise a sequence alignment on (type, shapes) (difflib's longest matching blocks): unchanged
  ops stay matched, an inserted op is a *new op*, a dropped one *removed*; a stretch of the same op
  types whose shapes all changed (a narrowed layer) is matched op by op as *changed*;
- nothing aligns at all (e.g. a whole graph replaced by delegate nodes): per-type totals.

Times are each op's median over the profiled invocations (a preempted invocation moves the mean of
20, not the median). Profiles in different units are compared only through a known tick rate: a
microsecond is never subtracted from a tick.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import ModelError
from harness.profile.document import OpProfile, OpTime

SAME, CHANGED, NEW, REMOVED, PER_TYPE = "same", "changed", "new", "removed", "per type"
SHOWN_OPS = 4  # ops named in an explanation's text; the rest are summed up


@dataclass(frozen=True)
class OpDelta:
    """One op (or one op type, when nothing aligned) in the reference and the candidate."""

    type: str
    index: int | None  # the candidate's op index (the reference's for a removed op); None per type
    ref: float | None  # time in the reference; None: not there (a new op or type)
    cand: float | None  # time in the candidate; None: not there (a removed op or type)
    status: str  # same | changed | new | removed | per type
    share: float = 0.0  # of the total change of the profile (signed: against the change is negative)
    subgraph: int = 0

    @property
    def delta(self) -> float:
        return (self.cand or 0.0) - (self.ref or 0.0)

    @property
    def label(self) -> str:
        if self.status == PER_TYPE:
            what = "new type" if self.ref is None else "removed type" if self.cand is None else "all ops of the type"
            return f"{self.type} ({what})"
        where = f"#{self.index}" + (f" in subgraph {self.subgraph}" if self.subgraph else "")
        note = {NEW: " (new op)", REMOVED: " (removed)", CHANGED: " (shapes changed)"}.get(self.status, "")
        return f"{self.type} {where}{note}"


@dataclass(frozen=True)
class ProfileDiff:
    unit: str  # "us", or "ticks" when both profiles count ticks at an unknown (same-device) rate
    matching: str  # same graph | aligned | per type
    ops: tuple[OpDelta, ...]
    ref_total: float
    cand_total: float

    @property
    def change(self) -> float:
        return self.cand_total - self.ref_total

    @property
    def new_ops(self) -> list[OpDelta]:
        return [o for o in self.ops if o.status == NEW]

    @property
    def removed_ops(self) -> list[OpDelta]:
        return [o for o in self.ops if o.status == REMOVED]


@dataclass(frozen=True)
class Explanation:
    """The fewest ops, largest change first, that account for `min_share` of the profile's change."""

    diff: ProfileDiff
    ops: tuple[OpDelta, ...]
    min_share: float

    @property
    def covered(self) -> float:
        return sum(o.share for o in self.ops)

    @property
    def text(self) -> str:
        unit = self.diff.unit
        head = fmt_time(self.diff.change, unit)
        if not self.ops:
            return f"{head}: no operator's time changed"
        named = [f"{o.label} {fmt_time(o.delta, unit)} ({o.share * 100:.0f} %)" for o in self.ops[:SHOWN_OPS]]
        rest = self.ops[SHOWN_OPS:]
        if rest:
            named.append(f"{len(rest)} more ops {fmt_time(sum(o.delta for o in rest), unit)}")
        return f"{head}: " + ", ".join(named)

    def __str__(self) -> str:
        return self.text


def fmt_time(x: float, unit: str) -> str:
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 1 else 2
    return f"{x:+.{digits}f} {unit}"


def diff(ref: OpProfile, cand: OpProfile) -> ProfileDiff:
    """Match the candidate's ops to the reference's (see the module docstring) and time each pair."""
    unit, ref_scale, cand_scale = _common_unit(ref, cand)
    a = [_Op(o, o.median * ref_scale) for o in ref.ops]
    b = [_Op(o, o.median * cand_scale) for o in cand.ops]
    if len(a) == len(b) and all(x.exact == y.exact for x, y in zip(a, b)):
        matching, pairs = "same graph", [_pair(x, y, SAME) for x, y in zip(a, b)]
    else:
        matching, pairs = "aligned", _align(a, b)
        if a and b and not any(p.status in (SAME, CHANGED) for p in pairs):
            matching, pairs = "per type", _per_type(a, b)
    ref_total, cand_total = sum(x.time for x in a), sum(y.time for y in b)
    change = cand_total - ref_total
    ops = tuple(
        OpDelta(p.type, p.index, p.ref, p.cand, p.status, p.delta / change if change else 0.0, p.subgraph)
        for p in pairs
    )
    return ProfileDiff(unit, matching, ops, ref_total, cand_total)


def explain(ref: OpProfile, cand: OpProfile, min_share: float = 0.8) -> Explanation:
    """The smallest set of ops, largest |delta| first and changed in the direction of the total, whose
    deltas add up to at least `min_share` of the total change. Ops that moved against the total are
    never named: they do not explain it (all ops moving with it add up to at least the total)."""
    return explain_diff(diff(ref, cand), min_share)


def explain_diff(d: ProfileDiff, min_share: float = 0.8) -> Explanation:
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share {min_share}: must be in (0, 1]")
    if d.change == 0:
        return Explanation(d, (), min_share)
    with_it = sorted((o for o in d.ops if o.share > 0), key=lambda o: -abs(o.delta))
    chosen: list[OpDelta] = []
    for o in with_it:
        chosen.append(o)
        if sum(c.share for c in chosen) >= min_share - 1e-12:
            break
    return Explanation(d, tuple(chosen), min_share)


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Op:
    op: OpTime
    time: float

    @property
    def key(self) -> tuple:
        """What an op is, wherever it sits in the graph."""
        o = self.op
        return (o.subgraph, o.type, _shapes(o.inputs), _shapes(o.outputs))

    @property
    def exact(self) -> tuple:
        return (self.op.index, *self.key)


@dataclass(frozen=True)
class _Pair:
    type: str
    index: int | None
    ref: float | None
    cand: float | None
    status: str
    subgraph: int = 0

    @property
    def delta(self) -> float:
        return (self.cand or 0.0) - (self.ref or 0.0)


def _shapes(shapes: list[list[int]]) -> tuple:
    return tuple(tuple(s) for s in shapes)


def _pair(x: _Op | None, y: _Op | None, status: str) -> _Pair:
    there = y if y is not None else x
    assert there is not None
    return _Pair(
        there.op.type,
        there.op.index,
        x.time if x is not None else None,
        y.time if y is not None else None,
        status,
        there.op.subgraph,
    )


def _align(a: list[_Op], b: list[_Op]) -> list[_Pair]:
    sm = difflib.SequenceMatcher(None, [x.key for x in a], [y.key for y in b], autojunk=False)
    out: list[_Pair] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        xs, ys = a[i1:i2], b[j1:j2]
        if tag == "equal":
            out += [_pair(x, y, SAME) for x, y in zip(xs, ys)]
        elif tag == "replace" and _same_types(xs, ys):
            out += [_pair(x, y, CHANGED) for x, y in zip(xs, ys)]
        else:  # an unequal stretch: which old op became which new one is a guess, so none is made
            out += [_pair(x, None, REMOVED) for x in xs] + [_pair(None, y, NEW) for y in ys]
    return out


def _same_types(xs: Sequence[_Op], ys: Sequence[_Op]) -> bool:
    return len(xs) == len(ys) and all(x.op.type == y.op.type for x, y in zip(xs, ys))


def _per_type(a: list[_Op], b: list[_Op]) -> list[_Pair]:
    def totals(ops: list[_Op]) -> dict[str, float]:
        out: dict[str, float] = {}
        for x in ops:
            out[x.op.type] = out.get(x.op.type, 0.0) + x.time
        return out

    ta, tb = totals(a), totals(b)
    return [_Pair(t, None, ta.get(t), tb.get(t), PER_TYPE) for t in sorted(set(ta) | set(tb))]


# --------------------------------------------------------------------------- units


def _common_unit(ref: OpProfile, cand: OpProfile) -> tuple[str, float, float]:
    """(unit, factor for the reference's times, factor for the candidate's)."""
    r, c = ref.to_us(1.0), cand.to_us(1.0)
    if r is not None and c is not None:
        return "us", r, c
    if ref.unit == cand.unit == "ticks" and ref.ticks_per_us is None and cand.ticks_per_us is None:
        if ref.cycles != cand.cycles:
            raise ModelError("op_profile: cannot compare CPU cycles with ticks of another clock at unknown rates")
        return "ticks", 1.0, 1.0  # the same device's clock (the gate profiles both on one board)
    unknown = " and ".join(role for role, rate in (("reference", r), ("candidate", c)) if rate is None)
    raise ModelError(
        f"op_profile: cannot compare a profile in {ref.unit} with one in {cand.unit}: the {unknown} counts "
        "ticks at an unknown rate (ticks_per_us)"
    )
