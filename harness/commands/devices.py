"""`hil devices`: what the lab inventory contains."""

from __future__ import annotations

from ..report_md import markdown_table
from . import common


def register(sub) -> None:
    p = sub.add_parser("devices", help="list and check lab devices")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION")
    lp = dsub.add_parser("list", help="list devices and their profiles")
    lp.set_defaults(func=cmd_list)
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    inv = common.inventory(args)
    rows = []
    for d in inv.devices:
        prof = inv.profile_of(d)
        t = d.transport
        where = {"local": "this host", "ssh": f"{getattr(t, 'user', None) or ''}@{getattr(t, 'host', '')}:{getattr(t, 'port', '')}",
                 "serial": getattr(t, "port", "")}.get(t.type, "")
        rows.append([d.id, d.profile, prof.runtime, t.type, where, ",".join(d.tags), "yes" if d.enabled else "no"])
    print(markdown_table(["device", "profile", "runtime", "transport", "address", "tags", "enabled"], rows))
    return 0
