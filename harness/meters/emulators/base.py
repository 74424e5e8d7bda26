"""What both meter emulators share: the pty the host opens, the marker wire, and a known waveform.

Waveform: the board draws `idle_ma` while it is powered and not inside a marked window, and
`active_ma` plus a zero-mean ripple (+r, +r, -r, -r per four samples) between the two timestamp edges
of a window. The edges come over the wire stamped with the board's clock, so a window lasts exactly
(t1 - t0) x rate samples. The emulator holds its stream back between the edges and then emits the
whole window at once: what reaches the host does not depend on scheduling, so the energy per
inference the host must find is exactly supply x active_ma x (t1 - t0) / N (the ripple cancels over
whole periods of four samples).

Outside windows samples are paced by the wall clock (the host's idle window lasts what it lasts).
"""

from __future__ import annotations

import os
import select
import signal
import time
import tty
from pathlib import Path

import numpy as np

from harness.meters.emulators.wire import MarkerInput

RIPPLE = np.array([1.0, 1.0, -1.0, -1.0])
MAX_CHUNK = 20_000  # samples per write while catching up with the clock


def _exit(signum, frame) -> None:
    raise SystemExit(0)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Waveform:
    def __init__(self, idle_ma: float, active_ma: float, ripple_ma: float = 0.0):
        self.idle_a = idle_ma / 1000.0
        self.active_a = active_ma / 1000.0
        self.ripple_a = ripple_ma / 1000.0

    def idle(self, n: int) -> np.ndarray:
        return np.full(n, self.idle_a)

    def active(self, n: int) -> np.ndarray:
        return self.active_a + self.ripple_a * np.resize(RIPPLE, n)


class MeterEmulator:
    """Subclasses implement `on_input(bytes)` (the instrument's command parser) and `emit(current,
    marks)` (its sample encoding: `marks` are the indices in `current` where the marker fell)."""

    rate_hz = 1000.0

    def __init__(self, wire: str, waveform: Waveform, link: str | None = None):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.link = Path(link) if link else None
        if self.link is not None:
            if self.link.is_symlink():
                self.link.unlink()
            self.link.symlink_to(self.path)
        self.wire = MarkerInput(wire)
        self.waveform = waveform
        self.streaming = False
        self.powered = False
        self._edge_t: int | None = None  # board time of the first edge of a window in progress
        self._base_t = 0.0
        self._base_n = 0
        self.emitted = 0

    # -- for subclasses
    def on_input(self, data: bytes) -> None:
        raise NotImplementedError

    def emit(self, current_a: np.ndarray, marks: list[int]) -> None:
        raise NotImplementedError

    def _out(self, current_a: np.ndarray, marks: list[int]) -> None:
        self.emit(current_a, marks)
        self.emitted += len(current_a)

    def send(self, data: bytes) -> None:
        write_all(self.master, data)

    # -- stream control (called by on_input)
    def start_stream(self) -> None:
        self.streaming = True
        self._base_t, self._base_n = time.monotonic(), 0
        self.emitted = 0
        self._edge_t = None

    def stop_stream(self) -> None:
        self._catch_up()
        if self.streaming and self.emitted == 0 and self._edge_t is None:
            # a real meter always hands over the sample in progress; without it a start and a stop
            # read together (a busy host) would give an empty capture
            self._out(self._idle_level(1), [])
        self.streaming = False
        self._edge_t = None

    # -- the loop
    def _idle_level(self, n: int) -> np.ndarray:
        return self.waveform.idle(n) if self.powered else np.zeros(n)

    def _catch_up(self) -> None:
        """Idle samples up to now (wall clock), unless a window is open (held back until it closes)."""
        if not self.streaming or self._edge_t is not None:
            return
        due = int((time.monotonic() - self._base_t) * self.rate_hz) - self._base_n
        while due > 0:
            n = min(due, MAX_CHUNK)
            self._out(self._idle_level(n), [])
            self._base_n += n
            due -= n

    def _edges(self) -> None:
        for t in self.wire.edges():
            if not self.streaming:
                continue  # nobody records: the edge is lost, as on a bench
            if self._edge_t is None:
                self._catch_up()
                self._edge_t = t
                continue
            n = max(0, round((t - self._edge_t) * self.rate_hz / 1e6))
            window = self.waveform.active(n) if self.powered else np.zeros(n)
            # first window sample: the first edge; the sample right after the window: the second one
            self._out(np.concatenate([window, self._idle_level(1)]), [0, n])
            self._edge_t = None
            self._base_t, self._base_n = time.monotonic(), 0

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, _exit)
        try:
            while True:
                timeout = 0.002 if self.streaming else None
                ready, _, _ = select.select([self.master, self.wire.fileno()], [], [], timeout)
                self._edges()  # edges first: they happened before any command that follows them
                if self.master in ready:
                    try:
                        data = os.read(self.master, 4096)
                    except OSError:
                        data = b""
                    if data:
                        self._edges()
                        self.on_input(data)
                self._catch_up()
        finally:
            self.close()

    def close(self) -> None:
        self.wire.close()
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
