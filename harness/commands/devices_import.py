"""`hil devices import --labgrid`: inventory entries for a coordinator's places (harness/lab/labgrid_import.py).

Without -o the entries are printed (a `devices:` document to paste or redirect); with -o they are
appended to that inventory, or make a new one. Either way they are checked as `hil run` would load
them before anything is written, and what was left out, and why, is said on stderr."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.commands import common
from harness.errors import ConfigError
from harness.lab.config import LG_COORDINATOR_ENV, load_inventory, load_profiles


def register(dsub) -> None:
    ip = dsub.add_parser(
        "import",
        help="write inventory entries for the places of a labgrid coordinator",
        description="One device per labgrid place: id = place name, transport labgrid, profile from "
        "the place's tag hilbench-profile (device tags from hilbench-tags=a,b). Entries whose "
        "id or place the inventory already has are left alone and reported.",
    )
    ip.add_argument("--labgrid", action="store_true", help="import from a labgrid coordinator (the only source)")
    ip.add_argument("--coordinator", metavar="HOST:PORT", help=f"the coordinator (default: ${LG_COORDINATOR_ENV})")
    ip.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="TAG=VALUE",
        help="only places with this tag value (shell wildcards allowed; repeatable: all must match)",
    )
    ip.add_argument("--profile", metavar="NAME", help="profile for places without a hilbench-profile tag")
    ip.add_argument(
        "-o", "--output", metavar="INVENTORY", help="append the entries to this inventory file (default: print them)"
    )
    ip.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from harness.lab import labgrid_import as li

    if not args.labgrid:
        raise ConfigError("hil devices import: name the source: --labgrid (the only one so far)")
    coordinator = args.coordinator or os.environ.get(LG_COORDINATOR_ENV, "").strip()
    if not coordinator:
        raise ConfigError(
            f"hil devices import --labgrid: no coordinator: give --coordinator HOST:PORT or set {LG_COORDINATOR_ENV}"
        )
    matches = li.parse_matches(args.match)
    out = common.output_file(args.output, "inventory") if args.output else None
    target = out or Path(args.inventory)  # whose profiles the entries must name
    profiles_dir = _profiles_dir(args, target)
    profiles = {name: p.runtime for name, p in load_profiles(profiles_dir).items()}
    if args.profile and args.profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"--profile {args.profile}: unknown profile (known in {profiles_dir}: {known})")

    from harness.transports.labgrid.session import INSTALL_HINT
    from harness.transports.labgrid.session import coordinator as connect

    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"hil devices import --labgrid needs the labgrid client library ({exc}); install it with {INSTALL_HINT}"
        ) from None
    places = [li.PlaceView(p.name, p.tags, [r.cls for r in p.resources]) for p in connect(coordinator).places()]
    outcomes = li.entries(places, coordinator, profiles, matches, args.profile)
    text = target.read_text() if target.is_file() else None  # printing: leave out what --inventory has
    if text is not None:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{out}: not valid YAML ({str(exc).splitlines()[0]}); fix it before importing") from None
        env = os.environ.get(LG_COORDINATOR_ENV, "").strip() or None
        li.leave_existing(outcomes, data, target, env)
    new = [o.entry for o in outcomes if o.entry is not None]
    _report(outcomes, coordinator, matches)
    if out is None:
        if new:
            _check(Path(args.inventory), profiles_dir, "devices:\n" + li.render(new), "the printed entries")
            sys.stdout.write("devices:\n" + li.render(new))
        return 0
    if not new:
        common.log(f"{out}: nothing to add")
        return 0
    merged = li.append_to(text, new, out) if text is not None else "devices:\n" + li.render(new)
    _check(out, profiles_dir, merged, str(out))
    tmp = out.with_name(f".{out.name}.import-{os.getpid()}")
    common.write_output(tmp, "inventory", lambda p: p.write_text(merged))
    if text is not None:
        shutil.copymode(out, tmp)
    os.replace(tmp, out)  # whole or not at all: a half-written inventory stops every run
    common.log(f"{out}: added {len(new)} device(s): {', '.join(e['id'] for e in new)}")
    return 0


def _profiles_dir(args, target: Path) -> Path:
    if args.profiles:
        return Path(args.profiles)
    local = target.parent / "device_profiles"
    if local.is_dir():
        return local
    from harness.core.resources import shipped_profiles_dir

    return shipped_profiles_dir()


def _check(path: Path, profiles_dir: Path, text: str, what: str) -> None:
    """Load the result exactly as `hil run` would, before it is written anywhere."""
    import yaml

    try:
        load_inventory(path, profiles_dir, data=yaml.safe_load(text))
    except ConfigError as exc:
        raise ConfigError(f"hil devices import: {what} would not load, nothing written: {exc}") from None


def _report(outcomes, coordinator: str, matches: dict[str, str]) -> None:
    if not outcomes:
        which = " matching " + " ".join(f"{k}={v}" for k, v in matches.items()) if matches else ""
        common.log(f"labgrid coordinator {coordinator}: no places{which}")
    for o in outcomes:
        if o.entry is not None:
            common.log(f"place '{o.place}': device '{o.entry['id']}' (profile {o.entry['profile']})")
        else:
            common.log(f"place '{o.place}': skipped: {o.skipped}")
        for note in o.notes:
            common.log(f"place '{o.place}': note: {note}")
