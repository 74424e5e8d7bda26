"""`hil db migrate`: move a results history into another store, e.g. a team's PostgreSQL database."""

from __future__ import annotations

from harness.commands import common


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
