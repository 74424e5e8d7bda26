"""Where a results database lives: an SQLite file path or a PostgreSQL URL (`--db`, `HILBENCH_DB`).

Everything shown to the user about a PostgreSQL store goes through `display`, which never contains
the password of the URL (error messages end up in CI logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from harness.errors import ConfigError

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+pg8000")
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def mask(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***`."""
    return _PASSWORD.sub(r"\1***@", text)


@dataclass(frozen=True)
class Location:
    """A parsed `--db`: `path` for SQLite, `url` (SQLAlchemy, pg8000 driver) for PostgreSQL."""

    display: str
    path: Path | None = None
    url: sa.URL | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return self.display

    @property
    def key(self) -> str:
        """The same database whatever the spelling (`reports/x.sqlite`, `./reports/x.sqlite`): what a
        spooled result names as the store it belongs to."""
        return str(self.path.resolve()) if self.path is not None else self.display


def locate(value: str | Path) -> Location:
    """Parse a `--db` value. A path (or `sqlite:///path`) is an SQLite file; `postgresql://...` a
    PostgreSQL database, reached with pg8000 (see docs/ARCHITECTURE.md for why that driver)."""
    if isinstance(value, Path):
        return Location(display=str(value), path=value)
    scheme, sep, rest = value.partition("://")
    if not sep:
        return Location(display=value, path=Path(value))
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"{mask(value)}: an SQLite URL needs a file (sqlite:///relative or sqlite:////absolute)")
        return Location(display=rest[1:], path=Path(rest[1:]))
    if scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"{mask(value)}: unsupported database URL (use a file path or postgresql://user@host:port/dbname)"
        )
    try:
        url = sa.make_url(value).set(drivername="postgresql+pg8000")
        url.port  # noqa: B018 - a non-numeric port raises here, not at connect time
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigError(f"{mask(value)}: not a valid PostgreSQL URL ({mask(str(exc))})") from None
    if not url.database:
        raise ConfigError(f"{mask(value)}: the PostgreSQL URL names no database (postgresql://user@host:port/dbname)")
    shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return Location(display=shown, url=url)
