"""`hil db migrate`: a whole history from one store into another (an SQLite file into PostgreSQL).

Every table both stores know is copied row by row with its ids, in batches (memory does not grow with
the history), in one write transaction on the target: a failure leaves the target as it was. Only an
empty target is accepted, so running it twice cannot double a history; result ids stay what they were,
so verdicts, pins and lineage keep pointing at the right results.
"""

from __future__ import annotations

import sqlalchemy as sa

from harness.errors import ConfigError
from harness.store import schema
from harness.store.results import ResultStore

BATCH = 5000


def copy_history(src: ResultStore, dst: ResultStore) -> dict[str, int]:
    """Rows copied per table. `src` may be read-only; `dst` must be writable and hold no data."""
    with dst._tx() as out:
        held = {t.name: out.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in _data_tables()}
        if any(held.values()):
            counts = ", ".join(f"{n} {name}" for name, n in held.items() if n)
            raise ConfigError(f"{dst.path}: not empty ({counts}); migrate into a new, empty database")
        copied: dict[str, int] = {}
        with src._lock, src._engine.connect() as inp:
            present = schema.user_tables(inp)
            for table in _data_tables():
                if table.name not in present:
                    copied[table.name] = 0  # an older schema without this table (read-only source)
                    continue
                known = {col["name"] for col in sa.inspect(inp).get_columns(table.name)}
                cols: list[sa.ColumnElement] = [c for c in table.c if c.name in known]
                if table is schema.runs and "kind" not in known:  # schema < 5: the kind its label tells
                    cols.append(schema.inferred_kind().label("kind"))
                rows = inp.execution_options(yield_per=BATCH).execute(sa.select(*cols))
                names = [c.name for c in cols]
                n = 0
                for part in rows.partitions(BATCH):
                    out.execute(sa.insert(table), [dict(zip(names, r)) for r in part])
                    n += len(part)
                copied[table.name] = n
        if out.dialect.name == "postgresql":  # ids were copied: the next result_id follows the largest
            rid = schema.results.c.result_id
            following = sa.select(sa.func.coalesce(sa.func.max(rid), 0) + 1).scalar_subquery()
            sequence = sa.func.pg_get_serial_sequence("results", "result_id")
            out.execute(sa.select(sa.func.setval(sequence, following, False)))
    return copied


def _data_tables() -> list[sa.Table]:
    return [t for t in schema.TABLES if t is not schema.meta]
