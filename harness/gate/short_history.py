"""When a series' history is too short for its critical change to mean anything, and how many more
runs it needs.

A series judged on its own history estimates its noise from a handful of runs; the gate then uses a
Student t quantile with that estimate's few degrees of freedom, at Holm's level over the whole gate
(alpha / m, ~1e-4 for 100 series). With 2-3 runs behind it that quantile is in the tens or thousands
(t with 1 degree of freedom at 1e-4 is 3183, against 3.7 for a known sigma), and the "critical change"
(the smallest change that would have failed) comes out as 15307731213 %: true, but it says only that
the history is too short. A number is shown once the uncertainty of the noise estimate at most
doubles the bar (``t quantile <= SHORT_HISTORY_FACTOR x normal quantile``); before that the reports
say how many more runs like this one the series needs to get there, and that `hil calibrate` makes
them in one go.

The count assumes the next runs look like the history (same within- and between-run spread, the
run's process count): each run adds ``r - 1`` within-run and one between-run degree of freedom to the
Satterthwaite combination of `harness.gate.levels.noise_sigma`.
"""

from __future__ import annotations

import math

from harness.gate.levels import NoiseEstimate, critical_z, upper_tail

SHORT_HISTORY_FACTOR = 2.0
MAX_RUNS = 200  # beyond this the count is not worth stating: a history that will not settle


def _dof(noise: NoiseEstimate, more: int, r: int) -> float:
    """Satterthwaite degrees of freedom of sigma after `more` runs of `r` processes each."""
    n_levels, n_runs = noise.n_levels + more * r, noise.n_runs + more
    parts = [
        (s * s, d)
        for s, d in ((noise.sigma_within, n_levels - n_runs), (noise.sigma_between, n_runs - 1))
        if math.isfinite(s) and s > 0 and d > 0
    ]
    if not parts:
        return 0.0
    return sum(v for v, _ in parts) ** 2 / sum(v * v / d for v, d in parts)


def _too_short(dof: float, alpha: float, factor: float) -> bool:
    if not dof > 0:
        return True
    return critical_z(alpha, dof) > factor * critical_z(alpha, None)


def runs_needed(
    noise: NoiseEstimate | None,
    processes: int,
    z_crit: float,
    dof: float | None,
    factor: float = SHORT_HISTORY_FACTOR,
) -> int | None:
    """How many more runs (of `processes` processes) the series needs before its critical change is
    worth printing; None when it already is (or the comparison did not use the history's noise).

    `z_crit` and `dof`: the critical z and degrees of freedom the gate used (`family.Decision`); the
    level it was taken at (Holm's, for this comparison) is recovered from them."""
    if noise is None or noise.source != "history" or dof is None or not math.isfinite(z_crit):
        return None
    alpha = upper_tail(z_crit, dof) if dof > 0 else math.nan
    if not 0 < alpha < 1:
        alpha = 0.01 / 100  # a degenerate estimate (no degrees of freedom): judge at a typical gate's level
    if not _too_short(dof, alpha, factor):
        return None
    r = max(1, int(processes))
    for more in range(1, MAX_RUNS + 1):
        if not _too_short(_dof(noise, more, r), alpha, factor):
            return more
    return MAX_RUNS


CALIBRATE_RUNS = 5  # `hil calibrate --runs` default


def needs_text(more: int, device: str) -> str:
    """What the reports print instead of an absurd critical change."""
    if more >= MAX_RUNS:
        return f"needs more than {MAX_RUNS} more runs"
    runs = f"{more} more run" + ("s" if more != 1 else "")
    calibrate = f"hil calibrate --device {device}" + (f" --runs {more}" if more > CALIBRATE_RUNS else "")
    return f"needs {runs} (or `{calibrate}`)"
