"""ST X-NUCLEO-LPM01A (PowerShield), the MLPerf Tiny reference energy monitor, over its ASCII protocol.

Configured the way the MLPerf Tiny runner configures it (docs/ENERGY.md): host control (`htc`),
software start, infinite acquisition, `output energy` in `ascii_dec` at `sample_rate_hz` (1 kHz by
default, as the runner uses), falling edges of D7 reported as events (`eventsrc d7 fal`), supply
voltage `volt <mV>m`. Every command is answered `PowerShield > ack <command>` or an error line. In
the stream, each data line is the energy of one sample period (`6409-07` = 6409e-7 J), `event NN ...`
lines mark the D7 edges between two samples, `TimeStamp: ...` lines are the monitor's own clock, and
`stop` ends with `PowerShield > Acquisition completed`.
"""

from __future__ import annotations

import re

import numpy as np

from harness.errors import InfraError
from harness.lab.config import EnergyMeter, MeterConnection
from harness.meters.base import Meter
from harness.meters.capture import Capture
from harness.meters.serial_stream import MeterPort

BAUDRATE = 3686400
DEFAULT_RATE_HZ = 1000.0
VOLT_RANGE_MV = (1800, 3300)
ACK_TIMEOUT_S = 10.0  # an instrument answers in milliseconds; generous for a starved controller
_DATA = re.compile(r"^(\d{4})([-+])(\d{2})$")
_EVENT = re.compile(r"^event\s+(\d+)\b", re.IGNORECASE)
_ERROR = re.compile(r"^(?:PowerShield > )?error\b(.*)$", re.IGNORECASE)
COMPLETED = b"Acquisition completed"
_EVENT_BYTES = re.compile(rb"(?:^|\n)\x00*event\s+\d+", re.IGNORECASE)


def decode_value(line: str) -> float | None:
    m = _DATA.match(line)
    if not m:
        return None
    exp = int(m.group(3))
    return int(m.group(1)) * 10.0 ** (-exp if m.group(2) == "-" else exp)


def parse_stream(text: str, who: str) -> tuple[np.ndarray, list[int]]:
    """(energy per sample in J, sample indices of the D7 events) from a capture's text."""
    values: list[float] = []
    edges: list[int] = []
    counters: list[int] = []
    ended = False
    for raw in text.split("\n"):
        line = raw.replace("\x00", "").strip()
        if not line:
            continue
        if line.lower() == "end" or line.lower().startswith("summary"):
            ended = True  # after it: summary min/max lines that look like data
            continue
        err = _ERROR.match(line)
        if err:
            raise InfraError(f"{who}: the LPM01A reported an error during the capture: {line}")
        if ended:
            continue
        value = decode_value(line)
        if value is not None:
            values.append(value)
            continue
        ev = _EVENT.match(line)
        if ev:
            counters.append(int(ev.group(1)))
            edges.append(len(values))
    if any(b - a != 1 for a, b in zip(counters, counters[1:])):
        raise InfraError(
            f"{who}: the LPM01A's D7 event counters are not consecutive ({counters}): events were lost in the stream"
        )
    return np.asarray(values, dtype=np.float64), edges


class Lpm01aMeter(Meter):
    type = "lpm01a"
    external = True

    def __init__(self, spec: EnergyMeter, who: str, where: MeterConnection):
        super().__init__(spec, who)
        self.where = where
        self.rate_hz = float(spec.sample_rate_hz or DEFAULT_RATE_HZ)
        self.supply_mv = float(spec.supply_mv or 0)
        lo, hi = VOLT_RANGE_MV
        if not lo <= self.supply_mv <= hi:
            raise InfraError(
                f"{who}: energy_meter.supply_mv {self.supply_mv:g} is outside what an LPM01A supplies ({lo}-{hi} mV)"
            )
        if spec.marker_input not in (None, 7):
            raise InfraError(f"{who}: energy_meter.marker_input {spec.marker_input}: the LPM01A watches D7 only")
        self.port: MeterPort | None = None
        self.board_id: str | None = None
        self.version: str | None = None

    def marker_name(self) -> str:
        return "the LPM01A's D7 input"

    def _command(self, cmd: str) -> str:
        """Send one command and return its ack line (`PowerShield > ack <cmd>...`)."""
        assert self.port is not None
        self.port.write(cmd.encode("ascii") + b"\r\n")
        word = cmd.split()[0]
        while True:
            line = (
                self.port.read_until(b"\n", ACK_TIMEOUT_S).decode("ascii", errors="replace").replace("\x00", "").strip()
            )
            if not line:
                continue
            if _ERROR.match(line) or (line.startswith("PowerShield >") and " error" in line):
                raise InfraError(f"{self.who}: the LPM01A on {self.where.port} refused '{cmd}': {line}")
            if line.startswith("PowerShield > ack") and word in line:
                return line

    def open(self) -> None:
        self.port = MeterPort(self.where.port, self.where.baudrate or BAUDRATE, f"{self.who}: LPM01A")
        try:
            self.port.discard()
            self._command("htc")
            ident = self._command("powershield")
            self.board_id = ident.split("powershield", 1)[-1].strip() or None
            ver = self._command("version")
            self.version = ver.split("version", 1)[-1].strip(" :") or None
            for cmd in (
                "acqtime inf",
                "trigdelay 0",
                "trigsrc sw",
                "eventsrc d7 fal",
                "output energy",
                "format ascii_dec",
                f"freq {self.rate_hz:g}",
                f"volt {self.supply_mv:g}m",
                "pwr on nostatus",
            ):
                self._command(cmd)
        except Exception:
            self.port.close()
            self.port = None
            raise

    def _port(self) -> MeterPort:
        if self.port is None:
            raise InfraError(f"{self.who}: the LPM01A on {self.where.port} is not open")
        return self.port

    def start(self) -> None:
        port = self._port()
        port.ser.reset_input_buffer()
        port.begin()
        port.write(b"start\r\n")

    def wait_for_edges(self, count: int, timeout: float) -> bool:
        return self._port().wait_for(lambda data: len(_EVENT_BYTES.findall(data)) >= count, timeout)

    def stop(self) -> Capture:
        port = self._port()
        port.write(b"stop\r\n")
        data = port.end(until=COMPLETED)
        if COMPLETED not in data:
            raise InfraError(
                f"{self.who}: the LPM01A on {self.where.port} did not confirm the end of the "
                f"acquisition ('{COMPLETED.decode()}')"
            )
        energy, edges = parse_stream(data.decode("ascii", errors="replace"), self.who)
        return Capture(
            power_w=energy * self.rate_hz,
            rate_hz=self.rate_hz,
            edges=np.asarray(edges, dtype=np.int64),
            meter=self.provenance(),
        )

    def provenance(self) -> dict:
        return {
            "meter": "lpm01a",
            "port": self.where.port,
            "sample_rate_hz": self.rate_hz,
            "supply_mv": self.supply_mv,
            "board_id": self.board_id,
            "firmware": self.version,
            "marker": "D7",
            "output": "energy",
        }

    def close(self) -> None:
        if self.port is not None:
            try:
                self._command("hrc")  # front panel back; the board stays powered
            except InfraError:
                pass
            self.port.close()
            self.port = None
