"""Pareto fronts over the sweep's objectives, and the budget-based choice of one candidate per device.

Objectives: accuracy (higher is better), latency p50, model size, energy per inference and tensor arena
(lower is better). On a device only the objectives that every candidate has a value for take part (a
host without an energy meter has no energy; a Linux device has no arena). A candidate is on the front
when no other candidate is at least as good in every objective and better in one.

The choice on a device: among the candidates that meet every budget (the profile's `budgets:` plus the
sweep's `--budget`), the best in the preferred objective (default accuracy), ties broken by the other
objectives in the order above, then by name; so the choice is always on the front of the candidates
within budget. Every candidate ruled out is listed with the budgets that rule it out. A budget whose
metric was not measured on the device rules the candidate out too ("no data"): a choice CI relies on is
never one that was not checked.

Accuracy ties: accuracy is measured on a finite evaluation set (on an MCU often a sample of it), so two
candidates a few samples apart are not known to differ. When per-sample correctness of both candidates
on the same samples is known (`Paired`), the most accurate candidate is compared with each other one by
the exact McNemar test (a binomial test on the samples only one of the two gets right); a difference
with p >= TIE_ALPHA is a tie. The tied candidates (and any more accurate than the least accurate of
them, so that the choice stays on the front) go on to the next objective. Other objectives tie only
when equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from harness.errors import ConfigError
from harness.gate.budgets import BUDGET_METRICS, BudgetCheck, check_budgets
from harness.lab.config import ROBUST_BUDGETS, Budgets

# objective -> (metric column, better direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "max"),
    "latency": ("latency_p50_us", "min"),
    "size": ("model_size_bytes", "min"),
    "energy": ("energy_per_inference_uj", "min"),
    "arena": ("arena_bytes", "min"),
}

# sweep-only budgets beside the profile's (harness/gate/budgets.py)
EXTRA_BUDGETS: dict[str, tuple[str, str]] = {
    "max_model_size_bytes": ("model_size_bytes", "max"),
    "max_macs": ("model_macs", "max"),
}
ALL_BUDGETS = {
    **{k: (("accuracy" if m == "accuracy_top1" else m), d) for k, (m, d) in BUDGET_METRICS.items()},
    **EXTRA_BUDGETS,
}


TIE_ALPHA = 0.05  # accuracy differences with a McNemar p-value at or above this are ties


@dataclass
class Paired:
    """Which evaluation samples (indices into the evaluation set) a candidate got right."""

    indices: np.ndarray
    correct: np.ndarray


def mcnemar(a: Paired, b: Paired) -> tuple[float, int] | None:
    """(two-sided exact McNemar p-value, samples compared) on the samples both were scored on."""
    from scipy.stats import binomtest

    _, ia, ib = np.intersect1d(a.indices, b.indices, return_indices=True)
    if len(ia) == 0:
        return None
    ca, cb = a.correct[ia].astype(bool), b.correct[ib].astype(bool)
    only_a, only_b = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    if only_a + only_b == 0:
        return 1.0, len(ia)
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue), len(ia)


@dataclass
class Tie:
    """A candidate whose accuracy is within sampling error of the most accurate one's."""

    name: str
    p_value: float
    samples: int


@dataclass
class Point:
    name: str
    values: dict[str, float | None]

    def get(self, metric: str) -> float | None:
        v = self.values.get(metric)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@dataclass
class Verdict:
    name: str
    pareto: bool
    checks: list[BudgetCheck] = field(default_factory=list)

    @property
    def meets(self) -> bool:
        return all(c.status == "ok" for c in self.checks)

    @property
    def ruled_out_by(self) -> list[str]:
        return [c.describe() for c in self.checks if c.status != "ok"]


@dataclass
class DeviceChoice:
    device: str
    profile: str
    objectives: list[str]
    prefer: str
    choice: str | None
    verdicts: dict[str, Verdict]
    most_accurate: str | None = None  # within budgets
    ties: list[Tie] = field(default_factory=list)  # accuracy ties with `most_accurate`
    decided_by: str | None = None  # the objective that decided among the tied candidates

    @property
    def front(self) -> list[str]:
        return [n for n, v in self.verdicts.items() if v.pareto]


def usable_objectives(points: list[Point]) -> list[str]:
    return [
        name for name, (metric, _) in OBJECTIVES.items() if points and all(p.get(metric) is not None for p in points)
    ]


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a >= b if direction == "max" else a <= b


def dominates(a: Point, b: Point, objectives: list[str]) -> bool:
    strictly = False
    for name in objectives:
        metric, direction = OBJECTIVES[name]
        va, vb = a.get(metric), b.get(metric)
        assert va is not None and vb is not None
        if not _better_or_equal(va, vb, direction):
            return False
        if va != vb:
            strictly = True
    return strictly


def front(points: list[Point], objectives: list[str]) -> list[str]:
    """Names of the non-dominated points (all of them when there is no objective)."""
    return [p.name for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]


def parse_budgets(items: list[str] | None) -> dict[str, float]:
    """`--budget max_latency_p50_us=2000` (repeatable) -> {name: value}."""
    out: dict[str, float] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name = name.strip()
        robust = "@" in name and name.partition("@")[0] in ROBUST_BUDGETS
        if not eq or (name not in ALL_BUDGETS and not robust):
            raise ConfigError(
                f"--budget {item}: expected NAME=VALUE with NAME one of {', '.join(ALL_BUDGETS)}, "
                f"or {' or '.join(ROBUST_BUDGETS)}@<perturbation>"
            )
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--budget {item}: '{value}' is not a number") from None
        if robust:
            try:
                Budgets(**{name: out[name]})
            except ValueError as exc:
                raise ConfigError(f"--budget {item}: {str(exc).splitlines()[-1].strip()}") from None
        if name == "min_accuracy_top1" and not 0 <= out[name] <= 1:
            raise ConfigError(f"--budget {item}: accuracy is a fraction from 0 to 1 (0.97 for 97 %)")
    return out


def budget_checks(
    profile_budgets: Budgets | None, extra: Mapping[str, float], values: Mapping[str, float | None]
) -> list[BudgetCheck]:
    """The profile's budgets (a --budget of the same name replaces it) and the sweep's own."""
    merged = dict(profile_budgets.model_dump(exclude_none=True)) if profile_budgets is not None else {}
    merged.update(merged.pop("robust", None) or {})
    merged.update(extra)
    gate_values = dict(values)
    gate_values["accuracy_top1"] = values.get("accuracy")
    try:
        budgets = Budgets(**{k: v for k, v in merged.items() if k in BUDGET_METRICS or "@" in k})
    except ValueError as exc:
        raise ConfigError(f"--budget: {str(exc).splitlines()[-1].strip()}") from None
    checks = check_budgets(budgets, gate_values)
    for name, (metric, kind) in EXTRA_BUDGETS.items():
        if name not in merged:
            continue
        limit, value = float(merged[name]), values.get(metric)
        if value is None:
            status = "no data"
        else:
            status = "exceeded" if (value > limit if kind == "max" else value < limit) else "ok"
        checks.append(BudgetCheck(name, metric, limit, value, status))
    return checks


def _sort_key(p: Point, prefer: str, objectives: list[str]) -> tuple:
    order = [prefer] + [o for o in OBJECTIVES if o != prefer and o in objectives]
    key: list = []
    for name in order:
        metric, direction = OBJECTIVES[name]
        v = p.get(metric)
        if v is None:
            key.append(math.inf)
        else:
            key.append(-v if direction == "max" else v)
    return (*key, p.name)


def _accuracy_ties(points: list[Point], paired: Mapping[str, Paired]) -> tuple[Point, list[Tie], list[Point]]:
    """The most accurate point, the ties with it, and the points going on to the next objective."""
    scored = [p for p in points if p.get("accuracy") is not None]
    top = min(scored, key=lambda p: (-(p.get("accuracy") or 0.0), p.name))
    ties = []
    for p in scored:
        if p is top or p.name not in paired or top.name not in paired:
            continue
        test = mcnemar(paired[top.name], paired[p.name])
        if test is not None and test[0] >= TIE_ALPHA:
            ties.append(Tie(p.name, test[0], test[1]))
    floor = min([p.get("accuracy") or 0.0 for p in scored if p is top or p.name in {t.name for t in ties}])
    return top, ties, [p for p in scored if (p.get("accuracy") or 0.0) >= floor]


def choose(
    device: str,
    profile: str,
    points: list[Point],
    profile_budgets: Budgets | None,
    extra_budgets: Mapping[str, float],
    prefer: str = "accuracy",
    paired: Mapping[str, Paired] | None = None,
) -> DeviceChoice:
    if prefer not in OBJECTIVES:
        raise ConfigError(f"--prefer {prefer}: choose from {', '.join(OBJECTIVES)}")
    objectives = usable_objectives(points)
    on_front = set(front(points, objectives))
    verdicts = {
        p.name: Verdict(p.name, p.name in on_front, budget_checks(profile_budgets, extra_budgets, p.values))
        for p in points
    }
    feasible = [p for p in points if verdicts[p.name].meets]
    out = DeviceChoice(device, profile, objectives, prefer, None, verdicts)
    if not feasible:
        return out
    remaining = feasible
    for name in [prefer] + [o for o in OBJECTIVES if o != prefer and o in objectives]:
        metric, direction = OBJECTIVES[name]
        values = [p.get(metric) for p in remaining]
        if all(v is None for v in values):
            continue
        if name == "accuracy" and paired:
            top, out.ties, remaining = _accuracy_ties(remaining, paired)
            out.most_accurate = top.name
        else:
            best = (max if direction == "max" else min)(v for v in values if v is not None)
            remaining = [p for p in remaining if p.get(metric) == best]
        if len(remaining) == 1:
            out.decided_by = name
            break
    out.choice = min(remaining, key=lambda p: _sort_key(p, prefer, objectives)).name
    return out
