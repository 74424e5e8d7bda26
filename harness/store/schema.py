"""The results database's schema, its version, and the migrations between versions.

A database carries a marker and a version in its `meta` table. Opening checks both before anything is
written: a file that is not a hilbench database is refused (never converted), one written by a newer
hilbench is refused with the version it needs, and an older one is migrated in one transaction.
Read-only opens (`hil results`, `report`, `gate --no-record`, `baseline show`) never write: they
check the marker, accept the versions whose tables hold everything readers need (READABLE_FROM and
up) unchanged, and refuse the rest with a hint.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.errors import ConfigError

SCHEMA_VERSION = 4
READABLE_FROM = 2  # read-only opens accept these older versions as they are (v3 added job_claims, v4 lineage)
MARKER = ("application", "hilbench")

CLAIMS = """
CREATE TABLE IF NOT EXISTS job_claims (
    run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    owner TEXT NOT NULL,             -- the claiming `hil run` session
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started REAL NOT NULL,       -- the owner's process start time (a reused pid is not the owner)
    claimed_at REAL NOT NULL,
    PRIMARY KEY (run_id, job_key)
);
"""

LINEAGE = """
CREATE TABLE IF NOT EXISTS lineage (
    node_id TEXT PRIMARY KEY,        -- sha256 of the node's inputs (harness/compress/lineage.py)
    parent_id TEXT NOT NULL,         -- the parent node, or file:<sha256> of the user's model
    root_id TEXT NOT NULL,           -- file:<sha256> of the user's model the chain starts from
    step TEXT NOT NULL,              -- quantize | qat | prune | structured_prune | distill
    params TEXT NOT NULL,            -- JSON: every parameter, files by sha256
    data_hash TEXT,
    seed INTEGER NOT NULL,
    versions TEXT NOT NULL,          -- JSON: library versions
    kind TEXT NOT NULL,              -- keras | tflite
    sha256 TEXT NOT NULL,            -- of the node's model file (results: artifact_sha256 / model_sha256)
    recipe TEXT,
    model_name TEXT,                 -- the candidate's name in results (leaf nodes)
    created_at REAL,
    metrics TEXT                     -- JSON: host accuracy, sparsity, ...
);
CREATE INDEX IF NOT EXISTS lineage_root ON lineage(root_id);
"""

TABLES = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,            -- running | complete | interrupted
    plan_hash TEXT NOT NULL,
    plan TEXT NOT NULL,              -- JSON list of job keys
    argv TEXT,
    harness_version TEXT,
    host TEXT,
    git_commit TEXT,
    label TEXT
);
CREATE TABLE IF NOT EXISTS results (
    result_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    job_key TEXT NOT NULL,
    timestamp REAL NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    variant TEXT NOT NULL,
    converter_version TEXT,
    artifact_sha256 TEXT,
    device_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    transport TEXT,
    runtime TEXT,
    runtime_version TEXT,
    harness_version TEXT,
    git_commit TEXT,
    host TEXT,
    status TEXT NOT NULL,            -- ok | infra_error | error
    error TEXT,
    raw TEXT                         -- the runner document, verbatim JSON
);
CREATE INDEX IF NOT EXISTS results_run ON results(run_id);
CREATE INDEX IF NOT EXISTS results_key ON results(model, variant, device_id);
CREATE TABLE IF NOT EXISTS measurements (
    result_id INTEGER NOT NULL REFERENCES results(result_id),
    metric TEXT NOT NULL,
    value REAL,
    unit TEXT,
    PRIMARY KEY (result_id, metric)
);
CREATE TABLE IF NOT EXISTS samples (
    result_id INTEGER NOT NULL REFERENCES results(result_id),
    phase TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (result_id, phase, idx)
);

CREATE TABLE IF NOT EXISTS baselines (
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    scope TEXT NOT NULL,             -- device:<id> | profile:<name>
    run_id TEXT NOT NULL,
    result_id INTEGER NOT NULL,
    pinned_at REAL NOT NULL,
    PRIMARY KEY (model, variant, scope)
);
CREATE TABLE IF NOT EXISTS gate_verdicts (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,               -- model/variant@device
    verdict TEXT NOT NULL,           -- pass | fail | infra | error | nodata
    model TEXT,
    variant TEXT,
    device_id TEXT,
    profile TEXT,
    result_id INTEGER,
    baseline TEXT,                   -- how the baseline was chosen, and which runs
    gated_at REAL NOT NULL,
    detail TEXT,                     -- JSON: failing metrics
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS gate_verdicts_key ON gate_verdicts(key, verdict);
"""
    + CLAIMS
    + LINEAGE
)

# version -> script that upgrades a database of that version to version + 1
MIGRATIONS: dict[int, str] = {
    # v1 kept baselines and verdicts in tables the gate created on first use
    1: TABLES,
    # v3: jobs of a run claimed by the `hil run` session measuring them (concurrent --resume)
    2: CLAIMS,
    # v4: lineage of compressed models (`hil sweep`, `hil lineage`)
    3: LINEAGE,
}


def _meta(db: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def _user_tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    return {r[0] for r in rows}


def version_of(db: sqlite3.Connection, path: Path) -> int | None:
    """The schema version of an existing database, None for an empty file; refuses foreign files.

    The marker is `application=hilbench` in `meta`; databases of versions 1 and 2 migrated by an
    older hilbench may lack it and are recognised by their version and their `runs`/`results`."""
    tables = _user_tables(db)
    if not tables:
        return None
    meta = _meta(db)
    app = meta.get(MARKER[0])
    legacy = app is None and meta.get("schema_version") in ("1", "2")
    if (app != MARKER[1] and not legacy) or "schema_version" not in meta or not {"runs", "results"} <= tables:
        raise ConfigError(f"{path}: not a hilbench results database (no hilbench schema marker); pass another --db")
    try:
        return int(meta["schema_version"])
    except ValueError:
        raise ConfigError(f"{path}: unreadable schema version {meta['schema_version']!r}") from None


def prepare(db: sqlite3.Connection, path: Path, writable: bool) -> int:
    """Create, check or migrate the schema (in one transaction); read-only opens never write.
    Returns the schema version the database has afterwards."""
    version = version_of(db, path)
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: written by a newer hilbench (schema {version}, this one knows up to "
            f"{SCHEMA_VERSION}); upgrade hilbench"
        )
    if version == SCHEMA_VERSION:
        return version
    if not writable:
        if version is None:
            raise ConfigError(f"{path}: empty database, no runs recorded yet (run `hil run` first)")
        if version >= READABLE_FROM:
            return version
        raise ConfigError(
            f"{path}: schema {version} is older than {SCHEMA_VERSION}; run any writing command "
            "(e.g. `hil gate`) once to migrate it"
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        version = version_of(db, path)  # another process may have created or migrated it meanwhile
        if version is None:
            for stmt in _statements(TABLES):
                db.execute(stmt)
        else:
            for v in range(version, SCHEMA_VERSION):
                for stmt in _statements(MIGRATIONS[v]):
                    db.execute(stmt)
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", MARKER)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (executescript would commit the open transaction)."""
    lines = [ln.split("--", 1)[0] for ln in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
