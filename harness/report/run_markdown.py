"""Markdown summary of one run: the table a person reads first (also fine as a CI step summary)."""

from __future__ import annotations

import math
import re

import pandas as pd

from harness.report.robustness import robustness_frame

# CommonMark lets a backslash escape any ASCII punctuation. Escaped: what starts emphasis, code, links
# or strike-through anywhere, `<` where it could open raw HTML or an autolink (`<b>`, `</x`, `<!`),
# `&` where it could start an entity. `_` only matters at a word's edge (inside a word it never
# emphasises) and `<=`, `->` or `a & b` mean nothing, so `tiny_net` and messages stay readable.
_MD_SPECIAL = re.compile(r"[\\`*\[\]~]|<(?=[A-Za-z/!?])|&(?=[A-Za-z0-9#])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_text(value) -> str:
    """User text (a label, model name, device id, error) as literal Markdown inline text: one line
    (a newline could start a heading or a list), every character that Markdown would interpret
    escaped. `|` is left to `markdown_table`, which escapes it in cells."""
    text = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def md_rows(rows: list[list[str]]) -> list[list[str]]:
    """Table rows with every cell as literal text (`md_text`)."""
    return [[md_text(c) for c in r] for r in rows]


def fmt_num(value, spec: str, scale: float = 1.0, suffix: str = "") -> str:
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


def per_second(latency_us) -> float | None:
    """Inferences per second at a latency (one stream, back to back): what a product spec asks for."""
    if latency_us is None or (isinstance(latency_us, float) and math.isnan(latency_us)) or latency_us <= 0:
        return None
    return 1e6 / latency_us


# runs that are not a user's measurement say so where they are shown (schema.RUN_KINDS)
RUN_KINDS = {
    "confirm": "a confirmation run of `hil gate`",
    "calibrate": "an A/A run of `hil calibrate`",
    "bisect": "a step of `hil bisect`",
    "profile": "a per-operator look of `hil profile`",
}


# what a run whose status reads `abandoned` means (ResultStore.abandoned_runs)
ABANDONED = (
    "the hilbench session measuring it is gone (killed) and never finished it; "
    "the same `hil run` command with --resume measures its missing jobs"
)


def run_label(run: dict | None) -> str:
    """A run's free-text label ('' when none: the store gives None, a pandas row NaN)."""
    label = (run or {}).get("label")
    return label if isinstance(label, str) else ""


def _energy(measured, estimated) -> str:
    if measured is not None and not (isinstance(measured, float) and math.isnan(measured)):
        return fmt_num(measured, ".2f")
    text = fmt_num(estimated, ".2f")
    return text if text == "-" else f"{text} (estimate)"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    numeric = ("p50", "p90", "p95", "p99", "inf/s", "runs", ")", "MACs", "params", "processes", "fp32", "AUC")
    align = ["---:" if h.endswith(numeric) else "---" for h in headers]
    cell = lambda text: " ".join(str(text).splitlines()).replace("|", "\\|")  # a name never breaks the table
    lines = ["| " + " | ".join(map(cell, headers)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


VARIANT_ORDER = ("fp32", "fp16", "dynamic", "int8", "int16x8")  # from the float reference to the smallest


def variant_rank(variant) -> tuple[int, str]:
    """Sort key: fp32, fp16, dynamic, int8, int16x8, then any other variant (e.g. asis) by name."""
    v = str(variant)
    return (VARIANT_ORDER.index(v), "") if v in VARIANT_ORDER else (len(VARIANT_ORDER), v)


def sort_variants(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`df` sorted by the columns `by`, where a `variant` column sorts in VARIANT_ORDER."""
    if df.empty:
        return df
    keys = {c: (df[c].map(variant_rank) if c == "variant" else df[c].astype(str)) for c in by}
    order = sorted(range(len(df)), key=lambda i: tuple(keys[c].iloc[i] for c in by))
    return df.iloc[order]


def fmt_count(value) -> str:
    """Large counts with an SI prefix (12.3 M MACs, 4.56 k parameters)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for scale, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.0f}"


def fmt_ratio(value) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    return f"{value:.2f}x"


def _median(g: pd.DataFrame, col: str):
    if col not in g:
        return None
    vals = g[col].dropna()
    return float(vals.median()) if len(vals) else None


def summarize(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per model x variant x device: the median over its runner processes (repeats), the
    process count, and ratios against fp32 of the same model on the same device (speed-up = fp32 p50 /
    p50, size ratio = size / fp32 size). Rows in VARIANT_ORDER."""
    ok = wide[wide["status"] == "ok"] if not wide.empty else wide
    metrics = [
        "latency_p50_us",
        "latency_p90_us",
        "latency_p99_us",
        "peak_rss_kb",
        "model_size_bytes",
        "model_macs",
        "model_params",
        "arena_bytes",
        "flash_bytes",
        "accuracy_top1",
        "accuracy_auc",
        "agreement",
        "energy_per_inference_uj",
        "energy_estimate_per_inference_uj",
    ]
    rows = []
    for (model, variant, device), g in ok.groupby(["model", "variant", "device_id"], sort=False):
        counts = g["inferences"] if "inferences" in g else g.get("latency_count")
        row = {
            "model": model,
            "variant": variant,
            "device_id": device,
            "profile": g["profile"].iloc[0],
            "processes": len(g),
            "runs": float(counts.sum()) if counts is not None and counts.notna().any() else None,
            "runtime": f"{g['runtime'].iloc[0] or '-'} {g['runtime_version'].iloc[0] or ''}".strip(),
        }
        row.update({m: _median(g, m) for m in metrics})
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    ref = out[out["variant"] == "fp32"].set_index(["model", "device_id"])

    def ratio(r, col: str, inverse: bool):
        key = (r["model"], r["device_id"])
        if key not in ref.index or r[col] is None or pd.isna(r[col]):
            return None
        base = ref.loc[key, col]
        if base is None or pd.isna(base) or not base or not r[col]:
            return None
        return base / r[col] if inverse else r[col] / base

    out["speedup"] = [ratio(r, "latency_p50_us", True) for _, r in out.iterrows()]
    out["size_ratio"] = [ratio(r, "model_size_bytes", False) for _, r in out.iterrows()]
    return sort_variants(out, ["model", "device_id", "variant"]).reset_index(drop=True)


def results_table(wide: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The results table of a run (headers, formatted rows), shared by the Markdown and HTML reports:
    arena/flash columns only when an MCU result has them, an AUC column only when an anomaly detector's
    result has one (its score instead of top-1), a process count only with repeats."""
    table = summarize(wide)
    if table.empty:
        return [], []
    mcu = any(c in table and table[c].notna().any() for c in ("arena_bytes", "flash_bytes"))
    repeats = bool((table["processes"] > 1).any())
    auc = bool(table["accuracy_auc"].notna().any())
    headers = [
        "model",
        "variant",
        "device",
        "profile",
        "p50",
        "p90",
        "p99",
        "inf/s",
        "speed-up vs fp32",
        "size (KiB)",
        "size vs fp32",
        "MACs",
        "params",
    ]
    headers += ["arena (KiB)", "flash (KiB)"] if mcu else []
    headers += ["peak RSS (MB)", "top-1 (%)"] + (["AUC"] if auc else []) + ["agreement (%)", "energy/inf (uJ)", "runs"]
    headers += ["processes"] if repeats else []
    headers.append("runtime")
    rows = []
    for _, r in table.iterrows():
        row = [
            str(r["model"]),
            str(r["variant"]),
            str(r["device_id"]),
            str(r["profile"]),
            fmt_us(r["latency_p50_us"]),
            fmt_us(r["latency_p90_us"]),
            fmt_us(r["latency_p99_us"]),
            fmt_num(per_second(r["latency_p50_us"]), ".1f"),
            fmt_ratio(r["speedup"]),
            fmt_num(r["model_size_bytes"], ".1f", 1024),
            fmt_ratio(r["size_ratio"]),
            fmt_count(r["model_macs"]),
            fmt_count(r["model_params"]),
        ]
        if mcu:
            row += [fmt_num(r["arena_bytes"], ".1f", 1024), fmt_num(r["flash_bytes"], ".1f", 1024)]
        row += [
            fmt_num(r["peak_rss_kb"], ".1f", 1024),
            fmt_num(r["accuracy_top1"], ".2f", 0.01),
            *([fmt_num(r["accuracy_auc"], ".3f")] if auc else []),
            fmt_num(r["agreement"], ".2f", 0.01),
            _energy(r["energy_per_inference_uj"], r["energy_estimate_per_inference_uj"]),
            fmt_num(r["runs"], ".0f"),
        ]
        if repeats:
            row.append(str(int(r["processes"])))
        row.append(str(r["runtime"]))
        rows.append(row)
    return headers, rows


def robustness_table(wide: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Top-1 per model x device x variant on the clean set and under each perturbation (robustness.py)."""
    frame = sort_variants(robustness_frame(wide), ["model", "device_id", "variant"])
    if frame.empty:
        return [], []
    cols = [c for c in frame.columns if c not in ("model", "device_id", "variant")]
    headers = ["model", "device", "variant", *[f"top-1 {c}" for c in cols]]
    rows = [
        [str(r["model"]), str(r["device_id"]), str(r["variant"]), *[fmt_num(r[c], ".2f", 0.01, " %") for c in cols]]
        for _, r in frame.iterrows()
    ]
    return headers, rows


def render_run(wide: pd.DataFrame, run: dict | None = None) -> str:
    """Per model x variant x device: latency percentiles, speed-up and size against fp32, model
    complexity, memory, accuracy, energy."""
    out = ["# hilbench report", ""]
    if run:
        kind = RUN_KINDS.get(str(run.get("kind")))
        out += [
            f"- run: `{run['run_id']}` ({run.get('status', '?')}{', ' + kind if kind else ''})",
            *([f"- abandoned: {ABANDONED}"] if run.get("status") == "abandoned" else []),
            f"- label: {md_text(run_label(run)) or '-'}",
            f"- host: {md_text(run.get('host') or '-')}, hilbench {run.get('harness_version') or '-'}",
            f"- models repo commit: {md_text(run.get('git_commit') or '-')}",
            "",
        ]
    if wide.empty:
        return "\n".join(out + ["No results recorded."]) + "\n"
    headers, rows = results_table(wide)
    out += ["## Results", "", markdown_table(headers, md_rows(rows)), ""] if rows else []
    r_headers, r_rows = robustness_table(wide)
    if r_rows:
        out += [
            "## Robustness",
            "",
            "Top-1 accuracy on the eval set and on its perturbed copies (seeded: the same inputs every run).",
            "",
            markdown_table(r_headers, md_rows(r_rows)),
            "",
        ]
    failed = wide[wide["status"] != "ok"]
    if not failed.empty:
        out += ["## Failures", ""]
        for _, r in sort_variants(failed, ["model", "device_id", "variant"]).iterrows():
            kind = "infrastructure" if r["status"] == "infra_error" else "error"
            what = md_text(f"{r['model']}/{r['variant']} on {r['device_id']}")
            out.append(f"- **{what}** ({kind}): {md_text(r['error'])}")
        out.append("")
    out += [
        "Latency is the steady-state distribution of `invoke()` after warmup (the median over a job's "
        "runner processes); inf/s is 1 s / p50 (one stream, back to back); speed-up is fp32's p50 / the "
        "variant's p50 and size ratio the variant's size / fp32's, on the same device; MACs and params "
        "come from the model file; peak RSS is the runner process high-water mark (VmHWM); an anomaly "
        "detector is scored by the area under the ROC curve (AUC, 0.5 = chance) instead of top-1; energy "
        "comes from the meter named in the result (an estimate is labelled as such).",
        "",
    ]
    return "\n".join(out)
