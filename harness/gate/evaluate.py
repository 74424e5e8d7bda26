"""The nightly gate: one run's results against references and budgets -> verdicts and an exit code.

Per (model, variant, device) the run has one result per runner process (`hil run --repeats`).
Per metric in `harness.core.metrics.RULES`:

- ``sampled`` (latency p50/p90) and ``scalar`` (model memory, energy): process levels against the
  median of the reference runs' levels, with the series' own noise model, decided for the whole gate
  at once with Holm (`harness.gate.process_checks`, `family`): a regression needs significance across
  the gate AND a change beyond the threshold. Serial (MCU) latency uses window means with a tight
  threshold and a stability check instead (`windows`). Slow creep is found by step detection over
  the series' run levels (`steps`).
- ``deterministic`` (model size, arena, flash): exact comparison; with the default threshold 0 any
  increase is a regression.
- ``accuracy`` (top-1, agreement): the eval set is fixed, so the result is deterministic for an
  artifact; a drop of more than the threshold in absolute points is a regression.

A metric of a series' first run is ``new``, one that disappeared is ``missing``; too few samples,
only disturbed windows or unstable MCU windows make it ``inconclusive``, which is never a pass.
Budgets from the profile are checked on every result, baseline or not.

Exit code (precedence 2 > 1 > 0): **2** when the run has any infrastructure failure - a result with
status ``infra_error`` or ``error``, or a planned job without any result - or an inconclusive
metric, because the regression picture is then incomplete; regressions found in the results that
did arrive are still listed. **1** for a regression or an exceeded budget. **0** otherwise. Usage and
configuration errors raise `ConfigError` (3) before any verdict is made.
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
from harness.gate.family import holm
from harness.gate.levels import INCONCLUSIVE, fmt_pct
from harness.gate.paired import PAIRED_METRICS, PairedInput, paired_comparison
from harness.gate.process_checks import (
    CREEP_RUNS,
    DEFAULT_NOISE_PRIOR,
    HISTORY_RUNS,
    SeriesInput,
    SeriesStats,
    creep,
    mcu_window_verdict,
    run_level,
    series_comparison,
)
from harness.gate.short_history import needs_text, runs_needed
from harness.gate.stats import DEFAULT_ALPHA, MIN_SAMPLES, compare_samples
from harness.gate.thresholds import GATED_METRICS, RULES, resolve
from harness.lab.config import DeviceProfile, load_profiles
from harness.store import verdicts as db
from harness.store.results import ResultStore

# Uncorrected one-sided p below which a comparison beyond its threshold is re-measured even though
# the gate's Holm let it pass (see `_decide_family`). Lenient on purpose: on a shared or virtual CPU
# the night-to-night noise of a process level is several per cent (4-5 % for the latency floor on the
# 2-core CI VM), so a real 5 % slowdown often reads p = 0.05-0.2 on its night; the in-process
# re-measurement that follows is cheap and decides with Holm over everything re-measured. At 3 %
# night noise about 6 % of unchanged comparisons are screened (tests/test_gate_processes.py).
SCREEN_ALPHA = 0.25


@dataclass
class Check:
    """One metric of one result against its baseline (and budget)."""

    metric: str
    verdict: str  # pass | regression | improvement | new | missing | insufficient | n/a
    baseline: float | None = None
    current: float | None = None
    effect: float | None = None  # relative change; absolute points for accuracy metrics
    threshold: float | None = None
    p_value: float | None = None
    ci: tuple[float, float] | None = None
    n_baseline: int | None = None
    n_current: int | None = None
    test: str = ""
    budget: BudgetCheck | None = None
    note: str = ""
    sigma_run: float | None = None  # noise of one process level (relative), process-level checks
    sigma_source: str = ""  # history | prior | paired (in-process ratio, harness.gate.paired)
    critical_change: float | None = None  # the smallest change that would have failed here
    runs_needed: int | None = None  # history too short for a meaningful critical change (short_history.py)
    creep_effect: float | None = None
    creep_sustained: bool = False  # the creep shows on each of the latest nights (steps.Creep.sustained)
    confirmation: dict | None = None  # interleaved re-measurement (see harness.gate.remeasure)
    screened: bool = False  # passed the gate's Holm but suspicious: re-measure it (SCREEN_ALPHA)
    paired_reference: str | None = None  # sha256 of the reference artifact timed in the same processes
    level_off: bool = False  # an unchanged artifact's level tripped: passes, not accepted (remeasure.py)
    same_artifact: bool = False  # tripped with the reference's own artifact: the device moved (drift.py)

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
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

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
    status: str  # pass | fail | infra | error | nodata
    result_id: int | None = None
    checks: list[Check] = field(default_factory=list)
    baseline: bl.Baseline | None = None
    error: str | None = None
    seconds: float = 0.0  # steady-state measurement time
    values: dict = field(default_factory=dict)
    result_ids: list[int] = field(default_factory=list)  # one per runner process
    processes: int = 0

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
    def screened_checks(self) -> list[tuple[KeyResult, Check]]:
        return [(k, c) for k in self.keys for c in k.checks if c.screened]

    @property
    def improvements(self) -> list[tuple[KeyResult, Check]]:
        return [(k, c) for k in self.keys for c in k.checks if c.verdict == "improvement"]

    @property
    def inconclusive_checks(self) -> list[tuple[KeyResult, Check]]:
        return [(k, c) for k in self.keys for c in k.checks if c.inconclusive]

    @property
    def exit_code(self) -> int:
        if self.infra_failures or self.inconclusive_checks:
            return EXIT_INFRA
        if self.failed_checks:
            return EXIT_REGRESSION
        return EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL", EXIT_INFRA: "INFRASTRUCTURE FAILURE"}[self.exit_code]

    def counts(self) -> dict[str, int]:
        checks = [c for k in self.keys for c in k.checks]
        return {
            "keys": len(self.keys),
            "passed": sum(k.status == "pass" for k in self.keys),
            "failed": sum(k.status == "fail" for k in self.keys),
            "infra": len(self.infra_failures),
            "checks": len(checks),
            "regressions": sum(c.regression for c in checks),
            "over_budget": sum(c.over_budget for c in checks),
            "improvements": sum(c.verdict == "improvement" for c in checks),
            "inconclusive": sum(c.verdict == "inconclusive" for c in checks),
            "insufficient": sum(c.verdict == "insufficient" for c in checks),
        }

    def rows(self) -> list[dict[str, object]]:
        """Flat verdict table (one row per check, plus one per infrastructure failure): the CSV."""
        out: list[dict[str, object]] = []
        for k in self.keys:
            base = {
                "run_id": self.run_id,
                "model": k.model,
                "variant": k.variant,
                "device_id": k.device_id,
                "profile": k.profile,
                "key_status": k.status,
                "baseline_mode": str(self.spec),
                "baseline_runs": " ".join(k.baseline.run_ids) if k.baseline else "",
            }
            if k.infra:
                out.append({**base, "metric": "", "verdict": k.status, "note": k.error or ""})
                continue
            for c in k.checks:
                out.append(
                    {
                        **base,
                        "metric": c.metric,
                        "verdict": c.verdict,
                        "status": "fail" if c.failed else ("skipped" if c.skipped else "pass"),
                        "baseline": c.baseline,
                        "current": c.current,
                        "effect": c.effect,
                        "effect_unit": "points" if c.absolute else "relative",
                        "threshold": c.threshold,
                        "p_value": c.p_value,
                        "ci_low": c.ci[0] if c.ci else None,
                        "ci_high": c.ci[1] if c.ci else None,
                        "n_baseline": c.n_baseline,
                        "n_current": c.n_current,
                        "test": c.test,
                        "budget": c.budget.name if c.budget else "",
                        "budget_limit": c.budget.limit if c.budget else None,
                        "budget_status": c.budget.status if c.budget else "",
                        "sigma_run": c.sigma_run,
                        "critical_change": c.critical_change,
                        "runs_needed": c.runs_needed,
                        "paired_reference": c.paired_reference or "",
                        "confirmed": (c.confirmation or {}).get("confirmed"),
                        "confirm_effect": (c.confirmation or {}).get("effect"),
                        "confirm_p": (c.confirmation or {}).get("p"),
                        "confirm_operators": (c.confirmation or {}).get("operators") or "",
                        "note": c.note,
                    }
                )
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
        by_job[job] = {
            "result_id": rid,
            "job_key": job,
            "model": model,
            "variant": variant,
            "device_id": dev,
            "profile": prof,
            "status": status,
            "error": err,
            "transport": transport,
        }
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
        out.append(
            KeyResult(
                model,
                variant,
                dev,
                prof,
                "nodata",
                error=f"planned job {job} has no result (run status: {run.get('status')})",
            )
        )
    return out


# --------------------------------------------------------------------------- checks


def _judge(effect: float, threshold: float, significant: bool = True) -> str:
    if significant and effect > threshold:
        return "regression"
    if significant and effect < -threshold:
        return "improvement"
    return "pass"


def check_metric(
    metric: str,
    threshold: float,
    current: float | None,
    baseline_values: list[float],
    cur_samples: list[float] | None = None,
    base_samples: list[list[float]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = MIN_SAMPLES,
    has_baseline: bool = True,
    ci: bool = True,
    min_change_us: float = 0.0,
) -> Check:
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
        cmp = compare_samples(
            base_samples if base_samples is not None else [],
            cur_samples if cur_samples is not None else [],
            q=rule.quantile or 0.5,
            alpha=alpha,
            min_samples=min_samples,
            ci=ci,
        )
        c.n_baseline, c.n_current, c.note = cmp.n_base, cmp.n_cur, cmp.note
        if not cmp.sufficient:
            c.verdict, c.baseline = "insufficient", float(np.median(baseline_values))
            return c
        base_level, cur_level, effect = cmp.base, cmp.cur, cmp.effect
        if base_level is None or cur_level is None or effect is None:  # compare_samples sets all three
            raise RuntimeError(f"{metric}: a sufficient sample comparison without levels or effect: {cmp}")
        c.baseline, c.current, c.effect, c.p_value = base_level, cur_level, effect, cmp.p_value
        if cmp.ci_low is not None and cmp.ci_high is not None:  # set together by the bootstrap
            c.ci = (cmp.ci_low, cmp.ci_high)
        c.verdict = _judge(sign * effect, threshold, cmp.significant(alpha))
        if c.verdict in ("regression", "improvement") and abs(cur_level - base_level) < min_change_us:
            c.verdict = "pass"
            c.note = (c.note + "; " if c.note else "") + (
                f"change of {abs(cur_level - base_level):.2f} us is below the {min_change_us:g} us floor "
                "(latency_min_change_us)"
            )
        elif c.verdict == "pass" and abs(effect) > threshold:
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


def _group(rows: list[dict]) -> list[list[dict]]:
    """Results of one run grouped per (model, variant, device): one entry per runner process."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["variant"], r["device_id"]), []).append(r)
    return list(groups.values())


def _median_values(values: list[dict[str, float]]) -> dict[str, float]:
    metrics = {m for v in values for m in v}
    return {m: float(np.median([v[m] for v in values if m in v])) for m in metrics}


def _process_series(
    store: ResultStore,
    k: KeyResult,
    metric: str,
    ok_ids: list[int],
    values: dict[int, dict[str, float]],
    base_values: dict[int, dict[str, float]],
    before: float,
    threshold: float,
    min_samples: int,
    prior: float,
) -> SeriesInput:
    cur, disturbed = [], []
    for rid in ok_ids:
        v = values[rid]
        if metric not in v:
            continue
        cur.append(v[metric])
        few = RULES[metric].kind == "sampled" and v.get("latency_count", min_samples) < min_samples
        disturbed.append(bool(v.get("disturbed")) or few)
    history = db.series_values(store, k.model, k.variant, k.device_id, metric, before, HISTORY_RUNS)
    # the reference: the baseline's processes (a profile-wide pin may come from another board)
    by_run: dict[str, list[float]] = {}
    runs = db.runs_of(store, list(base_values))
    for rid, v in base_values.items():
        if metric in v and not v.get("disturbed") and v.get("latency_count", min_samples) >= min_samples:
            by_run.setdefault(runs.get(rid, ""), []).append(v[metric])
    ref_levels = list(by_run.values())
    hist_levels = [[x for x, d in zip(lv, fl) if not d] for _, lv, fl in history]
    return SeriesInput(metric, cur, disturbed, ref_levels, hist_levels, threshold, prior)


def _paired_input(
    store: ResultStore,
    k: KeyResult,
    metric: str,
    values: dict[int, dict[str, float]],
    base_ids: list[int],
    before: float,
    threshold: float,
    min_samples: int,
) -> PairedInput | None:
    """The run's in-process ratios to a reference artifact, when its processes timed one of the
    baseline's artifacts (`hil run` pairs changed artifacts; harness.run.reference); else None and
    the series is judged on its nightly levels."""
    paired_metric = PAIRED_METRICS.get(metric)
    if paired_metric is None or not base_ids:
        return None
    base_artifacts = db.artifacts_of(store, base_ids)
    cur, ref, disturbed, sha = [], [], [], ""
    for rid in k.result_ids:
        v = values[rid]
        if metric not in v or paired_metric not in v:
            continue
        ref_sha = ((store.raw(rid) or {}).get("paired") or {}).get("artifact_sha256")
        if ref_sha not in base_artifacts:
            continue
        sha = ref_sha
        cur.append(v[metric])
        ref.append(v[paired_metric])
        disturbed.append(bool(v.get("disturbed")) or v.get("latency_count", min_samples) < min_samples)
    if not cur:
        return None
    history = [
        [math.log(a / b) for a, b in run if a > 0 and b > 0]
        for run in db.paired_history(
            store, k.model, k.variant, k.device_id, metric, paired_metric, before, HISTORY_RUNS
        )
    ]
    return PairedInput(metric, cur, ref, disturbed, history, threshold, sha)


def evaluate(
    store: ResultStore,
    run_id: str | None = None,
    spec: bl.BaselineSpec | None = None,
    profiles: Mapping[str, DeviceProfile] | None = None,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = MIN_SAMPLES,
    warnings: list[str] | None = None,
) -> GateResult:
    """Judge one run (by default the latest a user started, `ResultStore.latest_run_id`). Does not
    record anything; see `record`."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: must be between 0 and 1")
    if min_samples < 2:
        raise ConfigError(f"--min-samples {min_samples}: must be at least 2")
    spec = spec or bl.BaselineSpec("last-pass", bl.DEFAULT_K)
    profiles = profiles or {}
    overrides = overrides or {}
    run = store.run_row(run_id)
    if run.get("kind") == "confirm":  # the reference's and the candidate's processes under one key
        raise ConfigError(
            f"run {run['run_id']}: a confirmation run (the gate's re-measurement for "
            f"{str(run.get('label') or '')[len('confirm:') :] or 'another run'}), not a measurement to gate"
        )
    if run.get("kind") == "bisect":  # the good artifact's and a commit's processes under one key
        raise ConfigError(
            f"run {run['run_id']}: a step of `hil bisect` ({run.get('label')}), not a measurement to gate"
        )
    if run.get("kind") == "profile":  # a short timed window beside the profiler's pass
        raise ConfigError(f"run {run['run_id']}: a `hil profile` run (a short look), not a measurement to gate")
    result = GateResult(run["run_id"], run, spec, alpha, warnings=list(warnings or []))
    if run.get("status") == "abandoned":
        who = store.abandoned_runs([result.run_id]).get(result.run_id, "its session")
        result.warnings.append(
            f"run {result.run_id} was abandoned: the hilbench session measuring it ({who}) is gone and never "
            "finished it; jobs without a result are listed as failures, and the same `hil run` command with "
            "--resume measures them"
        )
    before = float(run["started_at"])
    rows = _results_of_run(store, result.run_id)
    values = _values(store, [r["result_id"] for r in rows if r["status"] == "ok"])
    pending: list[tuple[KeyResult, Check, SeriesStats, float]] = []
    warned: set[str] = set()
    for grp in _group(rows):
        first = grp[0]
        ok = [r for r in grp if r["status"] == "ok"]
        failed = [r for r in grp if r["status"] != "ok"]
        k = KeyResult(
            first["model"],
            first["variant"],
            first["device_id"],
            first["profile"],
            "pass",
            result_id=(ok or grp)[0]["result_id"],
        )
        k.result_ids = [r["result_id"] for r in ok]
        result.keys.append(k)
        if failed:
            worst = next((r for r in failed if r["status"] == "infra_error"), failed[0])
            k.status = "infra" if worst["status"] == "infra_error" else "error"
            k.error = (worst["error"] or worst["status"]) + (
                f" ({len(failed)} of {len(grp)} processes failed)" if len(grp) > 1 else ""
            )
            if not ok:
                continue
        prof = profiles.get(first["profile"])
        if prof is None and profiles and first["profile"] not in warned:
            warned.add(first["profile"])
            result.warnings.append(
                f"profile '{first['profile']}' not found: built-in thresholds, no budgets for its devices"
            )
        per_process = [values[r["result_id"]] for r in ok]
        cur = _median_values(per_process)
        k.values = cur
        k.processes = len(ok)
        k.seconds = sum(v.get("latency_count", 0) * v.get("latency_mean_us", 0) for v in per_process) / 1e6
        k.baseline = bl.select(store, spec, k.model, k.variant, k.device_id, k.profile, result.run_id)
        base_ids = k.baseline.result_ids if k.baseline else []
        base_vals = _values(store, base_ids)
        serial = first.get("transport") == "serial"
        prior = (prof.benchmark.noise_prior if prof else None) or DEFAULT_NOISE_PRIOR
        budgets = {b.metric: b for b in check_budgets(prof.budgets if prof else None, cur)}
        perturbed = {m for m in cur if "@" in m and m in RULES}
        perturbed |= {m for i in base_ids for m in base_vals.get(i, {}) if "@" in m and m in RULES}
        for metric in GATED_METRICS + sorted(perturbed):  # robustness metrics: gated like accuracy
            rule = RULES[metric]
            thr = resolve(metric, k.model, prof.thresholds if prof else None, overrides)
            bvals = [base_vals[i][metric] for i in base_ids if metric in base_vals[i]]
            process_level = rule.kind in ("sampled", "scalar") and metric in cur and bvals
            if serial and metric == "latency_min_us":
                continue  # an MCU latency sample is a window mean: its floor repeats the p50 window check
            if process_level and serial and rule.kind == "sampled":
                c = _mcu_check(store, metric, thr, k.result_ids, base_ids, cur.get(metric))
            elif (
                process_level
                and rule.kind == "sampled"
                and all(v.get("latency_count", min_samples) < min_samples for v in per_process)
            ):
                n = int(max(v.get("latency_count", 0) for v in per_process))
                c = Check(
                    metric,
                    "inconclusive",
                    current=cur[metric],
                    threshold=thr,
                    n_current=n,
                    test="process levels + Holm",
                    note=f"too few samples ({n} < {min_samples} per process): raise max_seconds or lower min_runs",
                )
            elif process_level:
                c = Check(metric, "pending", current=cur[metric], threshold=thr, test="process levels + Holm")
                paired_thr = min(
                    thr, resolve("latency_paired_threshold", k.model, prof.thresholds if prof else None, overrides)
                )
                pair = (
                    None
                    if serial
                    else _paired_input(store, k, metric, values, base_ids, before, paired_thr, min_samples)
                )
                if pair is not None:
                    stats = paired_comparison(pair, f"{k.key} {metric}")
                    c.test, c.paired_reference = "in-process ratio + Holm", pair.reference_sha256
                    c.threshold = paired_thr
                else:
                    s = _process_series(
                        store,
                        k,
                        metric,
                        k.result_ids,
                        values,
                        base_vals,
                        before,
                        thr,
                        min_samples if not serial else 1,
                        prior,
                    )
                    stats = series_comparison(s, f"{k.key} {metric}")
                c.baseline, c.n_baseline, c.n_current = stats.reference, stats.n_reference, stats.comparison.r
                c.sigma_run, c.sigma_source = stats.sigma, stats.sigma_source
                if stats.comparison.verdict == INCONCLUSIVE:
                    reason = stats.comparison.reason
                    if reason == "all windows disturbed":
                        reason += " (frequency, governor or throttling changed during every window, or too few samples)"
                    c.verdict, c.note = "inconclusive", reason
                else:
                    c.current = float(np.exp(np.log(stats.reference) + stats.comparison.log_ratio))
                    c.effect = c.current / stats.reference - 1.0
                    floor = (
                        resolve("latency_min_change_us", k.model, prof.thresholds if prof else None, overrides)
                        if metric.startswith("latency")
                        else 0.0
                    )
                    pending.append((k, c, stats, floor))
            else:
                c = check_metric(metric, thr, cur.get(metric), bvals, has_baseline=k.baseline is not None)
            c.budget = budgets.get(metric)
            if c.verdict == "n/a" and c.budget is None:
                continue
            if cur.get("throttled") == 1.0 and rule.kind == "sampled":
                c.note = (c.note + "; " if c.note else "") + "device reported throttling during the run"
            k.checks.append(c)
    _decide_family(result, pending)
    for k in result.keys:
        if not k.infra:
            _creep_check(store, k, before, profiles.get(k.profile), overrides)
            k.status = "fail" if any(c.failed for c in k.checks) else "pass"
    result.keys.extend(_missing_jobs(store, run, {r["job_key"] for r in rows}))
    if not result.keys:
        result.keys.append(
            KeyResult("(none)", "-", "-", "-", "nodata", error=f"run {result.run_id} recorded no results")
        )
    return result


def _decide_family(result: GateResult, pending: list[tuple[KeyResult, Check, SeriesStats, float]]) -> None:
    """Holm over every process-level comparison of the gate: the false-alarm budget is the gate's.

    A comparison that Holm lets pass but that is beyond its threshold at the uncorrected
    ``SCREEN_ALPHA`` is *screened*: `hil gate` re-measures it (`harness.gate.remeasure`). Night-to-night
    noise limits what any nightly comparison can resolve (a 5 % slowdown against ~2 % night noise
    rarely clears a Holm bar over 100+ comparisons), while the interleaved re-measurement cancels the
    night. The screen costs no false alarms: the re-measurement is fresh data, and its decisions are
    Holm-corrected over the screened comparisons, so the family-wise guarantee holds for the gate.
    Without re-measurement (`--no-confirm`) a screened comparison stays a pass. A series whose noise
    is still the profile's prior (too short a history) is not screened: its p-value says little,
    and screening on it would re-measure half of a young lab every night."""
    decisions = holm([s.comparison for _, _, s, _ in pending], alpha_family=result.alpha)
    for (k, c, s, floor), d in zip(pending, decisions):
        c.verdict = d.verdict
        c.p_value = d.p_holm if d.verdict != "improvement" else d.p_holm_better
        c.critical_change = d.critical_change
        c.note = d.reason
        c.runs_needed = runs_needed(s.noise, d.comparison.r, d.z_crit, d.comparison.dof)
        if c.runs_needed is not None and d.verdict == "pass":
            # the critical change of a 2-run history reads 15307731213 %: say what it means instead
            c.note = (
                f"effect {fmt_pct(d.comparison.effect)}; the history is too short for a critical change: "
                + needs_text(c.runs_needed, k.device_id)
            )
        if c.paired_reference:
            c.note = f"in-process ratio to reference artifact {c.paired_reference[:12]}; {c.note}"
        change = abs(c.current - c.baseline) if c.current is not None and c.baseline is not None else None
        below_floor = bool(floor) and change is not None and change < floor
        if c.verdict in ("regression", "improvement") and below_floor:
            c.verdict = "pass"
            c.note = f"change of {change:.2f} us is below the {floor:g} us floor (latency_min_change_us)"
        elif (
            c.verdict == "pass"
            and not below_floor
            and s.sigma_source in ("history", "paired")
            and d.comparison.effect > d.comparison.threshold
            and d.comparison.p < SCREEN_ALPHA
        ):
            c.screened = True
            c.note += f"; screened for re-measurement (uncorrected p={d.comparison.p:.2g} < {SCREEN_ALPHA})"


def _mcu_check(
    store: ResultStore, metric: str, thr: float, cur_ids: list[int], base_ids: list[int], current: float | None
) -> Check:
    """MCU latency: window means (one stored sample per window) against the reference's windows."""
    cur_w = [x for rid in cur_ids for x in store.samples(rid)]
    base_w = [x for rid in base_ids for x in store.samples(rid)]
    w = mcu_window_verdict(base_w, cur_w, thr, metric)
    c = Check(
        metric,
        w.verdict,
        baseline=w.base_level,
        current=w.current_level,
        effect=w.effect,
        threshold=thr,
        n_baseline=len(base_w),
        n_current=len(cur_w),
        test="MCU window means + stability",
        note=w.reason,
    )
    if metric != "latency_p50_us" and w.verdict == "inconclusive":
        c.verdict, c.note = "pass", "p50 decides MCU windows; " + w.reason
    return c


CREEP_METRICS = ("latency_min_us", "latency_p50_us")


def _creep_check(
    store: ResultStore,
    k: KeyResult,
    before: float,
    prof: DeviceProfile | None,
    overrides: Mapping[str, Mapping[str, float]],
) -> None:
    """Slow creep: step detection over the run levels of the series, this run last. On the latency
    floor first (the least noisy level, so the earliest to show a creep), then on the p50. A nightly
    regression is looked at too: whether the level has stayed off for nights is what tells a lasting
    device or runtime change of an unchanged artifact from one slow night (harness.gate.remeasure)."""
    for metric in CREEP_METRICS:
        c = next((c for c in k.checks if c.metric == metric), None)
        if c is None or c.verdict in ("inconclusive", "new") or c.current is None:
            continue
        thr = resolve(metric, k.model, prof.thresholds if prof else None, overrides)
        if c.effect is None or c.effect < 0.5 * thr:
            # a creep keeps the run above its recent reference (which lags behind it); a run at or
            # below the reference is not creeping, however the older history happened to fall
            continue
        history = db.series_values(store, k.model, k.variant, k.device_id, metric, before, CREEP_RUNS)
        levels = [run_level([x for x, d in zip(lv, fl) if not d]) for _, lv, fl in history] + [c.current]
        found = creep(levels, thr, metric, c.sigma_run)
        if found is None or not found.flagged:
            continue
        start_run = (
            history[found.start_index][0]
            if found.start_index is not None and found.start_index < len(history)
            else "this run"
        )
        c.verdict = "regression"
        c.screened = False
        c.creep_effect = found.effect
        c.creep_sustained = found.sustained
        c.note = f"creep: {found.effect:+.1%} against the best earlier level, beginning at run {start_run}" + (
            f"; {c.note}" if c.note else ""
        )


LEVEL_OFF = "level-off"  # recorded verdict: passed, but an unchanged artifact's level was off


def record(store: ResultStore, result: GateResult) -> None:
    """Store one verdict per key: `pass` keys are accepted as references for later runs; `improved`
    keys are not (an improvement never moves the reference silently: `hil baseline accept`)."""
    rows = []
    for k in result.keys:
        verdict = k.status
        if verdict == "pass" and any(c.verdict == "improvement" for c in k.checks):
            verdict = "improved"
        if verdict == "pass" and any(c.verdict == "inconclusive" for c in k.checks):
            verdict = "inconclusive"
        if verdict == "pass" and any(c.level_off for c in k.checks):
            verdict = LEVEL_OFF  # not a reference for later nights until it settles or is accepted
        rows.append(
            {
                "key": k.key,
                "verdict": verdict,
                "model": k.model,
                "variant": k.variant,
                "device_id": k.device_id,
                "profile": k.profile,
                "result_id": k.result_id,
                "baseline": k.baseline.describe() if k.baseline else str(result.spec),
                "detail": _detail(k),
            }
        )
    bl.record_verdicts(store, result.run_id, rows)


def _detail(k: KeyResult) -> dict:
    """The verdict's stored detail: failing metrics, the error, and for a confirmed latency regression
    the operators that account for it (`operators`: the text of harness.profile.diff.explain, or why
    the device gave no profile; one profile pass per key), so the explanation outlives the gate's output."""
    out: dict = {"failed": [c.metric for c in k.checks if c.failed], "error": k.error}
    operators = next((ops for c in k.checks if (ops := (c.confirmation or {}).get("operators"))), None)
    if operators:
        out["operators"] = operators
    return out
