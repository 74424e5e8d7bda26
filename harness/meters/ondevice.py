"""Meters the device runner reads (hwmon INA2xx, RAPL, a Raspberry Pi 5's PMIC) and the datasheet estimate.

The runner samples a hwmon power file or reads RAPL's energy counter around its steady window; a
missing meter costs the energy figure of a result (a runner warning), never the measurement. A
profile without any meter may ask for an `estimate` from datasheet powers: it is stored under its own
metric name and always labelled as an estimate.
"""

from __future__ import annotations

from harness.meters.base import Meter


class NoMeter(Meter):
    type = "none"


class RaplMeter(Meter):
    """The runner reads /sys/class/powercap/intel-rapl:0 by itself when it is readable."""

    type = "rapl"


class HwmonMeter(Meter):
    type = "hwmon"

    def power_file(self) -> str:
        """The device file the runner samples (a hwmon directory means its power1_input)."""
        path = self.spec.path or ""
        return path if path.endswith("_input") else path.rstrip("/") + "/power1_input"

    def runner_args(self) -> list[str]:
        args = ["--power-file", self.power_file()]
        if self.spec.sample_rate_hz:
            args += ["--power-rate", str(self.spec.sample_rate_hz)]
        if self.spec.idle_power_mw is not None:
            args += ["--idle-power-mw", str(self.spec.idle_power_mw)]
        return args


PMIC_DEFAULT_RATE_HZ = 10


class PmicMeter(Meter):
    """A Raspberry Pi 5 measures itself: its PMIC reports the voltage and current of each rail it
    supplies (`vcgencmd pmic_read_adc`), and the runner samples their sum of V x I. Every stock Pi 5
    has it; it covers the SoC, memory and I/O rails, not the 5 V input's conversion losses or USB
    devices (an INA2xx on the supply sees those)."""

    type = "pmic"

    def runner_args(self) -> list[str]:
        # each sample starts a `vcgencmd` process on the board being measured: 10 per second unless the
        # profile asks otherwise (the runner's 1 kHz default is for reading a sysfs file)
        args = ["--power-pmic", "--power-rate", str(self.spec.sample_rate_hz or PMIC_DEFAULT_RATE_HZ)]
        if self.spec.idle_power_mw is not None:
            args += ["--idle-power-mw", str(self.spec.idle_power_mw)]
        return args


class EstimateMeter(Meter):
    type = "estimate"

    def from_runner(self, doc: dict) -> dict | None:
        """(typical active power - idle power) x mean latency, from the profile's datasheet numbers."""
        spec = self.spec
        mean_us = (doc.get("latency_us") or {}).get("mean")
        if mean_us is None or spec.typical_power_mw is None:
            return None
        active_mw = spec.typical_power_mw - (spec.idle_power_mw or 0.0)
        return {
            "meter": "estimate",
            "sample_rate_hz": None,
            "estimate": True,
            "energy_per_inference_uj": active_mw * mean_us / 1000.0,
            "typical_power_mw": spec.typical_power_mw,
            "idle_power_mw": spec.idle_power_mw,
            "note": "datasheet estimate from the device profile, not a measurement",
        }
