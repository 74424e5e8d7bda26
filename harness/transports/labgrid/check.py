"""`hil devices check` for a board behind a labgrid place.

By default the place is looked at, not taken: the coordinator is asked for the place, the resources
its matches find and who holds it. Acquiring a shared place just to look at it would queue behind (or
block) the lab's other users, and a check that silently waited 10 minutes would be worse than one
that says "held by alice". What can be known without the board is still most of what breaks a
nightly: a coordinator that does not answer, a place renamed or deleted, an exporter that went
offline (its resources unavailable), a place without the link the profile needs, or without a power
port to recover a hung board. `--acquire` then holds the place (waiting like a run) and probes the
board through it as a directly wired serial or SSH device is probed.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, DeviceProfile, LabgridSettings
from harness.transports.check_result import CheckResult

# how the board is checked once the place is held (`harness.transports.check.check_device`, which
# dispatches labgrid devices here: passed in, so that neither module imports the other)
BoardCheck = Callable[[Device, DeviceProfile, Callable[[str], None]], CheckResult]


def check_place(
    dev: Device,
    prof: DeviceProfile,
    log: Callable[[str], None],
    acquire: bool = False,
    check_board: BoardCheck | None = None,
) -> CheckResult:
    """`check_board` probes the board behind a held place (with `acquire`)."""
    t = dev.transport
    assert isinstance(t, LabgridSettings)
    res = CheckResult(dev.id, "labgrid")
    try:
        from harness.transports.labgrid.session import coordinator, require_labgrid

        require_labgrid(dev.id)
        assert t.coordinator, "load_inventory fills the coordinator from LG_COORDINATOR"
        places = {p.name: p for p in coordinator(t.coordinator).places()}
    except (ConfigError, InfraError) as exc:
        res.reach = "no"
        res.problems.append(str(exc))
        return res
    place = places.get(t.place)
    if place is None:
        res.reach = "no place"
        known = ", ".join(sorted(places)) or "none"
        res.problems.append(f"labgrid coordinator {t.coordinator} has no place '{t.place}' (places: {known})")
        res.hints.append("`hil devices import --labgrid` lists the coordinator's places as inventory entries")
        return res
    res.reach = f"held by {place.acquired}" if place.acquired else "place free"
    _assess_resources(res, dev.id, prof, t, place.resources, place.matches)
    if res.problems or not acquire or check_board is None:
        if place.acquired and not res.problems:
            res.notes.append(f"place '{t.place}' is acquired by {place.acquired}: a run waits for it")
        return res
    return _probe_board(dev, prof, log, res, check_board)


def _assess_resources(
    res: CheckResult, device_id: str, prof: DeviceProfile, t: LabgridSettings, resources: list, matches: list[str]
) -> None:
    """The one link the profile needs (present, exported by a live exporter) and the power port, judged
    as a run judges them (`power.find_switch`)."""
    from harness.transports.labgrid.power import POWER_CLASSES, find_switch
    from harness.transports.labgrid.transport import link_classes

    want, kind = link_classes(prof.runtime)
    links = [r for r in resources if r.cls in want]
    exported = ", ".join(f"{r.name} ({r.cls})" for r in resources) or (
        f"nothing its matches {', '.join(matches)} find: is that exporter running?" if matches else "nothing"
    )
    if not links:
        res.problems.append(
            f"labgrid place '{t.place}' exports no {want[0]} (its {kind} profile '{prof.name}' needs one; "
            f"the place exports {exported})"
        )
    elif len(links) > 1:
        res.problems.append(f"labgrid place '{t.place}' exports several {want[0]} resources ({exported})")
    elif not links[0].avail:
        res.problems.append(
            f"labgrid place '{t.place}': its {links[0].cls} {links[0].name} is not available (exporter offline?)"
        )
    try:
        switch = find_switch(device_id, t.place, resources)
    except (ConfigError, InfraError) as exc:  # several power ports, or one whose exporter is offline
        res.problems.append(str(exc))
        return
    if switch is None:
        if t.power_cycle:
            res.notes.append(
                f"place '{t.place}' exports no power port ({', '.join(POWER_CLASSES)}): a hung board fails its job "
                "instead of being power-cycled"
            )
    else:
        res.notes.append(f"power: {switch.describe()}")


def _probe_board(
    dev: Device, prof: DeviceProfile, log: Callable[[str], None], res: CheckResult, check_board: BoardCheck
) -> CheckResult:
    """Hold the place and check the board as the serial or ssh device it is while held."""
    from harness.transports.labgrid.transport import place_link

    t = dev.transport
    try:
        with place_link(dev, prof, log) as linked:
            board = check_board(linked, prof, log)
    except (ConfigError, InfraError) as exc:
        res.problems.append(str(exc))
        return res
    board.transport = "labgrid"
    board.reach = f"{board.reach} via place" if board.reach not in ("-", "") else res.reach
    board.notes = [f"through labgrid place '{getattr(t, 'place', '')}'", *res.notes, *board.notes]
    return board
