"""Energy bookkeeping: meter flags reach the runner; estimates never masquerade as measurements."""

from pathlib import Path

from harness.lab.config import load_profile
from harness.meters.select import on_device
from harness.run.rows import flatten

PROFILES = Path(__file__).resolve().parents[1] / "device_profiles"


def test_hwmon_profile_makes_runner_sample_power_file():
    args = on_device(load_profile(PROFILES / "raspberry-pi-4-ina2xx.yaml")).runner_args()
    assert args[:2] == ["--power-file", "/sys/class/hwmon/hwmon2/power1_input"]
    assert "--idle-power-mw" in args and "2700.0" in args
    assert on_device(load_profile(PROFILES / "localhost.yaml")).runner_args() == []
    assert on_device(load_profile(PROFILES / "stm32h7.yaml")).runner_args() == []  # external: host-captured
    # a stock Pi 4 has no sensor (a labelled estimate); a Pi 5 reads its own PMIC
    assert on_device(load_profile(PROFILES / "raspberry-pi-4.yaml")).runner_args() == []
    assert on_device(load_profile(PROFILES / "raspberry-pi-5.yaml")).runner_args() == [
        "--power-pmic",
        "--power-rate",
        "10.0",
    ]


def test_estimate_is_labelled_and_stored_under_its_own_metric():
    prof = load_profile(PROFILES / "raspberry-pi-4.yaml")
    doc = {"latency_us": {"mean": 2000.0}}
    est = on_device(prof).from_runner(doc)
    assert est["estimate"] is True and est["meter"] == "estimate"
    assert est["energy_per_inference_uj"] == (6400 - 2700) * 2000.0 / 1000.0
    names = [m[0] for m in flatten({**doc, "energy": est})[0]]
    assert "energy_estimate_per_inference_uj" in names and "energy_per_inference_uj" not in names
    measured = {**doc, "energy": {"meter": "hwmon", "estimate": False, "energy_per_inference_uj": 5.0}}
    assert ("energy_per_inference_uj", 5.0, "uJ") in flatten(measured)[0]
    assert on_device(load_profile(PROFILES / "localhost.yaml")).from_runner(doc) is None
