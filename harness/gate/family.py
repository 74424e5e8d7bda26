"""One nightly gate as a family of tests: `compare` turns each series into a one-sided statistic,
`holm` decides all series of the gate together.

A change is a regression only when it is both *significant* across the whole gate and *larger
than the threshold* (so that a significant but irrelevant 0.5 % shift does not page anybody).

Why Holm: a gate checks ~100 series per night, and 100 tests at alpha = 0.01 each would give a
false alarm in most nights. Holm's step-down procedure controls the family-wise error rate,
P(any false regression in the gate) <= ``alpha_family``, for any number of series and any
dependence between them (series measured on the same device share their nights), and it is
uniformly more powerful than Bonferroni. Improvements form a separate Holm family (see `holm`).

Why the median-efficiency factor: the reference is a median of K levels
(`harness.gate.levels.reference_level`), whose variance is ~pi/2 times that of a mean, so the
standard error uses ``MEDIAN_EFFICIENCY * K`` effective reference levels. The plain
``sigma * sqrt(1/r + 1/K)`` understates the se by ~4 % at r=3, K=15 and measurably inflates false
alarms when the threshold does not mask it (1.8 % instead of <= 1 % of null gates at threshold 0,
alpha 0.01).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.gate.levels import (
    IMPROVEMENT,
    INCONCLUSIVE,
    MEDIAN_EFFICIENCY,
    PASS,
    PENDING,
    REGRESSION,
    check_direction,
    critical_z,
    fmt_pct,
    log_levels,
    relative_effect,
    upper_tail,
)


@dataclass(frozen=True)
class Comparison:
    name: str
    effect: float  # relative change, positive = worse
    log_ratio: float  # log(current / reference), not direction-signed
    z: float  # direction-signed: positive = worse
    p: float  # one-sided p-value for "worse"
    p_better: float  # one-sided p-value for "better"
    se: float  # standard error of log_ratio
    r: int  # current processes used (after dropping disturbed ones)
    n_ref: int  # reference levels
    threshold: float
    direction: int
    dof: float | None  # None: sigma treated as known (normal); else Student t
    verdict: str  # "pending" (decided by holm) or "inconclusive"
    reason: str


def compare(
    current_levels: Sequence[float],
    reference: float | None,
    n_ref_levels: int,
    sigma: float,
    threshold: float,
    direction: int,
    *,
    disturbed: Sequence[bool] | None = None,
    name: str = "",
    dof: float | None = None,
    ref_efficiency: float = MEDIAN_EFFICIENCY,
    sigma_between: float = 0.0,
    ref_runs: int | None = None,
    min_processes: int = 1,
) -> Comparison:
    """Test statistic for one series; the verdict is left to `holm`, which sees the whole gate.

    ``z = log(median(current) / reference) / se`` with
    ``se = sigma * sqrt(1/(e_r r) + 1/(ref_efficiency * K))``. The current side is a median of
    ``r`` levels (``e_r`` its efficiency, 0.74 for 3: see `median_efficiency`; known
    disturbances are also removed through ``disturbed``). The reference is a *median* of K levels (see
    `reference_level`), whose variance is ~pi/2 times that of a mean; with ``ref_efficiency=1``
    the formula is the plain ``sigma * sqrt(1/r + 1/K)``, which understates the se by ~4 % at
    r=3, K=15 and measurably inflates false alarms when the threshold does not mask it (1.8 %
    instead of <= 1 % of null gates at threshold 0, alpha 0.01).

    ``sigma_between`` (with ``ref_runs``): processes of one night share the night effect, which
    averaging over ``r`` processes does not remove. When the history shows a real between-run
    component, pass it and the se becomes
    ``sqrt(w^2 (1/r + 1/K_eff) + b^2 (1 + 1/ref_runs))`` with ``w^2 = sigma^2 - b^2``.
    The default 0 treats all process levels as independent; without ``ref_runs`` every reference
    level counts as its own night.

    Missing pieces never become a silent pass or a regression: the result is ``inconclusive``
    with a reason (``no baseline``, ``too few processes``, ``all windows disturbed``,
    ``no noise estimate``).
    """
    direction = check_direction(direction)
    cur = np.asarray(current_levels, dtype=float).ravel()
    kept = cur if disturbed is None else cur[~_mask(disturbed, cur.size)]
    logs = log_levels(kept)
    reason = _missing(cur.size, kept.size, logs.size, reference, n_ref_levels, sigma, min_processes)
    if reason:
        return _inconclusive(name, reason, logs.size, n_ref_levels, threshold, direction, dof)
    log_ratio = float(np.median(logs)) - math.log(reference)  # type: ignore[arg-type]  # checked by _missing
    r_eff = logs.size * median_efficiency(logs.size)
    se = _standard_error(sigma, r_eff, n_ref_levels * ref_efficiency, sigma_between, ref_runs)
    z = direction * log_ratio / se
    return Comparison(
        name,
        relative_effect(log_ratio, direction),
        log_ratio,
        z,
        upper_tail(z, dof),
        upper_tail(-z, dof),
        se,
        int(logs.size),
        int(n_ref_levels),
        float(threshold),
        direction,
        dof,
        PENDING,
        "",
    )


# Efficiency of the median against the mean for n normal levels (variance ratio); 2/pi for large n.
_MEDIAN_EFFICIENCY_N = {1: 1.0, 2: 1.0, 3: 0.743, 4: 0.838, 5: 0.697, 6: 0.776, 7: 0.679, 8: 0.743, 9: 0.669}


def median_efficiency(n: int) -> float:
    """The current side is a median of its processes, like the reference: one process hit by a
    neighbour must not move the level (a geometric mean of 3 levels moved 7 % on a busy host where
    the median did not move), and both sides use the same estimator so that an A/A pair of identical
    levels has exactly zero effect."""
    return _MEDIAN_EFFICIENCY_N.get(n, MEDIAN_EFFICIENCY)


def _mask(disturbed: Sequence[bool], n: int) -> np.ndarray:
    mask = np.asarray(disturbed, dtype=bool).ravel()
    if mask.size != n:
        raise ValueError(f"disturbed mask has {mask.size} entries for {n} levels")
    return mask


def _missing(
    n_all: int, n_kept: int, n_valid: int, reference: float | None, n_ref: int, sigma: float, min_processes: int
) -> str:
    """First reason why no honest statistic exists, '' if there is none."""
    if reference is None or not math.isfinite(reference) or reference <= 0 or n_ref < 1:
        return "no baseline"
    if n_all == 0:
        return "too few processes"
    if n_kept == 0:
        return "all windows disturbed"
    if n_valid < max(1, min_processes):
        return "too few processes"
    if sigma is None or not math.isfinite(sigma) or sigma <= 0:
        return "no noise estimate"
    return ""


def _inconclusive(
    name: str, reason: str, r: int, n_ref: int, threshold: float, direction: int, dof: float | None
) -> Comparison:
    nan = math.nan
    return Comparison(
        name, nan, nan, nan, nan, nan, nan, int(r), int(n_ref), float(threshold), direction, dof, INCONCLUSIVE, reason
    )


def _standard_error(sigma: float, r: float, k_eff: float, sigma_between: float, ref_runs: int | None) -> float:
    b = min(max(sigma_between, 0.0), sigma)
    w2 = sigma * sigma - b * b
    runs = ref_runs if ref_runs else max(k_eff, 1.0)
    return math.sqrt(w2 * (1.0 / r + 1.0 / k_eff) + b * b * (1.0 + 1.0 / runs))


@dataclass(frozen=True)
class Decision:
    comparison: Comparison
    verdict: str  # "regression" | "improvement" | "pass" | "inconclusive"
    reason: str
    rank: int  # 1-based rank in the regression family (by p), 0 when inconclusive
    z_crit: float  # Holm critical z used for this comparison (regression family)
    critical_change: float  # smallest effect that would have been a regression here
    critical_improvement: float  # largest (most negative) effect that would have been an improvement
    p_holm: float  # Holm-adjusted p-value, regression family
    p_holm_better: float  # Holm-adjusted p-value, improvement family


def holm(comparisons: Sequence[Comparison], alpha_family: float = 0.01) -> list[Decision]:
    """Verdicts for one gate, in input order.

    Regressions: Holm step-down over the one-sided "worse" p-values of all conclusive comparisons,
    so that P(any false regression in the gate) <= ``alpha_family`` for any number of series and
    any dependence between them, while being uniformly more powerful than Bonferroni. A comparison
    is a regression only if Holm rejects it AND its effect exceeds its threshold; its
    ``critical_change = max(threshold, effect at z_crit)`` is what a report should print as "would
    have failed above". Comparisons the procedure did not reach get the critical z of the rank
    where it stopped, which is the bar they would actually have had to clear.

    Improvements: a *separate* Holm family over the "better" p-values at the same alpha. Reasons:
    an improvement pages nobody, so spending half of the regression alpha on it (a two-sided
    family) would cost regression power for nothing; keeping the two families separate leaves the
    regression guarantee exactly as stated. The price: the chance of any false verdict of either
    kind is <= 2 * alpha_family.

    Inconclusive comparisons are passed through and do not count in m (they test nothing).
    """
    idx = [i for i, c in enumerate(comparisons) if c.verdict != INCONCLUSIVE]
    out: list[Decision | None] = [None] * len(comparisons)
    for i, c in enumerate(comparisons):
        if c.verdict == INCONCLUSIVE:
            out[i] = Decision(c, INCONCLUSIVE, c.reason, 0, math.nan, math.nan, math.nan, math.nan, math.nan)
    if idx:
        conc = [comparisons[i] for i in idx]
        worse = _holm_family(np.array([c.p for c in conc]), alpha_family)
        better = _holm_family(np.array([c.p_better for c in conc]), alpha_family)
        for j, i in enumerate(idx):
            out[i] = _decide(conc[j], j, worse, better)
    return out  # type: ignore[return-value]


def holm_adjust(p_values: Sequence[float], alpha: float) -> tuple[list[bool], list[float]]:
    """(rejected, Holm-adjusted p) for a plain list of p-values, e.g. the re-measurements of one
    gate (`harness.gate.remeasure`)."""
    p = np.asarray(p_values, dtype=float).ravel()
    if p.size == 0:
        return [], []
    fam = _holm_family(np.where(np.isfinite(p), p, 1.0), alpha)
    return [bool(x) for x in fam.rejected], [float(x) for x in fam.p_adj]


@dataclass(frozen=True)
class _Family:
    rank: np.ndarray  # 1-based rank of each item by p
    alpha_at: np.ndarray  # per-item alpha of the rank that applies to it
    rejected: np.ndarray
    p_adj: np.ndarray


def _holm_family(p: np.ndarray, alpha: float) -> _Family:
    """Holm on arrays. Ties keep input order (stable sort) so results are reproducible."""
    m = p.size
    order = np.argsort(p, kind="stable")
    levels = alpha / (m - np.arange(m))
    ok = p[order] <= levels
    stop = m if ok.all() else int(np.argmin(ok))
    applied = levels.copy()
    applied[stop:] = levels[min(stop, m - 1)]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    rank, alpha_at, rejected, p_adj = (np.empty(m, int), np.empty(m), np.empty(m, bool), np.empty(m))
    rank[order] = np.arange(1, m + 1)
    alpha_at[order] = applied
    rejected[order] = np.arange(m) < stop
    p_adj[order] = adj
    return _Family(rank, alpha_at, rejected, p_adj)


def _decide(c: Comparison, j: int, worse: _Family, better: _Family) -> Decision:
    z_w = critical_z(float(worse.alpha_at[j]), c.dof)
    z_b = critical_z(float(better.alpha_at[j]), c.dof)
    crit = max(c.threshold, relative_effect(c.direction * z_w * c.se, c.direction))
    crit_b = min(-c.threshold, relative_effect(-c.direction * z_b * c.se, c.direction))
    if worse.rejected[j] and c.effect > c.threshold:
        verdict, reason = REGRESSION, f"effect {fmt_pct(c.effect)} > {fmt_pct(crit)} (Holm rank {worse.rank[j]})"
    elif better.rejected[j] and c.effect < -c.threshold:
        verdict, reason = IMPROVEMENT, f"effect {fmt_pct(c.effect)} < {fmt_pct(crit_b)} (Holm rank {better.rank[j]})"
    elif worse.rejected[j]:
        verdict, reason = PASS, f"significant but effect {fmt_pct(c.effect)} <= threshold {fmt_pct(c.threshold)}"
    else:
        verdict, reason = PASS, f"effect {fmt_pct(c.effect)} within noise/threshold (critical {fmt_pct(crit)})"
    return Decision(
        c, verdict, reason, int(worse.rank[j]), z_w, crit, crit_b, float(worse.p_adj[j]), float(better.p_adj[j])
    )
