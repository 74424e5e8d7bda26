"""Sampled and scalar metrics judged on process levels: the run's processes against a robust
reference, with a noise model per series and the false-alarm budget spent over the whole gate.

Why processes: most of the variance of a benchmark is between processes and between nights
(memory layout, CPU frequency, heat, neighbours), not between the invocations of one process. A
test on the raw samples of one process each side measures the within-process noise only and
calls every night-to-night wobble significant. Here each runner process contributes one level per
metric (its median latency, its model memory, its energy per inference), the run's ``r`` levels
are compared with the median of the last ``K`` accepted runs' levels, and the noise ``sigma_run``
of a single level is estimated from the series' own history (earlier runs, dedicated A/A
calibration runs included), falling back to a prior while the history is short.

The comparisons of one gate form one family: Holm's procedure (`harness.gate.family.holm`) keeps
P(any false regression in the gate) <= alpha, and a change must also exceed its metric threshold.
Slow creep that never trips a nightly comparison is caught by step detection over the run levels
(`harness.gate.steps.creep_regression`). MCU latency is cycle-counted and nearly deterministic:
window means with a tight threshold and a stability check (`harness.gate.windows.mcu_windows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.core.metrics import RULES
from harness.gate.family import Comparison, compare
from harness.gate.levels import HIGHER_IS_BETTER, LOWER_IS_BETTER, NoiseEstimate, noise_sigma, reference_level
from harness.gate.steps import creep_regression
from harness.gate.windows import mcu_windows

HISTORY_RUNS = 20  # runs of a series used for its noise estimate
CREEP_RUNS = 30  # runs of a series searched for steps and creep
MIN_CREEP_RUNS = 8  # shorter histories cannot tell a creep from the noise of a few nights
DEFAULT_NOISE_PRIOR = 0.02  # sigma_run of one process level before a series has history (2 %)
MCU_WINDOW_STABILITY = 0.005


def direction_of(metric: str) -> int:
    return LOWER_IS_BETTER if RULES[metric].higher_is_worse else HIGHER_IS_BETTER


@dataclass
class SeriesInput:
    """What the gate knows about one series (key x metric) before deciding."""

    metric: str
    current: list[float]  # one level per process of this run
    disturbed: list[bool]  # per process: a window the runner marked disturbed, or too few samples
    reference_runs: list[list[float]]  # levels of the reference runs (accepted runs), oldest first
    history_runs: list[list[float]]  # levels of earlier runs of the series (noise), oldest first
    threshold: float
    prior_sigma: float = DEFAULT_NOISE_PRIOR


@dataclass
class SeriesStats:
    comparison: Comparison
    sigma: float
    sigma_source: str  # history | prior
    reference: float
    n_reference: int
    reference_runs: int
    noise: NoiseEstimate | None = None  # the history's noise estimate (how many more runs it needs)


PRIOR_RUNS = 4  # weight of the prior in the night-to-night noise, in runs


def shrunk_noise(est, prior: float) -> tuple[float, float]:
    """(sigma, sigma_between) with the night-to-night part pulled towards the prior while the
    history is short. Three nights cannot tell a 1 % night effect from 0.3 %: taken at face value,
    a lucky short history turns the next ordinary night into a "significant" change. With
    PRIOR_RUNS pseudo-runs at the prior, the estimate starts conservative and becomes the series'
    own as its history grows."""
    if est.source != "history":
        return est.sigma, 0.0
    w = max(est.n_runs - 1, 0)
    between = math.sqrt((w * est.sigma_between**2 + PRIOR_RUNS * prior**2) / (w + PRIOR_RUNS))
    return math.sqrt(est.sigma_within**2 + between**2), between


def series_comparison(s: SeriesInput, name: str) -> SeriesStats:
    ref, n_ref, runs_used = reference_level(s.reference_runs, k=max(1, len(s.reference_runs)))
    est = noise_sigma(s.history_runs, prior_sigma=s.prior_sigma)
    dof = est.dof if est.source == "history" else None
    # the processes of one night share that night: the between-run part of the noise does not
    # average out over r processes, only over the reference's runs
    sigma, between = shrunk_noise(est, s.prior_sigma)
    if est.source == "prior":
        # a young series: the prior is a guess, but the spread between the processes of this run
        # and of its reference runs is measured; never assume less noise than they show (a p50 that
        # wanders by 10 % between processes on a busy host is not judged with a 2 % prior)
        seen = noise_sigma([s.current, *s.reference_runs]).sigma_within
        if math.isfinite(seen) and seen > sigma:
            sigma = seen
    c = compare(
        s.current,
        None if math.isnan(ref) else ref,
        n_ref,
        sigma,
        s.threshold,
        direction_of(s.metric),
        disturbed=s.disturbed,
        name=name,
        dof=dof,
        sigma_between=between,
        ref_runs=max(1, runs_used),
    )
    return SeriesStats(c, sigma, est.source, ref, n_ref, runs_used, est)


def run_level(levels: list[float]) -> float:
    """One level per run for step detection: the median of its processes."""
    return float(np.median(levels)) if levels else math.nan


def creep(history_levels: list[float], threshold: float, metric: str, sigma: float | None = None):
    """Step/creep detection over run levels (oldest first, this run last); None when too short.
    ``sigma``: the series' noise model (one process level), a floor for the history's own noise."""
    levels = [x for x in history_levels if x and not math.isnan(x) and x > 0]
    if len(levels) < MIN_CREEP_RUNS:
        return None
    return creep_regression(levels, threshold, direction_of(metric), sigma=sigma)


def mcu_window_verdict(
    base_windows: list[float],
    cur_windows: list[float],
    threshold: float,
    metric: str,
    stability: float = MCU_WINDOW_STABILITY,
):
    return mcu_windows(base_windows, cur_windows, threshold, stability=stability, direction=direction_of(metric))
