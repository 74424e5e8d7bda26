"""Many series of one device off together: say that the device moved, not each model.

The gate judges every series on its own, and an unchanged artifact whose level trips passes as
`level-off` (or, off on each of the last nights, fails as a lasting change: `remeasure`). When a
device runs hot, its governor changed, or its kernel or LiteRT was upgraded, most of its series trip
the same way on the same night, and a reader of twenty `level-off` lines has to work out that they
are one fact. This module states it once, as a gate warning (Markdown, HTML, the gate's log); it
decides nothing: the verdicts stay those of each series.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable

from harness.gate.evaluate import Check, GateResult
from harness.gate.levels import fmt_pct

MIN_SERIES = 3  # fewer tripped series than this is not a pattern
MIN_SHARE = 0.5  # of the device's series compared on the metric


def device_drift(result: GateResult) -> list[str]:
    """One line per device and latency metric on which at least MIN_SERIES series, and at least
    MIN_SHARE of those compared, tripped on an unchanged artifact in the same direction."""
    compared: dict[tuple[str, str], int] = defaultdict(int)
    off: dict[tuple[str, str], list[Check]] = defaultdict(list)
    for k in result.keys:
        for c in k.checks:
            if not c.metric.startswith("latency_") or c.effect is None:
                continue
            compared[k.device_id, c.metric] += 1
            if c.same_artifact:
                off[k.device_id, c.metric].append(c)
    lines = []
    for (device, metric), checks in sorted(off.items()):
        for sign, word in ((1, "slower"), (-1, "faster")):
            same = [c.effect for c in checks if c.effect is not None and c.effect * sign > 0]
            n = compared[device, metric]
            if len(same) < MIN_SERIES or len(same) < MIN_SHARE * n:
                continue
            lines.append(
                f"device '{device}': {len(same)} of {n} series read {metric} {word} "
                f"(median {fmt_pct(statistics.median(same))}) with unchanged models: the device ran differently "
                "(load, temperature, governor) or its software changed (kernel, LiteRT), not the models"
            )
    return lines


def note_device_drift(result: GateResult, log: Callable[[str], None]) -> None:
    """Add the device-drift lines to the gate's warnings (reports) and to its log."""
    for line in device_drift(result):
        result.warnings.append(line)
        log(f"warning: {line}")
