"""Queries and writes for the gate: baseline pins, the verdict history, and the history of a series.

The gate decides; this module only knows where its inputs and outputs are kept, so that the store
stays the one place that speaks SQL.
"""

from __future__ import annotations

import json
import math
import time

from harness.store.results import ResultStore


def run_started_at(store: ResultStore, run_id: str) -> float:
    rows = store._query("SELECT started_at FROM runs WHERE run_id=?", (run_id,))
    return rows[0][0] if rows else float("inf")


def run_exists(store: ResultStore, run_id: str) -> bool:
    return bool(store._query("SELECT 1 FROM runs WHERE run_id=?", (run_id,)))


# --------------------------------------------------------------------------- baselines


def pinned_result(store: ResultStore, model: str, variant: str, scope: str) -> tuple[str, int] | None:
    rows = store._query(
        "SELECT run_id, result_id FROM baselines WHERE model=? AND variant=? AND scope=?", (model, variant, scope)
    )
    return (rows[0][0], rows[0][1]) if rows else None


def earlier_ok_results(
    store: ResultStore, model: str, variant: str, device_id: str, run_id: str, before: float
) -> list[tuple[int, str]]:
    """(result_id, run_id) of every successful earlier result of a key, newest run first."""
    return store._query(
        "SELECT r.result_id, r.run_id FROM results r JOIN runs u ON u.run_id = r.run_id "
        "WHERE r.model=? AND r.variant=? AND r.device_id=? AND r.status='ok' AND r.run_id != ? "
        "AND u.started_at < ? ORDER BY u.started_at DESC, r.result_id DESC",
        (model, variant, device_id, run_id, before),
    )


def ok_results_of_run(store: ResultStore, run_id: str, filters: dict[str, str | None]) -> list[tuple]:
    """(result_id, model, variant, device_id, profile) of a run's successful results matching filters."""
    sql = "SELECT result_id, model, variant, device_id, profile FROM results WHERE run_id=? AND status='ok'"
    args: list = [run_id]
    for col in ("model", "variant", "device_id", "profile"):
        if filters.get(col):
            sql += f" AND {col}=?"
            args.append(filters[col])
    return store._query(sql + " ORDER BY result_id", tuple(args))


def write_pins(store: ResultStore, run_id: str, pins: list[tuple[str, str, str, int]]) -> None:
    now = time.time()
    with store._tx() as db:
        db.executemany(
            "INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?)",
            [(m, v, scope, run_id, rid, now) for m, v, scope, rid in pins],
        )


def pin_rows(store: ResultStore) -> list[tuple]:
    return store._query(
        "SELECT model, variant, scope, run_id, result_id, pinned_at FROM baselines ORDER BY model, variant, scope"
    )


def delete_pins(store: ResultStore, model: str | None, variant: str | None, scopes: list[str]) -> int:
    sql, args = "DELETE FROM baselines WHERE 1=1", []
    for col, val in (("model", model), ("variant", variant)):
        if val:
            sql += f" AND {col}=?"
            args.append(val)
    if scopes:
        sql += " AND scope IN (" + ",".join("?" * len(scopes)) + ")"
        args += scopes
    with store._tx() as db:
        return db.execute(sql, tuple(args)).rowcount


# --------------------------------------------------------------------------- verdict history


def replace_verdicts(store: ResultStore, run_id: str, rows: list[dict]) -> None:
    """Replace the gate verdicts of `run_id` (re-gating a run overwrites its verdicts)."""
    now = time.time()
    with store._tx() as db:
        db.execute("DELETE FROM gate_verdicts WHERE run_id=?", (run_id,))
        db.executemany(
            "INSERT OR REPLACE INTO gate_verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run_id,
                    r["key"],
                    r["verdict"],
                    r.get("model"),
                    r.get("variant"),
                    r.get("device_id"),
                    r.get("profile"),
                    r.get("result_id"),
                    r.get("baseline"),
                    now,
                    json.dumps(r.get("detail") or {}),
                )
                for r in rows
            ],
        )


def verdict_rows(store: ResultStore, run_id: str | None = None) -> list[tuple]:
    sql = "SELECT run_id, key, verdict, result_id, baseline, gated_at FROM gate_verdicts"
    return store._query(
        sql + (" WHERE run_id=?" if run_id else "") + " ORDER BY gated_at, key", (run_id,) if run_id else ()
    )


def last_passing_rows(store: ResultStore) -> list[tuple]:
    rows = store._query(
        "SELECT g.key, g.run_id, g.result_id, MAX(u.started_at) FROM gate_verdicts g "
        "JOIN runs u ON u.run_id = g.run_id WHERE g.verdict='pass' GROUP BY g.key ORDER BY g.key"
    )
    return [r[:3] for r in rows]


# --------------------------------------------------------------------------- inputs of the gate


def metric_values(store: ResultStore, result_ids: list[int]) -> dict[int, dict[str, float]]:
    """Per result, its finite metric values."""
    out: dict[int, dict[str, float]] = {rid: {} for rid in result_ids}
    if not result_ids:
        return out
    marks = ",".join("?" * len(result_ids))
    for rid, metric, value in store._query(
        f"SELECT result_id, metric, value FROM measurements WHERE result_id IN ({marks})", tuple(result_ids)
    ):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[rid][metric] = value
    return out


def results_of_run(store: ResultStore, run_id: str) -> list[tuple]:
    return store._query(
        "SELECT result_id, job_key, model, variant, device_id, profile, status, error, transport FROM results "
        "WHERE run_id=? ORDER BY result_id",
        (run_id,),
    )


def job_identity(store: ResultStore, job_key: str) -> tuple[str, str, str, str] | None:
    """(model, variant, device_id, profile) of a job from any run that measured it."""
    rows = store._query(
        "SELECT model, variant, device_id, profile FROM results WHERE job_key=? ORDER BY result_id DESC LIMIT 1",
        (job_key,),
    )
    return rows[0] if rows else None


def metric_history(
    store: ResultStore,
    key: str,
    model: str,
    variant: str,
    device_id: str,
    before: float,
    metric: str = "latency_p50_us",
) -> list[tuple]:
    """(run_id, started_at, value, verdict) of a series up to `before`, newest first."""
    return store._query(
        "SELECT u.run_id, u.started_at, m.value, g.verdict FROM results r JOIN runs u ON u.run_id = r.run_id "
        "JOIN measurements m ON m.result_id = r.result_id AND m.metric = ? "
        "LEFT JOIN gate_verdicts g ON g.run_id = r.run_id AND g.key = ? "
        "WHERE r.model=? AND r.variant=? AND r.device_id=? AND r.status='ok' AND u.started_at <= ? "
        "ORDER BY u.started_at DESC, r.result_id DESC",
        (metric, key, model, variant, device_id, before),
    )


def accepted_run_ids(store: ResultStore, key: str, run_id: str, before: float, k: int) -> list[str]:
    """The newest `k` earlier runs whose verdict for `key` was pass (accepted), newest first.
    Verdicts `improved` are not accepted until `hil baseline accept`."""
    rows = store._query(
        "SELECT g.run_id FROM gate_verdicts g JOIN runs u ON u.run_id = g.run_id "
        "WHERE g.key=? AND g.verdict='pass' AND g.run_id != ? AND u.started_at < ? "
        "ORDER BY u.started_at DESC LIMIT ?",
        (key, run_id, before, k),
    )
    return [r[0] for r in rows]


def ok_results_in_runs(
    store: ResultStore, run_ids: list[str], model: str, variant: str, device_id: str
) -> list[tuple[int, str]]:
    """(result_id, run_id) of every successful process of a key in the given runs."""
    if not run_ids:
        return []
    marks = ",".join("?" * len(run_ids))
    return store._query(
        f"SELECT result_id, run_id FROM results WHERE run_id IN ({marks}) AND model=? AND variant=? "
        "AND device_id=? AND status='ok' ORDER BY result_id",
        (*run_ids, model, variant, device_id),
    )


def series_values(
    store: ResultStore,
    model: str,
    variant: str,
    device_id: str,
    metric: str,
    before: float,
    runs: int,
    exclude_run: str | None = None,
) -> list[tuple[str, list[float], list[bool]]]:
    """Per earlier run of a series (oldest first, at most `runs`): its process levels of `metric`
    and whether each process was disturbed. Confirmation runs are not part of a series' history."""
    rows = store._query(
        "SELECT u.run_id, u.started_at, m.value, d.value FROM results r JOIN runs u ON u.run_id = r.run_id "
        "JOIN measurements m ON m.result_id = r.result_id AND m.metric = ? "
        "LEFT JOIN measurements d ON d.result_id = r.result_id AND d.metric = 'disturbed' "
        "WHERE r.model=? AND r.variant=? AND r.device_id=? AND r.status='ok' AND u.started_at < ? "
        "AND u.run_id != ? AND COALESCE(u.label, '') NOT LIKE 'confirm:%' "
        "ORDER BY u.started_at, r.result_id",
        (metric, model, variant, device_id, before, exclude_run or ""),
    )
    by_run: dict[str, tuple[list[float], list[bool]]] = {}
    for run, _, value, disturbed in rows:
        if value is None:
            continue
        levels, flags = by_run.setdefault(run, ([], []))
        levels.append(float(value))
        flags.append(bool(disturbed))
    out = [(run, lv, fl) for run, (lv, fl) in by_run.items()]
    return out[-runs:]


def paired_history(
    store: ResultStore,
    model: str,
    variant: str,
    device_id: str,
    metric: str,
    paired_metric: str,
    before: float,
    runs: int,
) -> list[list[tuple[float, float]]]:
    """Per earlier run of a series that timed a reference artifact in its processes (oldest first, at
    most `runs`): (level, reference level) of each undisturbed process. Confirmation runs excluded."""
    rows = store._query(
        "SELECT u.run_id, m.value, p.value FROM results r JOIN runs u ON u.run_id = r.run_id "
        "JOIN measurements m ON m.result_id = r.result_id AND m.metric = ? "
        "JOIN measurements p ON p.result_id = r.result_id AND p.metric = ? "
        "LEFT JOIN measurements d ON d.result_id = r.result_id AND d.metric = 'disturbed' "
        "WHERE r.model=? AND r.variant=? AND r.device_id=? AND r.status='ok' AND u.started_at < ? "
        "AND COALESCE(d.value, 0) = 0 AND COALESCE(u.label, '') NOT LIKE 'confirm:%' "
        "ORDER BY u.started_at, r.result_id",
        (metric, paired_metric, model, variant, device_id, before),
    )
    by_run: dict[str, list[tuple[float, float]]] = {}
    for run, value, ref in rows:
        if value is not None and ref is not None:
            by_run.setdefault(run, []).append((float(value), float(ref)))
    return list(by_run.values())[-runs:]


def artifacts_of(store: ResultStore, result_ids: list[int]) -> set[str]:
    if not result_ids:
        return set()
    marks = ",".join("?" * len(result_ids))
    rows = store._query(f"SELECT artifact_sha256 FROM results WHERE result_id IN ({marks})", tuple(result_ids))
    return {r[0] for r in rows if r[0]}


def accept_improvements(store: ResultStore, run_id: str, keys: list[str] | None = None) -> int:
    """`hil baseline accept`: a run's improved (or failed) keys become accepted references."""
    sql, args = "UPDATE gate_verdicts SET verdict='pass' WHERE run_id=? AND verdict IN ('improved', 'fail')", [run_id]
    if keys:
        sql += " AND key IN (" + ",".join("?" * len(keys)) + ")"
        args += keys
    with store._tx() as db:
        return db.execute(sql, tuple(args)).rowcount


def artifact_of(store: ResultStore, result_id: int) -> str | None:
    rows = store._query("SELECT artifact_sha256 FROM results WHERE result_id=?", (result_id,))
    return rows[0][0] if rows else None


def runs_of(store: ResultStore, result_ids: list[int]) -> dict[int, str]:
    if not result_ids:
        return {}
    marks = ",".join("?" * len(result_ids))
    return dict(store._query(f"SELECT result_id, run_id FROM results WHERE result_id IN ({marks})", tuple(result_ids)))
