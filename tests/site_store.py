"""A synthetic results store for the site tests and benchmarks/publish_scale.py, built through the
store API: runs of many series with known steps, verdicts, a confirmation, a pin and a drifting night."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.store.results import ResultRecord, ResultStore
from harness.store.verdicts import replace_verdicts, write_pins

NIGHT = 86400.0
START = 1_760_000_000.0  # 2025-10-09


@dataclass
class Synthetic:
    path: Path
    run_ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    regressed: str = ""  # the series that steps up by 10 % at `step_at`
    step_at: int = 0
    drift_run: str = ""  # the night device `dev0` ran slow on most series (level-off verdicts)


def series_names(series: int, devices: int = 4) -> list[tuple[str, str, str, str]]:
    """(model, variant, device, profile): `series` of them over `devices` devices, two profiles."""
    out = []
    for i in range(series):
        d = i % devices
        out.append((f"model{i // devices:03d}", "int8" if i % 3 else "fp32", f"dev{d}", f"board{d % 2}"))
    return out


def add_night(
    store: ResultStore,
    syn: Synthetic,
    night: int,
    names: list[tuple[str, str, str, str]],
    rng: np.random.Generator,
    processes: int = 2,
    label: str | None = None,
) -> str:
    run_id = store.start_run(["synthetic"], "synthetic", ["run", "synthetic"], "0", "host", "c0ffee", label)
    verdicts = []
    drift = night == syn.step_at - 5 and night > 0
    for i, (model, variant, device, profile) in enumerate(names):
        base = 1000.0 * (1 + (i % 7) / 10)
        key = f"{model}/{variant}@{device}"
        stepped = key == syn.regressed and night >= syn.step_at
        slow = drift and device == "dev0"
        level = base * (1.10 if stepped else 1.0) * (1.06 if slow else 1.0)
        rid = None
        for p in range(processes):
            rec = ResultRecord(
                run_id=run_id,
                job_key=f"{key}#{p}",
                model=model,
                model_sha256="m" * 64,
                variant=variant,
                device_id=device,
                profile=profile,
                status="ok",
                artifact_sha256=("b" if stepped else "a") * 64,
                runtime="litert",
                runtime_version="2.20.0",
                git_commit=f"{night % 5:07x}",
            )
            value = level * (1 + rng.normal(0, 0.004))
            got = store.record(rec, [("latency_p50_us", value, "us"), ("disturbed", 0.0, "")], {})
            rid = rid or got
        verdict = "fail" if stepped and night == syn.step_at else ("level-off" if slow else "pass")
        verdicts.append(
            {
                "key": key,
                "verdict": verdict,
                "model": model,
                "variant": variant,
                "device_id": device,
                "profile": profile,
                "result_id": rid,
                "baseline": "last-pass k=5",
            }
        )
    store.finish_run(run_id)
    replace_verdicts(store, run_id, verdicts)
    return run_id


def confirm(store: ResultStore, syn: Synthetic, gated_run: str, key: str, effect: float, pairs: int = 3) -> str:
    model, _, rest = key.partition("/")
    variant, _, device = rest.partition("@")
    run_id = store.start_run(
        [f"confirm:{key}"],
        "confirm",
        ["gate", "--confirm", gated_run],
        "0",
        "host",
        None,
        f"confirm:{gated_run}",
        kind="confirm",
    )
    for i in range(pairs):
        for role, level in (("reference", 1000.0), ("candidate", 1000.0 * (1 + effect))):
            rec = ResultRecord(
                run_id=run_id,
                job_key=f"confirm-{role}-{i}",
                model=model,
                model_sha256="m" * 64,
                variant=variant,
                device_id=device,
                profile="board0",
                status="ok",
            )
            store.record(rec, [("latency_p50_us", level, "us")], {})
    store.finish_run(run_id)
    return run_id


def build(path: Path, runs: int, series: int, processes: int = 2, seed: int = 0) -> Synthetic:
    """`runs` nights of `series` series, one night apart; series 0 steps up 10 % at 70 % of the nights
    (its verdict that night: fail, confirmed at +10 %), dev0 runs 6 % slow five nights earlier."""
    store = ResultStore(path)
    names = series_names(series)
    syn = Synthetic(path, keys=[f"{m}/{v}@{d}" for m, v, d, _ in names])
    syn.regressed, syn.step_at = syn.keys[0], int(runs * 0.7)
    rng = np.random.default_rng(seed)
    for night in range(runs):
        syn.run_ids.append(add_night(store, syn, night, names, rng, processes))
        if night == syn.step_at - 5:
            syn.drift_run = syn.run_ids[-1]
    if runs > syn.step_at:
        gated = syn.run_ids[syn.step_at]
        confirm(store, syn, gated, syn.regressed, 0.10)
    model, variant, device, _ = names[1]
    from harness.store.verdicts import ok_results_of_run

    pin = ok_results_of_run(store, syn.run_ids[0], {"model": model, "variant": variant, "device_id": device})
    write_pins(store, syn.run_ids[0], [(model, variant, f"device:{device}", pin[0][0])])
    store.close()
    backdate(path, syn.run_ids)
    return syn


def backdate(path: Path, run_ids: list[str], start: float = START) -> None:
    """One night apart (the store has no API for rewriting history, on purpose)."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "UPDATE runs SET started_at=?, finished_at=? WHERE run_id=?",
            [(start + i * NIGHT, start + i * NIGHT + 600, r) for i, r in enumerate(run_ids)],
        )


def add_sweep(store: ResultStore) -> str:
    """A `hil sweep` run (latency preferred) of three candidates of one model on dev0, with lineage:
    c-fast and c-good are on the front, c-bad is dominated by c-good, the choice is c-fast."""
    run = store.start_run(["x"], "x", ["sweep", "m.keras", "--prefer", "latency"], "0", "host", None, "sw")
    for name, lat, acc in (("c-fast", 100.0, 0.90), ("c-good", 300.0, 0.97), ("c-bad", 400.0, 0.95)):
        rec = ResultRecord(run, name, name, "m", "int8", "dev0", "board0", "ok")
        store.record(rec, [("latency_p50_us", lat, "us"), ("accuracy_top1", acc, "")], {})
    store.finish_run(run)
    node = {
        "node_id": "n1", "parent_id": "file:abc", "root_id": "file:abc", "step": "quantize", "params": {},
        "seed": 0, "versions": {}, "kind": "tflite", "sha256": "s", "model_name": "c-fast", "created_at": 1.0,
        "metrics": {"host_accuracy": 0.9},
    }  # fmt: skip
    store.record_lineage([node])
    return run
