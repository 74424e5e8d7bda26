"""Energy per inference: which meter produced it, and never an estimate passed off as a measurement.

Device-side meters (hwmon INA2xx power files, RAPL) are sampled by the runner during the steady
window. A profile without a usable meter may ask for an `estimate` from its datasheet powers; that
figure is stored under its own metric name and always labelled as an estimate.
"""

from __future__ import annotations

from harness.lab.config import DeviceProfile


def power_file(profile: DeviceProfile) -> str | None:
    """The device file the runner samples for a hwmon meter (a hwmon directory means its power1_input)."""
    meter = profile.energy_meter
    if meter.type != "hwmon" or not meter.path:
        return None
    return meter.path if meter.path.endswith("_input") else meter.path.rstrip("/") + "/power1_input"


def runner_meter_args(profile: DeviceProfile) -> list[str]:
    """Runner flags that make it sample the profile's on-board power meter. A meter missing on the
    board gives a result without energy and a warning (runner document `warnings`), not a failed job."""
    meter = profile.energy_meter
    path = power_file(profile)
    if path is None:
        return []
    args = ["--power-file", path]
    if meter.sample_rate_hz:
        args += ["--power-rate", str(meter.sample_rate_hz)]
    if meter.idle_power_mw is not None:
        args += ["--idle-power-mw", str(meter.idle_power_mw)]
    return args


def estimate(doc: dict, profile: DeviceProfile) -> dict | None:
    """(typical active power - idle power) x mean latency, from the profile's datasheet numbers."""
    meter = profile.energy_meter
    mean_us = (doc.get("latency_us") or {}).get("mean")
    if meter.type != "estimate" or mean_us is None or meter.typical_power_mw is None:
        return None
    active_mw = meter.typical_power_mw - (meter.idle_power_mw or 0.0)
    return {"meter": "estimate", "sample_rate_hz": None, "estimate": True,
            "energy_per_inference_uj": active_mw * mean_us / 1000.0,
            "typical_power_mw": meter.typical_power_mw, "idle_power_mw": meter.idle_power_mw,
            "note": "datasheet estimate from the device profile, not a measurement"}
