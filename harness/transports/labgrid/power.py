"""Power-cycling a hung board through the power switch its labgrid place exports, then trying once more.

A board that stops answering (a firmware hang, a wedged UART, a frozen kernel) comes back when its
supply is cut, and a lab exports the switch in front of each board with it, so that whoever holds the
place can do that without walking to the rack. hilbench does it once per job and says so in the result: a measurement
that needed a power cycle is still a measurement, but the nightly's reader should see that the board
hung. A board that hangs again after the cycle is broken, not unlucky: the job fails, naming the
device and the place.

The switch is driven by labgrid's own driver for the resource the exporter publishes, built from its
parameters: `NetworkPowerDriver` on a `NetworkPowerPort`, so every switch model labgrid knows works
(rest, simplerest, netio, gude...), and `PDUDaemonDriver` on a `PDUDaemonPort`, for labs that put
their PDUs behind pdudaemon (LAVA labs do). Both are driven by the client over the network; power
resources that need a driver on the exporter host (USBPowerPort, SysfsGPIO, ...) are not supported.
The drivers make their requests without a timeout, so each switching call runs in a worker thread
that hilbench stops waiting for after SWITCH_TIMEOUT.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, LabgridSettings
from harness.mcu.serial.protocol import DeviceSilent
from harness.transports.ssh.connect import SshUnreachable

if TYPE_CHECKING:
    from harness.transports.labgrid.session import Resource

T = TypeVar("T")
POWER_CLASSES = ("NetworkPowerPort", "PDUDaemonPort")
SWITCH_TIMEOUT = 30.0  # one switching request; a network switch answers in well under a second
BOOT_POLL_SECONDS = 1.0  # between SSH connection attempts while a Linux board boots
# A hung board: an MCU that answers no command and no resync (DeviceSilent); a Linux board that takes
# no SSH connection, or drops it and takes none again within the transport's retries (SshUnreachable).
# A runner that hangs on a board that still answers is not the board's fault: no power cycle for it.
HUNG = (DeviceSilent, SshUnreachable)


def redact(host: str) -> str:
    """A switch address fit for logs and result documents: a URL's `user:password@` is left out."""
    parts = urlsplit(host)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return host


@dataclass(frozen=True)
class PowerSwitch:
    """The power port of one place, as its exporter publishes it."""

    resource: Resource

    def describe(self) -> str:
        p = self.resource.params
        host = redact(str(p.get("host", "?")))
        if self.resource.cls == "PDUDaemonPort":
            what = f"pdudaemon {host} pdu {p.get('pdu', '?')} index {p.get('index', '?')}"
        else:
            what = f"{p.get('model', '?')} {host} index {p.get('index', '?')}"
        return f"{self.resource.cls} '{self.resource.name}' ({what})"

    def cycle(self, off_seconds: float) -> None:
        """Off, `off_seconds` without power (a board's capacitors have to drain for a cold boot), on.
        Off and on rather than pdudaemon's `reboot`: the off time is the transport's, whatever the
        switch's own default delay is."""
        from labgrid import Target

        target = Target(f"hilbench-power-{self.resource.name}")
        try:
            driver = self._driver(target)
            _bounded("activate", lambda: target.activate(driver))
            _bounded("switch off", driver.off)
            time.sleep(off_seconds)  # the switch's off time (transport.power_off_seconds), not a wait for an event
            _bounded("switch on", driver.on)
        finally:
            target.cleanup()

    def _driver(self, target):
        """labgrid's resource for this port on a private target (only what the driver reads: the
        exporter's `extra` proxy settings stay out) and its driver bound to it."""
        from labgrid.driver import NetworkPowerDriver, PDUDaemonDriver
        from labgrid.resource import NetworkPowerPort, PDUDaemonPort

        p = self.resource.params
        if self.resource.cls == "PDUDaemonPort":
            PDUDaemonPort(target, name=None, host=str(p["host"]), pdu=str(p["pdu"]), index=int(p["index"]))
            return PDUDaemonDriver(target, name=None)
        NetworkPowerPort(target, name=None, model=str(p["model"]), host=str(p["host"]), index=str(p["index"]))
        return NetworkPowerDriver(target, name=None)


def _bounded(what: str, call: Callable[[], Any]) -> None:
    """Run one switching call, giving up after SWITCH_TIMEOUT (the thread is a daemon: a switch that
    never answers cannot keep the process alive)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="labgrid-power", daemon=True)
    worker.start()
    worker.join(SWITCH_TIMEOUT)
    if worker.is_alive():
        raise InfraError(f"no answer within {SWITCH_TIMEOUT:g} s to {what}")
    if failure:
        exc = failure[0]
        text = str(exc).strip().splitlines()
        raise InfraError(f"{what} failed ({type(exc).__name__}{': ' + text[0] if text else ''})")


class HeldPlace(Protocol):
    """What recovering a hung board needs from the transport holding its place (the labgrid transport
    implements it). A protocol rather than that class, so that this module does not import the
    transport that imports it."""

    device: Device
    power_cycles: list[dict]

    @property
    def settings(self) -> LabgridSettings: ...

    def coordinator(self) -> Any: ...

    def say(self, msg: str) -> None: ...

    def drop_link(self) -> None: ...


def find_switch(device_id: str, place: str, resources: list[Resource]) -> PowerSwitch | None:
    """The place's one power port; None when it exports none (the hang then fails the job as before)."""
    ports = [r for r in resources if r.cls in POWER_CLASSES]
    if len(ports) > 1:
        names = ", ".join(f"{r.name} ({r.cls})" for r in ports)
        raise ConfigError(
            f"device '{device_id}': labgrid place '{place}' exports several power ports ({names}); "
            f"hilbench power-cycles through exactly one"
        )
    if not ports:
        return None
    if not ports[0].avail:
        raise InfraError(
            f"device '{device_id}': labgrid place '{place}': its power port {ports[0].name} is not "
            f"available (exporter offline?)"
        )
    return PowerSwitch(ports[0])


def on_hang(lt: HeldPlace, stage: str, attempt: Callable[[], T], again: Callable[[], T]) -> T:
    """`attempt()`; if the board hangs, power-cycle it and return `again()` (which reconnects first).

    A job gets one power cycle: one already spent on reaching the board for it (`lt.power_cycles`
    not yet handed to a result) means a second hang is final."""
    try:
        return attempt()
    except HUNG as exc:
        first = exc
    t = lt.settings
    if lt.power_cycles:
        raise _hung_again(lt, lt.power_cycles[-1]["switch"], first) from None
    if not t.power_cycle:
        raise InfraError(f"{first} (transport.power_cycle is off)") from None
    lg = lt.coordinator()
    switch = find_switch(lt.device.id, t.place, lg.resources(t.place))
    if switch is None:
        raise InfraError(
            f"{first}; labgrid place '{t.place}' exports no power port ({', '.join(POWER_CLASSES)}) to power-cycle it"
        ) from None
    lt.say(f"the board hung ({first}); power-cycling it through {switch.describe()} and trying once more")
    lt.drop_link()
    try:
        switch.cycle(t.power_off_seconds)
    except InfraError as exc:
        raise InfraError(
            f"device '{lt.device.id}': hung, and power-cycling it through {switch.describe()} of labgrid "
            f"place '{t.place}' failed: {exc}"
        ) from None
    described = switch.describe()
    record = {
        "switch": described,
        "stage": stage,
        "reason": str(first),
        "off_seconds": t.power_off_seconds,
        "at": time.time(),
    }
    lt.power_cycles.append(record)
    try:
        return _after_boot(lt, again)
    except HUNG as exc:
        raise _hung_again(lt, described, exc) from None


def _after_boot(lt: HeldPlace, again: Callable[[], T]) -> T:
    """`again()` once the board has booted. The serial host waits for an MCU's boot itself
    (serial.boot_timeout); a Linux board's sshd is up only some seconds to minutes after power-on, so
    a refused or unanswered connection is tried again until transport.boot_timeout."""
    deadline = time.monotonic() + lt.settings.boot_timeout
    while True:
        try:
            return again()
        except SshUnreachable as exc:
            if time.monotonic() >= deadline:
                raise SshUnreachable(f"{exc} (not up {lt.settings.boot_timeout:g} s after power-on)") from None
            lt.drop_link()
            time.sleep(BOOT_POLL_SECONDS)  # polling a booting board's sshd; nothing to wait on instead


def _hung_again(lt: HeldPlace, switch: str, exc: BaseException) -> InfraError:
    t = lt.settings
    why = str(exc)
    prefix = f"device '{lt.device.id}'"
    if why.startswith(prefix):  # said once: "device 'X': ..." or "device 'X' (host:port): ..."
        why = why[len(prefix) :].removeprefix(": ").lstrip()
    return InfraError(
        f"device '{lt.device.id}' hung again after a power cycle through {switch} of labgrid place "
        f"'{t.place}' on {t.coordinator}: {why}"
    )
