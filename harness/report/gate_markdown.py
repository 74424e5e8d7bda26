"""Markdown summary of a gate decision (fits `$GITHUB_STEP_SUMMARY` and merge-request comments).

Failures come first: infrastructure failures, then regressions and budget violations, then
improvements; the full per-metric table follows in a collapsible block.
"""

from __future__ import annotations

import math

from harness.gate.evaluate import Check, GateResult
from harness.gate.short_history import needs_text
from harness.gate.thresholds import RULES
from harness.report.run_markdown import fmt_us, markdown_table, md_rows, md_text, run_label, variant_rank


def _known(x: float | None) -> float | None:
    """`x`, or None for None and NaN: those are shown as '-' (a summary never says 'nan')."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def fmt_value(metric: str, value: float | None) -> str:
    value = _known(value)
    if value is None:
        return "-"
    if metric.endswith("_us"):
        return fmt_us(value)
    if metric.endswith("_kb"):
        return f"{value / 1024:.1f} MB"
    if metric.endswith("_bytes"):
        return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value:.0f} B"
    if metric in ("accuracy_top1", "agreement"):
        return f"{value * 100:.2f} %"
    if metric == "accuracy_auc":
        return f"AUC {value:.4f}"
    if metric.endswith("_uj"):
        return f"{value:.3g} uJ"
    return f"{value:.4g}"


def fmt_change(c: Check) -> str:
    effect = _known(c.effect)
    if effect is None:
        return "-"
    if c.absolute:
        return f"{effect * 100:+.2f} pt"
    if math.isinf(effect):
        return "+inf"
    return f"{effect * 100:+.2f} %"


def fmt_threshold(c: Check) -> str:
    threshold = _known(c.threshold)
    if threshold is None:
        return "-"
    return f"{threshold * 100:.2g} pt" if c.absolute else f"{threshold * 100:.3g} %"


def fmt_p(p: float | None) -> str:
    p = _known(p)
    return "-" if p is None else f"{p:.2g}"


def check_outcome(c: Check) -> str:
    parts = []
    if c.regression:
        parts.append("REGRESSION")
    elif c.verdict not in ("pass", "n/a"):
        parts.append(c.verdict)
    elif c.verdict == "pass":
        parts.append("ok")
    if c.over_budget:
        parts.append("OVER BUDGET")
    return ", ".join(parts)


def check_message(c: Check) -> str:
    """One sentence a person can act on."""
    bits = []
    label = RULES[c.metric].label or c.metric
    if c.regression or c.verdict == "improvement":
        word = "regressed" if c.regression else "improved"
        bits.append(
            f"{label} {word}: {fmt_value(c.metric, c.baseline)} -> {fmt_value(c.metric, c.current)} "
            f"({fmt_change(c)}, threshold {fmt_threshold(c)}"
            + (f", p={fmt_p(c.p_value)}" if c.p_value is not None else "")
            + ")"
        )
    if c.budget is not None and c.budget.status != "ok":
        bits.append(c.budget.describe())
    if c.note:
        bits.append(c.note)
    return "; ".join(bits) or check_outcome(c)


CHECK_HEADERS = [
    "model",
    "variant",
    "device",
    "metric",
    "baseline",
    "current",
    "change",
    "threshold",
    "sigma_run",
    "critical change",
    "p",
    "confirmation",
    "budget",
    "verdict",
]


def fmt_rel(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.2f} %"


def fmt_confirmation(c: Check) -> str:
    """The interleaved re-measurement: effect, p, processes, and what it decided."""
    conf = c.confirmation
    if not conf:
        return "-"
    if conf.get("impossible"):
        return "not possible: " + conf["impossible"]
    word = "confirmed" if conf.get("confirmed") else "not confirmed"
    n = conf["n"]
    how = f"{n} processes timing both" if conf.get("method") == "in-process" else f"{n}+{n} processes"
    return f"{word}: {conf['effect'] * 100:+.2f} % (p={conf['p']:.2g}, {how})"


def fmt_critical(k, c: Check) -> str:
    """The critical change, or what a too-short history needs before it means anything."""
    if c.runs_needed is not None:
        return needs_text(c.runs_needed, k.device_id)
    return fmt_rel(c.critical_change)


def check_row(k, c: Check) -> list[str]:
    budget = "-"
    if c.budget is not None:
        budget = f"{c.budget.status} ({fmt_value(c.metric, c.budget.limit)})"
    sigma = fmt_rel(c.sigma_run) + {"prior": " (prior)", "paired": " (in-process)"}.get(c.sigma_source, "")
    return [
        k.model,
        k.variant,
        k.device_id,
        c.metric,
        fmt_value(c.metric, c.baseline),
        fmt_value(c.metric, c.current),
        fmt_change(c),
        fmt_threshold(c),
        sigma if c.sigma_run else "-",
        fmt_critical(k, c),
        fmt_p(c.p_value),
        fmt_confirmation(c),
        budget,
        check_outcome(c),
    ]


def ordered(keys: list) -> list:
    """Gate keys by model, then variant (fp32, fp16, dynamic, int8, int16x8, others), then device."""
    return sorted(keys, key=lambda k: (str(k.model), variant_rank(k.variant), str(k.device_id)))


def render_gate_markdown(res: GateResult) -> str:
    n = res.counts()
    run = res.run
    out = [f"# hilbench gate: {res.verdict} (exit {res.exit_code})", ""]
    out += [
        f"- run: `{res.run_id}` ({run.get('status')}, label {md_text(run_label(run)) or '-'}, "
        f"host {md_text(run.get('host') or '-')}, models commit {md_text(run.get('git_commit') or '-')})",
        f"- baseline: `{res.spec}`; significance: process levels against the reference, Holm over the "
        f"whole gate at family-wise alpha {res.alpha:g}",
        f"- {n['keys']} result(s): {n['passed']} passed, {n['failed']} failed, "
        f"{n['infra']} infrastructure failure(s); {n['checks']} checks: {n['regressions']} regression(s), "
        f"{n['over_budget']} over budget, {n['improvements']} improvement(s), "
        f"{n['inconclusive']} inconclusive",
        "",
    ]
    for w in res.warnings:
        out.append(f"> warning: {md_text(w)}")
    if res.warnings:
        out.append("")
    if res.infra_failures:
        out += [
            "## Infrastructure failures",
            "",
            "These jobs produced no usable measurement; the verdict below is incomplete.",
            "",
        ]
        for k in res.infra_failures:
            out.append(f"- **{md_text(f'{k.model}/{k.variant} on {k.device_id}')}** ({k.status}): {md_text(k.error)}")
        out.append("")
    failed = res.failed_checks
    out += ["## Regressions and budget violations", ""]
    if failed:
        out += [markdown_table(CHECK_HEADERS, md_rows([check_row(k, c) for k, c in failed])), ""]
        for k, c in failed:
            out.append(f"- **{md_text(k.key)}**: {md_text(check_message(c))}")
        out.append("")
    else:
        out += ["None.", ""]
    if res.inconclusive_checks:
        out += [
            "## Inconclusive",
            "",
            "Not enough trustworthy data to decide; counted like an infrastructure failure (exit 2), never as a pass.",
            "",
        ]
        for k, c in res.inconclusive_checks:
            out.append(f"- **{md_text(k.key)}** {c.metric}: {md_text(c.note)}")
        out.append("")
    if res.improvements:
        out += [
            "## Improvements",
            "",
            markdown_table(CHECK_HEADERS, md_rows([check_row(k, c) for k, c in res.improvements])),
            "",
        ]
    ok_keys = ordered([k for k in res.keys if not k.infra])
    if ok_keys:
        out += ["<details><summary>All checks</summary>", ""]
        rows = [check_row(k, c) for k in ok_keys for c in k.checks]
        out += [markdown_table(CHECK_HEADERS, md_rows(rows)), ""]
        out += [
            "Baselines: "
            + "; ".join(md_text(f"{k.key}: {k.baseline.describe() if k.baseline else 'none'}") for k in ok_keys),
            "",
            "</details>",
            "",
        ]
    out += [
        "Each runner process gives one level per metric; the run's levels are compared with the median of "
        "the reference runs' levels. `sigma_run` is the noise of one process level (from the series' "
        "history, or the profile's prior); the critical change is the smallest change that would have "
        "failed (threshold and Holm's family-wise bound, whichever is larger); while a series' history is "
        "too short for that bound to mean anything, it says how many more runs the series needs "
        "(`hil calibrate` makes them at once). A changed artifact is "
        "compared with its series' reference artifact timed in the same runner processes: its baseline is "
        "the reference's level in those processes and its sigma_run (in-process) the spread of their ratio. "
        "A tripped comparison is "
        "re-measured interleaved (reference, candidate, ...) before it fails. Accuracy changes are in "
        "percentage points. Exit codes: 0 pass, 1 regression/budget, 2 infrastructure or inconclusive, "
        "3 usage.",
        "",
    ]
    return "\n".join(out)
