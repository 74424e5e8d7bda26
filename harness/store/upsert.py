"""Insert-or-update, the one statement SQLite and PostgreSQL spell differently in SQLAlchemy Core.

Both dialects have `INSERT ... ON CONFLICT DO UPDATE`, but SQLAlchemy builds it from each dialect's
own `insert` construct; everything else in the store is dialect-neutral Core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def upsert(
    db: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    keep: Callable[[Any, sa.Table], dict[str, Any]] | None = None,
) -> None:
    """Insert `rows`, replacing the other columns of rows whose primary key exists already.

    `keep(excluded, table)` may override the SET clause of some columns (e.g. keep a known value).
    Rows are de-duplicated on their key first, the last one winning as with INSERT OR REPLACE:
    PostgreSQL refuses one statement that updates the same row twice."""
    if not rows:
        return
    key = [c.name for c in table.primary_key.columns]
    unique = list({tuple(r[k] for k in key): r for r in rows}.values())
    dialect = db.dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - engine.py accepts only these two
        raise NotImplementedError(dialect)
    cols = [c for c in unique[0] if c not in key]
    set_ = {c: stmt.excluded[c] for c in cols}
    if keep is not None:
        set_.update(keep(stmt.excluded, table))
    if set_:
        stmt = stmt.on_conflict_do_update(index_elements=key, set_=set_)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    db.execute(stmt, unique)
