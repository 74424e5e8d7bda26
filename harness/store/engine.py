"""Connections to a results database, and the dialect-specific parts of starting a transaction.

SQLite: read-only stores open the file with `mode=ro` (SQLite itself refuses writes), and where even
that cannot work (a WAL database in a folder this process cannot write, so SQLite cannot make its
`-shm` index) as `immutable`, which is exact as long as no `-wal` file holds writes; write
transactions start with BEGIN IMMEDIATE, so a job claim or a migration reads and writes under the
database's write lock. PostgreSQL: read-only stores make every transaction READ ONLY; write
transactions first take one transaction-level advisory lock, the equivalent of BEGIN IMMEDIATE, so
that concurrent controllers see each other's claims and never migrate at the same time (READ
COMMITTED alone would let two sessions both find a job unclaimed).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness.errors import ConfigError, HilError, StorageError
from harness.store.location import Location, mask

WRITE = "hilbench_write"  # execution option of a connection that will write
_PG_WRITE_LOCK = 0x68696C62  # "hilb": the advisory lock every writing transaction holds
_log = logging.getLogger(__name__)


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
    path = loc.path

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the driver begins nothing itself, the "begin" listener does
        if read_only:
            return _read_only_connection(path)
        return sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)

    engine = sa.create_engine(f"sqlite:///{path}", creator=connect)
    if not read_only:

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: Any) -> None:
            dbapi.execute("PRAGMA synchronous=NORMAL")  # per connection; safe with WAL

    return engine


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """`mode=ro`, else `immutable` where a WAL database cannot be opened read-only because SQLite may
    not create its `-shm` file next to it (a folder this user cannot write; a read-only mount without
    the file). `immutable` reads the main file only: with writes still in a `-wal` file it would show
    an old state, so then the store is refused with a line saying how to get at them."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL index, if any
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StorageError(
                f"{path}: cannot be read here: its latest writes are in {wal.name}, which SQLite cannot "
                f"open read-only in {path.parent} ({exc}); open it once with write access (any `hil` "
                "command), or copy the database with its -wal file to a writable folder"
            ) from None
        _log.debug("%s: opened as immutable (%s)", path, exc)
        return sqlite3.connect(
            f"{uri}?mode=ro&immutable=1", uri=True, timeout=30, check_same_thread=False, isolation_level=None
        )


def probe_write(engine: sa.Engine, table: sa.Table, column: sa.Column) -> None:
    """Whether SQLite will let this process write, asked before any work: SQLite opens a write-protected
    file read-only without a word and refuses only the first write, which in `hil run` would come after
    the conversions. An UPDATE of no row, rolled back, writes nothing but is refused all the same."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        tx = conn.begin()
        try:
            conn.execute(sa.update(table).where(sa.false()).values({column: column}))
        finally:
            tx.rollback()


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
    """One line for a database error, the URL's password masked: a store that cannot be reached, read
    or written (a full disk, a write-protected file, a server gone) is the lab's failure (exit 2,
    StorageError: `hil run` spools what it cannot store), a refused login, a missing database or a
    file that is not a database the user's (exit 3)."""
    if loc.is_sqlite:
        return _sqlite_failure(loc, exc)
    code, msg = _pg_reason(exc.orig)
    msg = mask(" ".join(msg.split()))
    if code is None and isinstance(exc, sa.exc.InterfaceError):
        return StorageError(f"{loc}: cannot reach the PostgreSQL server ({msg})")
    if code in ("28000", "28P01"):
        return ConfigError(f"{loc}: PostgreSQL refused the login ({msg})")
    if code == "3D000":
        return ConfigError(f"{loc}: no such PostgreSQL database ({msg}); create it first (createdb)")
    if code == "53100":
        return StorageError(f"{loc}: the PostgreSQL server's disk is full ({msg})")
    if code == "25006":
        return StorageError(f"{loc}: the PostgreSQL database is read-only ({msg}); use a writable server")
    if opening:
        return ConfigError(f"{loc}: not a usable hilbench results database ({msg})")
    return StorageError(f"{loc}: PostgreSQL error ({msg})")


def _sqlite_failure(loc: Location, exc: sa.exc.DBAPIError) -> HilError:
    """SQLite's result code says which fault it is (Python keeps it on the exception)."""
    assert loc.path is not None
    orig = exc.orig
    ext = getattr(orig, "sqlite_errorcode", None)
    name = getattr(orig, "sqlite_errorname", "")
    code = ext & 0xFF if isinstance(ext, int) else None
    if name == "SQLITE_READONLY_DIRECTORY":
        return StorageError(
            f"{loc}: cannot write in {loc.path.parent or '.'} ({orig}): SQLite keeps the database's "
            "-wal and -shm files beside it; make the folder writable or pass another --db"
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return StorageError(
            f"{loc}: the results database is write-protected ({orig}); make it writable "
            f"(chmod u+w {loc}) or pass another --db"
        )
    if code == sqlite3.SQLITE_FULL:
        return StorageError(f"{loc}: the disk holding the results database is full ({orig}); free space on it")
    if code == sqlite3.SQLITE_IOERR:
        return StorageError(f"{loc}: disk I/O error on the results database ({name or orig}); check the disk")
    if code == sqlite3.SQLITE_CANTOPEN:
        return StorageError(f"{loc}: cannot open the results database ({orig}); check the file and its folder")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(f"{loc}: the results database stayed locked by another process for 30 s ({orig})")
    return ConfigError(f"{loc}: not a usable hilbench results database ({orig})")
