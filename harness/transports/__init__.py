"""Transports: how the host reaches a device. `transport_for` picks one from the inventory entry."""

from __future__ import annotations

from collections.abc import Callable

from harness.lab.config import Device, DeviceProfile
from harness.transports.base import Transport


def transport_for(device: Device, profile: DeviceProfile, log: Callable[[str], None]) -> Transport:
    kind = device.transport.type
    if kind == "local":
        from harness.transports.local import LocalTransport

        return LocalTransport(device, profile, log)
    if kind == "ssh":
        from harness.transports.ssh.transport import SshTransport

        return SshTransport(device, profile, log)
    if kind == "serial":
        from harness.transports.serial import SerialTransport

        return SerialTransport(device, profile, log)
    if kind == "labgrid":  # imports labgrid only here: it is an optional extra
        from harness.transports.labgrid.transport import LabgridTransport

        return LabgridTransport(device, profile, log)
    raise AssertionError(f"unhandled transport {kind}")
