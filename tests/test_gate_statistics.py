"""The nightly gate's statistics (harness.gate.levels, .family, .confirm, .windows): exact rules on
hand-made inputs, and the statistical guarantees on seeded simulations (fixed seeds, so every run
sees the same numbers; nothing here measures time).

``python tests/test_gate_statistics.py`` prints the power / false-alarm tables used in the design
notes. Step and creep detection: tests/test_gate_steps.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from harness.gate.confirm import confirm
from harness.gate.family import Comparison, Decision, compare, holm, median_efficiency
from harness.gate.levels import (
    HIGHER_IS_BETTER,
    IMPROVEMENT,
    INCONCLUSIVE,
    LOWER_IS_BETTER,
    MEDIAN_EFFICIENCY,
    PASS,
    PENDING,
    REGRESSION,
    noise_sigma,
    reference_level,
)
from harness.gate.windows import check_lap, lap_sane, mcu_windows

SIGMA = 0.01  # process-level noise of the simulated series (1 %)
R, K = 3, 15  # current processes, reference levels
THRESHOLD = 0.03


# --------------------------------------------------------------------------------------------
# simulation helpers (shared by tests and power_table)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval, so that "0 of 2000" still comes with an honest upper bound."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def simulate_gate(
    rng: np.random.Generator,
    shifts: np.ndarray,
    threshold: float = THRESHOLD,
    alpha: float = 0.01,
    sigma: float = SIGMA,
    r: int = R,
    k_ref: int = K,
    **compare_kw,
) -> list[Decision]:
    """One gate of len(shifts) latency series; series i is slowed by shifts[i]. The reference is
    the median of k_ref fresh levels, as `reference_level` would compute it."""
    m = shifts.size
    ref = np.exp(np.median(rng.normal(0.0, sigma, (m, k_ref)), axis=1))
    cur = np.exp(rng.normal(0.0, sigma, (m, r)) + np.log1p(shifts)[:, None])
    comps = [compare(cur[i], ref[i], k_ref, sigma, threshold, LOWER_IS_BETTER, **compare_kw) for i in range(m)]
    return holm(comps, alpha)


def gate_rates(
    shift: float, n_gates: int, m: int = 100, n_shifted: int = 10, seed: int = 0, threshold: float = THRESHOLD, **kw
) -> dict:
    """Power on the shifted series and family-wise false alarms among the unshifted ones."""
    rng = np.random.default_rng(seed)
    shifts = np.zeros(m)
    shifts[:n_shifted] = shift
    hits = gates_with_false = 0
    for _ in range(n_gates):
        regress = np.array([d.verdict == REGRESSION for d in simulate_gate(rng, shifts, threshold, **kw)])
        hits += int(regress[:n_shifted].sum())
        gates_with_false += int(regress[n_shifted:].any())
    n_hit = n_gates * n_shifted
    return {
        "shift": shift,
        "power": hits / n_hit,
        "power_ci": clopper_pearson(hits, n_hit),
        "fwer": gates_with_false / n_gates,
        "fwer_ci": clopper_pearson(gates_with_false, n_gates),
    }


def power_table(
    effects=(0.01, 0.02, 0.03, 0.04, 0.05, 0.06), n_gates: int = 200, seed: int = 11, show: bool = True
) -> list[dict]:
    """Detection power of a true slowdown at r=3, K=15, sigma=1 %, threshold 3 %, alpha 0.01,
    in gates of 100 series of which 10 are slowed (so 2000 slowed series per row)."""
    rows = [gate_rates(e, n_gates, seed=seed + i) for i, e in enumerate(effects)]
    if show:
        print(
            f"\npower: r={R} K={K} sigma={SIGMA:.0%} threshold={THRESHOLD:.0%} alpha_family=0.01, "
            f"{n_gates} gates x 100 series (10 slowed)"
        )
        print(" true slowdown | detected | 95 % CI         | gates with a false regression (90 nulls)")
        for row in rows:
            lo, hi = row["power_ci"]
            print(f"   {row['shift']:>6.1%}     |  {row['power']:6.1%}  | {lo:6.1%} - {hi:6.1%} | {row['fwer']:.2%}")
    return rows


def null_fwer(n_gates: int = 2000, m: int = 100, seed: int = 2024, **kw) -> dict:
    """All series unchanged. Holm rejection does not depend on the threshold, so one simulation
    at threshold 0 yields both rates: threshold 0 tests Holm alone, 3 % the gate as deployed."""
    rng = np.random.default_rng(seed)
    any0 = any3 = 0
    for _ in range(n_gates):
        ds = simulate_gate(rng, np.zeros(m), threshold=0.0, **kw)
        any0 += any(d.verdict == REGRESSION for d in ds)
        any3 += any(d.verdict == REGRESSION and d.comparison.effect > THRESHOLD for d in ds)
    return {"n": n_gates, "thr0": any0, "thr3": any3}


def make_comparison(
    z: float, se: float = 0.005, threshold: float = 0.0, direction: int = 1, name: str = ""
) -> Comparison:
    """A comparison with a chosen z, for exact Holm arithmetic."""
    log_ratio = direction * z * se
    return Comparison(
        name,
        direction * math.expm1(log_ratio),
        log_ratio,
        z,
        float(special.ndtr(-z)),
        float(special.ndtr(z)),
        se,
        3,
        15,
        threshold,
        direction,
        None,
        PENDING,
        "",
    )


def z_of_p(p: float) -> float:
    return float(-special.ndtri(p))


# --------------------------------------------------------------------------------------------
# noise_sigma


def lognormal_history(seed: int, runs: int, r: int, within: float, between: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0.0, between, (runs, 1)) + rng.normal(0.0, within, (runs, r)))


def test_noise_separates_within_and_between_components():
    est = noise_sigma(lognormal_history(1, runs=40, r=3, within=0.005, between=0.01).tolist())
    assert est.source == "history" and not est.too_few
    assert est.n_levels == 120 and est.n_runs == 40
    assert est.sigma == pytest.approx(math.hypot(0.005, 0.01), rel=0.15)
    assert est.sigma_within == pytest.approx(0.005, rel=0.2)
    assert est.sigma_between == pytest.approx(0.01, rel=0.25)
    assert est.sigma == pytest.approx(math.hypot(est.sigma_within, est.sigma_between))
    assert 30 < est.dof < 120


def test_noise_is_robust_to_outlier_processes_and_nights():
    hist = lognormal_history(2, runs=30, r=3, within=0.01, between=0.0)
    rng = np.random.default_rng(3)
    hist.flat[rng.choice(hist.size, 5, replace=False)] *= 1.30  # 5 processes hit by a neighbour
    hist[7] *= 1.5  # one disturbed night
    assert np.std(np.log(hist)) > 0.05  # a plain sd would report > 5x the noise
    assert noise_sigma(hist.tolist()).sigma == pytest.approx(0.01, rel=0.2)


def test_noise_with_too_few_levels_falls_back_to_the_prior():
    short = [[1.00, 1.01], [1.02, 0.99]]
    est = noise_sigma(short, prior_sigma=0.02)
    assert (est.too_few, est.source, est.sigma) == (True, "prior", 0.02)
    raw = noise_sigma(short)
    assert raw.too_few and raw.source == "history" and raw.sigma > 0
    one_night = noise_sigma([list(np.linspace(0.99, 1.01, 10))], prior_sigma=0.02)
    assert one_night.too_few and one_night.source == "prior"  # one run says nothing about nights


def test_noise_drops_invalid_levels_and_floors_quantised_timers():
    est = noise_sigma([[1.0, 0.0, float("nan")], [1.0, 1.0], [1.0, -3.0, 1.0], [1.0, 1.0]])
    assert est.n_levels == 7 and est.n_runs == 4
    assert est.sigma == 1e-4  # identical levels: MAD 0 would make any later change "infinitely" significant
    assert noise_sigma([]).too_few


def test_noise_single_process_runs_use_the_spread_of_nights():
    hist = lognormal_history(4, runs=40, r=1, within=0.01, between=0.0)
    est = noise_sigma(hist.tolist())
    assert math.isnan(est.sigma_within) and est.sigma == pytest.approx(0.01, rel=0.2)


# --------------------------------------------------------------------------------------------
# reference_level


def test_reference_is_median_of_last_k_accepted_runs():
    runs = [[5.0, 5.0, 5.0]] * 4 + [[1.0, 1.1, 9.0], [], [1.2, 1.0, 1.05]]
    level, n, used = reference_level(runs, k=2)
    assert (n, used) == (6, 2)
    assert level == pytest.approx(math.sqrt(1.05 * 1.1))  # even count: geometric middle
    assert reference_level(runs, k=3)[0] == pytest.approx(1.2)  # 1 1 1.05 1.1 [1.2] 5 5 5 9
    assert reference_level([[float("nan")]])[1:] == (0, 0)
    assert math.isnan(reference_level([])[0])


# --------------------------------------------------------------------------------------------
# compare


def test_compare_statistic_follows_the_documented_formula():
    cur = [1.05, 1.06, 1.04]
    log_ratio = float(np.median(np.log(cur)))  # the median of the processes, like the reference
    plain = compare(cur, 1.0, 15, 0.01, 0.03, 1, ref_efficiency=1.0)
    r_eff = 3 * median_efficiency(3)
    assert plain.se == pytest.approx(0.01 * math.sqrt(1 / r_eff + 1 / 15))
    assert plain.z == pytest.approx(log_ratio / plain.se)
    assert plain.p == pytest.approx(special.ndtr(-plain.z))
    assert plain.p + plain.p_better == pytest.approx(1.0)
    default = compare(cur, 1.0, 15, 0.01, 0.03, 1)
    assert default.se == pytest.approx(0.01 * math.sqrt(1 / r_eff + (math.pi / 2) / 15))
    assert default.effect == pytest.approx(math.expm1(log_ratio)) and default.verdict == PENDING
    with_t = compare(cur, 1.0, 15, 0.01, 0.03, 1, dof=10)
    assert with_t.p > default.p  # an estimated sigma makes the same z less convincing


def test_compare_effect_is_positive_when_worse_in_either_direction():
    slower = compare([110.0] * 3, 100.0, 15, 0.01, 0.03, LOWER_IS_BETTER)
    assert slower.effect == pytest.approx(0.10) and slower.z > 0 and slower.p < 1e-6
    less_accurate = compare([0.90] * 3, 1.00, 15, 0.01, 0.03, HIGHER_IS_BETTER)
    assert less_accurate.effect == pytest.approx(0.10) and less_accurate.z > 0
    more_accurate = compare([1.10] * 3, 1.00, 15, 0.01, 0.03, HIGHER_IS_BETTER)
    assert more_accurate.effect == pytest.approx(-0.10) and more_accurate.p_better < 1e-6
    with pytest.raises(ValueError):
        compare([1.0], 1.0, 15, 0.01, 0.03, 0)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"current_levels": [1.0, 1.0], "reference": None, "n_ref_levels": 15}, "no baseline"),
        ({"current_levels": [1.0, 1.0], "reference": float("nan"), "n_ref_levels": 15}, "no baseline"),
        ({"current_levels": [1.0, 1.0], "reference": 1.0, "n_ref_levels": 0}, "no baseline"),
        ({"current_levels": [], "reference": 1.0, "n_ref_levels": 15}, "too few processes"),
        ({"current_levels": [0.0, float("nan")], "reference": 1.0, "n_ref_levels": 15}, "too few processes"),
        (
            {"current_levels": [1.0, 1.2], "reference": 1.0, "n_ref_levels": 15, "disturbed": [True, True]},
            "all windows disturbed",
        ),
        (
            {"current_levels": [1.0, 1.2], "reference": 1.0, "n_ref_levels": 15, "sigma": float("nan")},
            "no noise estimate",
        ),
    ],
)
def test_compare_without_the_needed_data_is_inconclusive(kwargs, reason):
    kw = {"sigma": 0.01, "threshold": 0.03, "direction": 1} | kwargs
    c = compare(**kw)
    assert (c.verdict, c.reason) == (INCONCLUSIVE, reason)
    assert math.isnan(c.p)
    assert holm([c])[0].verdict == INCONCLUSIVE


def test_compare_drops_disturbed_processes_first():
    c = compare([1.0, 1.8, 1.0], 1.0, 15, 0.01, 0.03, 1, disturbed=[False, True, False])
    assert c.r == 2 and c.effect == pytest.approx(0.0)
    with pytest.raises(ValueError):
        compare([1.0, 1.0], 1.0, 15, 0.01, 0.03, 1, disturbed=[True])


def test_compare_night_effect_widens_the_standard_error():
    base = compare([1.02] * 3, 1.0, 15, 0.01, 0.03, 1)
    nightly = compare([1.02] * 3, 1.0, 15, 0.01, 0.03, 1, sigma_between=0.008, ref_runs=5)
    assert nightly.se > 1.3 * base.se
    w2, b2 = 0.01**2 - 0.008**2, 0.008**2
    r_eff = 3 * median_efficiency(3)
    assert nightly.se == pytest.approx(math.sqrt(w2 * (1 / r_eff + 1 / (15 * MEDIAN_EFFICIENCY)) + b2 * 1.2))


# --------------------------------------------------------------------------------------------
# holm


def test_holm_step_down_stops_at_the_first_failure():
    alpha, ps = 0.05, [0.001, 0.03, 0.014, 0.04]
    ds = holm([make_comparison(z_of_p(p), name=str(i)) for i, p in enumerate(ps)], alpha)
    assert [d.rank for d in ds] == [1, 3, 2, 4]
    assert [d.verdict for d in ds] == [REGRESSION, PASS, REGRESSION, PASS]
    # rank 4 has p = 0.04 <= alpha / 1, but Holm stopped at rank 3, so it faces rank 3's bar
    assert ds[0].z_crit == pytest.approx(z_of_p(alpha / 4))
    assert ds[2].z_crit == pytest.approx(z_of_p(alpha / 3))
    assert ds[1].z_crit == pytest.approx(z_of_p(alpha / 2))
    assert ds[3].z_crit == pytest.approx(z_of_p(alpha / 2))
    assert [d.p_holm for d in ds] == pytest.approx([0.004, 0.06, 0.042, 0.06])


def test_holm_critical_change_is_threshold_or_critical_z_times_se():
    se = 0.004
    ds = holm([make_comparison(0.0, se=se, threshold=0.0), make_comparison(0.0, se=se, threshold=0.05)], 0.01)
    zc = z_of_p(0.01 / 2)
    assert ds[0].critical_change == pytest.approx(math.expm1(zc * se))
    assert ds[1].critical_change == pytest.approx(0.05)
    assert ds[0].critical_improvement == pytest.approx(math.expm1(-zc * se))
    acc = holm([make_comparison(0.0, se=se, direction=-1)], 0.01)[0]
    assert acc.critical_change == pytest.approx(1 - math.exp(-z_of_p(0.01) * se))


def test_holm_needs_both_significance_and_threshold():
    small = make_comparison(8.0, se=0.002, threshold=0.03)  # +1.6 %: very significant, too small
    big_noisy = make_comparison(1.5, se=0.03, threshold=0.03)  # +4.6 %: large, not significant
    clear = make_comparison(8.0, se=0.006, threshold=0.03)  # +4.9 %
    ds = holm([small, big_noisy, clear])
    assert [d.verdict for d in ds] == [PASS, PASS, REGRESSION]
    assert "significant but" in ds[0].reason


def test_holm_improvements_are_a_separate_family():
    ds = holm(
        [
            make_comparison(-8.0, threshold=0.03),
            make_comparison(8.0, threshold=0.03),
            make_comparison(-8.0, threshold=0.05),
        ]
    )
    assert [d.verdict for d in ds] == [IMPROVEMENT, REGRESSION, PASS]
    assert ds[0].critical_improvement <= -0.03
    # the regression family is not diluted by the improvement hypotheses: rank 1 of 3
    assert ds[1].z_crit == pytest.approx(z_of_p(0.01 / 3))


def test_holm_inconclusive_comparisons_do_not_count_in_m():
    missing = compare([], 1.0, 15, 0.01, 0.03, 1)
    ds = holm([missing, make_comparison(5.0), missing, make_comparison(0.5)], 0.01)
    assert [d.verdict for d in ds][::2] == [INCONCLUSIVE, INCONCLUSIVE]
    assert ds[1].z_crit == pytest.approx(z_of_p(0.01 / 2))
    assert holm([]) == []


def test_family_wise_false_alarm_rate_under_the_null():
    res = null_fwer()
    n = res["n"]
    lo0, hi0 = clopper_pearson(res["thr0"], n)
    lo3, hi3 = clopper_pearson(res["thr3"], n)
    print(
        f"\nnull: {n} gates x 100 series, sigma known; gates with any false regression: "
        f"threshold 0: {res['thr0']}/{n} = {res['thr0'] / n:.2%} (95 % CI {lo0:.2%}-{hi0:.2%}); "
        f"threshold 3 %: {res['thr3']}/{n} = {res['thr3'] / n:.2%} (95 % CI {lo3:.2%}-{hi3:.2%})"
    )
    assert res["thr3"] / n <= 0.015  # the gate as deployed
    assert res["thr0"] / n <= 0.015  # Holm alone, without the threshold's help


def test_detection_power_at_3_and_5_percent():
    rows = {round(row["shift"], 3): row for row in power_table(effects=(0.03, 0.04, 0.05), n_gates=150)}
    assert rows[0.05]["power"] >= 0.95
    assert rows[0.04]["power"] >= 0.80
    # a true change exactly at the threshold exceeds it half of the time, whatever the test
    assert 0.44 <= rows[0.03]["power"] <= 0.56
    assert all(row["fwer"] <= 0.015 for row in rows.values())


# --------------------------------------------------------------------------------------------
# confirm


def interleaved(seed: int, n: int, change: float, noise: float = 0.01, drift_per_process: float = 0.0):
    """A B A B ...: a process level is drift (shared by neighbours) x noise x change (B only)."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * n)
    x = np.exp(drift_per_process * t + rng.normal(0.0, noise, 2 * n))
    return x[0::2], x[1::2] * (1 + change)


def test_confirm_a_real_slowdown():
    a, b = interleaved(5, 6, change=0.08)
    c = confirm(a, b, 0.03, LOWER_IS_BETTER)
    assert c.confirmed and c.n == 6 and c.p < 0.001
    assert c.ci_low < 0.08 < c.ci_high and c.ci_low > 0
    assert c.reason.startswith("confirmed")


def test_confirm_false_confirmation_rate_under_the_null():
    n_sim = 2000
    ps = np.array([confirm(*interleaved(seed, 5, 0.0), 0.0, 1).p for seed in range(n_sim)])
    rate0 = float(np.mean(ps < 0.05))
    lo, hi = clopper_pearson(int(np.sum(ps < 0.05)), n_sim)
    print(f"\nconfirm, 5+5 processes, no change: p < 0.05 in {rate0:.2%} (95 % CI {lo:.2%}-{hi:.2%})")
    assert 0.035 <= rate0 <= 0.065  # the paired t-test is calibrated
    confirmed3 = sum(confirm(*interleaved(seed, 5, 0.0), 0.03, 1).confirmed for seed in range(500))
    assert confirmed3 == 0


def test_confirm_pairing_removes_drift_from_the_noise():
    # 16 processes drifting 1 %/process: a 15 % spread that all but drowns a 5 % change unpaired
    a, b = interleaved(6, 8, change=0.05, noise=0.003, drift_per_process=0.01)
    unpaired_p = stats.ttest_ind(np.log(b), np.log(a), alternative="greater").pvalue
    c = confirm(a, b, 0.03, 1)
    assert unpaired_p > 0.005
    assert c.confirmed and c.p < 1e-6
    # A B A B leaves one process of drift in every pair: the effect reads 5 % + 1 %
    assert c.effect == pytest.approx(1.05 * math.exp(0.01) - 1, abs=0.004)


def test_confirm_edge_cases():
    assert confirm([1.0] * 4, [1.2] * 4, 0.03, 1).reason == "too few pairs (4 < 5)"
    with pytest.raises(ValueError):
        confirm([1.0] * 5, [1.0] * 6, 0.03, 1)
    exact = confirm([100.0] * 5, [110.0] * 5, 0.03, 1)  # deterministic counter
    assert exact.confirmed and exact.p == 0.0 and exact.effect == pytest.approx(0.10)
    acc = confirm([0.90, 0.91, 0.90, 0.89, 0.90], [0.80, 0.81, 0.80, 0.79, 0.81], 0.03, HIGHER_IS_BETTER)
    assert acc.confirmed and acc.effect == pytest.approx(0.11, abs=0.01)
    faster = confirm([1.0, 1.01, 0.99, 1.0, 1.0], [0.9, 0.91, 0.9, 0.89, 0.9], 0.03, 1)
    assert not faster.confirmed and faster.p > 0.99 and "not significant" in faster.reason


# --------------------------------------------------------------------------------------------
# MCU windows and laps


def test_mcu_windows_verdicts():
    base = [1000.0, 1000.5, 999.8]
    assert mcu_windows(base, [1010.0, 1010.2, 1009.9], 0.005).verdict == REGRESSION
    assert mcu_windows(base, [1001.0, 1001.2, 1000.9], 0.005).verdict == PASS
    assert mcu_windows(base, [980.0, 980.1, 980.2], 0.005).verdict == IMPROVEMENT
    r = mcu_windows(base, [1010.0, 1030.0, 1009.9], 0.005)
    assert (r.verdict, r.reason) == (INCONCLUSIVE, "windows unstable") and r.current_spread > 0.005
    assert mcu_windows([1000.0, 1012.0], [1000.0, 1000.0], 0.005).verdict == INCONCLUSIVE
    assert mcu_windows([], [1000.0, 1000.0], 0.005).reason == "no baseline"
    assert mcu_windows(base, [1010.0], 0.005).verdict == INCONCLUSIVE


def test_lap_sanity_against_host_time():
    wrap = 2**32
    assert lap_sane(1_000, 2_001_000, 100, 2.01, 0.002)  # 2.000 s device, 2.01 s host
    assert lap_sane(wrap - 500_000, 1_500_000, 100, 2.003, 0.002)  # counter wrapped once
    assert not lap_sane(3_000_000, 1_000_000, 100, 2.0, 0.002)  # backwards and no wrap fits
    assert not lap_sane(0, 500_000, 100, 2.0, 0.002)  # 0.5 s on the device, 2 s on the host
    assert not lap_sane(0, 3_000_000, 100, 2.0, 0.002)  # device longer than the host
    assert not lap_sane(0, 50, 100, 0.00005, 0.0)  # fewer ticks than inferences
    assert not lap_sane(0, 10, 1, 5000.0, 0.002)  # longer than the wrap period: ambiguous
    assert not lap_sane(0, 10, 0, 1.0, 0.002)
    assert check_lap(0, 3_000_000, 100, 2.0, 0.002).reason == "device lap longer than host time"


if __name__ == "__main__":
    power_table()
    print(null_fwer())


def test_a_t_quantile_beyond_float_range_gives_an_infinite_critical_change_not_a_crash():
    """Seen on night 3 of benchmarks/gate_power.py: a noise estimate with a tiny Satterthwaite dof
    made the Holm critical z ~1e75 and expm1 overflowed, crashing `hil gate`."""
    from harness.gate.family import compare, holm

    c = compare([105.0, 106.0, 104.0], 100.0, 10, 0.5, 0.03, 1, dof=0.05, name="tiny dof")
    (d,) = holm([c], alpha_family=0.01)
    assert d.verdict == "pass" and d.critical_change == float("inf")


def test_a_short_history_says_how_many_more_runs_instead_of_an_absurd_critical_change():
    """Two nights of three processes behind a series: its noise estimate has ~1 degree of freedom and the
    Holm critical change over a 100-series gate came out as 15307731213 %. The gate counts the runs
    after which the t quantile is at most twice the normal one (the count is exact for the projection)."""
    from harness.gate.process_checks import SeriesInput, series_comparison
    from harness.gate.short_history import SHORT_HISTORY_FACTOR, _dof, needs_text, runs_needed

    def gate_of(history):
        cur = [1.004, 1.0, 1.002]
        s = series_comparison(SeriesInput("latency_p50_us", cur, [False] * 3, history, history, 0.03), "s")
        d = holm([s.comparison] * 100)[0]  # one of a 100-series gate: Holm's level ~1e-4
        return s, d

    short = lognormal_history(3, runs=2, r=3, within=0.002, between=0.02).tolist()
    s, d = gate_of(short)
    assert s.sigma_source == "history" and d.critical_change > 1000  # the absurd number
    more = runs_needed(s.noise, 3, d.z_crit, d.comparison.dof)
    assert more is not None and 1 <= more <= 10
    alpha = float(special.stdtr(d.comparison.dof, -d.z_crit))
    ratio = lambda dof: special.stdtrit(dof, 1 - alpha) / special.ndtri(1 - alpha)
    assert ratio(_dof(s.noise, more, 3)) <= SHORT_HISTORY_FACTOR < ratio(_dof(s.noise, more - 1, 3))
    assert _dof(s.noise, 0, 3) == pytest.approx(d.comparison.dof)  # the projection starts where the gate is
    assert needs_text(more, "pi4").startswith(f"needs {more} more runs (or `hil calibrate --device pi4")
    assert needs_text(3, "pi4") == "needs 3 more runs (or `hil calibrate --device pi4`)"
    assert needs_text(1, "pi4") == "needs 1 more run (or `hil calibrate --device pi4`)"
    assert needs_text(8, "pi4") == "needs 8 more runs (or `hil calibrate --device pi4 --runs 8`)"
    # a history of 20 nights: the number means something and is shown
    s, d = gate_of(lognormal_history(3, runs=20, r=3, within=0.002, between=0.02).tolist())
    assert runs_needed(s.noise, 3, d.z_crit, d.comparison.dof) is None and d.critical_change < 0.2
    # a series still on the profile's prior: its critical change comes from the prior, not a t quantile
    s, d = gate_of(short[:1])
    assert s.sigma_source == "prior" and runs_needed(s.noise, 3, d.z_crit, d.comparison.dof) is None
