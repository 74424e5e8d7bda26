"""`hil publish -o SITE/`: a static results site from the results store (harness/report/site)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.commands import common
from harness.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "publish",
        help="write a static results site (trends, verdicts, devices, sweeps) from the results store",
        description="Write a static HTML site that works from file:// and any static host, with no "
        "network access when viewed. Re-publishing rewrites only the pages whose data changed.",
    )
    p.add_argument("-o", "--output", required=True, help="site directory (created if missing)")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args) -> int:
    from harness.commands.gate import profiles_dir
    from harness.gate.evaluate import load_gate_profiles
    from harness.report.site.writer import publish

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a directory; give a directory for the site")
    warnings: list[str] = []
    profiles = load_gate_profiles(profiles_dir(args), warnings)
    for w in warnings:
        common.log(f"warning: {w} (budget lines left out)")
    store = common.store(args, create=False, read_only=True)
    # what this publish read, for the next publish of the same store into the same site (outside the site)
    where = store.location.path.resolve() if store.location.path is not None else store.location.display
    ident = hashlib.sha256(f"{where}\0{out.resolve()}".encode()).hexdigest()[:20]
    snapshot = common.cache_root(args) / "publish" / f"{ident}.pickle"
    try:
        try:
            stats = publish(store, out, profiles, snapshot=snapshot)
        except PermissionError as exc:
            raise ConfigError(f"{exc.filename or out}: cannot write the site ({exc.strerror})") from None
    finally:
        store.close()
    common.log(
        f"site {out}: {stats.pages} pages, {len(stats.written)} file(s) written, {len(stats.removed)} removed, "
        f"{stats.seconds:.1f} s; open {out / 'index.html'}"
    )
    return 0
