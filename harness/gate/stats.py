"""Statistics for regression gating: is the current latency distribution really slower?

A latency change is reported as a regression only when it is both *statistically significant*
(noise cannot explain it) and *larger than a per-metric threshold* (it matters, and it is larger
than the slow drift between runs made at different times). This module answers the first question
and estimates the size of the change; `harness.gate.evaluate` applies the thresholds.

Method, and why
---------------
Consecutive latency samples are not independent: frequency changes, cache state, timer ticks and
other processes make neighbours alike (strong autocorrelation). A Mann-Whitney U test on, say,
10^5 raw samples per side treats them as 10^5 independent observations, so every run-to-run
difference becomes "significant" (p ~ 1e-300) and the test stops saying anything. So:

1. Each run's samples are cut into up to ``MAX_BLOCKS`` (20) *contiguous* blocks and reduced to one
   statistic per block (the block median for p50, the block p90 for p90). A block of hundreds of
   consecutive samples is far longer than the autocorrelation time, so block statistics are close
   to independent: the honest sample size is the number of blocks, not the number of invocations.
   With few samples (e.g. 50 runs of a slow model) blocks shrink to 2-3 samples; with fewer than
   ``2 * MAX_BLOCKS`` samples each sample is its own block.
2. Significance: two-sided Mann-Whitney U (scipy) between the *quiet* blocks (see 3.) of the
   baseline, pooled over all baseline runs (so a rolling baseline brings its run-to-run spread into
   the test), and the quiet blocks of the current run. Testing the same blocks the effect is
   estimated from keeps the two halves of the decision consistent: a baseline whose second half was
   slowed by a neighbour must not hide a real regression behind a "not significant". The default
   ``alpha`` is 0.01. 20 vs 20 blocks can reach p ~ 1e-11, so the test has plenty of power; below
   ``MIN_SAMPLES`` raw samples on either side the answer is "insufficient data" (reported, never a
   regression). With ~0.1 % block-to-block noise even the slow drift between runs made at
   different times is "significant": that is expected, and it is the threshold that keeps such A/A
   pairs from failing.
3. Effect size: the relative difference of the *levels* ``cur / base - 1``. The level of one run
   is the median of its "quiet" blocks: those within ``CLUSTER_WIDTH`` (2 %) of the fastest block,
   and never fewer than the fastest ``MIN_QUIET`` (5) or a quarter of the blocks, so that noisy
   short runs still use several blocks and the test keeps its power (5 vs 5 can reach p < 0.01).
   The level of a multi-run baseline is the median of its runs' levels. Without interference all
   blocks agree to ~0.1 %, every block is quiet and the level is the median of the block medians.
   Why not simply the median of all samples: measured on a shared 2-core host (24 runs per model,
   ``benchmarks/gate_power.py``), other processes arrive in bursts that slow a *stretch* of a 1 s
   run by 10-15 %; in 2-3 runs out of 24 a burst covered more than half of the run, the plain
   median moved by the whole burst, and 8 % of A/A pairs differed by more than 3 % (up to 16 %).
   The quiet-block level had a run-to-run spread of 0.2 % (max 0.7 %) on the same data. The
   reasoning: interference is not stationary (it comes and goes within a run and only ever *adds*
   time), whereas a slower model or runtime slows *every* block, so the quiet blocks track the
   model and not the neighbours. ``interference`` reports the fraction of current blocks more than
   5 % above the level, so a report can say that a run was disturbed. A regression that only shows
   in some invocations (a slow path taken 20 % of the time) is stationary too: it moves every
   block's p90, which is why p90 is gated from block p90s with the same level.
4. A (1 - alpha) percentile-bootstrap confidence interval of the effect resamples blocks (a block
   bootstrap: the blocks keep the autocorrelation inside them), for the reports.

Single-valued metrics (peak RSS, energy, model size, accuracy) have no within-run samples; for them
the gate relies on the thresholds alone (see `harness.gate.evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_ALPHA = 0.01
MIN_SAMPLES = 10
MAX_BLOCKS = 20
CLUSTER_WIDTH = 0.02  # blocks within 2 % of the fastest block are "quiet"
MIN_QUIET = 5  # ... but at least this many blocks (and a quarter of them) are used
INTERFERENCE_MARGIN = 0.05  # a block this far above the level counts as disturbed
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class SampleComparison:
    """Outcome of comparing current raw samples with one or more baseline runs."""

    n_base: int  # raw samples, all baseline runs together
    n_cur: int
    blocks_base: int = 0  # blocks, all baseline runs together
    blocks_cur: int = 0
    quiet_base: int = 0  # of which quiet (they enter the test and the level)
    quiet_cur: int = 0
    base: float | None = None  # level of the baseline (see module docstring)
    cur: float | None = None
    effect: float | None = None  # cur / base - 1
    p_value: float | None = None
    ci_low: float | None = None  # bootstrap CI of the effect
    ci_high: float | None = None
    interference: float | None = None  # fraction of current blocks > level * 1.05
    sufficient: bool = False
    note: str = ""
    base_runs: int = 0
    extra: dict = field(default_factory=dict)

    def significant(self, alpha: float = DEFAULT_ALPHA) -> bool:
        return self.sufficient and self.p_value is not None and self.p_value < alpha


def block_stats(samples: Sequence[float] | np.ndarray, q: float = 0.5, max_blocks: int = MAX_BLOCKS) -> np.ndarray:
    """One statistic (quantile ``q``) per contiguous block; order of samples is preserved."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        return x
    n_blocks = min(max_blocks, x.size) if x.size >= 2 * max_blocks else x.size
    return np.array([np.quantile(b, q) for b in np.array_split(x, n_blocks)])


def quiet(blocks: np.ndarray) -> np.ndarray:
    """The blocks within ``CLUSTER_WIDTH`` of the fastest one, at least the fastest ``MIN_QUIET``
    (and a quarter of all blocks): undisturbed by interference, and enough of them for a test."""
    x = np.sort(np.asarray(blocks, dtype=float))
    k = max(int(np.sum(x <= x[0] * (1 + CLUSTER_WIDTH))), min(x.size, max(MIN_QUIET, -(-x.size // 4))))
    return x[:k]


def level(blocks: np.ndarray) -> float:
    """A run's typical value: the median of its quiet blocks (robust to bursts of interference)."""
    return float(np.median(quiet(blocks)))


def compare_samples(
    baseline_runs: Sequence[Sequence[float]],
    current: Sequence[float],
    q: float = 0.5,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = MIN_SAMPLES,
    max_blocks: int = MAX_BLOCKS,
    seed: int = 0,
    ci: bool = True,
) -> SampleComparison:
    """Compare the quantile ``q`` of ``current`` against the baseline run(s)."""
    from scipy.stats import mannwhitneyu

    runs = [np.asarray(r, dtype=float) for r in baseline_runs if len(r)]
    cur = np.asarray(current, dtype=float)
    n_base = int(sum(r.size for r in runs))
    out = SampleComparison(n_base=n_base, n_cur=int(cur.size), base_runs=len(runs))
    if n_base < min_samples or cur.size < min_samples:
        out.note = f"insufficient data: {n_base} baseline / {cur.size} current samples (need >= {min_samples} each)"
        return out
    base_blocks = [block_stats(r, q, max_blocks) for r in runs]
    cur_blocks = block_stats(cur, q, max_blocks)
    base_quiet = np.concatenate([quiet(b) for b in base_blocks])
    cur_quiet = quiet(cur_blocks)
    out.blocks_base = int(sum(b.size for b in base_blocks))
    out.blocks_cur = int(cur_blocks.size)
    out.quiet_base, out.quiet_cur = int(base_quiet.size), int(cur_quiet.size)
    out.base = float(np.median([level(b) for b in base_blocks]))
    out.cur = level(cur_blocks)
    if out.base <= 0:
        out.note = "baseline level is not positive"
        return out
    out.effect = out.cur / out.base - 1.0
    out.interference = float(np.mean(cur_blocks > out.cur * (1 + INTERFERENCE_MARGIN)))
    if np.ptp(np.concatenate([base_quiet, cur_quiet])) == 0:
        out.p_value = 1.0
    else:
        out.p_value = float(mannwhitneyu(cur_quiet, base_quiet, alternative="two-sided").pvalue)
    out.sufficient = True
    if out.interference > 0.5:
        out.note = f"{out.interference:.0%} of the current run's blocks disturbed by interference"
    if ci:
        out.ci_low, out.ci_high = bootstrap_effect_ci(base_blocks, cur_blocks, 1.0 - alpha, seed=seed)
    return out


def bootstrap_effect_ci(
    base_blocks: Sequence[np.ndarray],
    cur_blocks: np.ndarray,
    level_: float = 0.99,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``level(cur) / level(base) - 1``, resampling blocks within runs."""
    rng = np.random.default_rng(seed)

    def boot_levels(blocks: np.ndarray) -> np.ndarray:
        idx = rng.integers(0, blocks.size, size=(resamples, blocks.size))
        x = np.sort(blocks[idx], axis=1)
        k_min = min(blocks.size, max(MIN_QUIET, -(-blocks.size // 4)))
        keep = (x <= x[:, :1] * (1 + CLUSTER_WIDTH)) | (np.arange(blocks.size) < k_min)
        return np.nanmedian(np.where(keep, x, np.nan), axis=1)

    base = np.median(np.stack([boot_levels(b) for b in base_blocks]), axis=0)
    ratio = boot_levels(cur_blocks) / base - 1.0
    tail = (1.0 - level_) / 2.0
    lo, hi = np.quantile(ratio, [tail, 1.0 - tail])
    return float(lo), float(hi)
