"""The result store: every measurement, with the provenance needed to trust it months later.

An SQLite file (the default) or a PostgreSQL database shared by several controllers, through one
SQLAlchemy Core code path. Each result is committed the moment it is measured (one transaction per
result), so a killed `hil run` loses nothing, and `--resume` can tell exactly which jobs are still
missing. A job is claimed (`claim_job`, one write transaction) by the session that measures it, so two
concurrent `hil run --resume` of one run never measure the same job, on one controller or several;
recording the result ends the claim, and the claim of a session that died is taken over. Read-only
stores (`read_only=True`) never write: SQLite files are opened with `mode=ro` (no tables, no journal
mode, no migration), PostgreSQL transactions are READ ONLY.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import sqlalchemy as sa

from harness.errors import ConfigError, ModelError
from harness.profile.complete import KEYS as PROFILE_KEYS
from harness.profile.complete import MAIN as MAIN_PROFILE
from harness.profile.document import OpProfile, OpTime, from_dict
from harness.store import schema
from harness.store.engine import WRITE, enable_wal, failure, open_engine, probe_write
from harness.store.location import locate
from harness.store.schema import job_claims, lineage, op_times, results, run_sessions, runs
from harness.store.upsert import upsert

_log = logging.getLogger(__name__)

DEFAULT_DB = Path("reports") / "results.sqlite"

PROVENANCE_COLUMNS = [
    "run_id",
    "result_id",
    "timestamp",
    "model",
    "model_sha256",
    "variant",
    "converter_version",
    "artifact_sha256",
    "device_id",
    "profile",
    "transport",
    "runtime",
    "runtime_version",
    "harness_version",
    "git_commit",
    "host",
    "status",
    "error",
]


@dataclass
class ResultRecord:
    """What the orchestrator knows about one finished job (successful or not)."""

    run_id: str
    job_key: str
    model: str
    model_sha256: str
    variant: str
    device_id: str
    profile: str
    status: str
    converter_version: str | None = None
    artifact_sha256: str | None = None
    transport: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    harness_version: str | None = None
    git_commit: str | None = None
    host: str | None = None
    error: str | None = None
    raw: dict | None = None


@dataclass(frozen=True)
class ClaimOwner:
    """The `hil run` session that claims jobs: a token, and the process that can vouch it is alive."""

    token: str
    host: str
    pid: int
    pid_started: float

    @classmethod
    def this_process(cls) -> ClaimOwner:
        return cls(uuid.uuid4().hex, platform.node(), os.getpid(), psutil.Process().create_time())


def _owner_alive(host: str, pid: int, pid_started: float) -> bool:
    """Whether a claim's owner may still be measuring. Only this host's processes can be checked
    (a pid reused by another process does not count); another host's claim is trusted."""
    if host != platform.node():
        return True
    try:
        return abs(psutil.Process(pid).create_time() - pid_started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _nan_to_none(v: float | None) -> float | None:
    """SQLite stores NaN as NULL, PostgreSQL as NaN: both stores keep a missing value as NULL."""
    return None if v is None or v != v else float(v)


_BUGS = (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.InterfaceError)
_QMARK = re.compile(r"\?")


def _qmark(sql: str, args: tuple | list) -> tuple[sa.TextClause, dict[str, Any]]:
    """A `?`-parameter SQL string as a portable textual statement (tests and tools read with it)."""
    names = iter(range(len(args)))
    text = _QMARK.sub(lambda _: f":p{next(names)}", sql)
    return sa.text(text), {f"p{i}": a for i, a in enumerate(args)}


class ResultStore:
    """Thread-safe access to the results database (one lock around the process's statements).

    `path` is an SQLite file path or a PostgreSQL URL; `self.path` is what messages name: the file,
    or the URL with its password masked."""

    def __init__(self, path: Path | str = DEFAULT_DB, create: bool = True, read_only: bool = False):
        self.location = locate(path)
        self.path: Path | str = self.location.path if self.location.path is not None else self.location.display
        self.read_only = read_only
        if self.location.path is not None:
            if (read_only or not create) and not self.location.path.is_file():
                raise ConfigError(f"{self.path}: no results database here (run `hil run` first, or pass --db)")
            if not read_only:
                try:
                    self.location.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(f"{self.path}: cannot create the results directory ({exc.strerror})") from None
        self._lock = threading.Lock()
        self._engine = open_engine(self.location, read_only)
        try:
            with self._engine.connect() as conn:
                version = schema.check(conn, self.path, writable=not read_only)
            if version is None:
                with self._engine.connect() as conn:
                    conn.execution_options(**{WRITE: True})
                    with conn.begin():  # another process may have created or migrated it meanwhile
                        version = schema.upgrade(conn, self.path)
            if self.location.is_sqlite and not read_only:
                enable_wal(self._engine)
                probe_write(self._engine, schema.meta, schema.meta.c.value)
        except sa.exc.DBAPIError as exc:
            self._engine.dispose()
            raise failure(self.location, exc, opening=True) from None
        except BaseException:
            self._engine.dispose()
            raise
        self.schema_version = version

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """The one write transaction helper: everything a write does commits together or not at all."""
        if self.read_only:
            raise ConfigError(f"{self.path}: opened read-only; this command must not write to it")
        with self._lock, self._errors(), self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            if self.location.is_sqlite and isinstance(exc, _BUGS):
                raise  # a statement hilbench got wrong: its traceback, not a storage message
            raise failure(self.location, exc, opening=False) from None

    def _query(self, sql: str | sa.Executable, args: tuple | list = ()) -> list[tuple]:
        """A locked read. Private to the store package: other stages ask the store for data, they do
        not run SQL. `sql` is a Core statement, or a string with `?` parameters."""
        stmt, params = _qmark(sql, args) if isinstance(sql, str) else (sql, {})
        with self._lock, self._errors(), self._engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt, params).all()]

    def _frame(self, stmt: sa.Select) -> pd.DataFrame:
        with self._lock, self._errors(), self._engine.connect() as conn:
            return pd.read_sql_query(stmt, conn)

    # ------------------------------------------------------------------ runs

    def start_run(
        self,
        plan: list[str],
        plan_hash: str,
        argv: list[str],
        harness_version: str,
        host: str,
        git_commit: str | None,
        label: str | None = None,
        kind: str = schema.USER_RUN,
        owner: ClaimOwner | None = None,
    ) -> str:
        """A new run of `kind` (schema.RUN_KINDS); `owner`, the session measuring it, is recorded in the
        same transaction, so that a run whose session dies at any point is known to be abandoned."""
        if kind not in schema.RUN_KINDS:
            raise ValueError(f"run kind {kind!r}")
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self._tx() as db:
            db.execute(
                sa.insert(runs).values(
                    run_id=run_id,
                    started_at=time.time(),
                    finished_at=None,
                    status="running",
                    plan_hash=plan_hash,
                    plan=json.dumps(plan),
                    argv=json.dumps(argv),
                    harness_version=harness_version,
                    host=host,
                    git_commit=git_commit,
                    label=label,
                    kind=kind,
                )
            )
            _join(db, run_id, owner)
        return run_id

    def finish_run(
        self, run_id: str, status: str = "complete", planned: list[str] | None = None, owner: ClaimOwner | None = None
    ) -> str:
        """Close a run. With `planned` (its job keys) the status follows what the database holds, not
        only this session: `complete` exactly when every planned job has a successful result (another
        session resuming the same run may have measured some of them, or may still be measuring).
        `owner`'s session of the run ends with it, in the same transaction."""
        with self._tx() as db:
            if planned is not None:
                done = set(db.execute(_ok_jobs(run_id)).scalars())
                if set(planned) <= done:
                    status = "complete"
                elif status == "complete":
                    status = "incomplete"
            db.execute(sa.update(runs).where(runs.c.run_id == run_id).values(finished_at=time.time(), status=status))
            if owner is not None:
                db.execute(sa.delete(run_sessions).where(run_sessions.c.owner == owner.token))
        return status

    def resumable_run(self, plan_hash: str, kind: str = schema.USER_RUN) -> str | None:
        """The newest unfinished run of `kind` with the same plan, if any."""
        rows = self._query(
            sa.select(runs.c.run_id)
            .where(runs.c.plan_hash == plan_hash, runs.c.status != "complete", self.run_kind() == kind)
            .order_by(runs.c.started_at.desc())
            .limit(1)
        )
        return rows[0][0] if rows else None

    def recent_runs(self, limit: int = 50) -> list[tuple[str, str, list[str]]]:
        """(run_id, status, argv) of the newest user runs, newest first: `hil run --resume` names the
        option that differs when the command no longer matches the run it meant to resume."""
        rows = self._query(
            sa.select(runs.c.run_id, runs.c.status, runs.c.argv)
            .where(self.run_kind() == schema.USER_RUN)
            .order_by(runs.c.started_at.desc())
            .limit(limit)
        )
        out = []
        for run_id, status, argv in rows:
            try:
                parsed = json.loads(argv) if argv else None
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
                out.append((run_id, status, parsed))
        return out

    def reopen_run(self, run_id: str, owner: ClaimOwner | None = None) -> None:
        with self._tx() as db:
            db.execute(sa.update(runs).where(runs.c.run_id == run_id).values(status="running", finished_at=None))
            _join(db, run_id, owner)

    def done_jobs(self, run_id: str) -> set[str]:
        return {r[0] for r in self._query(_ok_jobs(run_id))}

    def claim_job(self, run_id: str, job_key: str, owner: ClaimOwner) -> str | None:
        """Claim one job of a run for `owner`, atomically (a write transaction, which holds the store's
        write lock from its start): None when claimed, else why not (measured already, or claimed by
        a live session). A dead owner's claim is taken over; `record` of the job's result ends the claim."""
        with self._tx() as db:
            if db.execute(_ok_jobs(run_id).where(results.c.job_key == job_key).limit(1)).first():
                return "measured already by another session of this run"
            row = db.execute(
                sa.select(job_claims.c.owner, job_claims.c.host, job_claims.c.pid, job_claims.c.pid_started).where(
                    job_claims.c.run_id == run_id, job_claims.c.job_key == job_key
                )
            ).first()
            if row is not None and row[0] != owner.token and _owner_alive(row[1], row[2], row[3]):
                return f"being measured by another session of this run (pid {row[2]} on {row[1]})"
            upsert(
                db,
                job_claims,
                [
                    {
                        "run_id": run_id,
                        "job_key": job_key,
                        "owner": owner.token,
                        "host": owner.host,
                        "pid": owner.pid,
                        "pid_started": owner.pid_started,
                        "claimed_at": time.time(),
                    }
                ],
            )
        return None

    def release_claims(self, owner: ClaimOwner) -> int:
        """End every claim `owner` still holds (jobs it did not finish: a later --resume measures them)
        and its sessions of runs."""
        with self._tx() as db:
            db.execute(sa.delete(run_sessions).where(run_sessions.c.owner == owner.token))
            return db.execute(sa.delete(job_claims).where(job_claims.c.owner == owner.token)).rowcount

    def claims(self, run_id: str) -> list[tuple[str, str, int]]:
        """(job_key, host, pid) of the open claims of a run."""
        c = job_claims.c
        return self._query(sa.select(c.job_key, c.host, c.pid).where(c.run_id == run_id).order_by(c.job_key))

    def run_kind(self) -> sa.ColumnElement[str]:
        """The kind of a run as this database holds it (inferred from its label before schema 5)."""
        return schema.run_kind(self.schema_version)

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first, with its kind; a run left `running` by a session that is gone
        (killed, never resumed) has the status `abandoned` (`abandoned_runs`)."""
        cols = [c for c in runs.c if c.name != "kind"] + [self.run_kind().label("kind")]
        df = self._frame(sa.select(*cols).order_by(runs.c.started_at))
        gone = self.abandoned_runs(df.loc[df["status"] == "running", "run_id"].tolist())
        if gone:
            df.loc[df["run_id"].isin(list(gone)), "status"] = "abandoned"
        return df

    def abandoned_runs(self, run_ids: list[str]) -> dict[str, str]:
        """Of these runs, those left `running` whose every session and job claim belongs to a process
        that is gone, with the sessions that left them ("pid 123 on host"). A run with neither
        (recorded by a hilbench older than schema 5, between its jobs) cannot be told from a running
        one, and a session of another controller is trusted to be alive (`_owner_alive`)."""
        tables = [t for t, since in ((job_claims, 3), (run_sessions, 5)) if self.schema_version >= since]
        if not run_ids or not tables:
            return {}
        running = sa.select(runs.c.run_id).where(runs.c.run_id.in_(run_ids), runs.c.status == "running")
        owners: dict[str, set[tuple[str, int, float]]] = {}
        for table in tables:
            c = table.c
            for run, host, pid, started in self._query(
                sa.select(c.run_id, c.host, c.pid, c.pid_started).where(c.run_id.in_(running))
            ):
                owners.setdefault(run, set()).add((host, pid, started))
        return {
            run: ", ".join(f"pid {pid} on {host}" for host, pid, _ in sorted(held))
            for run, held in owners.items()
            if not any(_owner_alive(*o) for o in held)
        }

    def run_row(self, run_id: str | None = None) -> dict:
        """One run's row (the latest started by a user, `latest_run_id`, by default); a clear error
        when there is none."""
        run_id = run_id or self.latest_run_id()
        if run_id is None:
            others = self._query(sa.select(sa.func.count()).select_from(runs))[0][0]
            if others:
                raise ConfigError(
                    f"{self.path}: no run started by `hil run` or `hil sweep` yet, only {others} "
                    "confirmation/calibration run(s); pass --run RUN to pick one"
                )
            raise ConfigError(f"{self.path}: no runs recorded yet (run `hil run` first)")
        rows = self.runs()
        match = rows[rows["run_id"] == run_id]
        if match.empty:
            raise ConfigError(f"{self.path}: no run '{run_id}'")
        # a column that holds text for some runs and NULL for others comes back as NaN from pandas:
        # a missing value is None here, so that no report prints "nan" for a run without a commit
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in match.iloc[0].to_dict().items()}

    def latest_run_id(self) -> str | None:
        """The newest run a user started (`hil run`, `hil sweep`, `hil demo`): what "latest" means to
        every command. The gate's confirmation runs and `hil calibrate`'s A/A runs are recorded later
        than the run they serve, and must never become the run that is reported, gated or pinned."""
        rows = self._query(
            sa.select(runs.c.run_id)
            .where(self.run_kind() == schema.USER_RUN)
            .order_by(runs.c.started_at.desc())
            .limit(1)
        )
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ results

    def record(
        self,
        rec: ResultRecord,
        measurements: list[tuple[str, float | None, str]],
        samples: dict[str, list[float]],
        timestamp: float | None = None,
        once: bool = False,
    ) -> int:
        """Write one job's outcome in a single transaction (all of it or nothing). `timestamp`: when it
        was measured (default now); `once`: a result of this run and job with this very timestamp is
        already stored (a spooled result replayed twice) and is kept instead of a second copy."""
        stamp = time.time() if timestamp is None else timestamp
        raw, ops = _split_profile(rec)
        with self._tx() as db:
            if once:
                r = results.c
                same = db.execute(
                    sa.select(r.result_id).where(r.run_id == rec.run_id, r.job_key == rec.job_key, r.timestamp == stamp)
                ).first()
                if same is not None:
                    return int(same[0])
            inserted = db.execute(
                sa.insert(results).values(
                    run_id=rec.run_id,
                    job_key=rec.job_key,
                    timestamp=stamp,
                    model=rec.model,
                    model_sha256=rec.model_sha256,
                    variant=rec.variant,
                    converter_version=rec.converter_version,
                    artifact_sha256=rec.artifact_sha256,
                    device_id=rec.device_id,
                    profile=rec.profile,
                    transport=rec.transport,
                    runtime=rec.runtime,
                    runtime_version=rec.runtime_version,
                    harness_version=rec.harness_version,
                    git_commit=rec.git_commit,
                    host=rec.host,
                    status=rec.status,
                    error=rec.error,
                    raw=json.dumps(raw) if raw is not None else None,
                )
            )
            key = inserted.inserted_primary_key
            assert key is not None  # set by the INSERT above
            rid = int(key[0])
            # the outcome is recorded: the job's claim has done its work (same transaction, no gap)
            db.execute(
                sa.delete(job_claims).where(job_claims.c.run_id == rec.run_id, job_claims.c.job_key == rec.job_key)
            )
            if measurements:
                db.execute(
                    sa.insert(schema.measurements),
                    [{"result_id": rid, "metric": m, "value": _nan_to_none(v), "unit": u} for m, v, u in measurements],
                )
            rows = [
                {"result_id": rid, "phase": phase, "idx": i, "value": float(v)}
                for phase, vals in samples.items()
                for i, v in enumerate(vals)
            ]
            if rows:
                db.execute(sa.insert(schema.samples), rows)
            if ops:
                db.execute(sa.insert(op_times), [{"result_id": rid, **o} for o in ops])
        return rid

    def dataframe(
        self, run_id: str | None = None, include_failed: bool = True, artifact_sha256: str | None = None
    ) -> pd.DataFrame:
        """Long format: one row per (result, metric); failed jobs appear with metric NaN."""
        r, m = results.c, schema.measurements.c
        stmt = sa.select(*[r[c] for c in PROVENANCE_COLUMNS], m.metric, m.value, m.unit).select_from(
            results.outerjoin(schema.measurements, m.result_id == r.result_id)
        )
        if run_id:
            stmt = stmt.where(r.run_id == run_id)
        if artifact_sha256:
            stmt = stmt.where(r.artifact_sha256 == artifact_sha256)
        if not include_failed:
            stmt = stmt.where(r.status == "ok")
        df = self._frame(stmt.order_by(r.result_id, m.metric))
        df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
        return df

    def wide(self, run_id: str | None = None, superseded: bool = False) -> pd.DataFrame:
        """One row per result with one column per metric: the shape reports want. A job measured
        again by `--resume` shows only its newest outcome (a success is never hidden by a later
        failure) unless `superseded` is asked for."""
        df = self.dataframe(run_id)
        if df.empty:
            return df
        if not superseded:
            df = df[df["result_id"].isin(self.current_result_ids(run_id))]
        base = df.drop(columns=["metric", "value", "unit"]).drop_duplicates("result_id").set_index("result_id")
        ok = df.dropna(subset=["metric"])
        metrics = ok.pivot_table(index="result_id", columns="metric", values="value", aggfunc="first")
        return base.join(metrics).reset_index()

    def measured_artifact(self, sha256: str) -> pd.DataFrame:
        """The newest successful result of one artifact on each device (wide: one column per metric):
        what `hil analyze` adds to a model's static numbers."""
        df = self.dataframe(include_failed=False, artifact_sha256=sha256)
        # a confirmation process timed the artifact beside another one: not the artifact's own figures;
        # `hil profile` timed it in a short window only
        confirmations = self._query(sa.select(runs.c.run_id).where(self.run_kind().in_(schema.NOT_HISTORY_KINDS)))
        df = df[~df["run_id"].isin([r[0] for r in confirmations])]
        if df.empty:
            return df
        newest = df.groupby("device_id")["result_id"].max()
        df = df[df["result_id"].isin(newest)]
        base = df.drop(columns=["metric", "value", "unit"]).drop_duplicates("result_id").set_index("result_id")
        metrics = df.pivot_table(index="result_id", columns="metric", values="value", aggfunc="first")
        return base.join(metrics).reset_index()

    def current_result_ids(self, run_id: str | None = None) -> set[int]:
        """Per (run, job): the newest ok result, else the newest result."""
        r = results.c
        stmt = sa.select(r.result_id, r.run_id, r.job_key, r.status).order_by(r.result_id)
        if run_id:
            stmt = stmt.where(r.run_id == run_id)
        best: dict[tuple[str, str], tuple[int, str]] = {}
        for rid, run, job, status in self._query(stmt):
            prev = best.get((run, job))
            if prev is not None and prev[1] == "ok" and status != "ok":
                continue
            best[(run, job)] = (rid, status)
        return {rid for rid, _ in best.values()}

    def samples(self, result_id: int, phase: str = "steady") -> list[float]:
        s = schema.samples.c
        rows = self._query(sa.select(s.value).where(s.result_id == result_id, s.phase == phase).order_by(s.idx))
        return [r[0] for r in rows]

    def raw(self, result_id: int) -> dict[str, Any] | None:
        rows = self._query(sa.select(results.c.raw).where(results.c.result_id == result_id))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    # ------------------------------------------------------------------ per-operator profiles (issue 22)

    def op_profile(self, result_id: int, key: str = MAIN_PROFILE) -> OpProfile | None:
        """The per-operator profile stored with a result (None: none, or a database older than schema 6).
        `key`: which of the runner's profiles (harness.profile.complete.KEYS), by default what ran."""
        found = self._op_profiles([result_id], key)
        return found.get(result_id)

    def op_profiles(
        self,
        run_id: str | None = None,
        model: str | None = None,
        device: str | None = None,
        variant: str | None = None,
        key: str = MAIN_PROFILE,
    ) -> list[tuple[dict[str, Any], OpProfile]]:
        """Results that have a per-operator profile, each with its provenance (run_id, result_id,
        device_id, model, variant, artifact_sha256, job_key, timestamp, kind: the run's kind). With
        `run_id`: that run's current results (`current_result_ids`); without: the newest profiled
        result of each series (model, variant, device), whatever kind of run measured it (a profile
        is the artifact's, not the run's: `hil profile`'s runs are where most of them come from),
        except the gate's confirmation runs, whose processes also ran another artifact.
        Ordered by model, device, variant (VARIANT_ORDER not applied here: callers sort)."""
        if self.schema_version < 6:  # read-only open of an older schema: no profiles yet
            return []
        r, o = results.c, op_times.c
        kind = self.run_kind().label("kind")
        cols = [r.run_id, r.result_id, r.device_id, r.model, r.variant, r.artifact_sha256, r.job_key, r.timestamp]
        stmt = (
            sa.select(*cols, kind)
            .select_from(results.join(runs, runs.c.run_id == r.run_id))
            .where(r.result_id.in_(sa.select(o.result_id).where(o.profile_key == key).distinct()))
        )
        for col, value in (("model", model), ("device_id", device), ("variant", variant)):
            if value is not None:
                stmt = stmt.where(r[col] == value)
        if run_id is not None:
            stmt = stmt.where(r.run_id == run_id)
        else:
            stmt = stmt.where(self.run_kind() != "confirm")
        names = [c.name for c in cols] + ["kind"]
        rows = [dict(zip(names, row)) for row in self._query(stmt.order_by(r.result_id))]
        if run_id is not None:
            current = self.current_result_ids(run_id)
            rows = [row for row in rows if row["result_id"] in current]
        else:
            newest: dict[tuple[str, str, str], dict[str, Any]] = {}
            for row in rows:  # ordered by result id: the last one of a series is its newest
                newest[(row["model"], row["variant"], row["device_id"])] = row
            rows = list(newest.values())
        rows.sort(key=lambda row: (row["model"], row["device_id"], row["variant"], row["result_id"]))
        profiles = self._op_profiles([row["result_id"] for row in rows], key)
        return [(row, profiles[row["result_id"]]) for row in rows if row["result_id"] in profiles]

    def _op_profiles(self, result_ids: list[int], key: str) -> dict[int, OpProfile]:
        if self.schema_version < 6 or not result_ids:
            return {}
        o = op_times.c
        out: dict[int, OpProfile] = {}
        for start in range(0, len(result_ids), 500):  # bounded IN lists, whatever the history's size
            part = result_ids[start : start + 500]
            rows = self._query(
                sa.select(op_times)
                .where(o.result_id.in_(part), o.profile_key == key)
                .order_by(o.result_id, o.subgraph, o.op_index)
            )
            headers = {
                rid: (json.loads(raw) if raw else {}).get(key) or {}
                for rid, raw in self._query(
                    sa.select(results.c.result_id, results.c.raw).where(results.c.result_id.in_(part))
                )
            }
            for row in rows:
                d = dict(zip(op_times.c.keys(), row))
                rid = d["result_id"]
                prof = out.get(rid)
                if prof is None:
                    header = headers.get(rid) or {}
                    invoke = header.get("invoke")
                    prof = out[rid] = OpProfile(
                        source=d["source"],
                        unit=d["unit"],
                        invocations=d["invocations"],
                        ops=[],
                        ticks_per_us=d["ticks_per_us"],
                        cycles=bool(d["cycles"]),
                        invoke=[float(t) for t in invoke] if isinstance(invoke, list) else None,
                    )
                prof.ops.append(
                    OpTime(
                        index=d["op_index"],
                        type=d["op_type"],
                        times=[float(t) for t in json.loads(d["times"])],
                        subgraph=d["subgraph"],
                        name=d["name"],
                        delegated=bool(d["delegated"]),
                        inputs=json.loads(d["inputs"]),
                        outputs=json.loads(d["outputs"]),
                        macs=int(d["macs"]),
                    )
                )
        return out

    # ------------------------------------------------------------------ lineage (hil sweep / hil lineage)

    LINEAGE_COLUMNS = (
        "node_id",
        "parent_id",
        "root_id",
        "step",
        "params",
        "data_hash",
        "seed",
        "versions",
        "kind",
        "sha256",
        "recipe",
        "model_name",
        "created_at",
        "metrics",
    )
    _LINEAGE_JSON = ("params", "versions", "metrics")

    def record_lineage(self, nodes: list[dict[str, Any]]) -> None:
        """Insert or update lineage nodes (dicts with LINEAGE_COLUMNS; JSON columns as Python values);
        a node's model_name, once known, is kept when a later record has none."""
        rows = [
            {
                c: json.dumps(n.get(c), sort_keys=True) if c in self._LINEAGE_JSON else n.get(c)
                for c in self.LINEAGE_COLUMNS
            }
            for n in nodes
        ]
        with self._tx() as db:
            upsert(
                db,
                lineage,
                rows,
                keep=lambda new, t: {"model_name": sa.func.coalesce(new.model_name, t.c.model_name)},
            )

    def lineage(self, root_id: str | None = None) -> list[dict[str, Any]]:
        """Lineage nodes (of one root model), oldest first; none in a database older than schema 4."""
        if self.schema_version < 4:  # read-only open of an older schema: no lineage table yet
            return []
        stmt = sa.select(*[lineage.c[c] for c in self.LINEAGE_COLUMNS])
        if root_id is not None:
            stmt = stmt.where(lineage.c.root_id == root_id)
        out = []
        for r in self._query(stmt.order_by(lineage.c.created_at, lineage.c.node_id)):
            d = dict(zip(self.LINEAGE_COLUMNS, r))
            for c in self._LINEAGE_JSON:
                d[c] = json.loads(d[c]) if d[c] else None
            out.append(d)
        return out


def _split_profile(rec: ResultRecord) -> tuple[dict | None, list[dict[str, Any]]]:
    """The document to store and the op_times rows of its per-operator profiles (PROFILE_KEYS). The
    ops live in their table (like latency samples in theirs); the document keeps each profile's
    header. A malformed profile is a warning naming the device, and the result is stored without it,
    that part of the document verbatim (the measured results are never lost over a profile)."""
    raw = rec.raw
    if not isinstance(raw, dict):
        return raw, []
    out, rows = dict(raw), []
    for key in PROFILE_KEYS:
        if raw.get(key) is None:
            continue
        where = f"device '{rec.device_id}': {key}"
        try:
            prof = _valid_profile(raw[key], where)
        except ModelError as exc:
            what = "its per-operator profile" if key == MAIN_PROFILE else f"its {key}"
            _log.warning(f"warning: {exc}; {rec.model}/{rec.variant}@{rec.device_id} stored without {what}")
            continue
        rows += [
            {
                "profile_key": key,
                "subgraph": op.subgraph,
                "op_index": op.index,
                "op_type": op.type,
                "name": op.name,
                "delegated": op.delegated,
                "inputs": json.dumps(op.inputs),
                "outputs": json.dumps(op.outputs),
                "mean": op.mean,
                "median": op.median,
                "share": prof.share(op),
                "macs": op.macs,
                "times": json.dumps(op.times),
                "source": prof.source,
                "unit": prof.unit,
                "ticks_per_us": prof.ticks_per_us,
                "cycles": prof.cycles,
                "invocations": prof.invocations,
            }
            for op in prof.ops
        ]
        header = {k: v for k, v in prof.to_dict().items() if k != "ops"}
        out[key] = {**header, "ops_stored": len(prof.ops)}
    return out, rows


def _valid_profile(doc: Any, where: str) -> OpProfile:
    """from_dict, and what the table needs besides: one row per op, text names, integer shapes. A
    field of the wrong type (TypeError, ValueError in from_dict) is a ModelError like the others."""
    try:
        prof = from_dict(doc, where=where)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: {exc}") from None
    if len({(op.subgraph, op.index) for op in prof.ops}) != len(prof.ops):
        raise ModelError(f"{where}: an op index appears twice in one subgraph")
    for i, op in enumerate(prof.ops):
        shapes = op.inputs + op.outputs
        if not (op.name is None or isinstance(op.name, str)) or not all(
            isinstance(d, int) and not isinstance(d, bool) for s in shapes for d in s
        ):
            raise ModelError(f"{where}: ops[{i}] ({op.type}) has a name that is not text or a shape not of integers")
    return prof


def _join(db: sa.Connection, run_id: str, owner: ClaimOwner | None) -> None:
    """Record `owner` as a session working on `run_id` (ended by `finish_run` or `release_claims`)."""
    if owner is None:
        return
    upsert(
        db,
        run_sessions,
        [
            {
                "run_id": run_id,
                "owner": owner.token,
                "host": owner.host,
                "pid": owner.pid,
                "pid_started": owner.pid_started,
                "joined_at": time.time(),
            }
        ],
    )


def _ok_jobs(run_id: str) -> sa.Select:
    return sa.select(results.c.job_key).where(results.c.run_id == run_id, results.c.status == "ok")


def open_results(path: Path | str = DEFAULT_DB) -> pd.DataFrame:
    """Python API: all results as a long-format pandas DataFrame (the file is only read)."""
    store = ResultStore(path, read_only=True)
    try:
        return store.dataframe()
    finally:
        store.close()
