"""Single-file HTML reports: verdict tables plus matplotlib figures embedded as base64 PNG.

No external resources (no scripts, fonts, stylesheets or images from elsewhere), so the file can be
published as a CI artifact and opened offline. Figures (each an ``<img id="fig-...">``):

- ``fig-latency``: latency distribution per device (violins from the raw samples, baseline beside)
- ``fig-trend``: the p50 level of each of the last N runs per key (the level the gate judges: the median
  of the run's undisturbed processes; each process a faint dot) with the baseline +- threshold band
- ``fig-devices``: device-profile comparison (p50 and speed-up vs a reference device)
- ``fig-pareto``: accuracy vs latency vs size with the Pareto front of the variants
- ``fig-robustness``: top-1 of each variant on the clean eval set and under each perturbation
- ``fig-ops``: the slowest operators of each profiled model/variant@device, grouped by op type
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from harness.gate.evaluate import GateResult
from harness.gate.levels import reference_level
from harness.profile.tables import describe, top_rows
from harness.report import plots
from harness.report.compare import comparison, render_markdown
from harness.report.gate_markdown import CHECK_HEADERS, check_message, check_row, ordered
from harness.report.op_profiles import TOP, chart_panels, run_profiles
from harness.report.robustness import robustness_frame
from harness.report.run_markdown import results_table, robustness_table, run_label, summarize
from harness.store.results import ResultStore
from harness.store.verdicts import metric_history

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fde2e2} tr.improvement td{background:#e3f6e3} tr.skip td{color:#777}
.badge{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold}
.PASS{background:#2e7d32} .FAIL{background:#c62828} .INFRA{background:#6a1b9a}
img{max-width:100%;border:1px solid #eee;margin:6px 0} .note{color:#555;font-size:12px}
"""


def _img(fig_id: str, fig, alt: str) -> str:
    data = base64.b64encode(plots.to_png(fig)).decode("ascii")
    return f'<img id="{fig_id}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="num">{html.escape(str(c))}</td>' if j >= 4 else f"<td>{html.escape(str(c))}</td>"
            for j, c in enumerate(r)
        )
        out.append(f"<tr{cls}>{cells}</tr>")
    return "\n".join(out + ["</table>"])


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- data for the figures


def _history(store: ResultStore, k, before: float, runs: int) -> pd.DataFrame:
    """One row per run of the series (oldest first): its process levels, and the run's level as the gate
    forms it, the median of its undisturbed processes (in log space, like `family.compare`). Not one
    process picked at random: the last process of a run can sit 35 % off the level the gate judged."""
    rows = metric_history(store, k.key, k.model, k.variant, k.device_id, before)
    by_run: dict[str, dict] = {}
    for run_id, started_at, value, verdict, disturbed in rows:
        if value is None:
            continue
        r = by_run.setdefault(run_id, {"run_id": run_id, "started_at": started_at, "verdict": verdict, "all": []})
        r["all"].append((float(value), bool(disturbed)))
    df = pd.DataFrame(list(by_run.values())[:runs][::-1], columns=["run_id", "started_at", "verdict", "all"])
    df["processes"] = [[v for v, _ in a] for a in df["all"]]
    df["level"] = [_run_level(a) for a in df["all"]]
    df["started_at"] = pd.to_datetime(df["started_at"], unit="s", utc=True)
    return df.drop(columns="all").reset_index(drop=True)


def _run_level(processes: list[tuple[float, bool]]) -> float:
    kept = [v for v, disturbed in processes if not disturbed] or [v for v, _ in processes]
    return reference_level([kept], k=1)[0]


def _trend_series(res: GateResult, store: ResultStore, runs: int) -> list[dict]:
    before = float(res.run.get("started_at") or 0)
    out = []
    for k in [k for k in res.keys if not k.infra][:12]:
        hist = _history(store, k, before, runs)
        if hist.empty:
            continue
        check = next((c for c in k.checks if c.metric == "latency_p50_us"), None)
        band = base = None
        if check is not None and check.baseline is not None and check.threshold is not None:
            base = check.baseline
            band = (base * (1 - check.threshold), base * (1 + check.threshold))
        cur = hist.index[hist["run_id"] == res.run_id]
        levels = list(hist["level"])
        if len(cur) and check is not None and check.current is not None and check.verdict != "inconclusive":
            levels[int(cur[0])] = check.current  # the level this gate judged (in-process: against its reference)
        failed = [
            (v == "fail") if rid != res.run_id else (k.status == "fail")
            for rid, v in zip(hist["run_id"], hist["verdict"])
        ]
        out.append(
            {
                "label": k.key,
                "x": list(hist["started_at"]),
                "y": levels,
                "processes": list(hist["processes"]),
                "failed": failed,
                "current": int(cur[0]) if len(cur) else None,
                "band": band,
                "baseline": base,
            }
        )
    return out


def _distribution_groups(res: GateResult, store: ResultStore) -> dict:
    groups: dict[str, list] = {}
    for k in res.keys:
        if k.infra or k.result_id is None:
            continue
        cur = store.samples(k.result_id)
        if not cur:
            continue
        base = store.samples(k.baseline.result_ids[0]) if k.baseline and k.baseline.result_ids else None
        groups.setdefault(k.device_id, []).append((f"{k.model}/{k.variant}", cur, base))
    return groups


# a model's quality axis: the first of these its results have (an anomaly detector has an AUC, no top-1)
QUALITY = (
    ("accuracy_top1", "top-1 accuracy (%)", 100.0),
    ("accuracy_auc", "AUC (anomaly detection)", 1.0),
    ("agreement", "agreement with float (%)", 100.0),
)


def _pareto_points(wide: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One point per model x variant x device (the median over its processes, as in the results table),
    each model on the score its results have; a ``quality_label`` column names it per model."""
    table = summarize(wide) if not wide.empty else pd.DataFrame()
    if table.empty:
        return pd.DataFrame(), ""
    parts = []
    for _, rows in table.groupby("model", sort=False):
        for metric, label, scale in QUALITY:
            if metric in rows and rows[metric].notna().any():
                pts = rows.dropna(subset=[metric, "latency_p50_us"])
                parts.append(
                    pd.DataFrame(
                        {
                            "model": pts["model"],
                            "variant": pts["variant"],
                            "device_id": pts["device_id"],
                            "latency": pts["latency_p50_us"].astype(float),
                            "quality": pts[metric].astype(float) * scale,
                            "quality_label": label,
                            "size": pts["model_size_bytes"].astype(float).fillna(0),
                        }
                    )
                )
                break
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if points.empty:
        return points, ""
    labels = list(dict.fromkeys(points["quality_label"]))
    return points, labels[0] if len(labels) == 1 else "accuracy"


# --------------------------------------------------------------------------- pages


def render_gate_html(res: GateResult, store: ResultStore, trend_runs: int = 20) -> str:
    n = res.counts()
    badge = {"PASS": "PASS", "FAIL": "FAIL"}.get(res.verdict, "INFRA")
    body = [
        f'<h1>hilbench gate <span class="badge {badge}">{html.escape(res.verdict)}</span> '
        f"<small>exit {res.exit_code}</small></h1>",
        f"<p>run <code>{html.escape(res.run_id)}</code> ({html.escape(str(res.run.get('status')))}), "
        f"label <b>{html.escape(run_label(res.run) or '-')}</b>, "
        f"host {html.escape(str(res.run.get('host') or '-'))}, baseline <code>{html.escape(str(res.spec))}</code>, "
        f"alpha {res.alpha:g}. {n['keys']} result(s): {n['passed']} passed, {n['failed']} failed, "
        f"{n['infra']} infrastructure failure(s); {n['regressions']} regression(s), {n['over_budget']} over "
        f"budget, {n['improvements']} improvement(s).</p>",
    ]
    for w in res.warnings:
        body.append(f'<p class="note">warning: {html.escape(w)}</p>')
    if res.infra_failures:
        body.append("<h2>Infrastructure failures</h2><ul>")
        body += [
            f"<li><b>{html.escape(k.key)}</b> ({html.escape(k.status)}): {html.escape(k.error or '')}</li>"
            for k in res.infra_failures
        ]
        body.append("</ul>")
    body.append("<h2>Regressions and budget violations</h2>")
    if res.failed_checks:
        body.append(
            _table(CHECK_HEADERS, [check_row(k, c) for k, c in res.failed_checks], ["fail"] * len(res.failed_checks))
        )
        body.append(
            "<ul>"
            + "".join(
                f"<li><b>{html.escape(k.key)}</b>: {html.escape(check_message(c))}</li>" for k, c in res.failed_checks
            )
            + "</ul>"
        )
    else:
        body.append("<p>None.</p>")
    body.append("<h2>All checks</h2>")
    rows, classes = [], []
    for k in ordered(res.keys):
        for c in k.checks:
            rows.append(check_row(k, c))
            classes.append(
                "fail"
                if c.failed
                else "improvement"
                if c.verdict == "improvement"
                else "skip"
                if c.skipped or c.verdict == "new"
                else ""
            )
    body.append(_table(CHECK_HEADERS, rows, classes) if rows else "<p>No checks.</p>")
    body.append(
        '<p class="note">Latency: each runner process gives one level (its fastest inference, its p50, its '
        "p90); the run's level is the median of its undisturbed processes, compared with the median of the "
        "reference runs' levels under the series' own noise (sigma_run). A change counts only when it is "
        "beyond its threshold and significant across the whole gate (Holm's procedure over every "
        "comparison of the run); a tripped comparison is re-measured, reference and candidate interleaved, "
        "before it fails. A changed model is compared with its reference model timed in the same "
        "processes; MCU latency with window means. The critical change is the smallest change that would "
        "have failed; while a series' history is too short for it to mean anything, the table says how "
        "many more runs the series needs.</p>"
    )

    wide = store.wide(res.run_id)
    headers, rows = results_table(wide)
    if rows:  # the run's variants side by side: speed-up and size against fp32, MACs, params, memory
        body += ["<h2>Results</h2>", _table(headers, rows)]
    groups = _distribution_groups(res, store)
    if groups:
        body += [
            "<h2>Latency distribution per device</h2>",
            _img("fig-latency", plots.latency_distribution(groups), "latency distribution per device"),
        ]
    series = _trend_series(res, store, trend_runs)
    if series:
        body += [
            f"<h2>Trend over the last {trend_runs} runs</h2>",
            _img("fig-trend", plots.trend(series), "latency p50 trend with baseline band"),
        ]
    if not wide.empty and (wide["status"] == "ok").any():
        table, ref = comparison(wide, where=str(store.path))
        body += [
            "<h2>Device profiles</h2>",
            _img("fig-devices", plots.device_comparison(table, ref), "device profile comparison"),
        ]
    robust = robustness_frame(wide)
    if not robust.empty:
        body += [
            "<h2>Robustness</h2>",
            _table(*robustness_table(wide)),
            _img(
                "fig-robustness",
                plots.robustness(robust.sort_values(["model", "device_id"], kind="stable")),
                "top-1 accuracy under each perturbation per variant",
            ),
        ]
    points, label = _pareto_points(wide)
    if not points.empty:
        body += [
            "<h2>Accuracy vs latency vs size</h2>",
            _img("fig-pareto", plots.pareto(points, label), "accuracy latency size Pareto front"),
        ]
    body += _op_profiles_section(run_profiles(store, res.run_id))
    return _page(f"hilbench gate {res.run_id}", body)


def _op_profiles_section(profiles: list) -> list[str]:
    """Where the time goes: per profiled model/variant@device, its slowest operators as bars grouped by
    op type (fig-ops) and as a table (harness.report.op_profiles)."""
    if not profiles:
        return []
    body = [
        "<h2>Where the time goes</h2>",
        _img("fig-ops", plots.op_time_bars(chart_panels(profiles)), "slowest operators by type"),
    ]
    for s in profiles:
        where = f" (profiled in run <code>{html.escape(s.run_id)}</code>)" if s.from_other_run else ""
        body.append(f"<h3>{html.escape(s.label)}{where}</h3>")
        body.append(f'<p class="note">{html.escape(describe(s.profile))}</p>')
        if s.profile.ops:
            headers, rows = top_rows(s.profile, TOP)
            body.append(_table(headers, rows))
    body.append(
        '<p class="note">Each operator\'s mean time per invocation in a profiling pass of its own after the '
        "timed windows (never part of the latency the gate judges); <code>hil profile MODEL --device D</code> "
        "prints every operator.</p>"
    )
    return body


def render_compare_html(table: pd.DataFrame, reference: str, run_id: str = "", label: str = "") -> str:
    devices = list(dict.fromkeys(table["device_id"]))
    headers = [
        "model",
        "variant",
        "device",
        "profile",
        "p50 (us)",
        "p90 (us)",
        "peak RSS (MB)",
        "energy (uJ)",
        "speed-up",
        "RSS ratio",
    ]
    rows = []
    for _, r in table.iterrows():
        f = lambda v, spec: "-" if pd.isna(v) else format(v, spec)
        rows.append(
            [
                r["model"],
                r["variant"],
                r["device_id"],
                r["profile"],
                f(r["latency_p50_us"], ".1f"),
                f(r["latency_p90_us"], ".1f"),
                f(r["peak_rss_kb"] / 1024, ".1f"),
                f(r["energy_per_inference_uj"], ".3g"),
                f(r["speedup"], ".2f"),
                f(r["rss_ratio"], ".2f"),
            ]
        )
    shown = f" (label <b>{html.escape(label)}</b>)" if label else ""
    body = [
        f"<h1>hilbench device comparison</h1><p>run <code>{html.escape(run_id)}</code>{shown}; reference "
        f"<b>{html.escape(reference)}</b>; devices {html.escape(', '.join(devices))}. Speed-up = reference "
        "p50 / device p50.</p>",
        _table(headers, rows),
        _img("fig-devices", plots.device_comparison(table, reference), "device profile comparison"),
        "<details><summary>Markdown</summary><pre>"
        + html.escape(render_markdown(table, reference, run_id, label))
        + "</pre></details>",
    ]  # the Markdown source, escaped like everything else on the page
    return _page(f"hilbench compare {run_id}", body)
