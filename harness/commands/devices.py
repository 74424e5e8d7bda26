"""`hil devices`: what the lab inventory contains, whether each device is ready, and SSH host key trust."""

from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager

from harness.commands import common
from harness.errors import EXIT_INFRA, ConfigError, InfraError
from harness.report.run_markdown import markdown_table


def register(sub) -> None:
    p = sub.add_parser("devices", help="list and check lab devices")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION")
    lp = dsub.add_parser("list", help="list devices and their profiles")
    lp.set_defaults(func=cmd_list)
    cp = dsub.add_parser(
        "check",
        help="probe devices: reachability, host key, python, TFLite runtime, "
        "numpy, disk, RAM, governor, temperature, throttling",
    )
    cp.add_argument("devices", nargs="*", metavar="DEVICE", help="device ids (default: all enabled devices)")
    cp.add_argument(
        "--acquire",
        action="store_true",
        help="labgrid devices: hold the place (waiting like a run) and probe the board through it; "
        "default: ask the coordinator about the place only",
    )
    cp.set_defaults(func=cmd_check)
    tp = dsub.add_parser(
        "trust",
        help="fetch an SSH device's host key, show its fingerprint and add it to "
        "known_hosts (the inventory's known_hosts file, else ~/.ssh/known_hosts)",
    )
    tp.add_argument("device", metavar="DEVICE", help="id of an ssh device (or of a labgrid device reached over ssh)")
    tp.add_argument(
        "--expect",
        metavar="SHA256:...",
        help="only trust the key if it has this fingerprint (from `ssh-keygen -lf` on the device)",
    )
    tp.set_defaults(func=cmd_trust)
    from harness.commands.devices_import import register as register_import

    register_import(dsub)
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    inv = common.inventory(args)
    rows = []
    for d in inv.devices:
        prof = inv.profile_of(d)
        t = d.transport
        ssh_where = f"{getattr(t, 'user', None) or ''}@{getattr(t, 'host', '')}:{getattr(t, 'port', '')}"
        lg_where = f"place {getattr(t, 'place', '')} @ {getattr(t, 'coordinator', '')}"
        where = {"local": "this host", "ssh": ssh_where, "serial": getattr(t, "port", ""), "labgrid": lg_where}.get(
            t.type, ""
        )
        rows.append([d.id, d.profile, prof.runtime, t.type, where, ",".join(d.tags), "yes" if d.enabled else "no"])
    print(markdown_table(["device", "profile", "runtime", "transport", "address", "tags", "enabled"], rows))
    return 0


_HARDWARE_LOCKS: dict[str, threading.Lock] = {}
_HARDWARE_LOCKS_GUARD = threading.Lock()


@contextmanager
def _device_lock(device):
    """A check opens the board's port and runs a probe: never while another hilbench process measures
    the device (it would disturb or break that measurement); busy = skipped, naming the holder.
    Devices of this same check that share hardware (two `local` devices) are checked one after the
    other: the device lock, held by this process for one of them, would otherwise skip the other."""
    from harness.run.device_lock import DeviceLock, lock_names

    with ExitStack() as stack:
        for name in sorted(lock_names(device)):  # sorted: two threads never wait for each other in a cycle
            with _HARDWARE_LOCKS_GUARD:
                local = _HARDWARE_LOCKS.setdefault(name, threading.Lock())
            stack.enter_context(local)
        lock = DeviceLock(device, command="hil devices check")
        lock.acquire(wait=False)
        try:
            yield
        finally:
            lock.release()


def cmd_check(args) -> int:
    from harness.transports.check import check_all
    from harness.transports.check_result import HEADERS

    inv = common.inventory(args)
    devices = [inv.device(i) for i in args.devices] if args.devices else [d for d in inv.devices if d.enabled]
    if not devices:
        raise ConfigError(f"{inv.path}: no enabled devices")
    pairs = [(d, inv.profile_of(d)) for d in devices]
    results = check_all(pairs, common.log, guard=_device_lock, acquire_places=args.acquire)
    print(markdown_table(HEADERS, [r.row() for r in results]))
    print()
    for r in results:
        line = f"{r.device}: {r.verdict}"
        if r.problems:
            line += ": " + "; ".join(r.problems)
        if r.skipped:
            line += f" ({r.skipped})"
        print(line)
        for h in r.hints:
            print(f"  hint: {h}")
        for n in r.notes:
            print(f"  note: {n}")
    return EXIT_INFRA if any(r.verdict == "FAIL" for r in results) else 0


def cmd_trust(args) -> int:
    from harness.lab.config import link_type

    inv = common.inventory(args)
    dev = inv.device(args.device)
    t = dev.transport
    if t.type == "labgrid" and link_type(dev, inv.profile_of(dev)) == "ssh":
        return _trust_at_place(dev, inv.profile_of(dev), args.expect)
    if t.type != "ssh":
        raise ConfigError(
            f"{inv.path}: device '{dev.id}' uses the {t.type} transport; only ssh devices (and labgrid "
            "places exporting a NetworkService) have host keys to trust"
        )
    return _trust(dev, args.expect)


def _trust_at_place(dev, profile, expect: str | None) -> int:
    """A board behind a labgrid place has an address only while its place is held: hold it (and the
    device's own lock, so no run of this controller is disturbed) just for the key exchange."""
    from harness.run.device_lock import DeviceLock
    from harness.transports.labgrid.transport import place_link

    with DeviceLock(dev, command="hil devices trust"), place_link(dev, profile, common.log) as linked:
        return _trust(linked, expect)


def _trust(dev, expect: str | None) -> int:
    from harness.transports.ssh import hostkeys
    from harness.transports.ssh.connect import SshAuthError, connect

    t = dev.transport
    if expect and not expect.startswith("SHA256:"):
        expect = "SHA256:" + expect
    path = hostkeys.write_file(t.known_hosts)
    try:
        conn = connect(dev, common.log, trust=True, expect=expect)
    except SshAuthError as exc:
        print(f"{dev.id}: host key of {t.host}:{t.port} is trusted (see above), but login failed: {exc}")
        return EXIT_INFRA
    try:
        key = conn.server_key()
        fp = hostkeys.fingerprint(key)
        if expect and fp != expect:  # already known, but not the key the user expected
            raise InfraError(
                f"device '{dev.id}': {t.host}:{t.port} presented {key.get_name()} {fp}, not the expected {expect}"
            )
        if conn.trusted_now:
            print(f"{dev.id}: trusted {hostkeys.entry_name(t.host, t.port)} {key.get_name()} {fp} (added to {path})")
        else:
            print(f"{dev.id}: {hostkeys.entry_name(t.host, t.port)} {key.get_name()} {fp} is already trusted")
    finally:
        conn.close()
    return 0
