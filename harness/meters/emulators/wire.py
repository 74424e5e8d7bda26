"""The timestamp GPIO between a simulated board and an emulated meter.

On a bench it is a jumper wire from the board's marker pin to the meter's digital input. Here the MCU
simulator sends one datagram per falling edge, stamped with its own (virtual, deterministic)
microsecond clock, and the meter emulator places the edge in its sample stream. Because the stamp
comes from the board's clock, the number of samples between two edges is exact and the energy the
host must find is known in advance, however busy the host is.
"""

from __future__ import annotations

import os
import socket


class MarkerWire:
    """Board side: `fall(t_us)` for every timestamp pulse."""

    def __init__(self, path: str):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fall(self, t_us: int) -> None:
        try:
            self._sock.sendto(f"fall {int(t_us)}".encode("ascii"), self.path)
        except OSError:
            pass  # no meter attached: on a bench the pin would toggle into nothing, too

    def close(self) -> None:
        self._sock.close()


class MarkerInput:
    """Meter side: receives the edges (non-blocking polls from the emulator's sample loop)."""

    def __init__(self, path: str):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def edges(self) -> list[int]:
        """Board timestamps (us) of the falling edges that arrived since the last call."""
        out: list[int] = []
        while True:
            try:
                data = self._sock.recv(64)
            except BlockingIOError:
                return out
            word, _, value = data.decode("ascii", errors="replace").partition(" ")
            if word == "fall" and value.lstrip("-").isdigit():
                out.append(int(value))

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
