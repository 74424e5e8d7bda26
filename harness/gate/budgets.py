"""Absolute budgets from the device profile: limits a result must meet whatever its history.

A budget is independent of the baseline: the first run of a model is checked too, and a slow drift
that never trips the regression threshold still fails once it crosses the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.lab.config import ROBUST_BUDGETS, Budgets

# budget field -> (metric, "max" | "min")
BUDGET_METRICS: dict[str, tuple[str, str]] = {
    "max_latency_p50_us": ("latency_p50_us", "max"),
    "max_latency_p90_us": ("latency_p90_us", "max"),
    "max_peak_rss_kb": ("peak_rss_kb", "max"),
    "max_flash_bytes": ("flash_bytes", "max"),
    "max_arena_bytes": ("arena_bytes", "max"),
    "max_energy_per_inference_uj": ("energy_per_inference_uj", "max"),
    "min_accuracy_top1": ("accuracy_top1", "min"),
    "min_accuracy_auc": ("accuracy_auc", "min"),
}


@dataclass
class BudgetCheck:
    name: str  # budget field, e.g. max_latency_p50_us
    metric: str
    limit: float
    value: float | None
    status: str  # ok | exceeded | no data

    @property
    def exceeded(self) -> bool:
        return self.status == "exceeded"

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name} = {self.limit:g}: no {self.metric} measured"
        rel = "<=" if self.name.startswith("max_") else ">="
        verb = "within" if not self.exceeded else "exceeds"
        return f"{self.metric} {self.value:g} {verb} budget {self.name} ({rel} {self.limit:g})"


def check_budgets(budgets: Budgets | None, values: Mapping[str, float | None]) -> list[BudgetCheck]:
    """One check per budget the profile sets; metrics absent from the result give `no data`."""
    if budgets is None:
        return []
    out = []
    for name, (metric, kind) in BUDGET_METRICS.items():
        limit = getattr(budgets, name, None)
        if limit is None:
            continue
        value = values.get(metric)
        if value is None:
            status = "no data"
        elif kind == "max":
            status = "exceeded" if value > limit else "ok"
        else:
            status = "exceeded" if value < limit else "ok"
        out.append(BudgetCheck(name, metric, float(limit), None if value is None else float(value), status))
    for name, limit in sorted(budgets.robust.items()):  # min_accuracy_top1@<perturbation>: a floor
        base, _, pert = name.partition("@")
        metric = f"{ROBUST_BUDGETS[base]}@{pert}"
        value = values.get(metric)
        status = "no data" if value is None else ("exceeded" if value < limit else "ok")
        out.append(BudgetCheck(name, metric, float(limit), None if value is None else float(value), status))
    return out
