"""The gate's in-process comparison (harness.gate.paired): a changed artifact against its series'
reference artifact timed in the same runner processes. Seeded simulations of per-process log
ratios (nothing here measures time): A/A gates stay within the family-wise budget, the slowdowns
the nightly gate must catch are caught, and what cannot be judged says so."""

from __future__ import annotations

import math

import numpy as np

from harness.gate.family import holm
from harness.gate.levels import INCONCLUSIVE, PASS, REGRESSION
from harness.gate.paired import PAIRED_NOISE_PRIOR, PairedInput, paired_comparison, paired_noise

R = 3  # runner processes per job and night
SERIES = 100  # comparisons per gate
SIGMA = 0.007  # sd of one process's in-process log ratio (measured on the 2-core VM: < 1 %)
THRESHOLD = 0.02  # the localhost profile's latency floor threshold


def _input(rng, effect: float, history_runs: int = 10, sigma: float = SIGMA) -> PairedInput:
    ref = rng.uniform(50, 5000) * np.exp(rng.normal(0, 0.05, R))  # the night moves both alike
    cur = ref * math.exp(math.log1p(effect)) * np.exp(rng.normal(0, sigma, R))
    history = [list(rng.normal(0, sigma, R)) for _ in range(history_runs)]
    return PairedInput("latency_p50_us", list(cur), list(ref), [False] * R, history, THRESHOLD)


def _gate(rng, effects: dict[int, float], **kw) -> list:
    stats = [paired_comparison(_input(rng, effects.get(i, 0.0), **kw), f"s{i}") for i in range(SERIES)]
    return holm([s.comparison for s in stats], alpha_family=0.01)


def test_unchanged_artifacts_keep_the_gate_wide_false_alarm_budget():
    """300 A/A gates of 100 in-process comparisons each (threshold 0, so that only the statistics
    stand between the noise and a false alarm): at most ~1 % of gates may fail."""
    rng = np.random.default_rng(11)
    failing = 0
    for _ in range(300):
        decisions = _gate(rng, {})
        failing += any(d.comparison.effect > 0 and d.verdict == REGRESSION for d in decisions)
    assert failing <= 6  # family alpha 0.01 -> expected <= 3 of 300; measured: 1


def test_a_slow_night_moves_both_artifacts_and_is_not_a_change():
    rng = np.random.default_rng(3)
    p = _input(rng, 0.0)
    slow = PairedInput(
        p.metric, [x * 1.12 for x in p.current], [x * 1.12 for x in p.reference], p.disturbed, p.history, p.threshold
    )
    a, b = paired_comparison(p, "a").comparison, paired_comparison(slow, "b").comparison
    assert math.isclose(a.effect, b.effect, rel_tol=1e-9, abs_tol=1e-12) and abs(b.effect) < 0.02


def test_slowdowns_of_five_and_three_percent_are_caught_in_one_night():
    rng = np.random.default_rng(5)
    caught = {0.05: 0, 0.03: 0}
    for effect in caught:
        for _ in range(100):
            decisions = _gate(rng, {7: effect})
            caught[effect] += decisions[7].verdict == REGRESSION
    assert caught[0.05] >= 95 and caught[0.03] >= 80  # measured: 100 and 91


def test_a_young_series_is_judged_with_the_prior_not_with_three_agreeing_processes():
    """Three processes that agree to 0.01 % must not make a 0.5 % effect significant: the spread of
    one night is shrunk towards the 1 % prior until the series has its own paired history."""
    cur, ref = [100.5, 100.51, 100.49], [100.0, 100.01, 99.99]
    sigma, dof = paired_noise([], np.log(np.array(cur) / np.array(ref)))
    assert sigma > 0.7 * PAIRED_NOISE_PRIOR and dof < 10
    s = paired_comparison(PairedInput("latency_p50_us", cur, ref, [False] * 3, [], 0.0), "young")
    assert s.comparison.p > 0.05 and s.sigma_source == "paired"
    d = holm([s.comparison], alpha_family=0.01)[0]
    assert d.verdict == PASS and d.critical_change > 0.01


def test_disturbed_processes_are_left_out_and_all_disturbed_is_inconclusive():
    cur, ref = [110.0, 130.0, 110.0], [100.0, 100.0, 100.0]
    s = paired_comparison(PairedInput("latency_p50_us", cur, ref, [False, True, False], [], 0.02), "d")
    assert s.comparison.r == 2 and abs(s.comparison.effect - 0.10) < 1e-9
    s = paired_comparison(PairedInput("latency_p50_us", cur, ref, [True] * 3, [], 0.02), "d")
    assert s.comparison.verdict == INCONCLUSIVE and s.comparison.reason == "all windows disturbed"
