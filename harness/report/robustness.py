"""Robustness in reports: each variant's accuracy on the clean eval set and under each perturbation.

A curve per variant (clean first, then the perturbations from mild to harsh) shows at a glance which
compressed variant loses its decisions first when the inputs get noisier; the table gives the numbers.
"""

from __future__ import annotations

import pandas as pd

from harness.errors import ConfigError
from harness.models.perturb import parse


def perturbations(wide: pd.DataFrame) -> list[str]:
    """Names measured in this frame, clean first, then by kind and from mild to harsh."""
    names = {str(c).partition("@")[2] for c in wide.columns if str(c).startswith("accuracy_top1@")}

    def order(name: str) -> tuple:
        try:
            p = parse(name)
        except ConfigError:  # a name a newer hilbench wrote: last, by name
            return (2, name, ())
        # noise: a high SNR is mild; everything else: the further from identity, the harsher
        mild = tuple(-a for a in p.args) if p.kind == "noise" else tuple(abs(a - 1) for a in p.args)
        return (0 if p.kind == "clean" else 1, p.kind, mild)

    return sorted(names, key=order)


def robustness_frame(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per model x device x variant: top-1 on the clean set and at each perturbation (the
    median over the job's processes)."""
    names = perturbations(wide) if not wide.empty else []
    if not names:
        return pd.DataFrame()
    ok = wide[wide["status"] == "ok"]
    rows = []
    for (model, device, variant), g in ok.groupby(["model", "device_id", "variant"], sort=False):
        row: dict = {"model": model, "device_id": device, "variant": variant}
        for col, name in [("accuracy_top1", "eval set")] + [(f"accuracy_top1@{n}", n) for n in names]:
            vals = g[col].dropna() if col in g else pd.Series(dtype=float)
            row[name] = float(vals.median()) if len(vals) else None
        rows.append(row)
    return pd.DataFrame(rows)
