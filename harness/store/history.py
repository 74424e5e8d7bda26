"""What `hil publish` reads: every series' processes, every verdict and every confirmation, in a few
whole-store queries.

A site of 1,000 runs x 100 series must be read in seconds: one query per kind of fact instead of the
per-series queries the gate makes (harness/store/verdicts.py). The store stays the one place that
speaks SQL; `harness.report.site` turns these rows into pages.
"""

from __future__ import annotations

import sqlalchemy as sa

from harness.store.results import ResultStore
from harness.store.schema import gate_verdicts, measurements, results, runs

r, u, g = results.c, runs.c, gate_verdicts.c
_with_run = results.join(runs, u.run_id == r.run_id)


def _metric(alias: str, metric: str):
    a = measurements.alias(alias)
    return a, (a.c.result_id == r.result_id) & (a.c.metric == metric)


def series_processes(store: ResultStore, metric: str, after: int = 0) -> list[tuple]:
    """(result_id, run_id, model, variant, device_id, profile, artifact_sha256, runtime_version,
    git_commit, value, disturbed) of every successful process that measured `metric` (with a result
    id above `after`), in result order. The caller keeps the runs it shows (confirmation runs are
    evidence behind a verdict, not part of a series' history) and orders them: no join with the runs
    table and no sort here, which is most of the time of this query on a store of 100,000 results."""
    m, on_m = _metric("m", metric)
    d, on_d = _metric("d", "disturbed")
    return store._query(
        sa.select(
            r.result_id,
            r.run_id,
            r.model,
            r.variant,
            r.device_id,
            r.profile,
            r.artifact_sha256,
            r.runtime_version,
            r.git_commit,
            m.c.value,
            d.c.value,
        )
        .select_from(results.join(m, on_m).outerjoin(d, on_d))
        .where(r.status == "ok", r.result_id > after)
        .order_by(r.result_id)
    )


def all_verdicts(store: ResultStore, run_ids: list[str] | None = None) -> list[tuple]:
    """(run_id, key, verdict, model, variant, device_id, profile, result_id, baseline) of every gate
    verdict (of these runs), unordered (the caller orders them by its runs)."""
    stmt = sa.select(g.run_id, g.key, g.verdict, g.model, g.variant, g.device_id, g.profile, g.result_id, g.baseline)
    if run_ids is None:
        return store._query(stmt)
    out: list[tuple] = []
    for i in range(0, len(run_ids), 500):
        out += store._query(stmt.where(g.run_id.in_(run_ids[i : i + 500])))
    return out


def verdict_fingerprints(store: ResultStore) -> list[tuple]:
    """(run_id, verdicts, latest gated_at, passes, sum of result ids) per gated run: re-gating a run
    replaces its verdicts (a new gated_at), `hil baseline accept` turns some into passes; a publish
    reads again only the verdicts of the runs whose fingerprint moved."""
    return store._query(
        sa.select(
            g.run_id,
            sa.func.count(),
            sa.func.max(g.gated_at),
            sa.func.sum(sa.case((g.verdict == "pass", 1), else_=0)),
            sa.func.sum(sa.func.coalesce(g.result_id, 0)),
        ).group_by(g.run_id)
    )


def process_count(store: ResultStore, metric: str, upto: int) -> int:
    """How many rows `series_processes` gives up to result id `upto`: a snapshot read earlier still
    holds when this has not changed (results are only added, never rewritten)."""
    m, on_m = _metric("m", metric)
    return int(
        store._query(
            sa.select(sa.func.count()).select_from(results.join(m, on_m)).where(r.status == "ok", r.result_id <= upto)
        )[0][0]
    )


def confirmation_processes(store: ResultStore, metric: str) -> list[tuple]:
    """(confirm run_id, label, started_at, job_key, model, variant, device_id, value) of every process
    the gate's confirmations re-measured (label `confirm:<run>`, job key `confirm-<role>-<i>`)."""
    m, on_m = _metric("m", metric)
    return store._query(
        sa.select(u.run_id, u.label, u.started_at, r.job_key, r.model, r.variant, r.device_id, m.c.value)
        .select_from(_with_run.join(m, on_m))
        .where(r.status == "ok", store.run_kind() == "confirm")
        .order_by(u.started_at, r.result_id)
    )
