"""Where the simulated device is plugged in: a pseudo-terminal (like a USB-UART) or a raw TCP port.

A pty looks like ``/dev/ttyACM0`` to the host (pyserial, ser2net, minicom); the simulator keeps the
slave side open itself so the device survives the host closing and reopening the port, and puts it
in raw mode so nothing the firmware prints is echoed back as input. In TCP mode one client at a time
is served (a new client kicks the old one, like ser2net's ``kickolduser``); the device state survives
reconnects, as a board's does.

Signals (SIGHUP: "flashed, reload the model") are handled in the serve loop, never inside the signal
handler: ``SignalPipe`` makes ``signal.set_wakeup_fd`` write each signal's number to a pipe that the
loop's ``select`` watches, and calls the action between two commands.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
import tty
from collections.abc import Callable
from pathlib import Path

from harness.mcu.sim.firmware import Firmware


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _select_timeout(fw: Firmware) -> float | None:
    if fw.binary_deadline is None:
        return None
    return max(0.0, fw.binary_deadline - time.monotonic())


class SignalPipe:
    """Run `actions[signum]()` from the serve loop when the process receives that signal."""

    def __init__(self, actions: dict[int, Callable[[], None]]):
        self.actions = actions
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        for signum in actions:
            signal.signal(signum, lambda *_: None)  # the C-level handler writes the wakeup byte
        self._previous_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def dispatch(self) -> None:
        got = bytearray()
        try:
            while True:
                chunk = os.read(self.fd, 256)
                if not chunk:
                    break
                got += chunk
        except BlockingIOError:
            pass
        for signum in dict.fromkeys(got):  # one action per burst of the same signal, in order
            if signum in self.actions:
                self.actions[signum]()

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_wakeup)
        for fd in (self.fd, self._w):
            os.close(fd)


def _wake(wake: SignalPipe | None, ready: list) -> None:
    if wake is not None and wake.fd in ready:
        wake.dispatch()


class PtyServer:
    def __init__(self, link: str | None = None):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.link = Path(link) if link else None
        if self.link:
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.path)

    def write(self, data: bytes) -> None:
        if data:
            _write_all(self.master, data)

    def describe(self) -> str:
        return f"serving on {self.path}" + (f" (link {self.link})" if self.link else "")

    def serve(self, fw: Firmware, wake: SignalPipe | None = None) -> None:
        while True:
            watch = [self.master] + ([wake.fd] if wake else [])
            ready, _, _ = select.select(watch, [], [], _select_timeout(fw))
            _wake(wake, ready)  # before the bytes: a signal sent before them is handled first
            if self.master in ready:
                data = os.read(self.master, 4096)
                if not data:  # pragma: no cover - cannot happen while we hold the slave open
                    return
                if not fw.stalled:
                    fw.feed(data)
            fw.tick(time.monotonic())

    def close(self) -> None:
        if self.link and self.link.is_symlink() and os.readlink(self.link) == self.path:
            self.link.unlink()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TcpServer:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self.sock.getsockname()[:2]
        self.client: socket.socket | None = None

    def write(self, data: bytes) -> None:
        if self.client is None or not data:
            return  # nothing attached to the UART: the bytes are lost, as on a board
        try:
            self.client.sendall(data)
        except OSError:
            self._drop()

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
            self.client = None

    def describe(self) -> str:
        return f"listening on {self.host}:{self.port}"

    def serve(self, fw: Firmware, log: Callable[[str], None] = lambda m: None, wake: SignalPipe | None = None) -> None:
        while True:
            watch = [self.sock] + ([self.client] if self.client else []) + ([wake.fd] if wake else [])
            ready, _, _ = select.select(watch, [], [], _select_timeout(fw))
            _wake(wake, ready)
            if self.sock in ready:
                conn, peer = self.sock.accept()
                self._drop()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.client = conn
                log(f"client {peer[0]}:{peer[1]} connected")
            if self.client is not None and self.client in ready:
                try:
                    data = self.client.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    log("client disconnected")
                    self._drop()
                elif not fw.stalled:
                    fw.feed(data)
            fw.tick(time.monotonic())

    def close(self) -> None:
        self._drop()
        self.sock.close()
