"""`hil sweep`: compress a model with several recipes, measure every candidate, choose one per device.

1. Every recipe (at every point of `--grid`) runs through pipeline.py: lineage nodes, cached.
2. The candidates, and the uncompressed model as the reference, are measured through the run path
   (`Orchestrator.plan` + `run`): one run in the results database, so resume, reports and the gate
   apply to it like to any `hil run`. Candidates are named `<model>+<recipe label>`.
3. Per device: the Pareto front and the choice within budgets (pareto.py); accuracy is the device's
   own `accuracy_top1` when it measured one, else the host's (the LiteRT interpreter on the same
   evaluation data), and the table says which, and "n of N" when it comes from a sample of the
   evaluation set (an MCU scores 200 evenly spread samples by default).
4. Accuracy ties (pareto.py): the paired comparison needs per-sample correctness of both candidates on
   the same samples. It is the device's own predictions when the result holds them (MCU boards over
   serial store the sample indices and predictions), else the host's LiteRT interpreter on the same
   samples (the indices the device used: `sample_indices(N, n)`, the rule the serial transport uses;
   all of them for a full-set score). The host's is a close proxy for a Linux device (the same
   interpreter) and for an MCU whose predictions were not stored (TFLM's int8 kernels round like
   LiteRT's reference kernels); the JSON says which was used.
A recipe that cannot apply to the model (its steps refuse it) or whose training crashed is no candidate:
it is listed per device as "not applicable: <why>" or "failed: <why>" and the others are measured.
Outputs: a table (stdout), `--json` (the machine-readable choice per device), `--html` (fronts).
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.compress.pareto import TIE_ALPHA, DeviceChoice, Paired, Point, choose
from harness.compress.pipeline import FAILED, Candidate, Compressor, EvalData, Refused
from harness.compress.ptq import tflite_accuracy
from harness.core.jobs import Job, RunOptions
from harness.lab.config import Device, Inventory, link_type
from harness.models.convert import NEEDS_CALIBRATION, ModelSource
from harness.models.perturb import Perturbation
from harness.run.orchestrate import ModelSpec, Orchestrator, RunSummary
from harness.store.results import ResultStore

SCHEMA = "hilbench.sweep/1"
COLUMNS = [  # (key, header, format)
    ("accuracy", "accuracy", "pct"),
    ("latency_p50_us", "p50 us", "f1"),
    ("model_size_bytes", "size B", "int"),
    ("model_macs", "MACs", "int"),
    ("arena_bytes", "arena B", "int"),
    ("energy_per_inference_uj", "energy uJ", "f2"),
]


@dataclass
class SweepResult:
    run: RunSummary
    candidates: list[Candidate]
    points: dict[str, list[Point]]  # device id -> one point per measured candidate
    sources: dict[tuple[str, str], str]  # (device, candidate) -> where accuracy came from
    choices: list[DeviceChoice]
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (device, candidate) -> error
    budgets: dict[str, float] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)  # recipes that gave no candidate
    paired: dict[str, dict[str, Paired]] = field(default_factory=dict)  # device -> candidate -> per sample
    paired_sources: dict[tuple[str, str], str] = field(default_factory=dict)  # where per-sample came from

    @property
    def exit_code(self) -> int:
        """2: the lab failed; 3: a candidate's training crashed or it could not be measured for a user
        reason; 1: a device has no candidate within its budgets; else 0. A recipe that does not apply
        to the model changes nothing: it is listed, the others are measured and chosen among."""
        if self.run.exit_code:
            return self.run.exit_code
        if any(r.status == FAILED for r in self.refused):
            return 3
        return 1 if any(c.choice is None for c in self.choices) else 0


def mcu_skips(candidates: list[Candidate], devices: list[Device], inventory: Inventory) -> dict[tuple[str, str], str]:
    """(device, candidate) pairs left out: MCU boards run full-integer models only, wired directly or
    behind a labgrid place (both reach the board over serial)."""
    from harness.mcu.bundle import integer_only
    from harness.models.inspect.analysis import analyze

    out = {}
    for c in candidates:
        a = analyze(c.artifact)
        dtype = a.dtype
        if integer_only(a):
            continue
        for d in devices:
            if link_type(d, inventory.profile_of(d)) == "serial":
                out[(d.id, c.name)] = f"not measured: an MCU runs full-integer models, this one is {dtype}"
    return out


def target_skips(
    candidates: list[Candidate], devices: list[Device], inventory: Inventory
) -> dict[tuple[str, str], str]:
    """(device, candidate) pairs left out: a candidate pruned for one device profile's measured profile
    (profile_prune) is measured on the boards of that profile only."""
    out = {}
    for c in candidates:
        if c.target is None:
            continue
        for d in devices:
            if inventory.profile_of(d).name != c.target:
                out[(d.id, c.name)] = f"not measured: pruned for {c.target}'s profile"
    return out


def measure(
    orch: Orchestrator,
    compressor: Compressor,
    candidates: list[Candidate],
    devices: list[Device],
    options: RunOptions,
    argv: list[str],
    eval_file: Path | None,
    skips: dict[tuple[str, str], str],
    resume: bool = False,
    label: str | None = None,
    wait: bool = True,
) -> RunSummary:
    """All candidates through the run path, as one run (grouped by variant and devices for `plan`)."""
    groups: dict[tuple[str, tuple[str, ...]], list[ModelSpec]] = {}
    for c in candidates:
        src = replace(ModelSource.open(c.spec_path), name=c.name)
        calib = compressor.calibration if c.variant in NEEDS_CALIBRATION else None
        on = tuple(d.id for d in devices if (d.id, c.name) not in skips)
        if on:
            groups.setdefault((c.variant, on), []).append(ModelSpec(src, calib, eval_file))
    jobs: list[Job] = []
    for (variant, on), specs in groups.items():
        jobs += orch.plan(specs, [variant], [d for d in devices if d.id in on], options)
    return orch.run(jobs, argv, resume=resume, label=label, wait=wait)


def accuracy_samples(
    store: ResultStore, ok: pd.DataFrame, c: Candidate, eval_data: EvalData | None
) -> tuple[int | None, int | None, Paired | None, str | None]:
    """(n, N, per-sample correctness, its source) of a device-measured accuracy (module doc, 4.)."""
    from harness.mcu.serial.session import sample_indices

    raw = store.raw(int(ok["result_id"].iloc[0])) or {}
    acc = raw.get("accuracy") or {}
    n, of = acc.get("n"), acc.get("of", acc.get("n"))
    if not isinstance(n, int) or not isinstance(of, int):
        return None, None, None, None
    y = eval_data.y if eval_data is not None else None
    idx, preds = acc.get("indices"), acc.get("predictions")
    if y is not None and len(y) == of and isinstance(idx, list) and isinstance(preds, list) and len(idx) == len(preds):
        ind = np.asarray(idx, dtype=np.int64)
        if len(ind) and 0 <= ind.min() and ind.max() < of:
            return n, of, Paired(ind, np.asarray(preds) == y[ind]), "device"
    host = c.host_correct
    if host is not None and len(host) == of:
        ind = sample_indices(of, n)
        return n, of, Paired(ind, host[ind]), "host"
    return n, of, None, None


def collect(
    store: ResultStore,
    run_id: str,
    candidates: list[Candidate],
    inventory: Inventory,
    devices: list[Device],
    eval_data: EvalData | None = None,
    robustness: tuple[Perturbation, ...] = (),
    robustness_seed: int = 0,
) -> tuple[dict[str, list[Point]], dict, dict, dict[str, dict[str, Paired]], dict[tuple[str, str], str]]:
    """Per device, one point per candidate measured ok (the median over its processes), and per-sample
    correctness for the accuracy ties."""
    paired: dict[str, dict[str, Paired]] = {d.id: {} for d in devices}
    paired_sources: dict[tuple[str, str], str] = {}
    wide = store.wide(run_id)
    host_cache: dict[tuple[str, str], float] = {}

    def host_robust(c: Candidate, p: Perturbation) -> float:
        """Top-1 of the candidate's artifact on the host's LiteRT, the perturbed eval set (seeded like
        the devices' copies), once per candidate and perturbation."""
        assert eval_data is not None and eval_data.y is not None
        if (c.name, p.name) not in host_cache:
            xp = p.apply(eval_data.x, robustness_seed, where=str(eval_data.path))
            host_cache[(c.name, p.name)] = tflite_accuracy(c.artifact, xp, eval_data.y)
        return host_cache[(c.name, p.name)]

    points: dict[str, list[Point]] = {d.id: [] for d in devices}
    sources: dict[tuple[str, str], str] = {}
    failures: dict[tuple[str, str], str] = {}
    for dev in devices:
        for c in candidates:
            rows = (
                wide[(wide["model"] == c.name) & (wide["variant"] == c.variant) & (wide["device_id"] == dev.id)]
                if not wide.empty
                else wide
            )
            ok = rows[rows["status"] == "ok"] if not rows.empty else rows
            if ok.empty:
                errors = rows.get("error", pd.Series(dtype=object))
                err = next((e for e in errors if isinstance(e, str)), "not measured")
                failures[(dev.id, c.name)] = err
                continue
            values: dict[str, float | None] = {}
            for metric in (
                "latency_p50_us",
                "latency_p90_us",
                "model_size_bytes",
                "model_macs",
                "model_params",
                "arena_bytes",
                "flash_bytes",
                "peak_rss_kb",
                "accuracy_top1",
                "accuracy_auc",  # an anomaly detector's score (min_accuracy_auc budgets)
                "energy_per_inference_uj",
                "energy_estimate_per_inference_uj",
            ):
                vals = (
                    [float(v) for v in ok[metric] if v is not None and not math.isnan(float(v))] if metric in ok else []
                )
                values[metric] = statistics.median(vals) if vals else None
            for metric in sorted(m for m in ok.columns if "@" in str(m)):  # robustness: accuracy_top1@...
                vals = [float(v) for v in ok[metric] if v is not None and not math.isnan(float(v))]
                values[metric] = statistics.median(vals) if vals else None
            for p in robustness:  # a device that scores no accuracy: the host's, as for clean accuracy
                if values.get(f"accuracy_top1@{p.name}") is None and eval_data is not None and eval_data.y is not None:
                    values[f"accuracy_top1@{p.name}"] = host_robust(c, p)
            if values["energy_per_inference_uj"] is None:
                values["energy_per_inference_uj"] = values.pop("energy_estimate_per_inference_uj")
            if values["model_macs"] is None:
                values["model_macs"] = c.metrics.get("macs")
            pair: Paired | None = None
            if values.get("accuracy_top1") is not None:
                values["accuracy"], sources[(dev.id, c.name)] = values["accuracy_top1"], "device"
                n, of, pair, where = accuracy_samples(store, ok, c, eval_data)
                values["accuracy_n"], values["accuracy_of"] = n, of
            elif c.metrics.get("host_accuracy") is not None:
                values["accuracy"], sources[(dev.id, c.name)] = c.metrics["host_accuracy"], "host"
                if c.host_correct is not None:
                    total = len(c.host_correct)
                    pair, where = Paired(np.arange(total), c.host_correct), "host"
                    values["accuracy_n"] = values["accuracy_of"] = total
            else:
                values["accuracy"] = None
            if pair is not None and where is not None:
                paired[dev.id][c.name], paired_sources[(dev.id, c.name)] = pair, where
            points[dev.id].append(Point(c.name, values))
    return points, sources, failures, paired, paired_sources


def decide(
    points: dict[str, list[Point]],
    inventory: Inventory,
    devices: list[Device],
    budgets: dict[str, float],
    prefer: str,
    paired: dict[str, dict[str, Paired]] | None = None,
) -> list[DeviceChoice]:
    out = []
    for dev in devices:
        prof = inventory.profile_of(dev)
        pairs = (paired or {}).get(dev.id)
        out.append(choose(dev.id, prof.name, points[dev.id], prof.budgets, budgets, prefer, pairs))
    return out


def run_sweep(
    orch: Orchestrator,
    compressor: Compressor,
    candidates: list[Candidate],
    devices: list[Device],
    options: RunOptions,
    argv: list[str],
    eval_file: Path | None,
    budgets: dict[str, float],
    prefer: str = "accuracy",
    resume: bool = False,
    label: str | None = None,
    wait: bool = True,
    refused: list[Refused] | None = None,
) -> SweepResult:
    skips = mcu_skips(candidates, devices, orch.inventory)
    skips.update(target_skips(candidates, devices, orch.inventory))
    summary = measure(orch, compressor, candidates, devices, options, argv, eval_file, skips, resume, label, wait)
    points, sources, failures, paired, paired_sources = collect(
        orch.store,
        summary.run_id,
        candidates,
        orch.inventory,
        devices,
        compressor.eval,
        orch.robustness,
        orch.robustness_seed,
    )
    failures.update(skips)
    choices = decide(points, orch.inventory, devices, budgets, prefer, paired)
    return SweepResult(
        summary, candidates, points, sources, choices, failures, budgets, list(refused or []), paired, paired_sources
    )


# ------------------------------------------------------------------ output


def _fmt(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{value * 100:.2f} %"
    if kind == "int":
        return f"{int(round(value)):,}"
    return f"{value:.{kind[1]}f}"


def table_rows(res: SweepResult) -> list[dict[str, Any]]:
    """One row per device x candidate (measured or not), in device then candidate order."""
    rows = []
    by_name = {c.name: c for c in res.candidates}
    for choice in res.choices:
        pts = {p.name: p for p in res.points.get(choice.device, [])}
        for c in res.candidates:
            p = pts.get(c.name)
            v = choice.verdicts.get(c.name)
            row: dict[str, Any] = {
                "device": choice.device,
                "profile": choice.profile,
                "candidate": c.name,
                "recipe": c.label or "(uncompressed)",
                "variant": c.variant,
                "lineage": by_name[c.name].leaf[:12],
            }
            if p is None:
                row.update(status="error", error=res.failures.get((choice.device, c.name), "not measured"))
            else:
                row.update({k: p.get(k) for k, _, _ in COLUMNS})
                if c.metrics.get("host_mse") is not None:  # an autoencoder's reconstruction error (recon.py)
                    row["host_mse"] = c.metrics["host_mse"]
                row["accuracy_source"] = res.sources.get((choice.device, c.name))
                row["accuracy_n"], row["accuracy_of"] = p.values.get("accuracy_n"), p.values.get("accuracy_of")
                row["accuracy_paired"] = res.paired_sources.get((choice.device, c.name))
                # robustness (perturb.py): the device's score, else the host's on the same perturbed inputs
                row.update({k: p.values[k] for k in sorted(p.values) if k.startswith("accuracy_top1@")})
                row["accuracy_tied"] = any(t.name == c.name for t in choice.ties) or (
                    bool(choice.ties) and choice.most_accurate == c.name
                )
                row["pareto"] = bool(v and v.pareto)
                row["meets_budgets"] = bool(v and v.meets)
                row["ruled_out_by"] = v.ruled_out_by if v else []
                row["chosen"] = choice.choice == c.name
                row["status"] = "ok"
            rows.append(row)
        for r in res.refused:
            rows.append(
                {
                    "device": choice.device,
                    "profile": choice.profile,
                    "candidate": r.name,
                    "recipe": r.label,
                    "variant": "-",
                    "lineage": "",
                    "status": r.status,
                    "error": r.reason,
                }
            )
    return rows


def _why(r: dict[str, Any]) -> str:
    """The reason a row has no measurement, as the table and the page show it."""
    if r["status"] == "error":
        return r["error"] if r["error"].startswith("not measured") else f"error: {r['error']}"
    return f"{r['status']}: {r['error']}"


TIE_RULE = (
    f"accuracy differences within the sampling error of a paired comparison on the same samples (exact "
    f"McNemar test, p >= {TIE_ALPHA:g}) count as ties, broken by the next objective"
)


def accuracy_cell(r: dict[str, Any]) -> str:
    """`85.00 %`, `*` when the host scored it, `(200 of 500)` when it comes from a sample of the set."""
    text = _fmt(r.get("accuracy"), "pct") + ("*" if r.get("accuracy_source") == "host" else "")
    n, of = r.get("accuracy_n"), r.get("accuracy_of")
    if r.get("accuracy") is not None and n is not None and of is not None and n < of:
        text += f" ({int(n)} of {int(of)})"
    return text


def tie_note(ch: DeviceChoice, points: list[Point]) -> str | None:
    """What the tie rule did on a device, for the table and the page."""
    if not ch.ties or ch.most_accurate is None:
        return None
    acc = {p.name: p.get("accuracy") for p in points}
    tied = ", ".join(
        f"{t.name} ({_fmt(acc.get(t.name), 'pct')}, p = {t.p_value:.2f} on {t.samples} paired samples)" for t in ch.ties
    )
    by = f"; decided by {ch.decided_by}" if ch.decided_by and ch.decided_by != "accuracy" else ""
    return (
        f"{ch.device}: within sampling error of the most accurate, {ch.most_accurate} "
        f"({_fmt(acc.get(ch.most_accurate), 'pct')}): {tied}; tied{by}"
    )


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def format_table(res: SweepResult) -> str:
    mse = any(r.get("host_mse") is not None for r in table_rows(res))
    headers = (
        ["device", "candidate", "variant", COLUMNS[0][1]]
        + (["host MSE"] if mse else [])
        + [h for _, h, _ in COLUMNS[1:]]
        + ["front", "budgets"]
    )
    lines = []
    for r in table_rows(res):
        if r["status"] != "ok":
            cells = [r["device"], r["candidate"], r["variant"]] + ["-"] * (len(headers) - 5) + ["", _short(_why(r))]
        else:
            cells = (
                [r["device"], r["candidate"] + (" <- chosen" if r["chosen"] else ""), r["variant"], accuracy_cell(r)]
                + ([_fmt(r.get("host_mse"), "f5")] if mse else [])
                + [_fmt(r[k], f) for k, _, f in COLUMNS[1:]]
                + ["yes" if r["pareto"] else "", "ok" if r["meets_budgets"] else "; ".join(r["ruled_out_by"])]
            )
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    notes = []
    rows = table_rows(res)
    if any(r.get("accuracy_source") == "host" for r in rows):
        notes.append("* accuracy on the host (LiteRT interpreter, same evaluation data): the device measured none")
    if mse:
        notes.append("host MSE: mean squared reconstruction error on the host (LiteRT interpreter, evaluation x)")
    if any(r.get("accuracy_n") is not None and r["accuracy_n"] < (r.get("accuracy_of") or 0) for r in rows):
        notes.append("(n of N): accuracy on n evenly spread samples of the N-sample evaluation set")
    if any(r.get("accuracy") is not None for r in rows):
        notes.append(f"ties: {TIE_RULE}")
    notes += [f"{r.name}: {r.describe()}" for r in res.refused]  # the whole reason, cut in the table
    for ch in res.choices:
        note = tie_note(ch, res.points.get(ch.device, []))
        if note:
            notes.append(note)
    for ch in res.choices:
        if ch.choice is None:
            notes.append(f"{ch.device}: no candidate meets the budgets")
        else:
            how = f"best {ch.prefer} within budgets"
            if ch.ties and ch.decided_by and ch.decided_by != "accuracy":
                how += f" up to sampling error, then {ch.decided_by}"
            notes.append(f"{ch.device}: choose {ch.choice} ({how}; front over {', '.join(ch.objectives) or 'nothing'})")
    return "\n".join(out + [""] + notes)


def to_json(res: SweepResult, model: Path) -> dict[str, Any]:
    by_name = {c.name: c for c in res.candidates}
    devices = {}
    rows = table_rows(res)
    for ch in res.choices:
        chosen = by_name.get(ch.choice) if ch.choice else None
        devices[ch.device] = {
            "profile": ch.profile,
            "objectives": ch.objectives,
            "prefer": ch.prefer,
            "front": ch.front,
            "choice": ch.choice,
            "most_accurate": ch.most_accurate,
            "accuracy_ties": [{"candidate": t.name, "p_value": t.p_value, "samples": t.samples} for t in ch.ties],
            "decided_by": ch.decided_by,
            "artifact": str(chosen.artifact) if chosen else None,
            "artifact_sha256": chosen.artifact_sha256 if chosen else None,
            "lineage": chosen.leaf if chosen else None,
            "candidates": [
                {k: v for k, v in r.items() if k not in ("device", "profile")} for r in rows if r["device"] == ch.device
            ],
        }
    return {
        "schema": SCHEMA,
        "run_id": res.run.run_id,
        "model": str(model),
        "budgets": res.budgets,
        "tie_rule": TIE_RULE,
        "candidates": [
            {
                "name": c.name,
                "recipe": c.label,
                "recipe_file": str(c.recipe.path) if c.recipe else None,
                "grid": c.recipe.grid if c.recipe else {},
                "variant": c.variant,
                "artifact": str(c.artifact),
                "artifact_sha256": c.artifact_sha256,
                "lineage": [n.id for n in c.nodes],
                "host": c.metrics,
                "status": "ok",
            }
            for c in res.candidates
        ]
        + [
            {
                "name": r.name,
                "recipe": r.label,
                "recipe_file": str(r.recipe.path),
                "status": r.status,
                "reason": r.reason,
            }
            for r in res.refused
        ],
        "devices": devices,
    }


def render_html(res: SweepResult, model: Path) -> str:
    from harness.report import html as report_html

    body = [
        f"<h1>hil sweep: {html.escape(model.name)}</h1>",
        f'<p class="note">run {html.escape(res.run.run_id)}; {len(res.candidates)} candidates'
        + (f", {len(res.refused)} recipe(s) without one (listed)" if res.refused else "")
        + "; front objectives "
        "per device below; red = Pareto-optimal, ring = chosen, grey cross = outside a budget</p>",
    ]
    rows = table_rows(res)
    for ch in res.choices:
        pts = res.points.get(ch.device, [])
        body.append(f"<h2>{html.escape(ch.device)} ({html.escape(ch.profile)})</h2>")
        verdict = (
            f"choice: <b>{html.escape(ch.choice)}</b> (best {ch.prefer} within budgets)"
            if ch.choice
            else "<b>no candidate meets the budgets</b>"
        )
        body.append(f"<p>{verdict}; front over {html.escape(', '.join(ch.objectives) or 'nothing')}</p>")
        if any(p.get("accuracy") is not None for p in pts):
            note = tie_note(ch, pts) or "no accuracy tie"
            body.append(f'<p class="note">{html.escape(note)}; {html.escape(TIE_RULE)}</p>')
        if pts and all(p.get("accuracy") is not None and p.get("latency_p50_us") is not None for p in pts):
            body.append(
                report_html._img(f"fig-front-{ch.device}", front_figure(ch, pts), f"accuracy vs latency on {ch.device}")
            )
        mse = any(r.get("host_mse") is not None for r in rows if r["device"] == ch.device)
        headers = ["candidate", "variant", "front", "budgets"] + [h for _, h, _ in COLUMNS] + (["host MSE"] * mse)
        trs, classes = [], []
        for r in rows:
            if r["device"] != ch.device:
                continue
            if r["status"] != "ok":
                skipped = r["status"] == "not applicable" or r["error"].startswith("not measured")
                trs.append([r["candidate"], r["variant"], "", _why(r)] + ["-"] * (len(COLUMNS) + mse))
                classes.append("skip" if skipped else "fail")
                continue
            trs.append(
                [
                    r["candidate"] + (" (chosen)" if r["chosen"] else ""),
                    r["variant"],
                    "yes" if r["pareto"] else "",
                    "ok" if r["meets_budgets"] else "; ".join(r["ruled_out_by"]),
                ]
                + [accuracy_cell(r)]
                + [_fmt(r[k], f) for k, _, f in COLUMNS[1:]]
                + ([_fmt(r.get("host_mse"), "f5")] if mse else [])
            )
            classes.append("improvement" if r["chosen"] else ("" if r["meets_budgets"] else "skip"))
        body.append(report_html._table(headers, trs, classes))
    return report_html._page(f"hil sweep {model.name}", body)


def front_figure(ch: DeviceChoice, pts: list[Point]):
    """Accuracy vs latency (marker area ~ size), front members red (the front may also be decided by size,
    energy or arena, so it is not drawn as a line in this plane), the choice ringed."""
    from harness.report import plots

    fig = plots._figure(7.5, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    pts = sorted(pts, key=lambda p: p.get("latency_p50_us") or 0.0)
    lat = [p.get("latency_p50_us") or 0.0 for p in pts]
    acc = [(p.get("accuracy") or 0.0) * 100 for p in pts]
    size = [p.get("model_size_bytes") or 0.0 for p in pts]
    biggest = max(size) if size and max(size) > 0 else 1.0
    colors = ["#d62728" if ch.verdicts[p.name].pareto else "#7f7f7f" for p in pts]
    area = [40 + 400 * s / biggest for s in size]
    ax.scatter(lat, acc, s=area, c=colors, alpha=0.7, edgecolors="black", zorder=3)
    for p, x, y in zip(pts, lat, acc):
        if not ch.verdicts[p.name].meets:
            ax.scatter([x], [y], marker="x", c="#555555", s=60, zorder=4)
        if p.name == ch.choice:
            ax.scatter([x], [y], s=500, facecolors="none", edgecolors="#2e7d32", linewidths=2.5, zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("latency p50 (us, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{ch.device}: {len(pts)} candidates, front over {', '.join(ch.objectives)}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.canvas.draw()
    fig.set_layout_engine("none")
    plots.place_labels(
        fig, ax, [(x, y, p.name.split("+", 1)[-1], math.sqrt(a)) for p, x, y, a in zip(pts, lat, acc, area)]
    )
    return fig


def log_summary(res: SweepResult, log: Callable[[str], None]) -> None:
    for ch in res.choices:
        if ch.choice:
            log(f"sweep: {ch.device}: {ch.choice}")
        else:
            log(f"sweep: {ch.device}: no candidate within budgets")


def write_outputs(res: SweepResult, model: Path, json_path: Path | None, html_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(to_json(res, model), indent=1, default=float) + "\n")
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(res, model))
