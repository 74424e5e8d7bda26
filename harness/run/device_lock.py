"""One measurement at a time per device, across processes: `hil run`, `hil calibrate`, `hil demo` and
the gate's confirmation re-measurement each hold a device's lock while they use it.

The lock lives on the controller (the machine running hilbench), so it works the same for every
transport: a lock file per name under the lock directory ($HILBENCH_LOCK_DIR, else
$HILBENCH_CACHE/locks, else ~/.cache/hilbench/locks), held with `fcntl.flock` on an open descriptor.
The kernel drops the lock when the holder exits, however it exits (a crash, `kill -9`), so there
are no stale pid files to clean up. A device takes two names: its id, and the hardware it sits on
(this host for `local` devices, `host:port` for SSH, the resolved port path for serial boards), so
two inventory entries for one board, or two `local` devices, are never measured at once either.
Names are always taken in sorted order, so two sessions never wait for each other in a cycle.

The holder writes who it is (pid, host, run id, command) into the file; a session that finds the
device busy names the holder, and then waits (polling, so Ctrl-C still stops it) or, with
`--no-wait`, fails at once with an InfraError (exit 2).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, LabgridSettings, SerialSettings, SshSettings

_log = logging.getLogger(__name__)

LOCK_DIR_ENV = "HILBENCH_LOCK_DIR"
POLL_SECONDS = 0.2


def lock_dir() -> Path:
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV]).expanduser()
    cache = os.environ.get("HILBENCH_CACHE")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "hilbench") / "locks"


def hardware_name(device: Device) -> str:
    """The piece of hardware a device sits on, as the lock sees it."""
    t = device.transport
    if isinstance(t, SshSettings):
        return f"ssh:{t.host}:{t.port}"
    if isinstance(t, LabgridSettings):  # the place is the board, whichever link it exports
        return f"labgrid:{t.coordinator}/{t.place}"
    if not isinstance(t, SerialSettings):
        return "host"
    port = str(t.port)
    if port.startswith("/"):
        port = os.path.realpath(port)  # /dev/serial/by-id/... and /dev/ttyACM0 are one board
    return f"serial:{port}"


def lock_names(device: Device) -> list[str]:
    return sorted({f"device:{device.id}", f"hardware:{hardware_name(device)}"})


def _file_name(name: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:10]}.lock"


def describe_holder(info: dict | None) -> str:
    if not info:
        return "another hilbench process (holder unknown)"
    parts = [f"pid {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("run_id"):
        parts.append(f"run {info['run_id']}")
    if info.get("command"):
        parts.append(f"`{info['command']}`")
    if info.get("since"):
        parts.append("since " + time.strftime("%H:%M:%S", time.localtime(info["since"])))
    return ", ".join(parts)


class DeviceLock:
    """The cross-process lock of one device (all of its names). Not re-entrant: one holder at a time,
    also within one process."""

    def __init__(
        self, device: Device, run_id: str | None = None, command: str | None = None, directory: Path | None = None
    ):
        self.device = device
        self.directory = directory or lock_dir()
        self.run_id = run_id
        self.command = command if command is not None else "hil " + " ".join(sys.argv[1:])
        self._fds: dict[str, int] = {}
        self._since = 0.0

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def path(self, name: str) -> Path:
        return self.directory / _file_name(name)

    def holder(self, name: str | None = None) -> dict | None:
        """Who holds the device (or one of its names), from the lock files; None when unknown."""
        for n in [name] if name else lock_names(self.device):
            try:
                info = json.loads(self.path(n).read_text() or "null")
            except (OSError, ValueError):  # free, or being rewritten this very moment
                continue
            if isinstance(info, dict):
                return info
        return None

    def acquire(
        self, wait: bool = True, log: Callable[[str], None] = _log.info, stop: threading.Event | None = None
    ) -> bool:
        """Take every name of the device. Busy: with `wait`, say who holds it and wait until it is free
        (False when `stop` is set meanwhile, nothing held); without, raise InfraError."""
        if self.held:
            return True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{self.directory}: cannot create the device lock directory ({exc.strerror}); set {LOCK_DIR_ENV}"
            ) from None
        stop = stop or threading.Event()
        self._since = time.time()
        try:
            for name in lock_names(self.device):
                if not self._take(name, wait, log, stop):
                    self.release()
                    return False
                self._write_holder()  # who holds it, as soon as it is held
        except BaseException:
            self.release()
            raise
        return True

    def _take(self, name: str, wait: bool, log: Callable[[str], None], stop: threading.Event) -> bool:
        path = self.path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot open the lock file of device '{self.device.id}' ({exc.strerror}); set {LOCK_DIR_ENV}"
            ) from None
        told: object = None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise InfraError(f"{path}: cannot lock device '{self.device.id}' ({exc.strerror})") from None
                holder = self.holder(name)
                who = describe_holder(holder)
                if not wait:
                    raise InfraError(
                        f"device '{self.device.id}' is busy: in use by {who} (lock {path}); "
                        "try again later, or leave out --no-wait to wait for it"
                    )
                key = (holder or {}).get("pid"), (holder or {}).get("run_id")
                if key != told:
                    log(f"device '{self.device.id}' is in use by {who}; waiting for it (--no-wait fails instead)")
                    told = key
                if stop.wait(POLL_SECONDS):
                    os.close(fd)
                    return False
        except BaseException:
            os.close(fd)
            raise
        self._fds[name] = fd
        if told is not None:
            log(f"device '{self.device.id}' is free; measuring")
        return True

    def set_run(self, run_id: str) -> None:
        """Name the run in the lock files once it is known (the lock may be taken before it exists)."""
        self.run_id = run_id
        if self.held:
            self._write_holder()

    def _write_holder(self) -> None:
        info = json.dumps(
            {
                "pid": os.getpid(),
                "host": platform.node(),
                "run_id": self.run_id,
                "command": self.command,
                "since": self._since,
                "device": self.device.id,
            }
        ).encode()
        for fd in self._fds.values():
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)

    def release(self) -> None:
        for fd in self._fds.values():
            try:
                os.ftruncate(fd, 0)  # the file names no holder while nobody holds it
            except OSError:
                pass
            os.close(fd)  # closing the descriptor drops the flock
        self._fds.clear()

    def __enter__(self) -> DeviceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
