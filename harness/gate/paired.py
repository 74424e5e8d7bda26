"""A changed artifact judged on its in-process ratio to the series' reference artifact.

`hil run` times a changed artifact together with its series' reference artifact in the same runner
processes, alternating blocks of a few milliseconds (`harness.run.reference`). Both sides then see
the same machine, so the night-to-night drift of a shared or virtual CPU (several per cent) cancels
in their ratio, which varies by well under 1 % between processes. Each process gives one log ratio
``log(candidate level / reference level)``; the gate tests their median against zero with the
series' own spread of such ratios, and the comparison joins the gate's Holm family like every other
(`harness.gate.family`), so the family-wise false-alarm budget is unchanged.

Noise: the within-run spread of the per-process log ratios, pooled over this run and the series'
earlier paired runs (robust pairwise differences, `harness.gate.levels.within_sigma`), shrunk
towards ``PAIRED_NOISE_PRIOR`` with ``PRIOR_DOF`` pseudo degrees of freedom, so that three processes
of one night that happen to agree closely cannot make a tiny effect "significant". There is no
reference term: the reference is measured in the same processes, not taken from earlier nights.

What it does not see: a change of the device or the runtime moves both artifacts alike. That is
what the nightly levels of unchanged artifacts are compared for (`harness.gate.process_checks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.gate.family import Comparison, median_efficiency
from harness.gate.levels import PENDING, relative_effect, upper_tail, within_sigma
from harness.gate.process_checks import SeriesStats, direction_of

# gated latency level -> the reference artifact's level measured in the same process (harness.run.rows)
PAIRED_METRICS = {
    "latency_p50_us": "paired_latency_p50_us",
    "latency_p90_us": "paired_latency_p90_us",
    "latency_min_us": "paired_latency_min_us",
}
PAIRED_NOISE_PRIOR = 0.01  # sd of one process's log ratio before the series has paired history
PRIOR_DOF = 6  # weight of that prior, in degrees of freedom
SOURCE = "paired"  # SeriesStats.sigma_source of an in-process comparison


@dataclass
class PairedInput:
    metric: str
    current: list[float]  # the candidate's level per process
    reference: list[float]  # the reference artifact's level in the same process
    disturbed: list[bool]
    history: list[list[float]]  # log ratios of earlier paired runs of the series, one list per run
    threshold: float
    reference_sha256: str = ""


def log_ratios(current: list[float], reference: list[float]) -> np.ndarray:
    cur, ref = np.asarray(current, dtype=float), np.asarray(reference, dtype=float)
    ok = np.isfinite(cur) & np.isfinite(ref) & (cur > 0) & (ref > 0)
    return np.log(cur[ok] / ref[ok])


def paired_noise(history: list[list[float]], current: np.ndarray) -> tuple[float, float]:
    """(sigma, degrees of freedom) of one process's log ratio."""
    runs = [np.asarray(r, dtype=float) for r in history if len(r) > 1] + ([current] if current.size > 1 else [])
    s, dof = within_sigma(runs)
    if not math.isfinite(s) or dof == 0:
        return PAIRED_NOISE_PRIOR, float(PRIOR_DOF)
    return math.sqrt((dof * s * s + PRIOR_DOF * PAIRED_NOISE_PRIOR**2) / (dof + PRIOR_DOF)), float(dof + PRIOR_DOF)


def paired_comparison(p: PairedInput, name: str) -> SeriesStats:
    direction = direction_of(p.metric)
    keep = [not d for d in p.disturbed]
    cur = [x for x, k in zip(p.current, keep) if k]
    ref = [x for x, k in zip(p.reference, keep) if k]
    ratios = log_ratios(cur, ref)
    sigma, dof = paired_noise(p.history, ratios)
    reference = float(np.exp(np.median(np.log([x for x in ref if x > 0])))) if ratios.size else math.nan
    if ratios.size == 0:
        reason = "all windows disturbed" if p.current and not cur else "too few processes"
        nan = math.nan
        c = Comparison(name, nan, nan, nan, nan, nan, nan, 0, 0, p.threshold, direction, dof, "inconclusive", reason)
        return SeriesStats(c, sigma, SOURCE, reference, 0, 0)
    n = int(ratios.size)
    log_ratio = float(np.median(ratios))
    se = sigma / math.sqrt(n * median_efficiency(n))
    z = direction * log_ratio / se
    c = Comparison(
        name,
        relative_effect(log_ratio, direction),
        log_ratio,
        z,
        upper_tail(z, dof),
        upper_tail(-z, dof),
        se,
        n,
        n,
        float(p.threshold),
        direction,
        dof,
        PENDING,
        "",
    )
    return SeriesStats(c, sigma, SOURCE, reference, n, 0)
