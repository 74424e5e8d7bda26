"""Transports: how the host reaches a device. `backend_for` picks one from the inventory entry."""

from __future__ import annotations

from typing import Callable

from ..config import Device, DeviceProfile
from .base import Backend


def backend_for(device: Device, profile: DeviceProfile, log: Callable[[str], None]) -> Backend:
    kind = device.transport.type
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(device, profile, log)
    if kind == "ssh":
        from .ssh import SshBackend

        return SshBackend(device, profile, log)
    if kind == "serial":
        from .serial import SerialBackend

        return SerialBackend(device, profile, log)
    raise AssertionError(f"unhandled transport {kind}")
