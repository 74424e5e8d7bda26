"""A PPK2 on a pty: opcode bytes in, metadata text and 4-byte samples out, as the instrument does.

Metadata is a real unit's dump (as published with the MIT-licensed ppk2-rs crate), including the
`GS0: 0.0000` that the official software replaces by its default; currents are encoded with the
inverse of the official conversion under exactly that reading, in the lowest range that holds them.
"""

from __future__ import annotations

import math

import numpy as np

from harness.meters.emulators.base import MeterEmulator, Waveform

RATE_HZ = 100_000.0
ADC_MULT = 1.8 / 163840
ARG_BYTES = {
    0x01: 2,
    0x02: 1,
    0x03: 1,
    0x04: 1,
    0x05: 0,
    0x06: 0,
    0x07: 0,
    0x08: 1,
    0x0A: 0,
    0x0C: 1,
    0x0D: 2,
    0x0E: 1,
    0x0F: 1,
    0x10: 0,
    0x11: 1,
    0x15: 0,
    0x16: 0,
    0x19: 0,
    0x20: 0,
    0x25: 5,
}
CAL = {  # one real unit's calibration
    "R": [1003.3506, 101.5865, 10.3027, 0.9636, 0.0564],
    "GS": [0.0, 112.7890, 18.0115, 2.4217, 0.0729],
    "GI": [1.0, 0.9695, 0.9609, 0.9519, 0.9582],
    "O": [112.9420, 75.4627, 64.6020, 50.4983, 87.2177],
    "S": [0.000000048, 0.000000596, 0.000005281, 0.000062577, 0.002940743],
    "I": [-0.000000104, -0.000001443, 0.000036439, -0.000374119, -0.009388455],
    "UG": [1.0, 1.0, 1.0, 1.0, 1.0],
}
FORMAT = {"R": "{:.4f}", "GS": "{:.4f}", "GI": "{:.4f}", "O": "{:.4f}", "S": "{:.9f}", "I": "{:.9f}", "UG": "{:.2f}"}


def metadata(vdd_mv: int, mode: int) -> bytes:
    lines = ["Calibrated: 0"]
    for key in ("R", "GS", "GI", "O"):
        lines += [f"{key}{r}: {FORMAT[key].format(v)}" for r, v in enumerate(CAL[key])]
    lines += [f"VDD: {vdd_mv}", "HW: 9173", f"mode: {mode}"]
    for key in ("S", "I", "UG"):
        lines += [f"{key}{r}: {FORMAT[key].format(v)}" for r, v in enumerate(CAL[key])]
    lines += ["IA: 56", "END"]
    return ("\n".join(lines) + "\n").encode("ascii")


def _as_read(key: str, r: int) -> float:
    """A calibration value as the official software reads it: the printed text, zero -> its default."""
    v = float(FORMAT[key].format(CAL[key][r]))
    return v if v != 0.0 else {"GS": 1.0, "GI": 1.0, "UG": 1.0}.get(key, 0.0)


def adc_field(current_a: float, r: int, vdd_mv: float) -> int:
    """The 14-bit ADC field that reads back as `current_a` in range r (inverse of the quadratic)."""
    gs, gi, ug = _as_read("GS", r), _as_read("GI", r), _as_read("UG", r)
    c = current_a / ug - (_as_read("S", r) * vdd_mv / 1000.0 + _as_read("I", r))
    x = c / gi if gs == 0 else (-gi + math.sqrt(gi * gi + 4 * gs * c)) / (2 * gs)
    adc = x * _as_read("R", r) / ADC_MULT + _as_read("O", r)
    return int(round(adc / 4.0))


def encode(current_a: float, vdd_mv: float) -> int:
    """Range bits | ADC field of the lowest range that holds the current."""
    for r in range(5):
        field = adc_field(current_a, r, vdd_mv)
        if field <= 0x3FFF:
            return (r << 14) | max(field, 0)
    raise ValueError(f"{current_a} A is beyond the PPK2's ranges")


class Ppk2Emulator(MeterEmulator):
    rate_hz = RATE_HZ

    def __init__(self, wire: str, waveform: Waveform, link: str | None = None, marker_input: int = 0):
        super().__init__(wire, waveform, link)
        self.vdd_mv = 3000
        self.mode = 2
        self.marker_bit = 1 << marker_input
        self.counter = 0
        self._cmd = bytearray()
        self._codes: dict[float, int] = {}

    def on_input(self, data: bytes) -> None:
        self._cmd += data
        while self._cmd:
            op = self._cmd[0]
            need = 1 + ARG_BYTES.get(op, 0)
            if len(self._cmd) < need:
                return
            args = bytes(self._cmd[1:need])
            del self._cmd[:need]
            if op == 0x19:
                self.send(metadata(self.vdd_mv, self.mode))
            elif op == 0x0D:
                self.vdd_mv = (args[0] << 8) | args[1]
                self._codes.clear()
            elif op == 0x11:
                self.mode = args[0]
            elif op == 0x0C:
                self.powered = args[0] == 1
            elif op == 0x06:
                self.start_stream()
            elif op == 0x07:
                self.stop_stream()

    def _code(self, current_a: float) -> int:
        code = self._codes.get(current_a)
        if code is None:
            code = self._codes[current_a] = encode(current_a, self.vdd_mv)
        return code

    def emit(self, current_a: np.ndarray, marks: list[int]) -> None:
        n = len(current_a)
        levels, which = np.unique(current_a, return_inverse=True)  # a waveform has a few distinct levels
        values = np.array([self._code(float(c)) for c in levels], dtype=np.uint32)[which]
        counter = (self.counter + np.arange(n, dtype=np.uint32)) % 64
        self.counter = int((self.counter + n) % 64)
        logic = np.full(n, 0xFF, dtype=np.uint32)
        for i in marks:
            if i < n:
                logic[i] &= ~np.uint32(self.marker_bit)
        self.send(((logic << 24) | (counter << 18) | values).astype("<u4").tobytes())
