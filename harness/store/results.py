"""SQLite result store: every measurement, with the provenance needed to trust it months later.

Each result is committed the moment it is measured (WAL mode, one transaction per result), so a
killed `hil run` loses nothing, and `--resume` can tell exactly which jobs are still missing. A job is
claimed (`claim_job`, one transaction) by the session that measures it, so two concurrent
`hil run --resume` of one run never measure the same job; recording the result ends the claim, and
the claim of a session that died is taken over. Read-only stores (`read_only=True`) open the file with
SQLite's `mode=ro` and never write: no tables, no journal mode, no migration.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
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

from harness.errors import ConfigError
from harness.store import schema

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


class ResultStore:
    """Thread-safe (one connection, one lock) access to the results database."""

    def __init__(self, path: Path | str = DEFAULT_DB, create: bool = True, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise ConfigError(f"{self.path}: no results database here (run `hil run` first, or pass --db)")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{self.path}: cannot create the results directory ({exc.strerror})") from None
        db = None
        try:
            if read_only:  # mode=ro: SQLite itself refuses any write to the file
                db = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=30,
                    check_same_thread=False,
                    isolation_level=None,
                )
                self.schema_version = schema.prepare(db, self.path, writable=False)
            else:
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                self.schema_version = schema.prepare(db, self.path, writable=True)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.DatabaseError, sqlite3.OperationalError) as exc:
            if db is not None:
                db.close()
            raise ConfigError(f"{self.path}: not a usable hilbench results database ({exc})") from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise ConfigError(f"{self.path}: opened read-only; this command must not write to it")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
    ) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    time.time(),
                    None,
                    "running",
                    plan_hash,
                    json.dumps(plan),
                    json.dumps(argv),
                    harness_version,
                    host,
                    git_commit,
                    label,
                ),
            )
        return run_id

    def finish_run(self, run_id: str, status: str = "complete", planned: list[str] | None = None) -> str:
        """Close a run. With `planned` (its job keys) the status follows what the database holds, not
        only this session: `complete` exactly when every planned job has a successful result (another
        session resuming the same run may have measured some of them, or may still be measuring)."""
        with self._tx() as db:
            if planned is not None:
                done = {
                    r[0] for r in db.execute("SELECT job_key FROM results WHERE run_id=? AND status='ok'", (run_id,))
                }
                if set(planned) <= done:
                    status = "complete"
                elif status == "complete":
                    status = "incomplete"
            db.execute("UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (time.time(), status, run_id))
        return status

    def resumable_run(self, plan_hash: str) -> str | None:
        """The newest unfinished run with the same plan, if any."""
        rows = self._query(
            "SELECT run_id FROM runs WHERE plan_hash=? AND status!='complete' ORDER BY started_at DESC LIMIT 1",
            (plan_hash,),
        )
        return rows[0][0] if rows else None

    def reopen_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status='running', finished_at=NULL WHERE run_id=?", (run_id,))

    def done_jobs(self, run_id: str) -> set[str]:
        rows = self._query("SELECT job_key FROM results WHERE run_id=? AND status='ok'", (run_id,))
        return {r[0] for r in rows}

    def claim_job(self, run_id: str, job_key: str, owner: ClaimOwner) -> str | None:
        """Claim one job of a run for `owner`, atomically (BEGIN IMMEDIATE): None when claimed, else why
        not (measured already, or claimed by a live session). A dead owner's claim is taken over;
        `record` of the job's result ends the claim."""
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM results WHERE run_id=? AND job_key=? AND status='ok' LIMIT 1", (run_id, job_key)
            ).fetchone():
                return "measured already by another session of this run"
            row = db.execute(
                "SELECT owner, host, pid, pid_started FROM job_claims WHERE run_id=? AND job_key=?", (run_id, job_key)
            ).fetchone()
            if row is not None and row[0] != owner.token and _owner_alive(row[1], row[2], row[3]):
                return f"being measured by another session of this run (pid {row[2]} on {row[1]})"
            db.execute(
                "INSERT OR REPLACE INTO job_claims VALUES (?,?,?,?,?,?,?)",
                (run_id, job_key, owner.token, owner.host, owner.pid, owner.pid_started, time.time()),
            )
        return None

    def release_claims(self, owner: ClaimOwner) -> int:
        """End every claim `owner` still holds (jobs it did not finish: a later --resume measures them)."""
        with self._tx() as db:
            return db.execute("DELETE FROM job_claims WHERE owner=?", (owner.token,)).rowcount

    def claims(self, run_id: str) -> list[tuple[str, str, int]]:
        """(job_key, host, pid) of the open claims of a run."""
        return self._query("SELECT job_key, host, pid FROM job_claims WHERE run_id=? ORDER BY job_key", (run_id,))

    def runs(self) -> pd.DataFrame:
        with self._lock:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY started_at", self._db)

    def run_row(self, run_id: str | None = None) -> dict:
        """One run's row (the latest by default); a clear error when there is none."""
        run_id = run_id or self.latest_run_id()
        if run_id is None:
            raise ConfigError(f"{self.path}: no runs recorded yet (run `hil run` first)")
        runs = self.runs()
        match = runs[runs["run_id"] == run_id]
        if match.empty:
            raise ConfigError(f"{self.path}: no run '{run_id}'")
        return match.iloc[0].to_dict()

    def latest_run_id(self) -> str | None:
        rows = self._query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ results

    def record(
        self, rec: ResultRecord, measurements: list[tuple[str, float | None, str]], samples: dict[str, list[float]]
    ) -> int:
        """Write one job's outcome in a single transaction (all of it or nothing)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO results (run_id, job_key, timestamp, model, model_sha256, variant, "
                "converter_version, artifact_sha256, device_id, profile, transport, runtime, "
                "runtime_version, harness_version, git_commit, host, status, error, raw) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.run_id,
                    rec.job_key,
                    time.time(),
                    rec.model,
                    rec.model_sha256,
                    rec.variant,
                    rec.converter_version,
                    rec.artifact_sha256,
                    rec.device_id,
                    rec.profile,
                    rec.transport,
                    rec.runtime,
                    rec.runtime_version,
                    rec.harness_version,
                    rec.git_commit,
                    rec.host,
                    rec.status,
                    rec.error,
                    json.dumps(rec.raw) if rec.raw is not None else None,
                ),
            )
            rid = cur.lastrowid
            assert rid is not None  # set by the INSERT above
            # the outcome is recorded: the job's claim has done its work (same transaction, no gap)
            db.execute("DELETE FROM job_claims WHERE run_id=? AND job_key=?", (rec.run_id, rec.job_key))
            db.executemany(
                "INSERT INTO measurements VALUES (?,?,?,?)",
                [(rid, m, None if v is None else float(v), u) for m, v, u in measurements],
            )
            for phase, vals in samples.items():
                db.executemany(
                    "INSERT INTO samples VALUES (?,?,?,?)", [(rid, phase, i, float(v)) for i, v in enumerate(vals)]
                )
        return rid

    def dataframe(
        self, run_id: str | None = None, include_failed: bool = True, artifact_sha256: str | None = None
    ) -> pd.DataFrame:
        """Long format: one row per (result, metric); failed jobs appear with metric NaN."""
        cols = ", ".join(f"r.{c}" for c in PROVENANCE_COLUMNS)
        sql = (
            f"SELECT {cols}, m.metric, m.value, m.unit FROM results r "
            "LEFT JOIN measurements m ON m.result_id = r.result_id"
        )
        where, args = [], []
        if run_id:
            where.append("r.run_id = ?")
            args.append(run_id)
        if artifact_sha256:
            where.append("r.artifact_sha256 = ?")
            args.append(artifact_sha256)
        if not include_failed:
            where.append("r.status = 'ok'")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.result_id, m.metric"
        with self._lock:
            df = pd.read_sql_query(sql, self._db, params=args)
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
        if df.empty:
            return df
        newest = df.groupby("device_id")["result_id"].max()
        df = df[df["result_id"].isin(newest)]
        base = df.drop(columns=["metric", "value", "unit"]).drop_duplicates("result_id").set_index("result_id")
        metrics = df.pivot_table(index="result_id", columns="metric", values="value", aggfunc="first")
        return base.join(metrics).reset_index()

    def current_result_ids(self, run_id: str | None = None) -> set[int]:
        """Per (run, job): the newest ok result, else the newest result."""
        sql = "SELECT result_id, run_id, job_key, status FROM results"
        args: tuple = ()
        if run_id:
            sql, args = sql + " WHERE run_id=?", (run_id,)
        best: dict[tuple[str, str], tuple[int, str]] = {}
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY result_id", args).fetchall()
        for rid, run, job, status in rows:
            prev = best.get((run, job))
            if prev is not None and prev[1] == "ok" and status != "ok":
                continue
            best[(run, job)] = (rid, status)
        return {rid for rid, _ in best.values()}

    def samples(self, result_id: int, phase: str = "steady") -> list[float]:
        rows = self._query("SELECT value FROM samples WHERE result_id=? AND phase=? ORDER BY idx", (result_id, phase))
        return [r[0] for r in rows]

    def raw(self, result_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT raw FROM results WHERE result_id=?", (result_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

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
            tuple(
                json.dumps(n.get(c), sort_keys=True) if c in self._LINEAGE_JSON else n.get(c)
                for c in self.LINEAGE_COLUMNS
            )
            for n in nodes
        ]
        cols = ", ".join(self.LINEAGE_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in self.LINEAGE_COLUMNS if c not in ("node_id", "model_name"))
        with self._tx() as db:
            db.executemany(
                f"INSERT INTO lineage ({cols}) VALUES ({', '.join('?' * len(self.LINEAGE_COLUMNS))}) "
                f"ON CONFLICT(node_id) DO UPDATE SET {updates}, "
                "model_name=COALESCE(excluded.model_name, lineage.model_name)",
                rows,
            )

    def lineage(self, root_id: str | None = None) -> list[dict[str, Any]]:
        """Lineage nodes (of one root model), oldest first; none in a database older than schema 4."""
        sql = f"SELECT {', '.join(self.LINEAGE_COLUMNS)} FROM lineage"
        args: tuple = ()
        if root_id is not None:
            sql, args = sql + " WHERE root_id=?", (root_id,)
        try:
            rows = self._query(sql + " ORDER BY created_at, node_id", args)
        except sqlite3.OperationalError:  # read-only open of an older schema: no lineage table yet
            return []
        out = []
        for r in rows:
            d = dict(zip(self.LINEAGE_COLUMNS, r))
            for c in self._LINEAGE_JSON:
                d[c] = json.loads(d[c]) if d[c] else None
            out.append(d)
        return out

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """A locked read (one connection is shared by the run's worker threads). Private to the store
        package: other stages ask the store for data, they do not run SQL."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()


def open_results(path: Path | str = DEFAULT_DB) -> pd.DataFrame:
    """Python API: all results as a long-format pandas DataFrame (the file is only read)."""
    store = ResultStore(path, read_only=True)
    try:
        return store.dataframe()
    finally:
        store.close()
