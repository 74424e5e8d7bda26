"""Find the first commit whose artifact is worse than the good revision's, in about log2(N) steps.

Each step asks the gate's own question of one revision: is its artifact worse than the good artifact
beyond the gate's threshold? Latency is decided like the gate's confirmation
(`harness.gate.remeasure.confirm_key`): the good artifact and the revision's timed in the same runner
processes (8 on a Linux device, 5 + 5 alternating flashes on an MCU board), a paired test on the log
ratios (`harness.gate.confirm`) at the gate's alpha, and the in-process threshold
(`latency_paired_threshold`) and absolute floor (`latency_min_change_us`) the gate applies. Size and
accuracy are single values per artifact and are judged by the gate's rule for them
(`harness.gate.evaluate.check_metric`): exact for size, an absolute drop for accuracy.

Why the good artifact is the reference of every step, not the neighbours: a bisection assumes the
history is good up to one commit and bad after it; comparing each revision with the same good
artifact keeps the question the same at every step, so one noisy step cannot move the reference.

Why the bad end is measured first: if it is not worse than the good revision, there is nothing to
find (the regression is older than --good, or below the threshold), and the user should hear that
before log2(N) more steps are spent. So a bisection of N changes takes at most ceil(log2 N) + 1 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.gate.revisions import History, Revision


@dataclass
class Step:
    """One measured revision."""

    revision: Revision
    bad: bool
    effect: float  # direction-signed relative change (positive = worse); accuracy: points of the fraction
    text: str  # the evidence, for the user: effect, p, processes


@dataclass
class Outcome:
    first_bad: Revision
    step: Step  # the first bad revision's own measurement (its effect against the good artifact)
    steps: list[Step] = field(default_factory=list)  # in the order they were measured
    changes: int = 0  # commits that changed the model file (the search space)
    commits: int = 0  # commits on the path good..bad


def first_bad(n: int, is_bad: Callable[[int], bool]) -> int:
    """Index of the first bad of `n` ordered items whose last is known to be bad (and everything
    before the first one is good): ceil(log2 n) calls of `is_bad`."""
    lo, hi = -1, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if is_bad(mid):
            hi = mid
        else:
            lo = mid
    return hi


def max_steps(changes: int) -> int:
    """Measurements a bisection of `changes` changed revisions takes at most (the bad end included)."""
    return math.ceil(math.log2(changes)) + 1 if changes > 1 else 1


def bisect(history: History, judge: Callable[[Revision], Step], what: str, log: Callable[[str], None]) -> Outcome:
    """Bisect the changes of `history` with `judge` (one step per call, memoised by blob: a file that
    returns to earlier bytes is not measured twice). `what`: the metric, for messages."""
    changes = history.changes
    if not changes:
        raise ConfigError(
            f"{history.relpath}: the same bytes at --good {history.good.short} and at every commit up to --bad "
            f"{history.bad.short}: nothing to bisect"
        )
    limit = max_steps(len(changes))
    steps: list[Step] = []
    by_blob: dict[str, Step] = {}

    def measure(rev: Revision) -> Step:
        if rev.blob in by_blob:
            return by_blob[rev.blob]
        if rev.blob == history.good.blob:  # the file went back to the good revision's bytes
            return Step(rev, False, 0.0, "the good revision's bytes")
        step = judge(rev)
        steps.append(step)
        by_blob[rev.blob] = step
        verdict = "bad" if step.bad else "good"
        log(f"step {len(steps)}/{limit}: {rev.short} {rev.subject[:60]}: {verdict} ({step.text})")
        return step

    end = measure(changes[-1])
    if not end.bad:
        raise ConfigError(
            f"--bad {history.bad.short} is not worse than --good {history.good.short} in {what} ({end.text}): "
            "the good revision is already bad (the regression is older), or there is no regression beyond "
            "the threshold"
        )
    found = first_bad(len(changes), lambda i: measure(changes[i]).bad)
    rev = changes[found]
    return Outcome(rev, by_blob[rev.blob], steps, len(changes), len(history.commits))
