"""A board behind a labgrid place: reserve and acquire the place, find the board through the resources it
exports, measure with the serial or SSH transport hilbench already has, and give the place back.

Which link is used follows from what the place exports: a `NetworkSerialPort` (ser2net RFC 2217 in
front of an MCU's UART) goes to the serial transport as `rfc2217://host:port?ign_set_control` (ser2net
cannot set modem lines on a pty, and the MLPerf Tiny protocol needs none), a `NetworkService` goes to
the SSH transport with the device's `ssh` settings, host keys verified exactly as for an `ssh` device.
The device's profile must agree (an MCU profile needs the serial port).

The place is held only between open() and close(); close() releases it whatever happened in between
(the orchestrator closes on errors and on Ctrl-C), and the session keeps an exit hook for the
interpreter going down some other way. A board that hangs is power-cycled through the place's power
port and tried once more (`power.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from harness.core.jobs import Job
from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, DeviceProfile, LabgridSettings, SerialSettings, SshSettings
from harness.transports.base import Transport, transport_settings
from harness.transports.labgrid import claims, power

POLL_SECONDS = 0.2
WAIT_NOTE_SECONDS = 30.0  # while waiting for the place, say so again this often
SERIAL_CLASSES = ("NetworkSerialPort",)
SSH_CLASSES = ("NetworkService",)


def link_classes(runtime: str) -> tuple[tuple[str, ...], str]:
    """The resource classes a place must export for a profile of this runtime, and the kind of board
    (`MCU` or `Linux`): the rule `harness.lab.config.link_type` applies to pick the serial or SSH link."""
    return (SERIAL_CLASSES, "MCU") if runtime == "tflm" else (SSH_CLASSES, "Linux")


class LabgridTransport(Transport):
    inner: Transport | None = None
    acquired = False
    acquired_at: float | None = None  # the coordinator's time of our acquisition (provenance)
    provenance: dict | None = None

    def __init__(self, device: Device, profile: DeviceProfile, log: Callable[[str], None]):
        super().__init__(device, profile, log)
        self.power_cycles: list[dict] = []  # done for the job being measured, not yet in its result
        from harness.transports.labgrid.session import require_labgrid

        require_labgrid(device.id)

    @property
    def settings(self) -> LabgridSettings:
        return transport_settings(self.device, LabgridSettings, "labgrid")

    def open(self) -> None:
        from harness.transports.labgrid.session import coordinator

        t = self.settings
        assert t.coordinator, "load_inventory fills the coordinator from LG_COORDINATOR"
        lg = coordinator(t.coordinator)
        try:
            self._acquire(lg, t)
            power.on_hang(self, "connecting", lambda: self._connect(lg, t), lambda: self._connect(lg, t))
        except BaseException:
            self.close()  # Ctrl-C or an error half-way: the place goes back to the lab all the same
            raise

    def _connect(self, lg, t: LabgridSettings) -> None:
        """Reach the board through the place's resource (again after a power cycle: a USB-UART powered
        by the board can come back as another port)."""
        inner_device, via = self._board(lg, t)
        self.inner = self._inner(inner_device)
        self.inner.cache_root = self.cache_root
        self.provenance = {
            "place": t.place,
            "coordinator": t.coordinator,
            "identity": lg.identity,
            "via": via,
            "acquired_at": self.acquired_at,
        }
        self.inner.open()

    # for harness.transports.labgrid.power
    def say(self, msg: str) -> None:
        self._say(msg)

    def coordinator(self):
        from harness.transports.labgrid.session import coordinator

        assert self.settings.coordinator
        return coordinator(self.settings.coordinator)

    def drop_link(self) -> None:
        """Close the link to the board, keeping the place."""
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.close()

    def _acquire(self, lg, t: LabgridSettings) -> None:
        """Reserve the place, wait in the coordinator's queue until it is allocated to us, acquire it,
        and leave the queue: holding the place is what keeps others out from then on, and a
        reservation left behind would keep the place from the next in line after we release it."""
        assert t.coordinator, "load_inventory fills the coordinator from LG_COORDINATOR"
        deadline = time.monotonic() + t.acquire_timeout
        said, said_blocker = 0.0, None
        token = lg.reserve(t.place, t.priority)
        try:
            while True:
                state, allocated = lg.reservation(token)
                if state in ("expired", "invalid"):  # the coordinator dropped it (a stall; the place was deleted)
                    lg.cancel(token)
                    token = lg.reserve(t.place, t.priority)
                elif state == "allocated" and t.place in allocated:
                    holder = lg.try_acquire(t.place)
                    if holder is None:
                        self.acquired = True
                        claims.write(t.coordinator, t.place, lg.identity)
                        self.acquired_at = lg.changed_at(t.place)
                        self._say(f"acquired labgrid place '{t.place}' on {t.coordinator} as {lg.identity}")
                        return
                blocker = lg.blocker(t.place, token)
                if blocker == f"acquired by {lg.identity}" and self._take_back(lg, t):
                    continue
                if blocker == f"acquired by {lg.identity}":
                    raise InfraError(
                        f"device '{self.device.id}': labgrid place '{t.place}' on {t.coordinator} is already "
                        f"acquired by this host and user ({lg.identity}), not by this hilbench process; if no "
                        f"one here uses it (a run killed hard), free it with `labgrid-client -p {t.place} release`"
                    )
                now = time.monotonic()
                if now >= deadline:
                    raise InfraError(
                        f"device '{self.device.id}': labgrid place '{t.place}' on {t.coordinator} is still "
                        f"{blocker or 'not allocated to us'} after waiting {t.acquire_timeout:g} s "
                        f"(transport.acquire_timeout)"
                    )
                if blocker and (now - said >= WAIT_NOTE_SECONDS or blocker != said_blocker):  # and when it changes
                    said, said_blocker = now, blocker
                    left = deadline - now
                    self._say(f"waiting for labgrid place '{t.place}': {blocker} (giving up in {left:.0f} s)")
                time.sleep(POLL_SECONDS)  # polling the coordinator; Ctrl-C interrupts it
        finally:
            lg.cancel(token)

    def _take_back(self, lg, t: LabgridSettings) -> bool:
        """Release a place that a hilbench of this controller left acquired when it died (claims.py)."""
        assert t.coordinator
        dead = claims.dead_claim(t.coordinator, t.place, lg.identity)
        if dead is None:
            return False
        lg.release(t.place)
        claims.remove(t.coordinator, t.place)
        self._say(
            f"released labgrid place '{t.place}', left acquired by hilbench pid {dead['pid']} of this "
            f"controller, which is gone (killed or crashed while holding it)"
        )
        return True

    def _board(self, lg, t: LabgridSettings) -> tuple[Device, str]:
        """The device as the serial or SSH transport sees it, once the place's resource has an address
        (an exporter starts ser2net, and so publishes the port, only after the place is acquired)."""
        want, kind = link_classes(self.profile.runtime)
        deadline = time.monotonic() + t.resource_timeout
        while True:
            resources = lg.resources(t.place)
            match = [r for r in resources if r.cls in want]
            ready = [r for r in match if _usable(r)]
            if len(match) > 1:
                names = ", ".join(f"{r.name} ({r.cls})" for r in match)
                raise ConfigError(
                    f"device '{self.device.id}': labgrid place '{t.place}' exports several {want[0]} "
                    f"resources ({names}); hilbench needs exactly one"
                )
            if ready:
                return self._device_for(ready[0], t)
            if time.monotonic() >= deadline:
                exported = ", ".join(f"{r.name} ({r.cls})" for r in resources) or "nothing"
                raise InfraError(
                    f"device '{self.device.id}': labgrid place '{t.place}' has no available {want[0]} "
                    f"after {t.resource_timeout:g} s (its {kind} profile '{self.profile.name}' needs one; "
                    f"the place exports {exported})"
                )
            time.sleep(POLL_SECONDS)

    def _device_for(self, r, t: LabgridSettings) -> tuple[Device, str]:
        if r.cls in SERIAL_CLASSES:
            opts = t.serial.model_dump()
            if "baudrate" not in t.serial.model_fields_set and self.profile.mcu is not None:
                opts["baudrate"] = self.profile.mcu.baudrate
            host, port = r.params["host"], int(r.params["port"])
            if r.params.get("protocol", "rfc2217") == "rfc2217":
                url = f"rfc2217://{_netloc(host, port)}?ign_set_control"
            else:
                url = f"socket://{_netloc(host, port)}"
            inner: SerialSettings | SshSettings = SerialSettings(type="serial", port=url, **opts)
            via = f"{r.cls} {r.name} {url}"
        else:
            host = r.params["address"]
            port = int(r.params.get("port") or 22)
            opts = t.ssh.model_dump()
            if opts.get("user") is None:
                opts["user"] = r.params.get("username")  # never the password: keys only, as for ssh
            inner = SshSettings(type="ssh", host=host, port=port, **opts)
            via = f"{r.cls} {r.name} {opts['user']}@{_netloc(host, port)}"
        self._say(f"labgrid place '{t.place}': {via}")
        return self.device.model_copy(update={"transport": inner}), via

    def _inner(self, device: Device) -> Transport:
        if isinstance(device.transport, SerialSettings):
            from harness.transports.serial import SerialTransport

            return SerialTransport(device, self.profile, self.log)
        from harness.transports.ssh.transport import SshTransport

        return SshTransport(device, self.profile, self.log)

    def benchmark(self, job: Job) -> dict:
        if self.inner is None:
            self.open()
        inner = self.inner
        assert inner is not None
        t = self.settings

        def again() -> dict:
            self._connect(self.coordinator(), t)
            assert self.inner is not None
            return self.inner.benchmark(job)

        doc = power.on_hang(self, "measuring", lambda: inner.benchmark(job), again)
        doc["labgrid"] = dict(self.provenance or {})
        if self.power_cycles:  # this job's: the one that reached the board for it, or its retry
            doc["labgrid"]["power_cycled"] = self.power_cycles[-1]
            self.power_cycles = []
        return doc

    def close(self) -> None:
        from harness.transports.labgrid.session import coordinator

        self.power_cycles = []
        try:
            if self.inner is not None:
                inner, self.inner = self.inner, None
                inner.close()
        finally:
            if self.acquired:
                self.acquired = False
                t = self.settings
                assert t.coordinator
                try:
                    coordinator(t.coordinator).release(t.place)
                    claims.remove(t.coordinator, t.place)
                    self._say(f"released labgrid place '{t.place}'")
                except Exception as exc:
                    raise InfraError(
                        f"device '{self.device.id}': could not release labgrid place '{t.place}' on "
                        f"{t.coordinator} ({type(exc).__name__}: {exc}); free it with "
                        f"`labgrid-client -p {t.place} release`"
                    ) from None


def _usable(r) -> bool:
    """Published with an address: a serial port's TCP port exists only while ser2net runs."""
    if not r.avail:
        return False
    if r.cls in SERIAL_CLASSES:
        return bool(r.params.get("host") and r.params.get("port"))
    return bool(r.params.get("address"))


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def place_link(device: Device, profile: DeviceProfile, log: Callable[[str], None]) -> Iterator[Device]:
    """The device as a plain `serial`/`ssh` device while its place is held for the caller, released
    afterwards: for commands that need the board's address but measure nothing (`hil devices trust`
    learns a host key that way, checked later exactly as for an ssh device)."""
    from harness.transports.labgrid.session import coordinator

    lt = LabgridTransport(device, profile, log)
    t = lt.settings
    assert t.coordinator, "load_inventory fills the coordinator from LG_COORDINATOR"
    try:
        lg = coordinator(t.coordinator)
        lt._acquire(lg, t)
        linked, _ = lt._board(lg, t)
        yield linked
    finally:
        lt.close()
