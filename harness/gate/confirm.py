"""Re-measure before blaming: a paired comparison of the baseline artifact (A) and the candidate (B),
run interleaved A B A B ... on the same device.

Why pairing: adjacent processes share what drifts slowly (thermal state, the night's background
load), which is exactly the between-night variance that made the nightly verdict uncertain; the
difference of a pair cancels it.

Why a paired t-test on log ratios: log ratios of process levels are close to normal, and with 5-10
pairs rank tests are too coarse (the exact one-sided Wilcoxon or sign test cannot go below
p = 1/32 with 5 pairs, so one discordant pair already decides).

As in the nightly gate, a regression is confirmed only if it is significant AND the
(geometric-mean) effect exceeds the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from harness.gate.levels import check_direction, fmt_pct, relative_effect


@dataclass(frozen=True)
class Confirmation:
    confirmed: bool
    effect: float  # geometric-mean ratio B/A - 1, direction-signed (positive = B worse)
    ci_low: float  # two-sided (1 - 2 alpha) interval of effect; ci_low > 0 <=> one-sided p < alpha
    ci_high: float
    p: float  # one-sided paired t-test on log ratios, "B worse than A"
    n: int  # valid pairs
    reason: str


def confirm(
    pairs_a: Sequence[float],
    pairs_b: Sequence[float],
    threshold: float,
    direction: int,
    alpha: float = 0.05,
    *,
    min_pairs: int = 5,
) -> Confirmation:
    """Re-measure before blaming: A (baseline artifact) and B (candidate) interleaved A B A B ...,
    ``pairs_a[i]`` and ``pairs_b[i]`` adjacent in time.

    Pairing adjacent processes cancels what drifts slowly (thermal state, the night's background
    load), which is exactly the between-night variance that made the nightly verdict uncertain.
    What is left of a drift is one process interval of it, as a bias (B always runs second): keep
    the interleave tight, or alternate the order (A B B A ...) and pass the pairs in that order.
    The test is a one-sided paired t-test on ``log(b_i / a_i)``: log ratios of process levels are
    close to normal, and with 5-10 pairs rank tests are too coarse (the exact one-sided Wilcoxon or
    sign test cannot go below p = 1/32 with 5 pairs, so one discordant pair already decides).
    Confirmed only if significant AND the geometric-mean effect exceeds ``threshold``.
    """
    direction = check_direction(direction)
    a, b = np.asarray(pairs_a, dtype=float).ravel(), np.asarray(pairs_b, dtype=float).ravel()
    if a.size != b.size:
        raise ValueError(f"pairs_a has {a.size} levels, pairs_b {b.size}: interleaved runs must pair up")
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    w = direction * np.log(b[ok] / a[ok])  # positive = B worse
    n = int(w.size)
    if n < min_pairs:
        return Confirmation(False, math.nan, math.nan, math.nan, math.nan, n, f"too few pairs ({n} < {min_pairs})")
    mean, p, half = _paired_t(w, alpha)
    effect, lo, hi = (relative_effect(direction * x, direction) for x in (mean, mean - half, mean + half))
    confirmed = p < alpha and effect > threshold
    return Confirmation(confirmed, effect, lo, hi, p, n, _confirm_reason(confirmed, p, alpha, effect, threshold))


def _paired_t(w: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(mean, one-sided p, half width of the 1 - 2 alpha interval). Identical pairs (zero spread,
    e.g. a deterministic counter) give p 0 or 1 instead of a division by zero."""
    n, mean = w.size, float(w.mean())
    se = float(w.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        return mean, (0.0 if mean > 0 else 1.0), 0.0
    return mean, float(special.stdtr(n - 1, -mean / se)), float(special.stdtrit(n - 1, 1 - alpha)) * se


def _confirm_reason(confirmed: bool, p: float, alpha: float, effect: float, threshold: float) -> str:
    if confirmed:
        return f"confirmed: effect {fmt_pct(effect)} > {fmt_pct(threshold)}, p={p:.2g} < {alpha}"
    if p >= alpha:
        return f"not significant: p={p:.2g} >= {alpha} (effect {fmt_pct(effect)})"
    return f"significant but effect {fmt_pct(effect)} <= threshold {fmt_pct(threshold)}"
