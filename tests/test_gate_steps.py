"""Step and creep detection over a series' history (harness.gate.steps): hand-made step series, and
seeded simulations of creeps and flat series (fixed seeds, so every run sees the same numbers;
nothing here measures time).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.gate.levels import HIGHER_IS_BETTER, LOWER_IS_BETTER
from harness.gate.steps import creep_regression, detect_steps

THRESHOLD = 0.03


# --------------------------------------------------------------------------------------------
# simulation helpers


def creep_series(seed: int, flat: int = 10, nights: int = 25, slope: float = 0.01, noise: float = 0.005):
    """Flat for `flat` nights, then 1 %/night slower: night index `flat` is the first slow night."""
    rng = np.random.default_rng(seed)
    t = np.arange(nights)
    drift = np.where(t >= flat, (t - flat + 1) * slope, 0.0)
    return np.exp(drift + rng.normal(0.0, noise, nights))


def creep_delay(levels: np.ndarray, flat: int = 10) -> tuple[int | None, int | None]:
    """(creep nights until the first flag, start_index) when re-evaluated every night."""
    for t in range(flat, levels.size):
        c = creep_regression(levels[: t + 1], THRESHOLD, LOWER_IS_BETTER)
        if c.flagged:
            return t - flat + 1, c.start_index
    return None, None


def counts(values: np.ndarray) -> dict[int, int]:
    return {int(v): int(c) for v, c in zip(*np.unique(values, return_counts=True))}


def flat_flag_rate(noise: float, seeds: range, nights: int = 40, first: int = 4) -> tuple[int, int]:
    flags = checks = 0
    for seed in seeds:
        levels = np.exp(np.random.default_rng(seed).normal(0.0, noise, nights))
        for t in range(first, nights):
            checks += 1
            flags += creep_regression(levels[: t + 1], THRESHOLD, LOWER_IS_BETTER).flagged
    return flags, checks


# --------------------------------------------------------------------------------------------
# detect_steps / creep_regression


def test_detect_steps_finds_one_clear_step():
    rng = np.random.default_rng(7)
    levels = np.exp(np.r_[np.zeros(20), np.full(20, math.log(1.05))] + rng.normal(0, 0.005, 40))
    steps = detect_steps(levels)
    assert [(s.start, s.end) for s in steps] == [(0, 20), (20, 40)]
    assert steps[1].level / steps[0].level == pytest.approx(1.05, abs=0.005)


def test_detect_steps_keeps_a_flat_series_whole_and_ignores_an_outlier():
    levels = np.exp(np.random.default_rng(8).normal(0, 0.005, 30))
    assert len(detect_steps(levels)) == 1
    levels[12] *= 1.2
    steps = detect_steps(levels)
    assert len(steps) == 1 and steps[0].level == pytest.approx(1.0, abs=0.004)


def test_detect_steps_penalty_and_min_size():
    levels = np.exp(np.random.default_rng(9).normal(0, 0.01, 12))
    assert len(detect_steps(levels, min_size=1, penalty=0.0)) == 12
    assert all(s.n >= 3 for s in detect_steps(levels, min_size=3, penalty=0.0))
    assert len(detect_steps(levels, penalty=10.0)) == 1
    assert detect_steps([]) == [] and len(detect_steps([1.0, 2.0, 3.0])) == 1
    with pytest.raises(ValueError):
        detect_steps([1.0, 0.0, 1.0, 1.0])


def test_creep_of_1_percent_per_night_is_flagged_within_5_nights():
    results = [creep_delay(creep_series(seed)) for seed in range(100)]
    delays = np.array([d for d, _ in results])
    starts = np.array([s for _, s in results])
    print(
        f"\ncreep 1 %/night, noise 0.5 %, threshold 3 %, 100 seeds: flagged on creep night "
        f"{counts(delays)}; start_index {counts(starts)} (first slow night = 10)"
    )
    assert np.all(delays >= 3)  # never before the drift exceeds the threshold
    assert np.all(delays <= 6)  # i.e. at most 5 nights after the first slow night
    assert np.mean(delays <= 5) >= 0.9  # by the 5th slow night (+5 %) in >= 90 % of seeds
    assert np.mean(np.abs(starts - 10) <= 2) >= 0.9


def test_a_single_fast_night_does_not_become_the_reference():
    flagged = 0
    for seed in range(100):
        levels = np.exp(np.random.default_rng(100 + seed).normal(0, 0.005, 22))
        levels[10] *= 0.92
        flagged += sum(creep_regression(levels[: t + 1], THRESHOLD, 1).flagged for t in range(11, 22))
    assert flagged == 0


def test_a_single_slow_night_is_not_a_creep():
    levels = np.exp(np.random.default_rng(12).normal(0, 0.005, 15))
    levels[-1] *= 1.08
    c = creep_regression(levels, THRESHOLD, 1)
    assert [s.n for s in c.steps] == [14, 1]  # the slow night is isolated...
    assert not c.flagged and abs(c.effect) < 0.01  # ...and outvoted in the current window
    assert c.current_start == 12


def test_flat_series_false_flag_rate():
    flags, checks = flat_flag_rate(0.005, range(1000, 1080))
    flags1, checks1 = flat_flag_rate(0.01, range(2000, 2080))
    print(
        f"\nflat series, creep check every night (nights 5-40, 80 seeds): noise 0.5 %: {flags}/{checks}; "
        f"noise 1 %: {flags1}/{checks1} = {flags1 / checks1:.3%}"
    )
    assert flags == 0
    assert flags1 / checks1 <= 0.002


def test_creep_reports_a_step_for_higher_is_better_metrics():
    rng = np.random.default_rng(13)
    acc = np.exp(np.r_[np.zeros(12), np.full(4, math.log(0.95))] + rng.normal(0, 0.002, 16))
    c = creep_regression(acc, 0.03, HIGHER_IS_BETTER)
    assert c.flagged and c.start_index == 12 and c.current_start == 12
    assert c.effect == pytest.approx(0.05, abs=0.005)
    assert not creep_regression(acc[:12], 0.03, HIGHER_IS_BETTER).flagged
    assert creep_regression([1.0, 1.1], 0.03, 1).reason.startswith("no earlier segment")
