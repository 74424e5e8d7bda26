"""Connections to a results database, and the dialect-specific parts of starting a transaction.

SQLite: read-only stores open the file with `mode=ro` (SQLite itself refuses writes); write
transactions start with BEGIN IMMEDIATE, so a job claim or a migration reads and writes under the
database's write lock. PostgreSQL: read-only stores make every transaction READ ONLY; write
transactions first take one transaction-level advisory lock, the equivalent of BEGIN IMMEDIATE, so
that concurrent controllers see each other's claims and never migrate at the same time (READ
COMMITTED alone would let two sessions both find a job unclaimed).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy as sa

from harness.errors import ConfigError, HilError, InfraError
from harness.store.location import Location, mask

WRITE = "hilbench_write"  # execution option of a connection that will write
_PG_WRITE_LOCK = 0x68696C62  # "hilb": the advisory lock every writing transaction holds


def open_engine(loc: Location, read_only: bool) -> sa.Engine:
    engine = _sqlite(loc, read_only) if loc.is_sqlite else _postgresql(loc, read_only)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = bool(conn.get_execution_options().get(WRITE))
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        elif write:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))

    return engine


def _sqlite(loc: Location, read_only: bool) -> sa.Engine:
    assert loc.path is not None
    target = loc.path.resolve().as_uri() + "?mode=ro" if read_only else str(loc.path)

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the driver begins nothing itself, the "begin" listener does
        return sqlite3.connect(target, uri=read_only, timeout=30, check_same_thread=False, isolation_level=None)

    engine = sa.create_engine(f"sqlite:///{loc.path}", creator=connect)
    if not read_only:

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: Any) -> None:
            dbapi.execute("PRAGMA synchronous=NORMAL")  # per connection; safe with WAL

    return engine


def _postgresql(loc: Location, read_only: bool) -> sa.Engine:
    assert loc.url is not None
    engine = sa.create_engine(loc.url, connect_args={"timeout": 60}, pool_pre_ping=True)
    # a result's measurement and sample rows as multi-row INSERTs (SQLAlchemy's "insertmanyvalues"),
    # as the psycopg2 dialect does: pg8000's executemany sends one statement, one round trip, per row
    # (~40 per result), all inside the write transaction every other lane and controller waits for
    engine.dialect.use_insertmanyvalues_wo_returning = True
    if read_only:

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi: Any, _record: Any) -> None:
            cur = dbapi.cursor()
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()
            dbapi.commit()

    return engine


def enable_wal(engine: sa.Engine) -> None:
    """WAL (readers never block the writer) once the file is known to be ours; outside a transaction."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()
    finally:
        raw.close()


def _pg_reason(orig: BaseException | None) -> tuple[str | None, str]:
    """(SQLSTATE, message) of a pg8000 error."""
    arg = orig.args[0] if orig is not None and orig.args else orig
    if isinstance(arg, dict):
        return arg.get("C"), str(arg.get("M", arg))
    return None, str(arg)


def failure(loc: Location, exc: sa.exc.DBAPIError, opening: bool) -> HilError:
    """One line for a database error, the URL's password masked: a server that cannot be reached is
    the lab's failure (exit 2), a refused login or a missing database the user's (exit 3)."""
    if loc.is_sqlite:
        return ConfigError(f"{loc}: not a usable hilbench results database ({exc.orig})")
    code, msg = _pg_reason(exc.orig)
    msg = mask(" ".join(msg.split()))
    if code is None and isinstance(exc, sa.exc.InterfaceError):
        return InfraError(f"{loc}: cannot reach the PostgreSQL server ({msg})")
    if code in ("28000", "28P01"):
        return ConfigError(f"{loc}: PostgreSQL refused the login ({msg})")
    if code == "3D000":
        return ConfigError(f"{loc}: no such PostgreSQL database ({msg}); create it first (createdb)")
    if opening:
        return ConfigError(f"{loc}: not a usable hilbench results database ({msg})")
    return InfraError(f"{loc}: PostgreSQL error ({msg})")
