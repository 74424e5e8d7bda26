"""Nordic Power Profiler Kit II: the documented serial protocol, implemented here (docs/ENERGY.md).

Why not the `ppk2-api` package: it is GPL-2.0 and hilbench is Apache-2.0; the protocol is small.
The PPK2 powers the board in source-meter mode at `supply_mv`, samples its current at 100 kS/s and
its eight logic inputs with every sample. Commands are single opcode bytes with fixed arguments and
are never acknowledged; only the metadata request answers (``KEY: value`` lines up to ``END``), and
it carries the per-unit calibration the current formula needs.

Sample (little-endian uint32): bits 0-13 ADC value, 14-16 measurement range, 18-23 a counter that
advances by one per sample (a gap is lost data), 24-31 the logic inputs D0-D7.
"""

from __future__ import annotations

import numpy as np

from harness.errors import InfraError
from harness.lab.config import EnergyMeter, MeterConnection
from harness.meters.base import Meter
from harness.meters.capture import Capture, falling_edges
from harness.meters.serial_stream import MeterPort

# opcodes
AVERAGE_START = 0x06
AVERAGE_STOP = 0x07
DEVICE_RUNNING_SET = 0x0C
REGULATOR_SET = 0x0D
SET_POWER_MODE = 0x11
GET_META_DATA = 0x19
POWER_MODE_SOURCE = 0x02

RATE_HZ = 100_000.0
BAUDRATE = 115200  # nominal: USB CDC ignores it
ADC_MULT = 1.8 / 163840
VDD_RANGE_MV = (800, 5000)
RANGES = 5
# the official app's fallbacks for a calibration value that is missing, NaN or zero
DEFAULTS = {
    "r": [1031.64, 101.65, 10.15, 0.94, 0.043],
    "gs": [1.0] * RANGES,
    "gi": [1.0] * RANGES,
    "o": [0.0] * RANGES,
    "s": [0.0] * RANGES,
    "i": [0.0] * RANGES,
    "ug": [1.0] * RANGES,
}


def parse_metadata(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def calibration(meta: dict[str, str]) -> dict[str, np.ndarray]:
    """Per-range coefficient arrays; missing/NaN/zero values take the official app's defaults."""
    cal = {}
    for name, default in DEFAULTS.items():
        values = []
        for r in range(RANGES):
            try:
                v = float(meta.get(f"{name}{r}", "nan"))
            except ValueError:
                v = float("nan")
            values.append(v if np.isfinite(v) and v != 0.0 else default[r])
        cal[name] = np.asarray(values)
    return cal


def current_a(raw: np.ndarray, cal: dict[str, np.ndarray], vdd_mv: float) -> np.ndarray:
    """Amps from raw samples: the ADC field (x4) through the range's calibration, as the PPK2's own
    software computes it."""
    adc = (raw & 0x3FFF).astype(np.float64) * 4.0
    r = np.minimum((raw >> 14) & 0x7, RANGES - 1).astype(np.intp)
    x = (adc - cal["o"][r]) * ADC_MULT / cal["r"][r]
    return cal["ug"][r] * (x * (cal["gs"][r] * x + cal["gi"][r]) + (cal["s"][r] * (vdd_mv / 1000.0) + cal["i"][r]))


def lost_samples(counter: np.ndarray) -> int:
    """Samples missing according to the 6-bit counter (each step should be +1 mod 64)."""
    if len(counter) < 2:
        return 0
    step = (counter[1:].astype(np.int64) - counter[:-1].astype(np.int64)) % 64
    return int(np.sum((step - 1) % 64))


def voltage_bytes(mv: float) -> bytes:
    m = int(round(mv))
    return bytes([REGULATOR_SET, (m >> 8) & 0xFF, m & 0xFF])


class Ppk2Meter(Meter):
    type = "ppk2"
    external = True

    def __init__(self, spec: EnergyMeter, who: str, where: MeterConnection):
        super().__init__(spec, who)
        self.where = where
        self.marker_input = spec.marker_input if spec.marker_input is not None else 0
        self.supply_mv = float(spec.supply_mv or 0)
        lo, hi = VDD_RANGE_MV
        if not lo <= self.supply_mv <= hi:
            raise InfraError(
                f"{who}: energy_meter.supply_mv {self.supply_mv:g} is outside what a PPK2 supplies ({lo}-{hi} mV)"
            )
        self.port: MeterPort | None = None
        self.meta: dict[str, str] = {}
        self.cal: dict[str, np.ndarray] = {}

    def marker_name(self) -> str:
        return f"the PPK2's logic input D{self.marker_input}"

    def open(self) -> None:
        self.port = port = MeterPort(self.where.port, self.where.baudrate or BAUDRATE, f"{self.who}: PPK2")
        try:
            port.write(bytes([AVERAGE_STOP]))  # it may still stream from a crashed session
            port.discard()
            port.write(bytes([GET_META_DATA]))
            text = port.read_until(b"END\n", timeout=10.0).decode("ascii", errors="replace")
            self.meta = parse_metadata(text)
            if "vdd" not in self.meta and "r0" not in self.meta:
                raise InfraError(
                    f"{self.who}: {self.where.port} answered the PPK2 metadata request with {text[:60]!r}: not a PPK2?"
                )
            self.cal = calibration(self.meta)
            port.write(voltage_bytes(self.supply_mv))
            port.write(bytes([SET_POWER_MODE, POWER_MODE_SOURCE]))
            port.write(bytes([DEVICE_RUNNING_SET, 0x01]))  # the board is powered from here on
        except Exception:
            port.close()
            self.port = None
            raise

    def _port(self) -> MeterPort:
        if self.port is None:
            raise InfraError(f"{self.who}: the PPK2 on {self.where.port} is not open")
        return self.port

    def start(self) -> None:
        port = self._port()
        port.ser.reset_input_buffer()
        port.begin()
        port.write(bytes([AVERAGE_START]))

    def wait_for_edges(self, count: int, timeout: float) -> bool:
        def ready(data: bytes) -> bool:
            raw = np.frombuffer(data[: len(data) // 4 * 4], dtype="<u4")
            return len(falling_edges((raw >> 24).astype(np.uint8), self.marker_input)) >= count

        return self._port().wait_for(ready, timeout)

    def stop(self) -> Capture:
        port = self._port()
        port.write(bytes([AVERAGE_STOP]))
        data = port.end()
        raw = np.frombuffer(data[: len(data) // 4 * 4], dtype="<u4")
        amps = current_a(raw, self.cal, self.supply_mv)
        logic = (raw >> 24).astype(np.uint8)
        return Capture(
            power_w=amps * (self.supply_mv / 1000.0),
            rate_hz=RATE_HZ,
            edges=falling_edges(logic, self.marker_input),
            lost_samples=lost_samples((raw >> 18) & 0x3F),
            meter=self.provenance(),
        )

    def provenance(self) -> dict:
        return {
            "meter": "ppk2",
            "port": self.where.port,
            "sample_rate_hz": RATE_HZ,
            "supply_mv": self.supply_mv,
            "hardware": self.meta.get("hw"),
            "calibrated": self.meta.get("calibrated"),
            "marker": f"D{self.marker_input}",
        }

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.write(bytes([AVERAGE_STOP]))  # the board stays powered: its port stays usable
            except InfraError:
                pass
            self.port.close()
            self.port = None
