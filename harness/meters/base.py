"""One interface for every energy meter, wherever it sits.

Two kinds exist in a lab. On-device meters (hwmon INA2xx power files, RAPL) are read by the device
runner during its steady window, because only the board can read them at the right moments: the host
passes flags and reads the runner's `energy` document back. External meters (Nordic PPK2, ST LPM01A,
Joulescope) power an MCU board and sample its current on the controller's USB: the host starts a
capture, runs the energy-mode inferences and stops the capture. A datasheet `estimate` is a meter
too, so that the code paths ask one object and the estimate can never pose as a measurement.
"""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

from harness.errors import InfraError
from harness.lab.config import EnergyMeter
from harness.meters.capture import Capture


class Meter(ABC):
    type: ClassVar[str]
    external: ClassVar[bool] = False  # the host captures (True) or the device runner samples (False)

    def __init__(self, spec: EnergyMeter, who: str):
        self.spec = spec
        self.who = who  # "device 'stm32-1'": every error names the board the meter belongs to

    # -- on-device meters: the runner samples them
    def runner_args(self) -> list[str]:
        return []

    def from_runner(self, doc: dict) -> dict | None:
        """The result's `energy` document given what the runner reported."""
        return doc.get("energy") or None

    # -- external meters: the host captures
    def open(self) -> None:
        raise InfraError(f"{self.who}: energy meter type {self.type} is not captured by the host")

    def start(self) -> None:
        raise InfraError(f"{self.who}: energy meter type {self.type} is not captured by the host")

    def stop(self) -> Capture:
        raise InfraError(f"{self.who}: energy meter type {self.type} is not captured by the host")

    def wait_for_edges(self, count: int, timeout: float) -> bool:
        """During a capture: wait until `count` marker edges have arrived (or `timeout`)."""
        return True

    def close(self) -> None:
        return None

    def marker_name(self) -> str:
        """The input the firmware's timestamp pin must be wired to, as the bench sees it."""
        return "the meter's marker input"

    def provenance(self) -> dict:
        """What a stored energy figure says about where it came from."""
        return {"meter": self.type}

    def __enter__(self) -> Meter:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
