"""A profile's energy meter that the board lacks: `hil devices check` says so (with the sensors the board
does have), and `hil run` still measures, stores the result without energy and warns, never failing
the job or putting another meter's figure in its place. Boards are the local device fed a fake sysfs
tree through HILBENCH_SYSFS_ROOT (the runner reads /sys/... under it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, REPO, hil

from harness.cli import main
from harness.device import linux_runner as runner
from harness.store.results import ResultStore

POWER_UW = 1_500_000  # what the fake INA219 reads: 1.5 W
IDLE_MW = 100.0
MISSING = "/sys/class/hwmon/hwmon2/power1_input"


@pytest.fixture()
def board(tmp_path: Path, monkeypatch) -> Path:
    """A lab of local devices whose sysfs has an INA219 at hwmon0 and a thermal sensor at hwmon1."""
    sysroot = tmp_path / "sysroot"
    ina = sysroot / "sys/class/hwmon/hwmon0"
    ina.mkdir(parents=True)
    (ina / "name").write_text("ina219\n")
    (ina / "power1_input").write_text(f"{POWER_UW}\n")
    thermal = sysroot / "sys/class/hwmon/hwmon1"
    thermal.mkdir()
    (thermal / "name").write_text("cpu_thermal\n")
    (thermal / "temp1_input").write_text("45000\n")
    monkeypatch.setenv("HILBENCH_SYSFS_ROOT", str(sysroot))
    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    profiles = tmp_path / "device_profiles"
    profiles.mkdir()
    (profiles / "localhost.yaml").write_text((REPO / "device_profiles" / "localhost.yaml").read_text())
    for name, path in (("metered", "/sys/class/hwmon/hwmon0"), ("meterless", "/sys/class/hwmon/hwmon2")):
        (profiles / f"{name}.yaml").write_text(
            f"arch: x86_64\ncores: 2\nram_mb: 1024\n"
            f"energy_meter: {{type: hwmon, path: {path}, sample_rate_hz: 200, idle_power_mw: {IDLE_MW}}}\n"
        )
    (tmp_path / "inventory.yaml").write_text(
        "devices:\n"
        "  - {id: with-meter, profile: metered, transport: {type: local}}\n"
        "  - {id: no-meter, profile: meterless, transport: {type: local}}\n"
        "  - {id: host, profile: localhost, transport: {type: local}}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def table(stdout: str) -> dict[str, dict[str, str]]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].split("|")[1:-1]]
    rows = [dict(zip(head, (c.strip() for c in ln.split("|")[1:-1]))) for ln in lines[2:]]
    return {r["device"]: r for r in rows}


def test_devices_check_reports_a_missing_meter_and_the_sensors_there_are(board, capsys):
    code = main(["--inventory", str(board / "inventory.yaml"), "devices", "check"])
    out = capsys.readouterr().out
    rows = table(out)
    assert code == 2  # a configured sensor that is missing fails the check (exit 2: the lab)
    assert rows["with-meter"]["energy"] == "hwmon ok (ina219)" and rows["with-meter"]["verdict"] == "OK"
    assert rows["no-meter"]["energy"] == "hwmon MISSING" and rows["no-meter"]["verdict"] == "FAIL"
    assert (
        f"no-meter: FAIL: energy meter {MISSING} (profile 'meterless', energy_meter.path) does not exist "
        "on the device; results would have no energy"
    ) in out
    assert (
        "hint: power sensors on the device: /sys/class/hwmon/hwmon0/power1_input ('ina219'); set "
        f"energy_meter.path in {board / 'device_profiles' / 'meterless.yaml'} to one of them"
    ) in out
    # RAPL is the host profile's best effort: no RAPL here is a note, not a failure
    assert rows["host"]["energy"] == "rapl MISSING" and rows["host"]["verdict"] == "OK"
    assert "note: energy meter rapl: /sys/class/powercap/intel-rapl:0/energy_uj is not readable" in out


def test_a_sensor_without_that_power_input_is_named(board, capsys):
    prof = board / "device_profiles" / "meterless.yaml"
    prof.write_text(prof.read_text().replace("hwmon2", "hwmon1"))
    assert main(["--inventory", str(board / "inventory.yaml"), "devices", "check", "no-meter"]) == 2
    out = capsys.readouterr().out
    assert (
        "energy meter /sys/class/hwmon/hwmon1/power1_input (profile 'meterless', energy_meter.path) does "
        "not exist (/sys/class/hwmon/hwmon1 is sensor 'cpu_thermal' with no power inputs)"
    ) in out


@pytest.fixture(scope="module")
def tflite_model(tiny_model, tmp_path_factory) -> Path:
    import tensorflow as tf

    path = tmp_path_factory.mktemp("meter") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tiny_model["model"]).convert())
    return path


def test_missing_meter_gives_results_without_energy_and_a_warning(board, tflite_model):
    p = hil("run", str(tflite_model), "--devices", "with-meter,no-meter", *FAST)
    assert p.returncode == 0, p.stderr[-3000:]
    warning = f"warning: energy meter: power file {MISSING} does not exist; this result has no energy"
    assert warning in p.stderr
    store = ResultStore(board / "reports" / "results.sqlite")
    wide = store.wide(p.stdout.strip().splitlines()[-1]).set_index("device_id")
    assert set(wide["status"]) == {"ok"}
    ok, missing = wide.loc["with-meter"], wide.loc["no-meter"]
    # the meter that is there measures: (1.5 W - idle) x mean latency
    expected = (POWER_UW / 1000.0 - IDLE_MW) * ok["latency_mean_us"] / 1000.0
    assert ok["energy_per_inference_uj"] == pytest.approx(expected, rel=1e-9)
    assert missing["latency_p50_us"] > 0 and missing["latency_count"] >= 5  # measured all the same
    assert "energy_per_inference_uj" not in wide.columns or missing.isna()["energy_per_inference_uj"]
    raw = store.raw(int(missing["result_id"]))
    assert raw is not None and raw["energy"] is None and raw["warnings"] == [warning.removeprefix("warning: ")]
    assert store.raw(int(ok["result_id"]))["warnings"] == []


def _run_runner(model: Path, sysroot: Path, *extra: str) -> dict:
    p = subprocess.run(
        [
            sys.executable,
            runner.__file__,
            "--model",
            str(model),
            "--min-runs",
            "5",
            "--min-seconds",
            "0",
            "--warmup-runs",
            "1",
            "--warmup-seconds",
            "0",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HILBENCH_SYSFS_ROOT": str(sysroot)},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "does not exist"),
        ("not a number\n", "does not hold a number of microwatts"),
    ],
)
def test_runner_never_puts_another_meters_figure_in_place_of_the_missing_one(tmp_path, tflite_model, content, problem):
    rapl = tmp_path / "sys/class/powercap/intel-rapl:0"
    rapl.mkdir(parents=True)
    (rapl / "energy_uj").write_text("123456\n")
    if content is not None:
        hw = tmp_path / "sys/class/hwmon/hwmon2"
        hw.mkdir(parents=True)
        (hw / "power1_input").write_text(content)
    plain = _run_runner(tflite_model, tmp_path)
    assert plain["energy"]["meter"] == "rapl" and plain["warnings"] == []  # the fake RAPL is live
    doc = _run_runner(tflite_model, tmp_path, "--power-file", MISSING)
    assert doc["status"] == "ok" and doc["latency_us"]["count"] >= 5
    assert doc["energy"] is None
    assert doc["warnings"] == [f"energy meter: power file {MISSING} {problem}; this result has no energy"]


# ---- shipped Raspberry Pi profiles on stock boards (issue 20)

PI5_RECORDING = REPO / "tests" / "data" / "pi5_pmic_read_adc.txt"  # `vcgencmd pmic_read_adc` on a Pi 5


def _pmic_watts_by_hand(text: str) -> float:
    """The recording read line by line the long way: rail -> current and voltage, then sum V x I."""
    amps, volts = {}, {}
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        rail, kind = name.split()[0].rsplit("_", 1)
        (amps if kind == "A" else volts)[rail] = float(value.rstrip("AV"))
    return sum(volts[r] * amps[r] for r in amps if r in volts)


def test_pmic_power_is_the_sum_of_v_times_i_over_rails_that_report_both():
    text = PI5_RECORDING.read_text()
    rails = runner.parse_pmic_adc(text)
    assert len(rails) == 14 and rails["VDD_CORE"] == {"A": 0.7188, "V": 0.720305}
    assert rails["EXT5V"] == {"V": 5.1242} and rails["BATT"] == {"V": 0.0}  # voltage only: not a rail's power
    assert runner.pmic_power_uw(text) == round(_pmic_watts_by_hand(text) * 1e6)
    small = "  VDD_CORE_A current(7)=0.50000000A\n3V3_SYS_A current(1)=0.1A\n  VDD_CORE_V volt(15)=0.72000000V\n"
    small += "3V3_SYS_V volt(9)=3.3V\n EXT5V_V volt(24)=5.1V\nnot a reading\n"
    assert runner.pmic_power_uw(small) == 690_000  # 0.72 V x 0.5 A + 3.3 V x 0.1 A
    with pytest.raises(runner.RunnerError, match="no rail with both a voltage and a current"):
        runner.pmic_power_uw(" EXT5V_V volt(24)=5.1V\n")


@pytest.fixture()
def pi_lab(tmp_path: Path, monkeypatch) -> Path:
    """Local devices with the shipped Raspberry Pi profiles on a stock board's sysfs (a CPU thermal
    sensor and the undervoltage monitor, no power sensor); `fake_vcgencmd` adds a Pi 5's vcgencmd."""
    sysroot = tmp_path / "sysroot"
    for i, name in enumerate(("cpu_thermal", "rpi_volt")):
        d = sysroot / f"sys/class/hwmon/hwmon{i}"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
    (sysroot / "sys/class/hwmon/hwmon0/temp1_input").write_text("48000\n")
    monkeypatch.setenv("HILBENCH_SYSFS_ROOT", str(sysroot))
    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    profiles = tmp_path / "device_profiles"
    profiles.mkdir()
    for name in ("raspberry-pi-4", "raspberry-pi-4-ina2xx", "raspberry-pi-5"):
        (profiles / f"{name}.yaml").write_text((REPO / "device_profiles" / f"{name}.yaml").read_text())
    (tmp_path / "inventory.yaml").write_text(
        "devices:\n"
        "  - {id: pi4, profile: raspberry-pi-4, transport: {type: local}}\n"
        "  - {id: pi4-hat, profile: raspberry-pi-4-ina2xx, transport: {type: local}}\n"
        "  - {id: pi5, profile: raspberry-pi-5, transport: {type: local}}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fake_vcgencmd(lab: Path, monkeypatch) -> None:
    """vcgencmd of a Pi 5 answering from the recording (the PMIC cannot exist on this host)."""
    bin_dir = lab / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vcgencmd"
    exe.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  pmic_read_adc) cat '{PI5_RECORDING}' ;;\n"
        "  get_throttled) echo throttled=0x0 ;;\n"
        '  *) echo "error=2 error_msg=\\"Command not registered\\""; exit 2 ;;\n'
        "esac\n"
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_shipped_pi_profiles_pass_the_meter_check_on_stock_boards(pi_lab, monkeypatch, capsys):
    """A stock Pi 4 has no power sensor: its profile is a labelled estimate and passes; the INA2xx
    HAT's profile is the one that needs the sensor. A Pi 5 reads its PMIC; without vcgencmd's
    pmic_read_adc (not a Pi 5) the pmic profile fails, saying why."""
    fake_vcgencmd(pi_lab, monkeypatch)
    main(["--inventory", str(pi_lab / "inventory.yaml"), "devices", "check"])
    out = capsys.readouterr().out
    rows = table(out)
    assert rows["pi4"]["energy"] == "estimate"  # labelled as such in every result
    assert not [ln for ln in out.splitlines() if ln.startswith("pi4: FAIL")]
    watts = _pmic_watts_by_hand(PI5_RECORDING.read_text())
    assert rows["pi5"]["energy"] == f"pmic ok ({watts * 1000:.0f} mW)"
    assert not [ln for ln in out.splitlines() if ln.startswith("pi5: FAIL")]
    assert rows["pi4-hat"]["energy"] == "hwmon MISSING"  # the HAT profile on a board without the HAT
    assert "pi4-hat: FAIL: energy meter /sys/class/hwmon/hwmon2/power1_input" in out

    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])  # no vcgencmd: not a Pi 5
    main(["--inventory", str(pi_lab / "inventory.yaml"), "devices", "check", "pi5"])
    out = capsys.readouterr().out
    assert table(out)["pi5"]["energy"] == "pmic MISSING" and table(out)["pi5"]["verdict"] == "FAIL"
    assert (
        "pi5: FAIL: energy meter pmic (profile 'raspberry-pi-5'): vcgencmd not found: the pmic meter needs a "
        "Raspberry Pi 5 (Raspberry Pi OS); results would have no energy"
    ) in out


def test_pi5_measures_its_energy_from_the_pmic(pi_lab, monkeypatch, tflite_model):
    fake_vcgencmd(pi_lab, monkeypatch)
    p = hil("run", str(tflite_model), "--devices", "pi5", *FAST)
    assert p.returncode == 0, p.stderr[-3000:]
    store = ResultStore(pi_lab / "reports" / "results.sqlite")
    row = store.wide(p.stdout.strip().splitlines()[-1]).iloc[0]
    energy = store.raw(int(row["result_id"]))["energy"]
    mean_mw = _pmic_watts_by_hand(PI5_RECORDING.read_text()) * 1000
    assert energy["meter"] == "pmic" and energy["path"] == "vcgencmd pmic_read_adc" and energy["estimate"] is False
    assert energy["samples"] >= 1 and energy["mean_power_mw"] == pytest.approx(mean_mw, abs=1e-3)
    assert energy["includes_idle"] is True and "PMIC's rails" in energy["note"]  # the profile gives no idle power
    expected = mean_mw * row["latency_mean_us"] / 1000.0
    assert row["energy_per_inference_uj"] == pytest.approx(expected, rel=1e-6)

    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])  # a board without the PMIC
    p = hil("run", str(tflite_model), "--devices", "pi5", *FAST)
    assert p.returncode == 0, p.stderr[-3000:]
    warning = "energy meter: vcgencmd not found: the pmic meter needs a Raspberry Pi 5 (Raspberry Pi OS)"
    assert f"warning: {warning}; this result has no energy" in p.stderr
