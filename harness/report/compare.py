"""Device-profile comparison: the same models measured on different boards, side by side.

Speed-up is ``reference p50 / device p50`` (2.0 = twice as fast as the reference device); memory
and energy ratios are ``device / reference``. Only successful results take part.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.errors import ConfigError
from harness.report.run_markdown import fmt_us, markdown_table, md_rows, md_text, variant_rank

COLUMNS = ["latency_p50_us", "latency_p90_us", "peak_rss_kb", "energy_per_inference_uj"]


def comparison(
    wide: pd.DataFrame, devices: list[str] | None = None, reference: str | None = None, where: str = ""
) -> tuple[pd.DataFrame, str]:
    """Long table: one row per model x variant x device with ratios against ``reference``."""
    if wide.empty or "status" not in wide:
        raise ConfigError(f"{where}: no results to compare")
    ok = wide[wide["status"] == "ok"].copy()
    if ok.empty:
        raise ConfigError(f"{where}: no successful results to compare")
    present = list(dict.fromkeys(sorted(ok["device_id"])))
    if devices:
        unknown = [d for d in devices if d not in present]
        if unknown:
            raise ConfigError(
                f"{where}: no results for device(s) {', '.join(unknown)} (measured: {', '.join(present)})"
            )
        ok = ok[ok["device_id"].isin(devices)]
        order = list(devices)
    else:
        order = present
    reference = reference or order[0]
    if reference not in order:
        raise ConfigError(f"{where}: reference device '{reference}' has no results here (measured: {', '.join(order)})")
    for col in COLUMNS:
        if col not in ok:
            ok[col] = float("nan")
    ok = ok.sort_values("result_id").drop_duplicates(["model", "variant", "device_id"], keep="last")
    ref = ok[ok["device_id"] == reference].set_index(["model", "variant"])
    rows = []
    for _, r in ok.iterrows():
        key = (r["model"], r["variant"])
        base = ref.loc[key] if key in ref.index else None
        ratio = lambda col, inverse=False: (
            float("nan")
            if base is None or not base[col] or not r[col] or pd.isna(base[col]) or pd.isna(r[col])
            else (base[col] / r[col] if inverse else r[col] / base[col])
        )
        rows.append(
            {
                "model": r["model"],
                "variant": r["variant"],
                "label": f"{r['model']}/{r['variant']}",
                "device_id": r["device_id"],
                "profile": r["profile"],
                **{c: r[c] for c in COLUMNS},
                "speedup": ratio("latency_p50_us", inverse=True),
                "rss_ratio": ratio("peak_rss_kb"),
                "energy_ratio": ratio("energy_per_inference_uj"),
            }
        )
    table = pd.DataFrame(rows)
    table["device_id"] = pd.Categorical(table["device_id"], categories=order, ordered=True)
    table["_rank"] = [variant_rank(v) for v in table["variant"]]  # fp32, fp16, dynamic, int8, int16x8, others
    table["_r0"], table["_r1"] = [r[0] for r in table["_rank"]], [r[1] for r in table["_rank"]]
    table = table.sort_values(["model", "_r0", "_r1", "device_id"]).drop(columns=["_rank", "_r0", "_r1"])
    table = table.reset_index(drop=True)
    table["device_id"] = table["device_id"].astype(str)
    return table, reference


def _num(v, spec: str, suffix: str = "") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{spec}}{suffix}"


def render_markdown(table: pd.DataFrame, reference: str, run_id: str = "", label: str = "") -> str:
    devices = list(dict.fromkeys(table["device_id"]))
    profiles = {d: table[table["device_id"] == d]["profile"].iloc[0] for d in devices}
    headers = ["model", "variant"]
    for d in devices:
        headers += [f"{d} p50", f"{d} RSS (MB)", f"{d} energy (uJ)"]
        if d != reference:
            headers.append(f"{d} speed-up (x)")
    rows: list[list[str]] = []
    for (model, variant), g in table.groupby(["model", "variant"], sort=False):  # the table's variant order
        g = g.set_index("device_id")
        row = [str(model), str(variant)]
        for d in devices:
            if d in g.index:
                r = g.loc[d]
                row += [
                    fmt_us(r["latency_p50_us"]),
                    _num(r["peak_rss_kb"] / 1024, ".1f"),
                    _num(r["energy_per_inference_uj"], ".3g"),
                ]
                if d != reference:
                    row.append(_num(r["speedup"], ".2f"))
            else:
                row += ["-", "-", "-"] + (["-"] if d != reference else [])
        rows.append(row)
    lines = ["# hilbench device comparison", ""]
    if run_id:
        lines += [f"- run: `{run_id}`" + (f", label {md_text(label)}" if label else "")]
    lines += [
        f"- reference: **{md_text(reference)}** ({md_text(profiles[reference])}); "
        "speed-up = reference p50 / device p50",
        "- devices: " + ", ".join(md_text(f"{d} ({profiles[d]})") for d in devices),
        "",
        markdown_table(md_rows([headers])[0], md_rows(rows)),
        "",
    ]
    return "\n".join(lines)
