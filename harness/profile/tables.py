"""A per-operator profile read like TFLite's benchmark_model prints it: run order, top ops, op types.

People who profile TFLite models know benchmark_model's `--enable_op_profiling` tables; the same three
views (every op in run order with its share and the running total, the slowest ops, the time per op
type) read the same whatever device measured the profile. Times stay in the device's unit: ticks of
an MCU are converted to microseconds only at a known rate, never guessed. Rows are built once
(`run_order_rows`, `top_rows`, `type_rows`) for the text tables here and the run reports.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.profile.document import OpProfile, OpTime

SOURCE_NAMES = {
    "litert-builtin": "LiteRT built-in kernels",
    "litert-xnnpack": "XNNPACK delegate",
    "tflm-micro-profiler": "TFLM MicroProfiler",
    "tflm-sim": "simulator estimate",
}

DEFAULT_TOP = 10


def source_name(profile: OpProfile) -> str:
    return SOURCE_NAMES.get(profile.source, profile.source)


def describe(profile: OpProfile) -> str:
    """One line: who measured, in which unit, over how many invocations, and the profile's total."""
    unit = profile.unit
    if unit == "ticks":
        rate = f"{profile.ticks_per_us:g} ticks/us" if profile.ticks_per_us else "tick rate unknown"
        unit = f"{'cycles' if profile.cycles else 'ticks'} ({rate})"
    total = f"{profile.total:,.1f} {profile.unit}"
    total_us = profile.to_us(profile.total)
    if profile.unit == "ticks" and total_us is not None:
        total += f" = {total_us:,.1f} us"
    return (
        f"source: {source_name(profile)}; unit: {unit}; {profile.invocations} profiled invocation(s); "
        f"{len(profile.ops)} op(s), {total} per invocation (sum of op means)"
    )


def shape_text(op: OpTime) -> str:
    """`1x8x8x1,4x3x3x1,4 -> 1x6x6x4` (a delegate node has no shapes of its own)."""
    if op.delegated:
        return "(delegate node)"
    if not op.inputs and not op.outputs:
        return "-"
    dims = lambda shapes: ",".join("x".join(str(d) for d in s) or "scalar" for s in shapes) or "-"
    return f"{dims(op.inputs)} -> {dims(op.outputs)}"


def _num(value: float | None, spec: str = ",.2f") -> str:
    return "-" if value is None else format(value, spec)


def _macs(value: int) -> str:
    return f"{value:,}" if value else "-"


def _time_headers(profile: OpProfile, what: tuple[str, ...]) -> list[str]:
    """`mean (us)`, or `mean (ticks)` and, at a known rate, `mean (us)` beside it."""
    out = [f"{w} ({profile.unit})" for w in what]
    if profile.unit == "ticks" and profile.ticks_per_us:
        out += [f"{w} (us)" for w in what]
    return out


def _times(profile: OpProfile, values: tuple[float, ...]) -> list[str]:
    out = [_num(v) for v in values]
    if profile.unit == "ticks" and profile.ticks_per_us:
        out += [_num(profile.to_us(v)) for v in values]
    return out


def _mac_rate(profile: OpProfile, macs: int, time: float) -> str:
    us = profile.to_us(time)
    return _num(macs / us, ",.1f") if macs and us else "-"


def run_order_rows(profile: OpProfile) -> tuple[list[str], list[list[str]]]:
    named = any(op.name for op in profile.ops)
    headers = ["index", "type", *(["name"] if named else []), "shapes"]
    headers += _time_headers(profile, ("mean", "median")) + ["% of total", "cumulative %", "MACs", "MAC/us"]
    rows, cumulative = [], 0.0
    for op in profile.ops:
        cumulative += profile.share(op) * 100
        rows.append(_row(profile, op, cumulative, (op.mean, op.median), named))
    return headers, rows


def _row(profile: OpProfile, op, cumulative: float, times: tuple[float, ...], named: bool = False) -> list[str]:
    """One op's cells: index, type, (name), shapes, times, share, cumulative share, MACs, MAC/us."""
    return [
        f"{op.subgraph}:{op.index}" if op.subgraph else str(op.index),
        op.type,
        *([op.name or "-"] if named else []),
        shape_text(op),
        *_times(profile, times),
        f"{profile.share(op) * 100:.2f}",
        f"{cumulative:.2f}",
        _macs(op.macs),
        _mac_rate(profile, op.macs, op.mean),
    ]


def top_rows(profile: OpProfile, n: int = DEFAULT_TOP) -> tuple[list[str], list[list[str]]]:
    """The `n` slowest ops (by mean), slowest first, with the share they add up to."""
    headers = ["index", "type", "shapes", *_time_headers(profile, ("mean",)), "% of total", "cumulative %"]
    headers += ["MACs", "MAC/us"]
    slowest = sorted(profile.ops, key=lambda op: (-op.mean, op.subgraph, op.index))[:n]
    rows, cumulative = [], 0.0
    for op in slowest:
        cumulative += profile.share(op) * 100
        rows.append(_row(profile, op, cumulative, (op.mean,)))
    return headers, rows


def by_type(profile: OpProfile) -> list[tuple[str, int, float, float, int]]:
    """(type, count, total mean time, share 0..1, MACs) per op type, the most expensive first."""
    groups: dict[str, list[OpTime]] = {}
    for op in profile.ops:
        groups.setdefault(op.type, []).append(op)
    total = profile.total
    out = [
        (
            t,
            len(ops),
            sum(o.mean for o in ops),
            sum(o.mean for o in ops) / total if total > 0 else 0.0,
            sum(o.macs for o in ops),
        )
        for t, ops in groups.items()
    ]
    return sorted(out, key=lambda g: (-g[2], g[0]))


def type_rows(profile: OpProfile) -> tuple[list[str], list[list[str]]]:
    headers = ["type", "count", *_time_headers(profile, ("total",)), "% of total", "cumulative %", "MACs", "MAC/us"]
    rows, cumulative = [], 0.0
    for op_type, count, time, share, macs in by_type(profile):
        cumulative += share * 100
        rows.append(
            [
                op_type,
                str(count),
                *_times(profile, (time,)),
                f"{share * 100:.2f}",
                f"{cumulative:.2f}",
                _macs(macs),
                _mac_rate(profile, macs, time),
            ]
        )
    return headers, rows


def text_table(headers: list[str], rows: list[list[str]], left: Callable[[str], bool] | None = None) -> str:
    """Aligned plain-text columns (text left, numbers right), one header rule."""
    left = left or (lambda h: h in ("type", "name", "shapes"))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(
        c.ljust(w) if left(h) else c.rjust(w) for c, w, h in zip(cells, widths, headers)
    ).rstrip()
    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def render(profile: OpProfile, title: str = "", top: int = DEFAULT_TOP) -> str:
    """The three tables, as `hil profile` prints them."""
    out = [f"== {title} ==" if title else "", describe(profile), ""]
    if not profile.ops:
        return "\n".join([*out, "The device profiled no operators."]).lstrip("\n") + "\n"
    sections = (
        ("Operator-wise profiling info in run order", run_order_rows(profile)),
        (f"Top {min(top, len(profile.ops))} operators by time", top_rows(profile, top)),
        ("Summary by operator type", type_rows(profile)),
    )
    for heading, (headers, rows) in sections:
        out += [heading, text_table(headers, rows), ""]
    return "\n".join(out).lstrip("\n")
