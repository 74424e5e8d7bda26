"""Queries and writes for the gate: baseline pins, the verdict history, and the history of a series.

The gate decides; this module only knows where its inputs and outputs are kept, so that the store
stays the one place that speaks SQL (SQLAlchemy Core, the same statements on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import math
import time

import sqlalchemy as sa

from harness.store.results import ResultStore
from harness.store.schema import NOT_HISTORY_KINDS, baselines, gate_verdicts, measurements, results, runs
from harness.store.upsert import upsert

r, u, g = results.c, runs.c, gate_verdicts.c
_with_run = results.join(runs, runs.c.run_id == results.c.run_id)


def _not_confirmation(store: ResultStore) -> sa.ColumnElement[bool]:
    """A confirmation run (and a `hil bisect` step) holds the reference's and the candidate's processes
    under one key: it is evidence behind one verdict, never part of a series' history nor a reference.
    Neither is `hil profile`'s quick look (a short timed window, taken for its per-operator profile).
    (`hil calibrate`'s A/A runs are: they are accepted on purpose, to teach the gate a series' level and
    noise.)"""
    return store.run_kind().notin_(NOT_HISTORY_KINDS)


def run_started_at(store: ResultStore, run_id: str) -> float:
    rows = store._query(sa.select(u.started_at).where(u.run_id == run_id))
    return rows[0][0] if rows else float("inf")


def run_exists(store: ResultStore, run_id: str) -> bool:
    return bool(store._query(sa.select(u.run_id).where(u.run_id == run_id)))


# --------------------------------------------------------------------------- baselines


def pinned_result(store: ResultStore, model: str, variant: str, scope: str) -> tuple[str, int] | None:
    b = baselines.c
    rows = store._query(
        sa.select(b.run_id, b.result_id).where(b.model == model, b.variant == variant, b.scope == scope)
    )
    return (rows[0][0], rows[0][1]) if rows else None


def _key_ok(model: str, variant: str, device_id: str) -> list[sa.ColumnElement[bool]]:
    return [r.model == model, r.variant == variant, r.device_id == device_id, r.status == "ok"]


def earlier_ok_results(
    store: ResultStore, model: str, variant: str, device_id: str, run_id: str, before: float
) -> list[tuple[int, str]]:
    """(result_id, run_id) of every successful earlier result of a key, newest run first."""
    return store._query(
        sa.select(r.result_id, r.run_id)
        .select_from(_with_run)
        .where(*_key_ok(model, variant, device_id), r.run_id != run_id, u.started_at < before, _not_confirmation(store))
        .order_by(u.started_at.desc(), r.result_id.desc())
    )


def ok_results_of_run(store: ResultStore, run_id: str, filters: dict[str, str | None]) -> list[tuple]:
    """(result_id, model, variant, device_id, profile) of a run's successful results matching filters."""
    stmt = sa.select(r.result_id, r.model, r.variant, r.device_id, r.profile).where(
        r.run_id == run_id, r.status == "ok"
    )
    for col in ("model", "variant", "device_id", "profile"):
        if filters.get(col):
            stmt = stmt.where(r[col] == filters[col])
    return store._query(stmt.order_by(r.result_id))


def write_pins(store: ResultStore, run_id: str, pins: list[tuple[str, str, str, int]]) -> None:
    now = time.time()
    rows = [
        {"model": m, "variant": v, "scope": scope, "run_id": run_id, "result_id": rid, "pinned_at": now}
        for m, v, scope, rid in pins
    ]
    with store._tx() as db:
        upsert(db, baselines, rows)


def pin_rows(store: ResultStore) -> list[tuple]:
    b = baselines.c
    return store._query(
        sa.select(b.model, b.variant, b.scope, b.run_id, b.result_id, b.pinned_at).order_by(b.model, b.variant, b.scope)
    )


def delete_pins(store: ResultStore, model: str | None, variant: str | None, scopes: list[str]) -> int:
    b = baselines.c
    stmt = sa.delete(baselines)
    if model:
        stmt = stmt.where(b.model == model)
    if variant:
        stmt = stmt.where(b.variant == variant)
    if scopes:
        stmt = stmt.where(b.scope.in_(scopes))
    with store._tx() as db:
        return db.execute(stmt).rowcount


# --------------------------------------------------------------------------- verdict history


def replace_verdicts(store: ResultStore, run_id: str, rows: list[dict]) -> None:
    """Replace the gate verdicts of `run_id` (re-gating a run overwrites its verdicts)."""
    now = time.time()
    values = [
        {
            "run_id": run_id,
            "key": row["key"],
            "verdict": row["verdict"],
            "model": row.get("model"),
            "variant": row.get("variant"),
            "device_id": row.get("device_id"),
            "profile": row.get("profile"),
            "result_id": row.get("result_id"),
            "baseline": row.get("baseline"),
            "gated_at": now,
            "detail": json.dumps(row.get("detail") or {}),
        }
        for row in rows
    ]
    with store._tx() as db:
        db.execute(sa.delete(gate_verdicts).where(g.run_id == run_id))
        upsert(db, gate_verdicts, values)


def verdict_rows(store: ResultStore, run_id: str | None = None) -> list[tuple]:
    stmt = sa.select(g.run_id, g.key, g.verdict, g.result_id, g.baseline, g.gated_at)
    if run_id:
        stmt = stmt.where(g.run_id == run_id)
    return store._query(stmt.order_by(g.gated_at, g.key))


def verdict_details(store: ResultStore, run_id: str) -> dict[str, dict]:
    """key -> the stored detail of each verdict of `run_id` (failing metrics, the error, and the
    operators that account for a confirmed latency regression: `harness.gate.evaluate.record`)."""
    rows = store._query(sa.select(g.key, g.detail).where(g.run_id == run_id).order_by(g.key))
    out = {}
    for key, detail in rows:
        try:
            parsed = json.loads(detail or "{}")
        except json.JSONDecodeError:
            parsed = {}
        out[key] = parsed if isinstance(parsed, dict) else {}
    return out


def last_passing_rows(store: ResultStore) -> list[tuple]:
    """(key, run_id, result_id) of each key's passing verdict in the newest run."""
    newest_first = sa.func.row_number().over(partition_by=g.key, order_by=u.started_at.desc())
    ranked = (
        sa.select(g.key, g.run_id, g.result_id, newest_first.label("rank"))
        .select_from(gate_verdicts.join(runs, u.run_id == g.run_id))
        .where(g.verdict == "pass", _not_confirmation(store))
        .subquery()
    )
    return store._query(
        sa.select(ranked.c.key, ranked.c.run_id, ranked.c.result_id).where(ranked.c.rank == 1).order_by(ranked.c.key)
    )


# --------------------------------------------------------------------------- inputs of the gate


def metric_values(store: ResultStore, result_ids: list[int]) -> dict[int, dict[str, float]]:
    """Per result, its finite metric values."""
    out: dict[int, dict[str, float]] = {rid: {} for rid in result_ids}
    if not result_ids:
        return out
    m = measurements.c
    for rid, metric, value in store._query(
        sa.select(m.result_id, m.metric, m.value).where(m.result_id.in_(result_ids))
    ):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[rid][metric] = value
    return out


def results_of_run(store: ResultStore, run_id: str) -> list[tuple]:
    return store._query(
        sa.select(r.result_id, r.job_key, r.model, r.variant, r.device_id, r.profile, r.status, r.error, r.transport)
        .where(r.run_id == run_id)
        .order_by(r.result_id)
    )


def job_identity(store: ResultStore, job_key: str) -> tuple[str, str, str, str] | None:
    """(model, variant, device_id, profile) of a job from any run that measured it."""
    rows = store._query(
        sa.select(r.model, r.variant, r.device_id, r.profile)
        .where(r.job_key == job_key)
        .order_by(r.result_id.desc())
        .limit(1)
    )
    return rows[0] if rows else None


def _metric(alias: str, metric: str) -> tuple[sa.FromClause, sa.ColumnElement[bool]]:
    """One metric of a result as its own join (a series joins the measurements table several times)."""
    a = measurements.alias(alias)
    return a, (a.c.result_id == r.result_id) & (a.c.metric == metric)


def metric_history(
    store: ResultStore,
    key: str,
    model: str,
    variant: str,
    device_id: str,
    before: float,
    metric: str = "latency_p50_us",
) -> list[tuple]:
    """(run_id, started_at, value, verdict, disturbed) of every process of a series up to `before`,
    newest run first. Confirmation runs are not part of a series' history."""
    m, on_m = _metric("m", metric)
    d, on_d = _metric("d", "disturbed")
    return store._query(
        sa.select(u.run_id, u.started_at, m.c.value, g.verdict, d.c.value)
        .select_from(
            _with_run.join(m, on_m).outerjoin(d, on_d).outerjoin(gate_verdicts, (g.run_id == r.run_id) & (g.key == key))
        )
        .where(*_key_ok(model, variant, device_id), u.started_at <= before, _not_confirmation(store))
        .order_by(u.started_at.desc(), r.result_id.desc())
    )


def accepted_run_ids(store: ResultStore, key: str, run_id: str, before: float, k: int) -> list[str]:
    """The newest `k` earlier runs whose verdict for `key` was pass (accepted), newest first.
    Verdicts `improved` are not accepted until `hil baseline accept`."""
    rows = store._query(
        sa.select(g.run_id)
        .select_from(gate_verdicts.join(runs, u.run_id == g.run_id))
        .where(g.key == key, g.verdict == "pass", g.run_id != run_id, u.started_at < before, _not_confirmation(store))
        .order_by(u.started_at.desc())
        .limit(k)
    )
    return [row[0] for row in rows]


def ok_results_in_runs(
    store: ResultStore, run_ids: list[str], model: str, variant: str, device_id: str
) -> list[tuple[int, str]]:
    """(result_id, run_id) of every successful process of a key in the given runs."""
    if not run_ids:
        return []
    return store._query(
        sa.select(r.result_id, r.run_id)
        .where(r.run_id.in_(run_ids), *_key_ok(model, variant, device_id))
        .order_by(r.result_id)
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
    m, on_m = _metric("m", metric)
    d, on_d = _metric("d", "disturbed")
    rows = store._query(
        sa.select(u.run_id, u.started_at, m.c.value, d.c.value)
        .select_from(_with_run.join(m, on_m).outerjoin(d, on_d))
        .where(
            *_key_ok(model, variant, device_id),
            u.started_at < before,
            u.run_id != (exclude_run or ""),
            _not_confirmation(store),
        )
        .order_by(u.started_at, r.result_id)
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
    m, on_m = _metric("m", metric)
    p, on_p = _metric("p", paired_metric)
    d, on_d = _metric("d", "disturbed")
    rows = store._query(
        sa.select(u.run_id, m.c.value, p.c.value)
        .select_from(_with_run.join(m, on_m).join(p, on_p).outerjoin(d, on_d))
        .where(
            *_key_ok(model, variant, device_id),
            u.started_at < before,
            sa.func.coalesce(d.c.value, 0) == 0,
            _not_confirmation(store),
        )
        .order_by(u.started_at, r.result_id)
    )
    by_run: dict[str, list[tuple[float, float]]] = {}
    for run, value, ref in rows:
        if value is not None and ref is not None:
            by_run.setdefault(run, []).append((float(value), float(ref)))
    return list(by_run.values())[-runs:]


def artifacts_of(store: ResultStore, result_ids: list[int]) -> set[str]:
    if not result_ids:
        return set()
    rows = store._query(sa.select(r.artifact_sha256).where(r.result_id.in_(result_ids)))
    return {row[0] for row in rows if row[0]}


def accept_improvements(store: ResultStore, run_id: str, keys: list[str] | None = None) -> int:
    """`hil baseline accept`: a run's improved (or failed) keys become accepted references."""
    stmt = (
        sa.update(gate_verdicts)
        .where(g.run_id == run_id, g.verdict.in_(["improved", "fail", "level-off"]))
        .values(verdict="pass")
    )
    if keys:
        stmt = stmt.where(g.key.in_(keys))
    with store._tx() as db:
        return db.execute(stmt).rowcount


def artifact_of(store: ResultStore, result_id: int) -> str | None:
    rows = store._query(sa.select(r.artifact_sha256).where(r.result_id == result_id))
    return rows[0][0] if rows else None


def runs_of(store: ResultStore, result_ids: list[int]) -> dict[int, str]:
    if not result_ids:
        return {}
    return dict(store._query(sa.select(r.result_id, r.run_id).where(r.result_id.in_(result_ids))))
