"""A private, real PostgreSQL server on loopback for the store tests (Debian's `postgresql` package).

`initdb` into a fresh directory (trust authentication, no fsync: a test server, thrown away) and
`pg_ctl -w start` on 127.0.0.1 and a free port, its unix socket inside that directory; `-w` returns
when the server accepts connections (no sleeps). initdb and pg_ctl refuse to run as root, so as root
they run as the `postgres` user, with the directory owned by it. Every test gets its own database.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")


def bindir() -> Path | None:
    """The newest installed server's binaries."""
    found = [
        d / "bin" for d in PG_ROOT.glob("*") if (d / "bin" / "initdb").exists() and (d / "bin" / "pg_ctl").exists()
    ]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    if not found:
        return None
    if os.geteuid() == 0 and not (shutil.which("runuser") and _has_user("postgres")):
        return None
    return found[-1]


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin: Path
    dir: Path
    port: int
    _names: itertools.count = field(default_factory=itertools.count)

    def url(self, database: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def createdb(self) -> str:
        """A new, empty database; returns its URL (plain postgresql://, as a user types it)."""
        import pg8000.dbapi

        name = f"t{os.getpid()}_{next(self._names)}"
        conn = pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=self.port, database="postgres")
        try:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)


def _as_postgres(cmd: list[str]) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_postgres() -> PostgresServer:
    binaries = bindir()
    assert binaries is not None, "no PostgreSQL server binaries (apt-get install postgresql)"
    base = Path(tempfile.mkdtemp(prefix="hilbench-pg-"))  # /tmp: reachable by the postgres user
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    _as_postgres([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
    for attempt in range(3):  # a free port can be taken by someone else before the server binds it
        port = _free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
        try:
            _as_postgres(
                [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", opts, "-w", "start"]
            )
        except RuntimeError:
            if attempt == 2:
                raise
            continue
        return PostgresServer(bin=binaries, dir=base, port=port)
    raise AssertionError("unreachable")


def direct(target: str | Path):
    """A plain SQLAlchemy engine on a store (an SQLite path or a postgresql:// URL), bypassing
    ResultStore: what tests use to make a database look old, foreign or tampered with."""
    import sqlalchemy as sa

    if isinstance(target, Path):
        return sa.create_engine(f"sqlite:///{target}")
    return sa.create_engine(target.replace("postgresql://", "postgresql+pg8000://", 1))


def contents(target: str | Path) -> dict:
    """Every table and its rows (sorted): what a command could have changed, on either backend."""
    import sqlalchemy as sa

    engine = direct(target)
    try:
        with engine.connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn)
            return {
                name: sorted((tuple(r) for r in conn.execute(sa.select(t)).all()), key=repr)
                for name, t in meta.tables.items()
            }
    finally:
        engine.dispose()
