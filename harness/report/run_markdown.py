"""Markdown summary of one run: the table a person reads first (also fine as a CI step summary)."""

from __future__ import annotations

import math

import pandas as pd


def _fmt(value, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value / scale:{spec}}{suffix}"


def fmt_us(value) -> str:
    """Latency with a unit that keeps 3 significant digits (4.31 us, 12.5 ms, 1.20 s)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for scale, unit in ((1e6, "s"), (1e3, "ms"), (1.0, "us")):
        if abs(value) >= scale or unit == "us":
            v = value / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return "-"


def _energy(measured, estimated) -> str:
    if measured is not None and not (isinstance(measured, float) and math.isnan(measured)):
        return _fmt(measured, ".2f")
    text = _fmt(estimated, ".2f")
    return text if text == "-" else f"{text} (estimate)"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    numeric = ("p50", "p90", "p95", "p99", "runs", ")")
    align = ["---:" if h.endswith(numeric) else "---" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_run(wide: pd.DataFrame, run: dict | None = None) -> str:
    """Per model x variant x device: latency percentiles, memory, size, accuracy."""
    out = ["# hilbench report", ""]
    if run:
        out += [f"- run: `{run['run_id']}` ({run.get('status', '?')})",
                f"- host: {run.get('host') or '-'}, hilbench {run.get('harness_version') or '-'}",
                f"- models repo commit: {run.get('git_commit') or '-'}", ""]
    if wide.empty:
        return "\n".join(out + ["No results recorded."]) + "\n"
    ok = wide[wide["status"] == "ok"].sort_values(["model", "device_id", "variant"])
    headers = ["model", "variant", "device", "profile", "p50", "p90", "p99", "runs",
               "peak RSS (MB)", "size (KiB)", "top-1 (%)", "agreement (%)", "energy/inf (uJ)", "runtime"]
    rows = []
    for _, r in ok.iterrows():
        g = r.get
        rows.append([
            str(r["model"]), str(r["variant"]), str(r["device_id"]), str(r["profile"]),
            fmt_us(g("latency_p50_us")), fmt_us(g("latency_p90_us")),
            fmt_us(g("latency_p99_us")), _fmt(g("inferences", g("latency_count")), ".0f"),
            _fmt(g("peak_rss_kb"), ".1f", 1024), _fmt(g("model_size_bytes"), ".1f", 1024),
            _fmt(g("accuracy_top1"), ".2f", 0.01), _fmt(g("agreement"), ".2f", 0.01),
            _energy(g("energy_per_inference_uj"), g("energy_estimate_per_inference_uj")),
            f"{r.get('runtime') or '-'} {r.get('runtime_version') or ''}".strip(),
        ])
    out += ["## Results", "", markdown_table(headers, rows), ""]
    failed = wide[wide["status"] != "ok"]
    if not failed.empty:
        out += ["## Failures", ""]
        for _, r in failed.iterrows():
            kind = "infrastructure" if r["status"] == "infra_error" else "error"
            out.append(f"- **{r['model']}/{r['variant']} on {r['device_id']}** ({kind}): {r['error']}")
        out.append("")
    out += ["Latency is the steady-state distribution of `invoke()` after warmup; peak RSS is the "
            "runner process high-water mark (VmHWM); energy comes from the meter named in the result "
            "(an estimate is labelled as such).", ""]
    return "\n".join(out)
