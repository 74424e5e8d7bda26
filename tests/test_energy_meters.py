"""Energy on MCU boards with real meter protocols (issue 11, part 2).

The PPK2 and LPM01A emulators (`hil meter-sim`) answer the instruments' wire protocols on
pseudo-terminals and stream a known waveform: idle current outside windows, an active current (plus a
zero-mean ripple) between the two timestamp edges the simulated board (`hil mcu-sim --energy-mode`,
real TFLite Micro, deterministic clock) sends over the marker wire. The window therefore lasts
exactly N x inference time on the meter's sample clock, and the energy per inference the host must
find is known in advance: supply x active current x inference time, plus the ripple's remainder.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sim_process
import yaml
from conftest import REPO, hil
from test_mcu_timer import INPUT, SINE, plan

from harness.errors import ConfigError, InfraError
from harness.lab.config import EnergyMeter, MeterConnection, load_profile
from harness.mcu.serial import energy_mode
from harness.meters import lpm01a, ppk2
from harness.meters.capture import Capture, falling_edges, marked_window

US = 1000  # simulated microseconds per inference
SUPPLY_V = 3.3
IDLE_MA, ACTIVE_MA, RIPPLE_MA = 1.5, 20.0, 2.0
RATES = {"ppk2": 100_000.0, "lpm01a": 1000.0}


def expected_uj(kind: str, n: int) -> float:
    """Supply x (active current x window + the ripple pattern's remainder) / N."""
    samples = round(n * US * 1e-6 * RATES[kind])
    remainder = [0, 1, 2, 1][samples % 4] * RIPPLE_MA  # +r +r -r -r: what is left of an incomplete period
    charge_mas = (ACTIVE_MA * samples + remainder) / RATES[kind]  # mA x s
    return SUPPLY_V * charge_mas * 1000.0 / n  # mJ -> uJ


def _meter(kind: str, port: str, **spec) -> ppk2.Ppk2Meter | lpm01a.Lpm01aMeter:
    spec = EnergyMeter(type=kind, supply_mv=SUPPLY_V * 1000, idle_seconds=0.1, **spec)
    cls = ppk2.Ppk2Meter if kind == "ppk2" else lpm01a.Lpm01aMeter
    return cls(spec, "device 'h7'", MeterConnection(port=port))


# ------------------------------------------------------------------ decoding, on known bytes


def test_ppk2_sample_decoding_matches_a_hand_computed_value():
    meta = ppk2.parse_metadata(
        "R2: 10.3027\nGS2: 18.0115\nGI2: 0.9609\nO2: 64.6020\nS2: 0.000005281\n"
        "I2: 0.000036439\nUG2: 1.00\nGS0: 0.0000\nEND\n"
    )
    cal = ppk2.calibration(meta)
    raw = np.array([(2 << 14) | 1000 | (5 << 18) | (0b1111_1110 << 24)], dtype=np.uint32)
    # by hand: x = (4 x 1000 - 64.602) x 1.8 / 163840 / 10.3027 = 4.1965285e-3 A before the gain terms;
    # I = 1.00 x (x (18.0115 x + 0.9609) + (5.281e-6 x 3.3 + 3.6439e-5)) = 4.4035083e-3 A
    assert ppk2.current_a(raw, cal, 3300)[0] == pytest.approx(4.4035083e-3, rel=1e-7)
    assert cal["gs"][0] == 1.0 and cal["r"][4] == 0.043  # zero or missing: the official software's defaults
    assert falling_edges((raw >> 24).astype(np.uint8).repeat(1), 0).size == 0
    logic = np.array([0xFF, 0xFE, 0xFF, 0xFF, 0xFE, 0xFE, 0xFF], dtype=np.uint8)
    assert falling_edges(logic, 0).tolist() == [1, 4] and falling_edges(logic, 1).size == 0
    assert ppk2.voltage_bytes(3300) == b"\x0d\x0c\xe4" and ppk2.voltage_bytes(800) == b"\x0d\x03\x20"


def test_ppk2_counter_gaps_count_as_lost_samples():
    assert ppk2.lost_samples(np.arange(200) % 64) == 0
    assert ppk2.lost_samples(np.r_[np.arange(10), np.arange(13, 20)] % 64) == 3
    assert ppk2.lost_samples(np.r_[np.arange(60, 64), np.arange(2, 5)]) == 2  # across the wrap
    capture = Capture(power_w=np.ones(10), rate_hz=10.0, edges=np.array([2, 8]), lost_samples=3)
    with pytest.raises(InfraError, match=r"lost 3 sample\(s\) during the window"):
        marked_window(capture, 6, "device 'h7'")


def test_lpm01a_stream_parsing():
    assert lpm01a.decode_value("6409-07") == pytest.approx(6409e-7)
    assert lpm01a.decode_value("1234+01") == pytest.approx(12340.0)
    assert lpm01a.decode_value("TimeStamp: 001s 000ms, buff 00%") is None
    text = (
        "\r\nPowerShield > ack start\r\n\r\n1000-06\r\n\x001000-06\r\nevent 07 ris\r\n2000-06\r\n"
        "\r\nTimeStamp: 000s 003ms, buff 12%\r\n2000-06\r\nevent 08 ris\r\n1000-06\r\nend\r\nsummary beg\r\n"
        "1000-06\r\n2000-06\r\nsummary end\r\n\r\nPowerShield > Acquisition completed\r\n"
    )
    energy, edges = lpm01a.parse_stream(text, "device 'h7'")
    assert energy.tolist() == pytest.approx([1e-3, 1e-3, 2e-3, 2e-3, 1e-3]) and edges == [2, 4]
    with pytest.raises(InfraError, match=r"event counters are not consecutive \(\[1, 3\]\)"):
        lpm01a.parse_stream("event 01 ris\r\n1000-06\r\nevent 03 ris\r\n", "device 'h7'")
    with pytest.raises(InfraError, match="reported an error during the capture: PowerShield > error"):
        lpm01a.parse_stream("1000-06\r\nPowerShield > error voltage drop\r\n", "device 'h7'")


# ------------------------------------------------------------------ the emulated bench


@pytest.mark.parametrize("kind", ["ppk2", "lpm01a"])
def test_known_waveform_gives_the_known_energy_per_inference(kind, tmp_path):
    wire = tmp_path / "wire"
    with (
        sim_process.meter(
            kind, wire, "--idle-ma", str(IDLE_MA), "--active-ma", str(ACTIVE_MA), "--ripple-ma", str(RIPPLE_MA)
        ) as (port, _),
        sim_process.simulator(SINE, "--energy-mode", str(wire), "--inference-us", str(US)) as (dut, _),
        sim_process.client_on(dut, infer_timeout=5.0) as client,
    ):
        assert client.probe_timestamp_mode() == "energy"
        meter = _meter(kind, port)
        meter.open()
        try:
            said: list[str] = []
            perf = energy_mode.performance(client, meter, meter.spec, INPUT, plan(3, 0.15), 1, said.append)
        finally:
            meter.close()
    n = perf["config"]["iterations_per_window"]
    e = perf["energy"]
    assert [w["latency_us"] for w in perf["windows"]] == [US] * 3  # timed by the meter's sample clock
    assert e["energy_per_inference_uj"] == pytest.approx(expected_uj(kind, n), rel=1e-3)
    assert e["windows_uj"] == pytest.approx([expected_uj(kind, n)] * 3, rel=1e-3)
    assert e["idle_power_mw"] == pytest.approx(IDLE_MA * SUPPLY_V, rel=1e-3)
    assert e["meter"] == kind and e["sample_rate_hz"] == RATES[kind] and e["supply_mv"] == 3300
    assert e["estimate"] is False and "between the timestamp edges" in e["method"]
    assert any(re.match(rf"window 3/3: {n} inferences, 1000.00 us and [\d.]+ uJ per inference", s) for s in said)


def test_a_marker_that_never_reaches_the_meter_is_refused(tmp_path):
    with (
        sim_process.meter("ppk2", tmp_path / "wire") as (port, _),
        sim_process.simulator(SINE, "--energy-mode", str(tmp_path / "elsewhere"), "--inference-us", str(US)) as (
            dut,
            _,
        ),
        sim_process.client_on(dut, infer_timeout=5.0) as client,
    ):
        meter = _meter("ppk2", port, marker_input=3)
        meter.open()
        try:
            with pytest.raises(
                InfraError,
                match=r"device 'sim': 0 falling edge\(s\) of the timestamp marker .*"
                r"wired to the PPK2's logic input D3\?",
            ):
                energy_mode.performance(client, meter, meter.spec, INPUT, plan(2, 0.05), 1, lambda s: None)
        finally:
            meter.close()
        assert client.retried == client.retries  # every attempt re-measured the whole window first


def test_lpm01a_refusals_name_the_device_and_command(tmp_path):
    with sim_process.meter("lpm01a", tmp_path / "wire") as (port, _):
        meter = _meter("lpm01a", port)
        meter.port = lpm01a.MeterPort(port, lpm01a.BAUDRATE, "device 'h7': LPM01A")
        try:  # no htc first: the instrument refuses, the driver says which command
            with pytest.raises(
                InfraError,
                match=r"device 'h7': the LPM01A on .* refused 'volt 3300m': "
                r"PowerShield > error volt 3300m",
            ):
                meter._command("volt 3300m")
        finally:
            meter.port.close()
    with pytest.raises(InfraError, match=r"supply_mv 5000 is outside what an LPM01A supplies \(1800-3300 mV\)"):
        lpm01a.Lpm01aMeter(EnergyMeter(type="lpm01a", supply_mv=5000), "device 'h7'", MeterConnection(port="x"))
    with pytest.raises(InfraError, match="cannot open serial port /nonexistent/tty"):
        _meter("ppk2", "/nonexistent/tty").open()


# ------------------------------------------------------------------ hil run + gate, end to end


def _lab(workspace: Path, kind: str, *, meter_port: str | None, budget: float | None = None) -> None:
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["energy_meter"] = {"type": kind, "supply_mv": 3300, "idle_seconds": 0.1}
    prof["benchmark"] = {"windows": 3, "window_seconds": 0.15}
    if budget is not None:
        prof["budgets"] = {"max_energy_per_inference_uj": budget}
    (workspace / "device_profiles" / "h7e.yaml").write_text(yaml.safe_dump(prof))
    dev = {
        "id": "h7",
        "profile": "h7e",
        "transport": {"type": "serial", "port": str(workspace / "dut"), "timeout": 5.0, "infer_timeout": 30.0},
    }
    if meter_port is not None:
        dev["meter"] = {"port": meter_port}
    (workspace / "inventory.yaml").write_text(yaml.safe_dump({"devices": [dev]}))


@pytest.mark.parametrize("kind", ["ppk2", "lpm01a"])
def test_hil_run_stores_measured_energy_with_provenance_and_the_gate_budgets_it(kind, workspace):
    from harness.store.results import ResultStore

    wire = workspace / "wire"
    run = ("run", str(SINE), "--min-runs", "3", "--warmup-seconds", "0")
    with (
        sim_process.meter(kind, wire, "--ripple-ma", "0", link=workspace / "meter"),
        sim_process.simulator(SINE, "--energy-mode", str(wire), "--inference-us", str(US), link=workspace / "dut"),
    ):
        _lab(workspace, kind, meter_port=str(workspace / "meter"))
        first = hil(*run, check=True).stdout.strip().splitlines()[-1]
        if kind == "ppk2":  # the rest does not depend on the meter's kind
            second = hil(*run, check=True).stdout.strip().splitlines()[-1]
            # the gate: the second run against the first passes on energy; a budget of 60 uJ fails it
            hil("gate", "--run", first, check=True)
            passed = hil("gate", "--run", second, "--no-record")
            _lab(workspace, kind, meter_port=str(workspace / "meter"), budget=60.0)
            over = hil("gate", "--run", second, "--no-record")
            _lab(workspace, kind, meter_port=None)
            missing = hil(*run)
    store = ResultStore(workspace / "reports" / "results.sqlite")
    row = store.wide(first).iloc[0]
    assert row["status"] == "ok" and row["latency_p50_us"] == US
    assert row["energy_per_inference_uj"] == pytest.approx(SUPPLY_V * 20.0 * US / 1000.0, rel=1e-3)  # 66 uJ
    assert row["idle_power_mw"] == pytest.approx(1.5 * SUPPLY_V, rel=1e-3)
    assert row["mean_power_mw"] == pytest.approx(20.0 * SUPPLY_V, rel=1e-3)
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    doc = json.loads(db.execute("SELECT raw FROM results WHERE run_id=?", (first,)).fetchone()[0])
    assert doc["energy"]["meter"] == kind and doc["energy"]["port"] == str(workspace / "meter")
    assert doc["config"]["timing"] == "energy-meter" and doc["device"]["timestamp_mode"] == "energy"
    if kind != "ppk2":
        return
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"energy_per_inference_uj", passed.stdout), passed.stdout
    assert over.returncode == 1, over.stdout + over.stderr
    assert re.search(
        r"energy_per_inference_uj 6[56](\.\d+)? exceeds budget max_energy_per_inference_uj \(<= 60\)", over.stdout
    ), over.stdout
    # an energy-mode board without its meter in the inventory: a clear configuration error
    assert missing.returncode == 3, missing.stderr
    assert "device 'h7': profile 'h7e' measures energy with a " + kind in missing.stderr
    assert "meter: {port: /dev/ttyACM1}" in missing.stderr


def test_external_meters_need_a_supply_voltage(tmp_path):
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["energy_meter"] = {"type": "ppk2"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(prof))
    with pytest.raises(ConfigError, match=r"energy_meter.*supply_mv: required for type ppk2"):
        load_profile(tmp_path / "p.yaml")
    assert load_profile(REPO / "device_profiles" / "stm32h7.yaml").energy_meter.supply_mv == 3300


class FakeJoulescopeDriver:
    """pyjoulescope_driver's Driver as the meter uses it (device_paths/open/publish/subscribe/close). The
    Joulescope speaks USB, which no pty can play; this plays the driver's documented callback blocks:
    float32 current and voltage, GPI as eight one-bit samples per byte, each block with the sample id
    of its first sample."""

    def __init__(self):
        self.subs: dict[str, object] = {}
        self.published: list[tuple[str, object]] = []

    def device_paths(self):
        return ["u/js220/000415"]

    def open(self, path, mode):
        self.opened = (path, mode)

    def publish(self, topic, value):
        self.published.append((topic, value))

    def subscribe(self, topic, flags, fn):
        self.subs[topic] = fn

    def close(self, path):
        self.closed = path

    def block(self, signal: str, sample_id: int, data) -> None:
        self.subs[f"u/js220/000415/s/{signal}/!data"](
            f"u/js220/000415/s/{signal}/!data", {"sample_id": sample_id, "data": data, "decimate_factor": 1}
        )


def test_joulescope_blocks_are_aligned_unpacked_and_integrated():
    from harness.meters.joulescope import JoulescopeMeter

    fake = FakeJoulescopeDriver()
    spec = EnergyMeter(type="joulescope", supply_mv=3300, sample_rate_hz=1000)
    meter = JoulescopeMeter(spec, "device 'esp'", MeterConnection(port="u/js220/000415"), driver=fake)
    meter.open()
    assert ("u/js220/000415/h/fs", 1000) in fake.published
    meter.start()
    i = np.r_[np.full(8, 0.0015), np.full(16, 0.020), np.full(16, 0.0015)].astype(np.float32)
    gpi = np.ones(40, dtype=np.uint8)
    gpi[[8, 24]] = 0  # the two timestamp pulses, 1 sample each
    # voltage starts 8 samples later than current: the capture keeps only what both cover
    fake.block("i", 100, i[:20])
    fake.block("i", 120, i[20:])
    fake.block("v", 108, np.full(32, 3.3, dtype=np.float32))
    fake.block("gpi/0", 100, np.packbits(gpi, bitorder="little"))
    capture = meter.stop()
    assert ("u/js220/000415/s/i/ctrl", 0) in fake.published
    assert capture.edges.tolist() == [0, 16] and len(capture.power_w) == 32
    w = marked_window(capture, 4, "device 'esp'", meter.marker_name())
    assert w.energy_uj == pytest.approx(3.3 * 0.020 * 16 / 1000 / 4 * 1e6, rel=1e-5)  # 264 uJ per inference
    assert w.latency_us == pytest.approx(4000.0)
    meter.start()
    fake.block("i", 200, np.zeros(8, dtype=np.float32))
    fake.block("i", 216, np.zeros(8, dtype=np.float32))  # 208..215 never arrived
    with pytest.raises(InfraError, match=r"device 'esp': samples 208\.\.215 missing from the Joulescope stream"):
        meter.stop()
    meter.close()
    assert fake.closed == "u/js220/000415"


def test_devices_check_opens_the_meter_and_says_what_the_firmware_measures(workspace):
    wire = workspace / "wire"
    with (
        sim_process.meter("lpm01a", wire, link=workspace / "meter"),
        sim_process.simulator(SINE, "--energy-mode", str(wire), link=workspace / "dut"),
    ):
        _lab(workspace, "lpm01a", meter_port=str(workspace / "meter"))
        ok = hil("devices", "check")
        _lab(workspace, "lpm01a", meter_port=str(workspace / "no-meter"))
        missing = hil("devices", "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    out = ok.stdout + ok.stderr
    assert "lpm01a ok" in out and "board_id 540619864-1110659081-4784204, firmware 1.0.6" in out
    assert "the firmware's timestamp pin goes to the LPM01A's D7 input" in out
    assert "firmware in energy mode: latency and energy come from the meter" in out
    assert missing.returncode != 0
    out = missing.stdout + missing.stderr
    assert "lpm01a MISSING" in out and f"device 'h7': LPM01A: cannot open serial port {workspace / 'no-meter'}" in out
