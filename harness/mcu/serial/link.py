"""Line I/O on a serial port (a path, ``COMx``, or a pyserial URL such as ``rfc2217://host:port`` or
``socket://host:port``), with deadlines instead of blocking reads.

The link knows nothing about commands: it writes ``%``-terminated command strings and hands back the
device's lines (CR/LF stripped, NULs and leading line noise removed), remembering the last few for
error messages.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from harness.errors import InfraError

CMD_MAX = 80  # the device's command buffer (EE_CMD_SIZE); longer commands are truncated or refused
# Reads wait at most this long, then the deadline is checked again. The port timeout is set once:
# changing it on an open RFC 2217 port renegotiates the whole port configuration (slow).
READ_SLICE = 0.05
MAX_LINE = 64 * 1024  # a line longer than this is noise (the reference never prints more than a few KiB)


def open_port(port: str, baudrate: int, device_id: str, who: str | None = None):
    """pyserial port object for a path, COM name or URL; InfraError naming device (or `who`) and port."""
    import serial

    kwargs = {"baudrate": baudrate, "timeout": READ_SLICE}
    url = port
    if port.startswith("rfc2217://"):
        # ser2net (the usual RFC 2217 server) answers SET_CONTROL in a way pyserial waits for in vain
        if "ign_set_control" not in port:
            url += ("&" if "?" in port else "?") + "ign_set_control"
    else:  # pyserial's RFC 2217 client has no write timeout
        kwargs["write_timeout"] = 10
    try:
        return serial.serial_for_url(url, **kwargs)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InfraError(f"{who or f'device {device_id!r}'}: cannot open serial port {port}: {reason}") from None


def _clean(raw: bytes) -> str:
    """Bytes of one line -> text; NULs and non-ASCII noise dropped, protocol text untouched."""
    text = raw.replace(b"\x00", b"").decode("ascii", errors="ignore")
    return text.strip("\r\n")


class SerialLink:
    def __init__(self, port: str, baudrate: int, device_id: str, trace: Callable[[str], None] | None = None):
        self.port_name = port
        self.baudrate = baudrate
        self.device_id = device_id
        self.trace = trace or (lambda msg: None)
        self.ser: Any | None = None  # a pyserial port (pyserial ships no type information)
        self._buf = bytearray()
        self.recent: deque[str] = deque(maxlen=8)

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        self.ser = open_port(self.port_name, self.baudrate, self.device_id)
        self._buf.clear()

    def close(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:
                pass
            self.ser = None

    @property
    def is_open(self) -> bool:
        return self.ser is not None

    def _fail(self, what: str, exc: BaseException) -> InfraError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return InfraError(f"device '{self.device_id}': serial port {self.port_name} failed while {what}: {reason}")

    def _port(self, what: str) -> Any:
        if self.ser is None:
            raise self._fail(what, RuntimeError("port is not open"))
        return self.ser

    # ------------------------------------------------------------------ output

    def write_command(self, command: str) -> None:
        if "%" in command or "\r" in command or "\n" in command:
            raise ValueError(f"command {command!r} contains a terminator")
        if len(command) > CMD_MAX:
            raise ValueError(f"command {command[:20]!r}... is {len(command)} chars; the device buffer holds {CMD_MAX}")
        self.write_raw((command + "%").encode("ascii"))
        self.trace(f"-> {command}%")

    def write_raw(self, data: bytes) -> None:
        ser = self._port("writing")
        try:
            ser.write(data)
            ser.flush()
        except Exception as exc:
            raise self._fail("writing", exc) from None

    # ------------------------------------------------------------------ input

    def _fill(self, block: bool = True) -> bool:
        """Read what is available (waiting up to READ_SLICE if `block`); False when nothing came."""
        ser = self._port("reading")
        try:
            waiting = ser.in_waiting
            if not waiting and not block:
                return False
            data = ser.read(waiting if waiting else 1)
        except Exception as exc:
            raise self._fail("reading", exc) from None
        if data:
            self._buf += data
            return True
        return False

    def read_line(self, deadline: float) -> str | None:
        """Next line before `deadline` (time.monotonic()), or None on timeout. Empty lines are skipped."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                line = _clean(raw)
                if not line:
                    continue
                self.recent.append(line)
                self.trace(f"<- {line}")
                return line
            if len(self._buf) > MAX_LINE:
                self.trace(f"dropping {len(self._buf)} bytes without a line end")
                self._buf.clear()
            if time.monotonic() >= deadline:
                return None
            self._fill()

    def pending(self) -> list[str]:
        """Lines that have already arrived (non-blocking): the device spoke without being asked."""
        lines = []
        try:
            while self._fill(block=False):
                pass
        except InfraError:
            raise  # already names the device and port
        except Exception as exc:
            raise self._fail("reading", exc) from None
        while b"\n" in self._buf:
            line = self.read_line(0)
            if line is None:
                break
            lines.append(line)
        return lines

    def discard_input(self) -> None:
        """Forget everything received so far (host and OS buffers)."""
        self._buf.clear()
        ser = self._port("flushing input")
        try:
            ser.reset_input_buffer()
        except Exception as exc:
            raise self._fail("flushing input", exc) from None

    @property
    def last_line(self) -> str | None:
        return self.recent[-1] if self.recent else None

    # ------------------------------------------------------------------ modem lines

    def pulse_reset(self, line: str, hold_s: float = 0.1) -> None:
        """Assert DTR or RTS for `hold_s` (boards wire one of them to nRESET through a transistor)."""
        try:
            setattr(self.ser, line, True)
            time.sleep(hold_s)  # a reset pulse width, not synchronisation
            setattr(self.ser, line, False)
        except Exception as exc:
            raise self._fail(
                f"pulsing {line.upper()} to reset the board (set reset: none if the port has no modem lines)", exc
            ) from None
