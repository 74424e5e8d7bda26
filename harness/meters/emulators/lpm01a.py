"""An LPM01A (PowerShield) on a pty: its ASCII commands, acks and `ascii_dec` energy stream.

Replies are shaped as the instrument's (CRLF, `PowerShield > ack <command as typed>`, an empty line
after it); in the stream every sample period's energy is one `DDDD-EE` line, a `TimeStamp:` line
follows every 1000 samples, D7 falling edges appear as `event NN ris` lines (the form the MLPerf Tiny
runner parses), and `stop` ends with `end`, a summary and `PowerShield > Acquisition completed`.
"""

from __future__ import annotations

import math

import numpy as np

from harness.meters.emulators.base import MeterEmulator, Waveform

KNOWN = {
    "htc",
    "hrc",
    "lcd",
    "pwr",
    "acqtime",
    "trigdelay",
    "trigsrc",
    "eventsrc",
    "output",
    "format",
    "freq",
    "volt",
    "funcmode",
    "acqmode",
    "pwrend",
    "targrst",
    "temp",
    "range",
    "status",
}
BOARD_ID = "540619864-1110659081-4784204"
VERSION = "1.0.6"


def encode(value: float) -> str:
    """`DDDD-EE`: four mantissa digits and a signed power of ten."""
    if value <= 0:
        return "0000-00"
    exp = 3 - math.floor(math.log10(value))  # mantissa in 1000..9999
    mant = round(value * 10.0**exp)
    if mant >= 10000:
        exp -= 1
        mant = round(value * 10.0**exp)
    return f"{mant:04d}{'-' if exp >= 0 else '+'}{abs(exp):02d}"


def parse_number(text: str) -> float:
    """`3300m`, `1k`, `20u`, `2-3`: the instrument's numbers with unit suffixes or powers of ten."""
    scale = {"u": 1e-6, "m": 1e-3, "k": 1e3}
    if text and text[-1] in scale:
        return float(text[:-1]) * scale[text[-1]]
    for sign in "-+":
        head, sep, exp = text[1:].partition(sign)
        if sep and exp.isdigit():
            return float(text[0] + head) * 10.0 ** (int(exp) * (-1 if sign == "-" else 1))
    return float(text)


class Lpm01aEmulator(MeterEmulator):
    def __init__(self, wire: str, waveform: Waveform, link: str | None = None):
        super().__init__(wire, waveform, link)
        self.rate_hz = 100.0
        self.volt_mv = 3300.0
        self.host_control = False
        self.events = 0
        self.samples = 0
        self._line = bytearray()
        self._min = math.inf
        self._max = 0.0

    def _ack(self, cmd: str) -> None:
        self.send(f"\r\nPowerShield > ack {cmd}\r\n\r\n".encode("ascii"))

    def _error(self, cmd: str, why: str) -> None:
        self.send(f"\r\nPowerShield > error {cmd}\r\nError detail: {why}\r\n".encode("ascii"))

    def on_input(self, data: bytes) -> None:
        self._line += data
        while b"\n" in self._line:
            raw, _, rest = bytes(self._line).partition(b"\n")
            self._line = bytearray(rest)
            cmd = raw.decode("ascii", errors="replace").strip("\r\x00 ")
            if cmd:
                self._command(cmd)

    def _command(self, cmd: str) -> None:
        word, _, arg = cmd.partition(" ")
        if word == "htc":
            self.host_control = True
            self._ack(cmd)
            return
        if not self.host_control:
            self._error(cmd, "host does not have control (send htc)")
            return
        if word == "powershield":
            self._ack(f"powershield {BOARD_ID}")
        elif word == "version":
            self._ack(f"version: {VERSION}")
        elif word == "start":
            self._ack(cmd)
            self.samples = 0
            self.events = 0
            self._min, self._max = math.inf, 0.0
            self.start_stream()
        elif word == "stop":
            if self.streaming:
                self.stop_stream()
                low = 0.0 if math.isinf(self._min) else self._min
                self.send(
                    f"end\r\nsummary beg\r\n{encode(low)}\r\n{encode(self._max)}\r\nsummary end\r\n"
                    f"\r\nPowerShield > Acquisition completed\r\n".encode("ascii")
                )
            else:
                self._error(cmd, "no acquisition running")
        elif word == "hrc":
            self.host_control = False
            self._ack(cmd)
        elif word in KNOWN:
            try:
                if word == "freq":
                    self.rate_hz = parse_number(arg)
                elif word == "volt":
                    self.volt_mv = parse_number(arg) * 1000.0
                elif word == "pwr":
                    self.powered = arg.split()[0] == "on"
            except (ValueError, IndexError):
                self._error(cmd, f"bad argument '{arg}'")
                return
            self._ack(cmd)
        else:
            self._error(cmd, "unknown command")

    def emit(self, current_a: np.ndarray, marks: list[int]) -> None:
        energy = current_a * (self.volt_mv / 1000.0) / self.rate_hz  # J per sample period
        out = []
        for i, e in enumerate(energy):
            if i in marks:
                out.append(f"event {self.events:02d} ris")
                self.events += 1
            out.append(encode(float(e)))
            self._min, self._max = min(self._min, float(e)), max(self._max, float(e))
            self.samples += 1
            if self.samples % 1000 == 0:
                t = self.samples / self.rate_hz
                out.append(f"\r\nTimeStamp: {int(t) % 1000:03d}s {int(t * 1000) % 1000:03d}ms, buff 00%")
        self.send(("\r\n".join(out) + "\r\n").encode("ascii"))
