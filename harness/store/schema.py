"""The results database's schema, its version, and the migrations between versions.

The tables are SQLAlchemy Core objects, so SQLite files and PostgreSQL databases get the same schema
from one definition. A database carries a marker and a version in its `meta` table. Opening checks
both before anything is written: a database that is not hilbench's is refused (never converted), one
written by a newer hilbench is refused with the version it needs, and an older one is migrated in one
transaction. Read-only opens (`hil results`, `report`, `gate --no-record`, `baseline show`) never
write: they check the marker, accept the versions whose tables hold everything readers need
(READABLE_FROM and up) unchanged, and refuse the rest with a hint.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from harness.errors import ConfigError
from harness.store.upsert import upsert

SCHEMA_VERSION = 6
# read-only opens accept these older versions as they are (v3 added job_claims, v4 lineage, v5 runs.kind
# and run_sessions: `run_kind` infers a run's kind from its label where the column is missing; v6
# op_times: an older database has no per-operator profiles)
READABLE_FROM = 2
MARKER = ("application", "hilbench")

# PostgreSQL sorts text by the database's locale, SQLite byte-wise: "C" keeps ORDER BY on keys, job
# keys and metric names identical on both, whatever locale the server was initialised with.
TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
REAL = sa.Float()  # SQLite REAL, PostgreSQL double precision

metadata = sa.MetaData()

meta = sa.Table("meta", metadata, sa.Column("key", TEXT, primary_key=True), sa.Column("value", TEXT, nullable=False))

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("started_at", REAL, nullable=False),
    sa.Column("finished_at", REAL),
    sa.Column("status", TEXT, nullable=False),  # running | complete | interrupted | incomplete
    sa.Column("plan_hash", TEXT, nullable=False),
    sa.Column("plan", TEXT, nullable=False),  # JSON list of job keys
    sa.Column("argv", TEXT),
    sa.Column("harness_version", TEXT),
    sa.Column("host", TEXT),
    sa.Column("git_commit", TEXT),
    sa.Column("label", TEXT),
    # measure (`hil run`, `hil sweep`, `hil demo`: what "latest" means) | confirm (the gate's
    # re-measurement) | calibrate (`hil calibrate` A/A runs) | bisect (`hil bisect`'s paired steps) |
    # profile (`hil profile`'s quick looks)
    sa.Column("kind", TEXT, nullable=False, server_default="measure"),
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", TEXT, sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("job_key", TEXT, nullable=False),
    sa.Column("timestamp", REAL, nullable=False),
    sa.Column("model", TEXT, nullable=False),
    sa.Column("model_sha256", TEXT, nullable=False),
    sa.Column("variant", TEXT, nullable=False),
    sa.Column("converter_version", TEXT),
    sa.Column("artifact_sha256", TEXT),
    sa.Column("device_id", TEXT, nullable=False),
    sa.Column("profile", TEXT, nullable=False),
    sa.Column("transport", TEXT),
    sa.Column("runtime", TEXT),
    sa.Column("runtime_version", TEXT),
    sa.Column("harness_version", TEXT),
    sa.Column("git_commit", TEXT),
    sa.Column("host", TEXT),
    sa.Column("status", TEXT, nullable=False),  # ok | infra_error | error
    sa.Column("error", TEXT),
    sa.Column("raw", TEXT),  # the runner document, verbatim JSON
    sa.Index("results_run", "run_id"),
    sa.Index("results_key", "model", "variant", "device_id"),
    sqlite_autoincrement=True,  # result ids are never reused, also after a deleted last row
)

measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    sa.Column("metric", TEXT, primary_key=True),
    sa.Column("value", REAL),
    sa.Column("unit", TEXT),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    sa.Column("phase", TEXT, primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("value", REAL, nullable=False),
)

baselines = sa.Table(
    "baselines",
    metadata,
    sa.Column("model", TEXT, primary_key=True),
    sa.Column("variant", TEXT, primary_key=True),
    sa.Column("scope", TEXT, primary_key=True),  # device:<id> | profile:<name>
    sa.Column("run_id", TEXT, nullable=False),
    sa.Column("result_id", sa.Integer, nullable=False),
    sa.Column("pinned_at", REAL, nullable=False),
)

gate_verdicts = sa.Table(
    "gate_verdicts",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("key", TEXT, primary_key=True),  # model/variant@device
    sa.Column("verdict", TEXT, nullable=False),  # pass | fail | improved | infra | error | nodata
    sa.Column("model", TEXT),
    sa.Column("variant", TEXT),
    sa.Column("device_id", TEXT),
    sa.Column("profile", TEXT),
    sa.Column("result_id", sa.Integer),
    sa.Column("baseline", TEXT),  # how the baseline was chosen, and which runs
    sa.Column("gated_at", REAL, nullable=False),
    sa.Column("detail", TEXT),  # JSON: failing metrics
    sa.Index("gate_verdicts_key", "key", "verdict"),
)

job_claims = sa.Table(
    "job_claims",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("job_key", TEXT, primary_key=True),
    sa.Column("owner", TEXT, nullable=False),  # the claiming `hil run` session
    sa.Column("host", TEXT, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("pid_started", REAL, nullable=False),  # the owner's process start time (a reused pid is not the owner)
    sa.Column("claimed_at", REAL, nullable=False),
)

run_sessions = sa.Table(
    "run_sessions",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("owner", TEXT, primary_key=True),  # the session's claim token (job_claims.owner)
    sa.Column("host", TEXT, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("pid_started", REAL, nullable=False),
    sa.Column("joined_at", REAL, nullable=False),
)

lineage = sa.Table(
    "lineage",
    metadata,
    sa.Column("node_id", TEXT, primary_key=True),  # sha256 of the node's inputs (harness/compress/lineage.py)
    sa.Column("parent_id", TEXT, nullable=False),  # the parent node, or file:<sha256> of the user's model
    sa.Column("root_id", TEXT, nullable=False),  # file:<sha256> of the user's model the chain starts from
    sa.Column("step", TEXT, nullable=False),  # quantize | qat | prune | structured_prune | distill
    sa.Column("params", TEXT, nullable=False),  # JSON: every parameter, files by sha256
    sa.Column("data_hash", TEXT),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("versions", TEXT, nullable=False),  # JSON: library versions
    sa.Column("kind", TEXT, nullable=False),  # keras | tflite
    sa.Column("sha256", TEXT, nullable=False),  # of the node's model file (results: artifact_sha256 / model_sha256)
    sa.Column("recipe", TEXT),
    sa.Column("model_name", TEXT),  # the candidate's name in results (leaf nodes)
    sa.Column("created_at", REAL),
    sa.Column("metrics", TEXT),  # JSON: host accuracy, sparsity, ...
    sa.Index("lineage_root", "root_id"),
)

# One row per operator of a per-operator profile (harness.profile.document, `hil profile`, `hil run
# --profile`): queries, tables and diffs read ops without parsing documents. Times are per invocation
# in `unit` (us, or ticks at `ticks_per_us` when known), `times` keeps every profiled invocation.
op_times = sa.Table(
    "op_times",
    metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    # the runner document's key it came from (harness.profile.complete.KEYS): op_profile (what ran),
    # op_profile_builtin (the built-in kernels' twin of an XNNPACK profile), paired_op_profile[_builtin]
    sa.Column("profile_key", TEXT, primary_key=True),
    sa.Column("subgraph", sa.Integer, primary_key=True),
    sa.Column("op_index", sa.Integer, primary_key=True),
    sa.Column("op_type", TEXT, nullable=False),
    sa.Column("name", TEXT),
    sa.Column("delegated", sa.Boolean, nullable=False),
    sa.Column("inputs", TEXT, nullable=False),  # JSON list of shapes
    sa.Column("outputs", TEXT, nullable=False),  # JSON list of shapes
    sa.Column("mean", REAL, nullable=False),
    sa.Column("median", REAL, nullable=False),
    sa.Column("share", REAL, nullable=False),  # of the sum of the profile's op means (0..1)
    sa.Column("macs", sa.BigInteger, nullable=False),
    sa.Column("times", TEXT, nullable=False),  # JSON: one value per profiled invocation
    sa.Column("source", TEXT, nullable=False),  # litert-builtin | litert-xnnpack | tflm-micro-profiler | tflm-sim
    sa.Column("unit", TEXT, nullable=False),  # us | ticks
    sa.Column("ticks_per_us", REAL),
    sa.Column("cycles", sa.Boolean, nullable=False),
    sa.Column("invocations", sa.Integer, nullable=False),
)

TABLES = tuple(metadata.sorted_tables)  # parents before children: the order to create and to copy in

# version -> tables that upgrade a database of that version to version + 1 (created when missing)
MIGRATIONS: dict[int, tuple[sa.Table, ...]] = {
    # v1 kept baselines and verdicts in tables the gate created on first use
    1: TABLES,
    # v3: jobs of a run claimed by the `hil run` session measuring them (concurrent --resume)
    2: (job_claims,),
    # v4: lineage of compressed models (`hil sweep`, `hil lineage`)
    3: (lineage,),
    # v5: the sessions working on a run (an abandoned run is told from a running one), and runs.kind
    4: (run_sessions,),
    # v6: per-operator profiles (`hil profile`, `hil run --profile`)
    5: (op_times,),
}

RUN_KINDS = ("measure", "confirm", "calibrate", "bisect", "profile")
# runs that time two artifacts under one key (the gate's confirmation, `hil bisect`'s steps): evidence
# behind one decision, never a series' history, a reference or an artifact's own figures
PAIRED_KINDS = ("confirm", "bisect")
# ... and neither are `hil profile`'s quick looks (a short timed window beside the profiler's pass)
NOT_HISTORY_KINDS = (*PAIRED_KINDS, "profile")
USER_RUN = "measure"  # the runs a user starts (`hil run`, `hil sweep`, `hil demo`): what "latest" means


def inferred_kind() -> sa.ColumnElement[str]:
    """A run's kind from what marked it before schema 5: the gate's confirmation runs had the plan
    hash `confirm` and the label `confirm:<run>`, `hil calibrate`'s runs the label `calibration` and
    the command in their argv (a user's `hil run --label calibration` is still a measurement)."""
    c = runs.c
    return sa.case(
        ((c.plan_hash == "confirm") & c.label.like("confirm:%"), "confirm"),
        ((c.label == "calibration") & c.argv.like('%"calibrate"%'), "calibrate"),
        else_=USER_RUN,
    )


def run_kind(version: int) -> sa.ColumnElement[str]:
    """runs.kind, or what it is inferred from in a database older than schema 5 (read-only opens)."""
    return runs.c.kind if version >= 5 else inferred_kind()


def _add_run_kind(db: sa.Connection) -> None:
    """v5: the column `runs.kind`, filled in for the runs an older hilbench recorded."""
    if "kind" in {c["name"] for c in sa.inspect(db).get_columns("runs")}:
        return
    coltype = runs.c.kind.type.compile(dialect=db.dialect)
    db.execute(sa.text(f"ALTER TABLE runs ADD COLUMN kind {coltype} NOT NULL DEFAULT '{USER_RUN}'"))
    db.execute(sa.update(runs).where(inferred_kind() != USER_RUN).values(kind=inferred_kind()))


# version -> what else upgrades a database of that version to version + 1 (after its tables exist)
COLUMN_MIGRATIONS = {4: _add_run_kind}


def user_tables(db: sa.Connection) -> set[str]:
    return set(sa.inspect(db).get_table_names())


def _meta(db: sa.Connection, tables: set[str]) -> dict[str, str]:
    if "meta" not in tables:
        return {}
    return {k: v for k, v in db.execute(sa.select(meta.c.key, meta.c.value)).all()}


def version_of(db: sa.Connection, where: object) -> int | None:
    """The schema version of an existing database, None for an empty one; refuses foreign databases.

    The marker is `application=hilbench` in `meta`; databases of versions 1 and 2 migrated by an
    older hilbench may lack it and are recognised by their version and their `runs`/`results`."""
    tables = user_tables(db)
    if not tables:
        return None
    info = _meta(db, tables)
    app = info.get(MARKER[0])
    legacy = app is None and info.get("schema_version") in ("1", "2")
    if (app != MARKER[1] and not legacy) or "schema_version" not in info or not {"runs", "results"} <= tables:
        raise ConfigError(f"{where}: not a hilbench results database (no hilbench schema marker); pass another --db")
    try:
        return int(info["schema_version"])
    except ValueError:
        raise ConfigError(f"{where}: unreadable schema version {info['schema_version']!r}") from None


def check(db: sa.Connection, where: object, writable: bool) -> int | None:
    """The version found, after refusing what this hilbench must not open; None when the database
    still needs its tables created or migrated (only for writable opens)."""
    version = version_of(db, where)
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{where}: written by a newer hilbench (schema {version}, this one knows up to "
            f"{SCHEMA_VERSION}); upgrade hilbench"
        )
    if version == SCHEMA_VERSION:
        return version
    if not writable:
        if version is None:
            raise ConfigError(f"{where}: empty database, no runs recorded yet (run `hil run` first)")
        if version >= READABLE_FROM:
            return version
        raise ConfigError(
            f"{where}: schema {version} is older than {SCHEMA_VERSION}; run any writing command "
            "(e.g. `hil gate`) once to migrate it"
        )
    return None


def upgrade(db: sa.Connection, where: object) -> int:
    """Create or migrate the schema inside the caller's write transaction (which excludes other
    writers, so a database another process created or migrated meanwhile is seen as it is now)."""
    version = version_of(db, where)
    if version is not None and version >= SCHEMA_VERSION:
        return check(db, where, writable=True) or version
    for table in TABLES if version is None else [t for v in range(version, SCHEMA_VERSION) for t in MIGRATIONS[v]]:
        table.create(db, checkfirst=True)
        for index in table.indexes:  # a table an older hilbench made may lack the indexes made since
            index.create(db, checkfirst=True)
    for v in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
        if v in COLUMN_MIGRATIONS:
            COLUMN_MIGRATIONS[v](db)
    upsert(db, meta, [dict(zip(("key", "value"), MARKER)), {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
    return SCHEMA_VERSION
