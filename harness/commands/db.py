"""`hil db migrate`: move a results history into another store, e.g. a team's PostgreSQL database.
`hil db recover`: store the results a `hil run` had to spool because the database could not take them."""

from __future__ import annotations

from harness.commands import common
from harness.errors import EXIT_INFRA, EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("db", help="manage results databases")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    m = dsub.add_parser(
        "migrate",
        help="copy a whole results history into an empty database",
        description="Copy every run, result, measurement, sample, verdict, baseline pin, job claim and "
        "lineage node from --from (default: --db) into --to, keeping ids, in one transaction. The target "
        "must be empty (it is created with hilbench's schema); the source is only read.",
    )
    m.add_argument("--from", dest="source", default=None, help="the store to copy (file or URL; default: --db)")
    m.add_argument("--to", dest="target", required=True, help="the empty target, e.g. postgresql://user@host/db")
    m.set_defaults(func=cmd_migrate)
    r = dsub.add_parser(
        "recover",
        help="store the results kept in the spool because the database could not be written",
        description="When `hil run` cannot write a result to the database (a full disk, a write-protected "
        "file, a lost PostgreSQL server) it keeps it in $HILBENCH_CACHE/spool/ (--cache). Every command "
        "that opens the database for writing stores them first; this does only that, and says what is "
        "left. Exit 0 when nothing of this database is left in the spool, 2 when the database still "
        "cannot take them.",
    )
    r.set_defaults(func=cmd_recover)


def cmd_migrate(args) -> int:
    from harness.store.copy import copy_history
    from harness.store.results import ResultStore

    src = ResultStore(args.source or args.db, create=False, read_only=True)
    try:
        dst = ResultStore(args.target)
        try:
            copied = copy_history(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    common.log(f"copied {src.path} into {dst.path}")
    for table, n in copied.items():
        print(f"{table}\t{n}")
    return 0


def cmd_recover(args) -> int:
    from harness.store.spool import Spool, spool_dir

    store = common.store(args, replay=False)
    try:
        spool = Spool(spool_dir(common.cache_root(args)), store.location)
        done = spool.replay(store)
    finally:
        store.close()
    common.log(
        f"recovered {done.stored} spooled result(s) from {spool.directory} into {store.path}"
        + (f" ({done.finished} run end(s))" if done.finished else "")
    )
    for problem in done.problems:
        common.log(f"not stored: {problem}")
    for db, n in sorted(done.other_databases.items()):
        common.log(f"{n} spooled file(s) belong to another database: {db} (hil --db {db} db recover)")
    if done.left:
        common.log(f"{done.left} spooled file(s) of {store.path} left in {spool.directory}")
        return EXIT_INFRA
    return EXIT_OK
