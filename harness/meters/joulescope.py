"""Joulescope JS220/JS110 through `pyjoulescope_driver` (Apache-2.0, optional: `pip install
pyjoulescope_driver`).

The Joulescope sits in the board's supply line (it does not supply the board itself): current and
voltage are both measured, and the firmware's timestamp pin goes to general-purpose input
`marker_input` (GPI0 by default). The driver is publish/subscribe over USB: each signal
(`s/i`, `s/v`, `s/gpi/N`) is enabled with its `ctrl` topic and delivered to a callback as blocks
that carry the `sample_id` of their first sample; blocks are aligned on sample ids here. GPI blocks
carry eight one-bit samples per byte (least significant bit first, as the driver's own GPI tools
unpack them).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from harness.errors import ConfigError, InfraError
from harness.lab.config import EnergyMeter, MeterConnection
from harness.meters.base import Meter
from harness.meters.capture import Capture, falling_edges

DEFAULT_RATE_HZ = 1_000_000.0


def _driver_class() -> Any:
    try:
        from pyjoulescope_driver import Driver
    except ImportError:
        raise ConfigError(
            "energy_meter type joulescope needs the pyjoulescope_driver package (pip install pyjoulescope_driver)"
        ) from None
    return Driver


class _Signal:
    """Blocks of one signal, kept with the sample id of their first sample."""

    def __init__(self, bits: bool = False):
        self.bits = bits
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, value: dict) -> None:
        data = np.asarray(value["data"])
        if self.bits:
            data = np.unpackbits(data.astype(np.uint8), bitorder="little")
        with self.lock:
            self.blocks.append((int(value["sample_id"]) // int(value.get("decimate_factor") or 1), data))

    def take(self) -> tuple[int, np.ndarray]:
        """(first sample id, contiguous samples); a gap in the ids is data the USB lost."""
        with self.lock:
            blocks, self.blocks = self.blocks, []
        if not blocks:
            return 0, np.zeros(0)
        blocks.sort(key=lambda b: b[0])
        start, parts, expect = blocks[0][0], [], blocks[0][0]
        for sid, data in blocks:
            if sid != expect:
                raise InfraError(f"samples {expect}..{sid - 1} missing from the Joulescope stream")
            parts.append(data)
            expect = sid + len(data)
        return start, np.concatenate(parts)


class JoulescopeMeter(Meter):
    type = "joulescope"
    external = True

    def __init__(self, spec: EnergyMeter, who: str, where: MeterConnection, driver: Any = None):
        super().__init__(spec, who)
        self.where = where
        self.path = where.port
        self.rate_hz = float(spec.sample_rate_hz or DEFAULT_RATE_HZ)
        self.gpi = spec.marker_input if spec.marker_input is not None else 0
        self._driver = driver
        self._signals = {"i": _Signal(), "v": _Signal(), f"gpi/{self.gpi}": _Signal(bits=True)}

    def marker_name(self) -> str:
        return f"the Joulescope's GPI{self.gpi}"

    def open(self) -> None:
        d = self._driver = self._driver or _driver_class()()
        paths = list(d.device_paths())
        if self.path not in paths:
            raise InfraError(f"{self.who}: no Joulescope {self.path} (connected: {', '.join(paths) or 'none'})")
        d.open(self.path, "restore")
        d.publish(f"{self.path}/s/i/range/mode", "auto")
        d.publish(f"{self.path}/h/fs", int(self.rate_hz))
        for name, sink in self._signals.items():
            d.subscribe(f"{self.path}/s/{name}/!data", ["pub"], sink)

    def _ctrl(self, on: int) -> None:
        if self._driver is None:
            raise InfraError(f"{self.who}: the Joulescope {self.path} is not open")
        for name in self._signals:
            self._driver.publish(f"{self.path}/s/{name}/ctrl", on)

    def start(self) -> None:
        for sink in self._signals.values():
            sink.take()
        self._ctrl(1)

    def stop(self) -> Capture:
        self._ctrl(0)
        try:
            (si, i), (sv, v), (sg, g) = (s.take() for s in self._signals.values())
        except InfraError as exc:
            raise InfraError(f"{self.who}: {exc}") from None
        first = max(si, sv, sg)
        last = min(si + len(i), sv + len(v), sg + len(g))
        if last <= first:
            return Capture(
                power_w=np.zeros(0), rate_hz=self.rate_hz, edges=np.zeros(0, dtype=np.int64), meter=self.provenance()
            )
        # edges on the whole marker stream: trimming first would lose an edge on the first kept sample
        edges = falling_edges(g.astype(np.uint8), 0) + sg - first
        edges = edges[(edges >= 0) & (edges < last - first)]
        i, v = i[first - si : last - si], v[first - sv : last - sv]
        return Capture(
            power_w=i.astype(np.float64) * v.astype(np.float64),
            rate_hz=self.rate_hz,
            edges=edges,
            meter=self.provenance(),
        )

    def provenance(self) -> dict:
        return {
            "meter": "joulescope",
            "device": self.path,
            "sample_rate_hz": self.rate_hz,
            "supply_mv": self.spec.supply_mv,
            "marker": f"GPI{self.gpi}",
            "voltage": "measured",
        }

    def close(self) -> None:
        if self._driver is not None:
            try:
                self._ctrl(0)
                self._driver.close(self.path)
            except Exception:
                pass
            self._driver = None
