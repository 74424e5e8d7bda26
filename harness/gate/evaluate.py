"""The nightly gate: one run's results against baselines and budgets -> verdicts and an exit code.

Per (model, variant, device) the gate checks every metric in `harness.gate.thresholds.RULES`:

- ``sampled`` (latency p50/p90): significant (block Mann-Whitney U, `harness.gate.stats`) AND the
  relative change of the robust level beyond the threshold -> regression (or improvement).
- ``deterministic`` (model size, arena, flash): exact comparison; with the default threshold 0 any
  increase is a regression.
- ``scalar`` (peak RSS, energy): one value per run gives no within-run noise estimate, so the
  relative change against the threshold decides alone (baseline = median of the baseline runs).
- ``accuracy`` (top-1, agreement): the eval set is fixed, so the result is deterministic for an
  artifact; a drop of more than the threshold in absolute points is a regression.

A metric without a baseline value is ``new``, one that disappeared is ``missing``, one with too few
samples is ``insufficient``: reported, never failing. Budgets from the profile are checked on every
result, baseline or not.

Exit code (precedence 2 > 1 > 0): **2** when the run has any infrastructure failure - a result with
status ``infra_error`` or ``error``, or a planned job without any result - because the regression
picture is then incomplete; regressions found in the results that did arrive are still listed.
**1** for a regression or an exceeded budget. **0** otherwise. Usage and configuration errors raise
`ConfigError` (3) before any verdict is made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, ConfigError
from harness.gate import baselines as bl
from harness.gate.budgets import BudgetCheck, check_budgets
from harness.gate.stats import DEFAULT_ALPHA, MIN_SAMPLES, compare_samples
from harness.gate.thresholds import GATED_METRICS, RULES, resolve
from harness.lab.config import DeviceProfile, load_profiles
from harness.store import verdicts as db
from harness.store.results import ResultStore

MCU_MIN_WINDOWS = 5


@dataclass
class Check:
    """One metric of one result against its baseline (and budget)."""

    metric: str
    verdict: str                     # pass | regression | improvement | new | missing | insufficient | n/a
    baseline: float | None = None
    current: float | None = None
    effect: float | None = None   # relative change; absolute points for accuracy metrics
    threshold: float | None = None
    p_value: float | None = None
    ci: tuple[float, float] | None = None
    n_baseline: int | None = None
    n_current: int | None = None
    test: str = ""
    budget: BudgetCheck | None = None
    note: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.budget.exceeded

    @property
    def failed(self) -> bool:
        return self.regression or self.over_budget

    @property
    def skipped(self) -> bool:
        return not self.failed and self.verdict in ("insufficient", "missing")

    @property
    def absolute(self) -> bool:
        return RULES[self.metric].kind == "accuracy"


@dataclass
class KeyResult:
    """Everything the gate says about one (model, variant, device) of the run."""

    model: str
    variant: str
    device_id: str
    profile: str
    status: str                      # pass | fail | infra | error | nodata
    result_id: int | None = None
    checks: list[Check] = field(default_factory=list)
    baseline: bl.Baseline | None = None
    error: str | None = None
    seconds: float = 0.0             # steady-state measurement time
    values: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return bl.key_of(self.model, self.variant, self.device_id)

    @property
    def infra(self) -> bool:
        return self.status in ("infra", "error", "nodata")


@dataclass
class GateResult:
    run_id: str
    run: dict
    spec: bl.BaselineSpec
    alpha: float
    keys: list[KeyResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def infra_failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.infra]

    @property
    def failed_checks(self) -> list[tuple[KeyResult, Check]]:
        return [(k, c) for k in self.keys for c in k.checks if c.failed]

    @property
    def improvements(self) -> list[tuple[KeyResult, Check]]:
        return [(k, c) for k in self.keys for c in k.checks if c.verdict == "improvement"]

    @property
    def exit_code(self) -> int:
        if self.infra_failures:
            return EXIT_INFRA
        if self.failed_checks:
            return EXIT_REGRESSION
        return EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL", EXIT_INFRA: "INFRASTRUCTURE FAILURE"}[self.exit_code]

    def counts(self) -> dict[str, int]:
        checks = [c for k in self.keys for c in k.checks]
        return {"keys": len(self.keys), "passed": sum(k.status == "pass" for k in self.keys),
                "failed": sum(k.status == "fail" for k in self.keys), "infra": len(self.infra_failures),
                "checks": len(checks), "regressions": sum(c.regression for c in checks),
                "over_budget": sum(c.over_budget for c in checks),
                "improvements": sum(c.verdict == "improvement" for c in checks),
                "insufficient": sum(c.verdict == "insufficient" for c in checks)}

    def rows(self) -> list[dict]:
        """Flat verdict table (one row per check, plus one per infrastructure failure): the CSV."""
        out = []
        for k in self.keys:
            base = {"run_id": self.run_id, "model": k.model, "variant": k.variant, "device_id": k.device_id,
                    "profile": k.profile, "key_status": k.status, "baseline_mode": str(self.spec),
                    "baseline_runs": " ".join(k.baseline.run_ids) if k.baseline else ""}
            if k.infra:
                out.append({**base, "metric": "", "verdict": k.status, "note": k.error or ""})
                continue
            for c in k.checks:
                out.append({**base, "metric": c.metric, "verdict": c.verdict,
                            "status": "fail" if c.failed else ("skipped" if c.skipped else "pass"),
                            "baseline": c.baseline, "current": c.current, "effect": c.effect,
                            "effect_unit": "points" if c.absolute else "relative", "threshold": c.threshold,
                            "p_value": c.p_value, "ci_low": c.ci[0] if c.ci else None,
                            "ci_high": c.ci[1] if c.ci else None, "n_baseline": c.n_baseline,
                            "n_current": c.n_current, "test": c.test,
                            "budget": c.budget.name if c.budget else "",
                            "budget_limit": c.budget.limit if c.budget else None,
                            "budget_status": c.budget.status if c.budget else "", "note": c.note})
        return out


# --------------------------------------------------------------------------- loading


def load_gate_profiles(profiles_dir: Path | None, warnings: list[str]) -> dict[str, DeviceProfile]:
    """Profiles for thresholds and budgets; a missing directory is a warning (built-in defaults)."""
    if profiles_dir is None or not Path(profiles_dir).is_dir():
        warnings.append(f"{profiles_dir}: device profile directory not found; built-in thresholds, no budgets")
        return {}
    return load_profiles(Path(profiles_dir))


def _values(store: ResultStore, result_ids: list[int]) -> dict[int, dict[str, float]]:
    return db.metric_values(store, result_ids)


def _results_of_run(store: ResultStore, run_id: str) -> list[dict]:
    """The newest result of every job of the run (a resumed job's earlier failure is superseded)."""
    rows = db.results_of_run(store, run_id)
    by_job: dict[str, dict] = {}
    for rid, job, model, variant, dev, prof, status, err, transport in rows:
        prev = by_job.get(job)
        if prev is not None and prev["status"] == "ok" and status != "ok":
            continue
        by_job[job] = {"result_id": rid, "job_key": job, "model": model, "variant": variant, "device_id": dev,
                       "profile": prof, "status": status, "error": err, "transport": transport}
    return list(by_job.values())


def _missing_jobs(store: ResultStore, run: dict, present: set[str]) -> list[KeyResult]:
    """Planned jobs without any result: named from any other run that measured the same job."""
    try:
        plan = json.loads(run.get("plan") or "[]")
    except json.JSONDecodeError:
        plan = []
    out = []
    for job in plan:
        if job in present:
            continue
        known = db.job_identity(store, job)
        model, variant, dev, prof = known if known else (f"job-{job[:8]}", "?", "unknown", "?")
        out.append(KeyResult(model, variant, dev, prof, "nodata",
                             error=f"planned job {job} has no result (run status: {run.get('status')})"))
    return out


# --------------------------------------------------------------------------- checks


def _judge(effect: float, threshold: float, significant: bool = True) -> str:
    if significant and effect > threshold:
        return "regression"
    if significant and effect < -threshold:
        return "improvement"
    return "pass"


def check_metric(metric: str, threshold: float, current: float | None, baseline_values: list[float],
                 cur_samples: list[float] | None = None, base_samples: list[list[float]] | None = None,
                 alpha: float = DEFAULT_ALPHA, min_samples: int = MIN_SAMPLES, has_baseline: bool = True,
                 ci: bool = True, min_change_us: float = 0.0) -> Check:
    """Compare one metric; the single place the decision rules live (also used by benchmarks)."""
    rule = RULES[metric]
    c = Check(metric, "pass", current=current, threshold=threshold)
    if current is None and not baseline_values:
        c.verdict = "n/a"
        return c
    if not has_baseline or not baseline_values:
        c.verdict, c.test = "new", "none"
        c.note = "no baseline" if not has_baseline else "not measured in the baseline"
        return c
    if current is None:
        c.verdict, c.baseline = "missing", float(np.median(baseline_values))
        c.note = "measured in the baseline but not in this run"
        return c
    sign = 1.0 if rule.higher_is_worse else -1.0
    if rule.kind == "sampled":
        c.test = "block Mann-Whitney U + threshold"
        cmp = compare_samples(base_samples if base_samples is not None else [],
                              cur_samples if cur_samples is not None else [], q=rule.quantile or 0.5,
                              alpha=alpha, min_samples=min_samples, ci=ci)
        c.n_baseline, c.n_current, c.note = cmp.n_base, cmp.n_cur, cmp.note
        if not cmp.sufficient:
            c.verdict, c.baseline = "insufficient", float(np.median(baseline_values))
            return c
        c.baseline, c.current, c.effect, c.p_value = cmp.base, cmp.cur, cmp.effect, cmp.p_value
        if cmp.ci_low is not None:
            c.ci = (cmp.ci_low, cmp.ci_high)
        c.verdict = _judge(sign * cmp.effect, threshold, cmp.significant(alpha))
        if c.verdict in ("regression", "improvement") and abs(cmp.cur - cmp.base) < min_change_us:
            c.verdict = "pass"
            c.note = (c.note + "; " if c.note else "") + (
                f"change of {abs(cmp.cur - cmp.base):.2f} us is below the {min_change_us:g} us floor "
                "(latency_min_change_us)")
        elif c.verdict == "pass" and abs(cmp.effect) > threshold:
            c.note = (c.note + "; " if c.note else "") + f"change not significant (p={cmp.p_value:.2g})"
        return c
    base = float(np.median(baseline_values))
    c.baseline, c.n_baseline, c.n_current = base, len(baseline_values), 1
    if rule.kind == "accuracy":
        c.test = "absolute drop"
        c.effect = current - base
        c.verdict = _judge(sign * c.effect, threshold)
        return c
    c.test = "exact" if rule.kind == "deterministic" else "threshold"
    if base == 0:
        c.effect = 0.0 if current == 0 else math.inf
    else:
        c.effect = current / base - 1.0
    c.verdict = _judge(sign * c.effect, threshold)
    if rule.kind == "scalar" and c.n_baseline == 1:
        c.note = "one value per run: threshold only"
    return c


def evaluate(store: ResultStore, run_id: str | None = None, spec: bl.BaselineSpec | None = None,
             profiles: Mapping[str, DeviceProfile] | None = None,
             overrides: Mapping[str, Mapping[str, float]] | None = None, alpha: float = DEFAULT_ALPHA,
             min_samples: int = MIN_SAMPLES, warnings: list[str] | None = None) -> GateResult:
    """Judge one run (the latest by default). Does not record anything; see `record`."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: must be between 0 and 1")
    if min_samples < 2:
        raise ConfigError(f"--min-samples {min_samples}: must be at least 2")
    spec = spec or bl.BaselineSpec("last-pass")
    profiles = profiles or {}
    overrides = overrides or {}
    run = store.run_row(run_id)
    result = GateResult(run["run_id"], run, spec, alpha, warnings=list(warnings or []))
    rows = _results_of_run(store, result.run_id)
    current_values = _values(store, [r["result_id"] for r in rows if r["status"] == "ok"])
    warned: set[str] = set()
    for r in rows:
        k = KeyResult(r["model"], r["variant"], r["device_id"], r["profile"], "pass", result_id=r["result_id"])
        result.keys.append(k)
        if r["status"] != "ok":
            k.status = "infra" if r["status"] == "infra_error" else "error"
            k.error = r["error"] or r["status"]
            continue
        prof = profiles.get(r["profile"])
        if prof is None and profiles and r["profile"] not in warned:
            warned.add(r["profile"])
            result.warnings.append(f"profile '{r['profile']}' not found: built-in thresholds, no budgets "
                                   f"for its devices")
        cur = current_values[r["result_id"]]
        k.values = cur
        k.seconds = cur.get("inferences", cur.get("latency_count", 0)) * cur.get("latency_mean_us", 0) / 1e6
        k.baseline = bl.select(store, spec, k.model, k.variant, k.device_id, k.profile, result.run_id)
        base_ids = k.baseline.result_ids if k.baseline else []
        base_vals = _values(store, base_ids)
        sample_cache: dict[int, list[float]] = {}

        def samples(rid: int) -> list[float]:
            if rid not in sample_cache:
                sample_cache[rid] = store.samples(rid)
            return sample_cache[rid]

        budgets = {b.metric: b for b in check_budgets(prof.budgets if prof else None, cur)}
        for metric in GATED_METRICS:
            rule = RULES[metric]
            thr = resolve(metric, k.model, prof.thresholds if prof else None, overrides)
            bvals = [base_vals[i][metric] for i in base_ids if metric in base_vals[i]]
            kwargs = {}
            if rule.kind == "sampled" and metric in cur and bvals:
                kwargs = {"cur_samples": samples(k.result_id),
                          "base_samples": [samples(i) for i in base_ids if metric in base_vals[i]]}
            # MCU samples are whole measurement windows (>= seconds of inferences each, MLPerf: 5);
            # five of them per side are as trustworthy as many more raw invocations.
            need = min(min_samples, MCU_MIN_WINDOWS) if r.get("transport") == "serial" else min_samples
            if rule.kind == "sampled":
                kwargs["min_change_us"] = resolve("latency_min_change_us", k.model,
                                                  prof.thresholds if prof else None, overrides)
            c = check_metric(metric, thr, cur.get(metric), bvals, alpha=alpha, min_samples=need,
                             has_baseline=k.baseline is not None, **kwargs)
            c.budget = budgets.get(metric)
            if c.verdict == "n/a" and c.budget is None:
                continue
            if cur.get("throttled") == 1.0 and rule.kind == "sampled":
                c.note = (c.note + "; " if c.note else "") + "device reported throttling during the run"
            k.checks.append(c)
        k.status = "fail" if any(c.failed for c in k.checks) else "pass"
    result.keys.extend(_missing_jobs(store, run, {r["job_key"] for r in rows}))
    if not result.keys:
        result.keys.append(KeyResult("(none)", "-", "-", "-", "nodata",
                                     error=f"run {result.run_id} recorded no results"))
    return result


def record(store: ResultStore, result: GateResult) -> None:
    """Store one verdict per key so that the next night's `last-pass` baseline can be found."""
    rows = []
    for k in result.keys:
        rows.append({"key": k.key, "verdict": k.status, "model": k.model, "variant": k.variant,
                     "device_id": k.device_id, "profile": k.profile, "result_id": k.result_id,
                     "baseline": k.baseline.describe() if k.baseline else str(result.spec),
                     "detail": {"failed": [c.metric for c in k.checks if c.failed], "error": k.error}})
    bl.record_verdicts(store, result.run_id, rows)
