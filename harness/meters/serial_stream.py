"""A meter's serial port and the thread that drains it while a capture runs.

A PPK2 streams 400 kB/s; a pty or USB CDC buffer holds a few kB, so the bytes must be read
continuously while the host is busy talking to the board on another port. One daemon thread per
capture appends everything to a buffer; the driver decodes after `stop`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from harness.errors import InfraError
from harness.mcu.serial.link import open_port

QUIET_S = 0.05  # the stream is over when nothing arrived for this long after the stop command
DRAIN_MAX_S = 10.0


class MeterPort:
    def __init__(self, port: str, baudrate: int, who: str):
        self.port = port
        self.who = who
        self.ser: Any = open_port(port, baudrate, "", who=who)
        self._buf = bytearray()
        self._pending = bytearray()  # read by read_until but not yet consumed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush()
        except Exception as exc:
            raise InfraError(f"{self.who}: writing to {self.port} failed: {exc}") from None

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        """Synchronous read (no capture running) until `marker` has arrived; the bytes up to and with
        it (what came after it is kept for the next call)."""
        deadline = time.monotonic() + timeout
        buf = self._pending
        while marker not in buf:
            if time.monotonic() > deadline:
                tail = bytes(buf[-60:]).decode("ascii", errors="replace")
                raise InfraError(
                    f"{self.who}: no {marker.decode(errors='replace')!r} from the meter on "
                    f"{self.port} within {timeout:.1f} s (last bytes {tail!r})"
                )
            try:
                buf += self.ser.read(max(1, self.ser.in_waiting))
            except Exception as exc:
                raise InfraError(f"{self.who}: reading {self.port} failed: {exc}") from None
        end = buf.index(marker) + len(marker)
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def discard(self, quiet_s: float = QUIET_S) -> None:
        """Throw away whatever is still arriving (a stream stopped before we opened the port)."""
        deadline = time.monotonic() + DRAIN_MAX_S
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            if self.ser.read(max(1, self.ser.in_waiting)):
                last = time.monotonic()
        self.ser.reset_input_buffer()
        self._pending.clear()

    # ------------------------------------------------------------------ background capture

    def begin(self) -> None:
        self._buf = bytearray()
        self._pending.clear()
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._drain, name=f"meter {self.port}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while not self._stop.is_set():
                data = self.ser.read(max(1, self.ser.in_waiting))
                if data:
                    with self._lock:
                        self._buf += data
        except Exception as exc:  # reported by end(): a thread cannot raise into the caller
            self._error = exc

    def wait_for(self, ready, timeout: float) -> bool:
        """Poll the capture so far until `ready(bytes)` says the data needed has arrived (e.g. both
        marker edges of a window), at most `timeout` seconds. The capture is only stopped after that,
        so a host that is slow to schedule the reader never cuts a window short."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                data = bytes(self._buf)
            if ready(data) or self._error is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(0.005)  # polling the capture thread's buffer; not a synchronisation sleep

    def end(self, quiet_s: float = QUIET_S, until: bytes | None = None) -> bytes:
        """After the stop command: wait until the stream went quiet (or `until` arrived), then return
        every byte of the capture."""
        deadline = time.monotonic() + DRAIN_MAX_S
        seen = -1
        last = time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                size = len(self._buf)
                done = until is not None and until in self._buf
            if done or self._error is not None:
                break
            if size != seen:
                seen, last = size, time.monotonic()
            elif time.monotonic() - last >= quiet_s and until is None:
                break
            self._stop.wait(0.005)  # polling the capture thread's buffer; not a synchronisation sleep
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._error is not None:
            raise InfraError(
                f"{self.who}: the meter's port {self.port} failed during the capture: {self._error}"
            ) from None
        with self._lock:
            return bytes(self._buf)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.ser.close()
        except Exception:
            pass
