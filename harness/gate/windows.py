"""Deterministic MCU timing: verdicts on measurement windows, and sanity checks of device timer laps.

Why no statistics here: cycle-counted MCU inference is deterministic to a fraction of a percent,
so a tight threshold on the change of the median window mean is usable directly - provided the
timing really was deterministic. Windows that disagree (an interrupt storm, a flash wait state
change, a clock fallback) mean the premise is broken, and the verdict is then ``inconclusive``,
never a pass, because a noisy window can just as well hide a regression.

Window times come from the device's own microsecond counter. `check_lap` cross-checks a lap of it
against the host's wall clock for the same lap, so that a counter that wrapped, stalled or ran at
the wrong rate is caught before its numbers reach a verdict; an ambiguous lap is rejected rather
than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.gate.levels import (
    IMPROVEMENT,
    INCONCLUSIVE,
    LOWER_IS_BETTER,
    PASS,
    REGRESSION,
    check_direction,
    fmt_pct,
    log_levels,
    relative_effect,
)


@dataclass(frozen=True)
class WindowVerdict:
    verdict: str  # "regression" | "improvement" | "pass" | "inconclusive"
    effect: float  # positive = worse
    reason: str
    base_level: float  # median window mean
    current_level: float
    base_spread: float  # (max - min) / median of the windows
    current_spread: float
    threshold: float


def mcu_windows(
    base_window_means: Sequence[float],
    cur_window_means: Sequence[float],
    threshold: float,
    stability: float = 0.005,
    direction: int = LOWER_IS_BETTER,
    *,
    min_windows: int = 2,
) -> WindowVerdict:
    """Cycle-counted MCU inference is deterministic to a fraction of a percent, so no statistics
    are needed and a tight threshold is usable - provided the timing really was deterministic.
    Windows that disagree by more than ``stability`` (an interrupt storm, a flash wait state
    change, a clock fallback) mean the premise is broken: the verdict is then ``inconclusive``,
    never a pass, because a noisy window can just as well hide a regression.
    """
    direction = check_direction(direction)
    base, cur = log_levels(base_window_means), log_levels(cur_window_means)
    b_lvl, b_spr = _window_stats(base)
    c_lvl, c_spr = _window_stats(cur)

    def verdict(v: str, effect: float, reason: str) -> WindowVerdict:
        return WindowVerdict(v, effect, reason, b_lvl, c_lvl, b_spr, c_spr, float(threshold))

    if base.size == 0:
        return verdict(INCONCLUSIVE, math.nan, "no baseline")
    if min(base.size, cur.size) < min_windows:
        return verdict(INCONCLUSIVE, math.nan, f"too few windows (< {min_windows})")
    effect = relative_effect(math.log(c_lvl / b_lvl), direction)
    if max(b_spr, c_spr) > stability:
        return verdict(INCONCLUSIVE, effect, "windows unstable")
    if effect > threshold:
        return verdict(REGRESSION, effect, f"effect {fmt_pct(effect)} > threshold {fmt_pct(threshold)}")
    if effect < -threshold:
        return verdict(IMPROVEMENT, effect, f"effect {fmt_pct(effect)} < {fmt_pct(-threshold)}")
    return verdict(PASS, effect, f"effect {fmt_pct(effect)} within threshold")


def _window_stats(logs: np.ndarray) -> tuple[float, float]:
    if logs.size == 0:
        return math.nan, math.nan
    x = np.exp(logs)
    med = float(np.median(x))
    return med, float((x.max() - x.min()) / med)


@dataclass(frozen=True)
class LapCheck:
    ok: bool
    device_seconds: float  # lap length by the device timer, wrap-corrected; nan if unusable
    reason: str


def check_lap(
    t0: int,
    t1: int,
    n: int,
    host_seconds: float,
    link_latency_s: float,
    wrap_us: int = 2**32,
    *,
    rel_tol: float = 0.05,
    tick_s: float = 1e-6,
) -> LapCheck:
    """Cross-checks a device timer lap (microsecond counter read at lap start ``t0`` and end
    ``t1``, ``n`` inferences) against the host's wall clock for the same lap.

    The host brackets the lap with a command and a reply, so its time is the device time plus up
    to one link latency each way: ``host - 2 * latency <= device <= host`` (within ``rel_tol`` and
    one tick). A counter that went backwards is taken as one wrap only if the wrapped length fits
    that window; a lap as long as the wrap period is ambiguous (any number of wraps fits) and is
    rejected rather than guessed. Fewer ticks than inferences means the timer did not run.
    """
    if n <= 0 or not (math.isfinite(host_seconds) and host_seconds > 0) or link_latency_s < 0:
        return LapCheck(False, math.nan, "invalid lap input")
    if not (0 <= t0 < wrap_us and 0 <= t1 < wrap_us):
        return LapCheck(False, math.nan, "timer value outside the counter range")
    if host_seconds >= wrap_us * 1e-6:
        return LapCheck(False, math.nan, "lap as long as the timer wrap period: ambiguous")
    ticks = t1 - t0 if t1 >= t0 else t1 - t0 + wrap_us
    device = ticks * 1e-6
    if ticks < n:
        return LapCheck(False, device, "fewer timer ticks than inferences")
    if device > host_seconds * (1 + rel_tol) + tick_s:
        return LapCheck(False, device, "device lap longer than host time" + (" (negative lap)" if t1 < t0 else ""))
    if device < (host_seconds - 2 * link_latency_s) * (1 - rel_tol) - tick_s:
        return LapCheck(False, device, "device lap implausibly short for the host time")
    return LapCheck(True, device, "ok")


def lap_sane(t0: int, t1: int, n: int, host_seconds: float, link_latency_s: float, wrap_us: int = 2**32) -> bool:
    """Boolean form of `check_lap` for filters; use `check_lap` when the reason is reported."""
    return check_lap(t0, t1, n, host_seconds, link_latency_s, wrap_us).ok
