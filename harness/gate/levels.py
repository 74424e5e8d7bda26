"""Process levels, their noise and their reference: the ground the nightly regression gate stands on.

The gate is pure statistics (numpy + scipy, no I/O, nothing from the harness outside these
modules), so that the decision rules can be reasoned about and simulated in isolation. This module
holds what all of it shares; the decisions live in `harness.gate.family` (one night, all series),
`harness.gate.confirm` (re-measurement), `harness.gate.steps` (a series' history) and
`harness.gate.windows` (cycle-counted MCU timing).

The unit of comparison is a *process* (one runner execution). A nightly run measures each series
(device x model x variant x metric) with ``r`` fresh processes and each process yields one *level*.
Everything is done on log levels: ratios become differences, so every sigma, standard error and
threshold is relative (0.01 = 1 %) and the same rules work for microseconds and for megabytes.

``direction`` is +1 when lower is better (latency, memory, energy) and -1 when higher is better
(accuracy). Every ``effect`` is signed so that positive means *worse*:
``effect = direction * (current / reference - 1)``.

Why these estimators:

- Noise (`noise_sigma`) is split into a within-run and a between-run (night) component, because a
  fresh night moves all its processes together; both come from medians of pairwise differences, so
  one crashed-cache process or one disturbed night does not set the noise level for months.
- The reference (`reference_level`) is a *median* of the levels of several accepted runs, so that
  neither one bad process nor one lucky night can move it. The price is precision: for normal data
  a sample median is only ``MEDIAN_EFFICIENCY`` = 2 / pi as efficient as the mean, i.e. a median of
  K levels is as precise as a mean of only ~0.64 K levels. `harness.gate.family.compare` puts that
  factor into its standard error instead of pretending the reference is a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

LOWER_IS_BETTER = 1
HIGHER_IS_BETTER = -1

# 1 / Phi^-1(3/4): turns a median absolute deviation into a normal-consistent sigma.
_MAD_TO_SIGMA = 1.482602218505602
# Median of |Z|, Z standard normal.
_MEDIAN_ABS_Z = 0.6744897501960817
# Asymptotic efficiency of a sample median against the mean for normal data (2 / pi): the
# reference is a median of K levels, which is as precise as a mean of only ~0.64 K levels.
MEDIAN_EFFICIENCY = 2.0 / math.pi

PENDING = "pending"
INCONCLUSIVE = "inconclusive"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
PASS = "pass"


# helpers shared by family, confirm, steps and windows


def check_direction(direction: int) -> int:
    if direction not in (LOWER_IS_BETTER, HIGHER_IS_BETTER):
        raise ValueError(f"direction must be +1 (lower is better) or -1 (higher is better), got {direction!r}")
    return int(direction)


def log_levels(levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """A non-positive or non-finite level is a failed measurement, not a very fast one, so it is
    dropped rather than allowed to reach ``log``."""
    a = np.asarray(levels, dtype=float).ravel()
    return np.log(a[np.isfinite(a) & (a > 0)])


def mad_sigma(x: np.ndarray) -> float:
    """MAD with the ``n / (n - 0.8)`` small-sample factor (the raw MAD of 5-10 values is 10-20 %
    low). Used where up to half of the values may be off, e.g. differences across steps."""
    n = x.size
    if n < 2:
        return math.nan
    mad = _MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x))))
    return mad * n / (n - 0.8)


def _pairwise_sigma(abs_diffs: np.ndarray) -> float:
    """sigma from the median of |x_i - x_j| (each is sqrt(2) sigma |Z|). Chosen over the MAD where
    outliers are rare: ~80 % efficient against 37 % for the MAD (the sd of a 40-run estimate is
    13 % instead of 18 %) with a breakdown point of 29 %; it errs high, not low, for short
    histories (+6 % at 8 values), and high is the safe side for false alarms."""
    if abs_diffs.size == 0:
        return math.nan
    return float(np.median(abs_diffs)) / (math.sqrt(2.0) * _MEDIAN_ABS_Z)


def _pair_diffs(x: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(x.size, 1)
    return np.abs(x[i] - x[j])


def relative_effect(log_ratio: float, direction: int) -> float:
    """Relative change, positive = worse; from the log ratio so rounding cannot flip its sign.
    A critical change from a t quantile with very few degrees of freedom can exceed what a float
    holds: it is infinite then (nothing can be that significant), never an OverflowError."""
    return direction * (math.expm1(log_ratio) if log_ratio < 700.0 else math.inf)


def upper_tail(z: float, dof: float | None) -> float:
    """Normal when sigma is treated as known, Student t when the caller passes the degrees of
    freedom of its estimate (a sigma from a short history is itself noisy)."""
    return float(special.ndtr(-z)) if dof is None else float(special.stdtr(dof, -z))


def critical_z(alpha: float, dof: float | None) -> float:
    return float(-special.ndtri(alpha)) if dof is None else float(-special.stdtrit(dof, alpha))


def fmt_pct(x: float) -> str:
    return f"{100.0 * x:+.2f} %"


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float  # relative sd of ONE process level around the long-term reference (log scale)
    dof: float  # Satterthwaite degrees of freedom of sigma (nominal, see noise_sigma); inf for a prior
    n_levels: int  # valid process levels used
    n_runs: int  # runs with at least one valid level
    too_few: bool  # fewer than min_levels levels or min_runs runs: do not trust the history
    source: str  # "history" or "prior"
    sigma_within: float  # process-to-process sd inside one run
    sigma_between: float  # sd of the run (night) effect, 0 when not separable from within noise


def noise_sigma(
    history_levels: Sequence[Sequence[float]],
    prior_sigma: float | None = None,
    *,
    min_levels: int = 6,
    min_runs: int = 2,
    min_sigma: float = 1e-4,
) -> NoiseEstimate:
    """How far one process level strays from the long-term reference.

    Two components, because a fresh night moves all its processes together: the *within-run*
    spread comes from the median absolute pairwise difference inside each run (differences inside
    a run cancel the night effect; the median ignores one crashed-cache process), the *between-run*
    spread from the median absolute pairwise difference of the run means (a median so that one
    disturbed night does not set the noise level for months). A run mean carries
    ``sigma_within^2 / n`` of within noise, which is removed before the between component is taken.
    ``sigma^2 = within^2 + between^2``.

    ``dof`` uses nominal component degrees of freedom (``sum(n_i - 1)`` and ``runs - 1``); robust
    estimators are less efficient than that, so treat it as optimistic.

    ``min_sigma`` exists because quantised timers give identical levels and a median spread of
    zero, which would make every later difference infinitely significant.

    With fewer than ``min_levels`` levels or ``min_runs`` runs (one run says nothing about nights)
    the estimate is flagged ``too_few``; if ``prior_sigma`` is given it is returned instead with
    ``source="prior"``.
    """
    runs = [r for r in (log_levels(x) for x in history_levels) if r.size]
    n_levels, n_runs = sum(r.size for r in runs), len(runs)
    s_w, dof_w = within_sigma(runs)
    s_b, dof_b, s_run = _between_sigma(runs, s_w)
    too_few = n_levels < min_levels or n_runs < min_runs
    if too_few and prior_sigma is not None:
        return NoiseEstimate(float(prior_sigma), math.inf, n_levels, n_runs, True, "prior", s_w, s_b)
    sigma = max(s_run, min_sigma) if math.isfinite(s_run) else math.nan
    return NoiseEstimate(sigma, _satterthwaite(s_w, dof_w, s_b, dof_b), n_levels, n_runs, too_few, "history", s_w, s_b)


def within_sigma(runs: list[np.ndarray]) -> tuple[float, int]:
    """|x_j - x_k| of two processes of the same run is sqrt(2) sigma_w |Z|; its median is robust
    and, unlike deviations from the run median, not shrunk for runs of 2-3 processes."""
    diffs = [_pair_diffs(r) for r in runs if r.size > 1]
    if not diffs:
        return math.nan, 0
    return _pairwise_sigma(np.concatenate(diffs)), sum(r.size - 1 for r in runs)


def _between_sigma(runs: list[np.ndarray], s_w: float) -> tuple[float, int, float]:
    """Returns (sigma_between, its dof, sigma_run)."""
    if len(runs) < 2:
        return math.nan, 0, s_w
    s_c = _pairwise_sigma(_pair_diffs(np.array([r.mean() for r in runs])))
    inv_n = float(np.mean([1.0 / r.size for r in runs]))
    w2 = s_w * s_w if math.isfinite(s_w) else 0.0
    b2 = max(0.0, s_c * s_c - w2 * inv_n)
    return math.sqrt(b2), len(runs) - 1, math.sqrt(w2 + b2) if w2 > 0 else s_c


def _satterthwaite(s_w: float, dof_w: float, s_b: float, dof_b: float) -> float:
    parts = [(s * s, d) for s, d in ((s_w, dof_w), (s_b, dof_b)) if math.isfinite(s) and s > 0 and d > 0]
    if not parts:
        return 0.0
    return sum(v for v, _ in parts) ** 2 / sum(v * v / d for v, d in parts)


def reference_level(accepted_runs_levels: Sequence[Sequence[float]], k: int = 5) -> tuple[float, int, int]:
    """Median of all process levels of the last ``k`` accepted runs: several runs so that one
    lucky or unlucky night cannot move the reference, a median so that one bad process cannot
    either. Taken in log space (the geometric middle for an even count) like everything else.
    Runs without any valid level do not count towards ``k``.

    Returns ``(level, n_levels, runs_used)``; ``(nan, 0, 0)`` without history.
    """
    runs = [r for r in (log_levels(x) for x in accepted_runs_levels) if r.size][-k:] if k > 0 else []
    if not runs:
        return math.nan, 0, 0
    pooled = np.concatenate(runs)
    return float(np.exp(np.median(pooled))), int(pooled.size), len(runs)
