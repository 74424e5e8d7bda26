"""Steps and slow creep in the history of a series (one level per accepted night).

The nightly gate compares a night with a reference that follows accepted runs, so a regression of
1 % per night may pass every single gate. This module looks at the whole history instead.

The approach is inspired by the regression detection of asv (airspeed velocity): model the history
as piecewise constant plus noise, find the steps with a penalised fit, and call it a regression
when the latest segment is worse than the *best* earlier segment. It was written from that idea
only, without asv's code, and differs in the details: an exact O(n^2) dynamic programme under an L1
cost on log levels (one wild night moves an L1 fit far less than a least-squares fit), a penalty in
units of a robust noise sigma from second differences (which a step barely touches and a linear
creep not at all), and explicit rules so that neither a lone fast night (it could become the
reference) nor a lone slow night (it could become the current level) decides a verdict.

A creep must clear its threshold and the noise of the history; `hil gate` then confirms it against
the old artifact (`harness.gate.remeasure`) before it fails.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.gate.levels import MEDIAN_EFFICIENCY, check_direction, fmt_pct, mad_sigma, relative_effect


@dataclass(frozen=True)
class Step:
    start: int  # first run index of the segment (inclusive)
    end: int  # one past the last run index
    level: float  # median level of the segment (linear units)

    @property
    def n(self) -> int:
        return self.end - self.start


# Default penalties in units of the series' noise sigma (log units): a new segment must lower the
# summed absolute log deviation by this much. Measured on flat series with 0.5 % noise, 6 sigma
# splits 1-4 % of 15-120-night series (4 sigma: 9-16 %). creep_regression uses the lower value
# because it has to follow a ramp closely and its own false flags are held off by the threshold
# (see detect_steps / creep_regression).
STEP_PENALTY_SIGMAS = 6.0
CREEP_PENALTY_SIGMAS = 4.0
# A creep must also clear this many standard errors of the segment medians (see creep_regression).
CREEP_NOISE_Z = 3.0
# A lasting change of an unchanged artifact must show on each of this many latest runs (Creep.sustained).
SUSTAIN_RUNS = 3


def detect_steps(levels: Sequence[float], min_size: int = 2, penalty: float | None = None) -> list[Step]:
    """Piecewise-constant fit of one level per run (time order) by exact dynamic programming.

    Cost of a segment = sum of |log level - segment median| (L1): one wild night moves an L1 fit
    far less than a least-squares fit; it does not drag the median of the segment it falls in,
    and with ``min_size >= 2`` it cannot get a segment of its own. Every segment costs
    ``penalty`` (log units; default ``STEP_PENALTY_SIGMAS`` x a robust noise sigma from the MAD
    of second differences, which steps barely touch). A lower penalty follows a creep sooner (a
    1 %/night ramp becomes a staircase whose last stair is closer to the present) but splits
    noise more often.

    O(n^2) candidate segments, costed in one vectorised pass per segment length, then an O(n^2)
    dynamic programme; a few milliseconds for 50 nights, fine for a few hundred.
    """
    y = _history_logs(levels)
    n, min_size = y.size, max(1, int(min_size))
    if n == 0:
        return []
    if n < 2 * min_size:
        return [_step(y, 0, n)]
    pen = STEP_PENALTY_SIGMAS * _series_sigma(y) if penalty is None else float(penalty)
    bounds = _partition(_segment_costs(y), pen, min_size)
    return [_step(y, s, e) for s, e in itertools.pairwise(bounds)]


def _history_logs(levels: Sequence[float]) -> np.ndarray:
    """Unlike process levels, nights cannot be dropped silently here: indices are run positions
    that the caller maps back to dates."""
    a = np.asarray(levels, dtype=float).ravel()
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError("levels must be positive and finite (drop failed nights before step detection)")
    return np.log(a)


def _step(y: np.ndarray, start: int, end: int) -> Step:
    return Step(start, end, float(np.exp(np.median(y[start:end]))))


def _series_sigma(y: np.ndarray) -> float:
    """Night-to-night noise of a history from second differences (variance 6 sigma^2): they
    cancel any level *and* any linear trend, so a step only adds two outlying values, which the
    MAD ignores, and a creep adds nothing. With first differences a 1 %/night ramp read as extra
    noise, raised its own penalty and was flagged a night later. Floored like noise_sigma."""
    sigma = mad_sigma(np.diff(y, 2)) / math.sqrt(6.0) if y.size > 3 else math.nan
    return max(sigma if math.isfinite(sigma) else 0.0, 1e-4)


def _segment_costs(y: np.ndarray) -> np.ndarray:
    """cost[i, j] = L1 cost of y[i:j], one vectorised pass per segment length. For a sorted
    window the absolute deviations from its median sum to (upper half) - (lower half), so no
    median has to be subtracted explicitly."""
    n = y.size
    cost = np.full((n + 1, n + 1), np.inf)
    for length in range(1, n + 1):
        starts = np.arange(n - length + 1)
        win = np.sort(y[starts[:, None] + np.arange(length)], axis=1)
        half = length // 2
        cost[starts, starts + length] = win[:, length - half :].sum(axis=1) - win[:, :half].sum(axis=1)
    return cost


def _partition(cost: np.ndarray, penalty: float, min_size: int) -> list[int]:
    """Optimal partitioning: best[j] = min_i best[i] + cost[i, j] + penalty over segments of at
    least min_size. argmin takes the earliest i on ties (longer last segment)."""
    n = cost.shape[0] - 1
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    prev = np.zeros(n + 1, dtype=int)
    for j in range(min_size, n + 1):
        cand = best[: j - min_size + 1] + cost[: j - min_size + 1, j]
        i = int(np.argmin(cand))
        best[j], prev[j] = cand[i] + penalty, i
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(int(prev[bounds[-1]]))
    return bounds[::-1]


@dataclass(frozen=True)
class Creep:
    flagged: bool
    effect: float  # current window vs best earlier segment, positive = worse
    start_index: int | None  # first run after the reference that is already clearly worse
    current_start: int | None  # first run of the current window
    reference_level: float
    current_level: float
    reason: str
    steps: tuple[Step, ...]
    critical: float = math.nan  # the effect a flag needs (threshold and noise bar)
    # the least-off of the last SUSTAIN_RUNS runs against the reference: a level that is off on
    # every one of them, not a window whose median a run of disturbed nights pulled up
    sustained_effect: float = math.nan

    @property
    def sustained(self) -> bool:
        return self.flagged and self.sustained_effect > self.critical


def creep_regression(
    levels: Sequence[float],
    threshold: float,
    direction: int,
    min_segment: int = 2,
    penalty: float | None = None,
    noise_z: float = CREEP_NOISE_Z,
    sigma: float | None = None,
) -> Creep:
    """Slow regressions: each night may pass the nightly gate (1 % per night against a reference
    that follows accepted runs), but the series is now worse than the best it has been. Compares
    the last segment with the *best* earlier segment of at least ``min_segment`` runs, so that one
    unusually fast night can never become the reference.

    Steps are detected with ``min_size=1``: a lone outlier night then gets a segment of its own,
    where it is harmless (too short to be a reference). Forcing it into a 2-night segment instead
    would give that segment a median halfway to the outlier (-4 % for a -8 % night), which *would*
    become the reference. When the last segment is shorter than ``min_segment`` the current level
    is the median of the last ``2 * min_segment - 1`` runs: a lone slow night is then outvoted,
    while the newest stair of a creep still counts (merging it with the whole previous stair
    instead delays a 1 %/night creep by a night).

    The default penalty is ``CREEP_PENALTY_SIGMAS`` (4) noise sigmas rather than the 6 of
    `detect_steps`: a noise split is harmless here because segment medians of noise differ by far
    less than a threshold of several sigma, whereas a coarse staircase lags a creep by a night.

    A flag needs the effect beyond the threshold AND beyond ``noise_z`` standard errors of the two
    segment medians: the best earlier segment is the minimum of several, so on a noisy series the
    threshold alone would flag noise. The night noise is the larger of the history's own (second
    differences; a MAD of ten of them is often half the truth) and ``sigma``, the gate's noise model
    of the series. `hil gate` confirms a
    flag against the old artifact before it fails (`harness.gate.remeasure`).
    The caller decides how far back ``levels`` goes (e.g. since the last intentionally accepted
    regression).
    """
    direction = check_direction(direction)
    y = _history_logs(levels)
    if penalty is None:
        penalty = CREEP_PENALTY_SIGMAS * _series_sigma(y)
    steps = tuple(detect_steps(levels, min_size=1, penalty=penalty))
    cur_start = _current_start(steps, min_segment)
    # segments before the last one; when the last is short, the current window overlaps the
    # segment before it, which only makes the comparison more conservative
    earlier = [(i, s) for i, s in enumerate(steps[:-1]) if s.n >= min_segment]
    if not earlier:
        return _no_creep("no earlier segment of at least min_segment runs", steps)
    i_ref, ref = min(earlier, key=lambda t: direction * t[1].level)
    current = float(np.exp(np.median(y[cur_start:])))
    effect = relative_effect(math.log(current / ref.level), direction)
    start = _slide_start(steps, i_ref, cur_start, ref.level, threshold / 2, direction)
    # noise bar: the best of several earlier segments is biased low by a few standard errors of a
    # segment median, so on a series whose nights wander by more than the threshold the threshold
    # alone flags plain noise (seen: +5 % "creep" on an unchanged series with 3 % night noise)
    noise = max(_series_sigma(y), sigma or 0.0)
    se = noise * math.sqrt(1.0 / ref.n + 1.0 / (y.size - cur_start)) / math.sqrt(MEDIAN_EFFICIENCY)
    critical = max(threshold, math.expm1(noise_z * se))
    flagged = effect > critical
    word = "creep/step regression" if flagged else "within threshold/noise"
    reason = (
        f"{word}: runs {cur_start}- are {fmt_pct(effect)} vs best segment runs {ref.start}-{ref.end - 1} "
        f"(critical {fmt_pct(critical)})"
    )
    least = float(np.exp(min(y[-SUSTAIN_RUNS:], key=lambda v: direction * v)))
    sustained = relative_effect(math.log(least / ref.level), direction)
    return Creep(flagged, effect, start, cur_start, ref.level, current, reason, steps, critical, sustained)


def _current_start(steps: tuple[Step, ...], min_segment: int) -> int:
    last = steps[-1] if steps else Step(0, 0, math.nan)
    if last.n >= min_segment:
        return last.start
    return max(0, last.end - (2 * min_segment - 1))


def _slide_start(
    steps: tuple[Step, ...], i_ref: int, cur_start: int, ref_level: float, margin: float, direction: int
) -> int:
    """First run of the unbroken sequence of segments up to the current window that are worse than
    the reference by more than ``margin``: where a creep left the good level, rather than where
    the newest stair of its staircase starts."""
    j = next(i for i, s in enumerate(steps) if s.start <= cur_start < s.end)
    while j - 1 > i_ref and relative_effect(math.log(steps[j - 1].level / ref_level), direction) > margin:
        j -= 1
    return max(steps[j].start, steps[i_ref].end)


def _no_creep(reason: str, steps: tuple[Step, ...]) -> Creep:
    level = steps[-1].level if steps else math.nan
    return Creep(False, math.nan, None, None, math.nan, level, reason, steps)
