"""MCU timing that cannot be fooled by a wrapping timer (issue 11, part 1).

The simulator (`hil mcu-sim`, real TFLite Micro) plays firmware whose microsecond timer wraps early
(`--timer-wrap-us`) and whose inferences take an exact, deterministic time on its clock
(`--inference-us`: the clock advances only by inferences, and the simulator spends as long on the
host's clock). The sequence of commands the host sends is deterministic too, so which window spans a
wrap is known, and every latency that is accepted must be exactly the simulated one: a window that
spans the wrap is measured correctly (the host knows the wrap period) or refused, never measured
wrong. The firmware side of the fix (a 64-bit extension of a wrapping cycle counter in
hb_protocol.c) runs on QEMU with a cycle counter that wraps every 1.34 s.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sim_process
import yaml
from conftest import REPO, hil

from harness.errors import ConfigError, InfraError
from harness.lab.config import load_profile
from harness.mcu.serial import session
from harness.mcu.serial.protocol import TIMER_WRAP, check_lap


def _sine() -> Path:
    """float32 [1,1] -> [1,1], shipped with the tflite-micro package: no conversion needed."""
    import importlib.util

    spec = importlib.util.find_spec("tflite_micro")
    assert spec is not None and spec.submodule_search_locations, "tflite-micro is a dependency of hilbench"
    return Path(list(spec.submodule_search_locations)[0]) / "python" / "tflite_micro" / "sine_float.tflite"


SINE = _sine()
INPUT = np.float32(0.5).tobytes()
US = 2000  # simulated microseconds per inference


def simulator(*args: str, link: Path | None = None):
    return sim_process.simulator(SINE, *args, link=link)


def client_on(port: str, wrap_us: int = TIMER_WRAP):
    return sim_process.client_on(port, infer_timeout=5.0, timer_wrap_us=wrap_us)


def plan(windows: int, window_s: float, wrap_s: float = TIMER_WRAP / 1e6) -> session.PerfPlan:
    return session.PerfPlan(
        windows=windows,
        window_s=window_s,
        min_per_window=1,
        max_seconds=100.0,
        warmup_runs=1,
        warmup_seconds=0.0,
        timer_wrap_s=wrap_s,
    )


def test_window_spanning_the_wrap_is_measured_exactly():
    # timer wraps every 1 s, starting 0.1 s before the wrap: the first window (936000 -> 1252000) spans it
    with simulator("--timer-wrap-us", "1000000", "--inference-us", str(US), "--clock-start", "900000") as (port, out):
        assert "timer wraps at 1000000 us, 2000 us per inference (virtual clock)" in out
        with client_on(port, wrap_us=1_000_000) as client:
            said: list[str] = []
            perf = session.performance(client, INPUT, plan(5, 0.3, wrap_s=1.0), 1, said.append)
    windows = perf["windows"]
    assert len(windows) == 5
    spanning = [w for w in windows if w["t1"] < w["t0"]]
    assert spanning and windows[0] in spanning  # deterministic: window 1 spans the wrap
    assert [w["latency_us"] for w in windows] == [float(US)] * 5
    assert all(w["elapsed_us"] == w["n"] * US for w in windows)
    assert perf["latency_us"]["p50"] == US and perf["first_inference_us"] == US
    assert client.retried == 0 and perf["config"]["timer_wrap_s"] == 1.0


def test_a_wrap_the_host_does_not_expect_is_refused_and_the_window_remeasured():
    # the same board, but the host assumes the default 2^32 us: a window spanning the 1 s wrap would
    # read 71.6 min; it is refused (more than the host waited) and measured again, never stored
    with simulator("--timer-wrap-us", "1000000", "--inference-us", str(US), "--clock-start", "900000") as (port, _):
        with client_on(port) as client:
            perf = session.performance(client, INPUT, plan(5, 0.3), 1, lambda m: None)
            log = client.log_lines
    assert [w["latency_us"] for w in perf["windows"]] == [float(US)] * 5
    assert all(w["t1"] > w["t0"] for w in perf["windows"])
    assert client.retried == 3  # windows 1, 3 and 5 of the deterministic sequence spanned the wrap
    refused = [m for m in log if "one timer wrap added" in m]
    assert len(refused) == 3, log
    assert "but the answer came" in refused[0] and "mcu.timer_wrap_s = 4294.97 s" in refused[0]


def test_a_window_longer_than_the_timer_wrap_is_refused_never_measured():
    # a 0.7 s window on a timer that wraps every 0.5 s: every reading is short by the wrap (or, once,
    # "negative" and taken for a 32-bit wrap): all refused, the job fails with the reason
    with simulator("--timer-wrap-us", "500000", "--inference-us", str(US)) as (port, _):
        with client_on(port) as client:
            with pytest.raises(InfraError) as exc:
                session.performance(client, INPUT, plan(1, 0.7), 1, lambda m: None)
            log = client.log_lines
    msg = str(exc.value)
    assert msg.startswith("device 'sim': bad answer to 'infer 368 1%'") and "timer wrapped inside the window" in msg
    assert "more than the link accounts for" in msg
    assert any("one timer wrap added" in m for m in log)  # the middle attempt read T1 < T0


def test_lap_checks_for_the_fast_core_of_the_issue():
    dwt_wrap = 8_947_849  # DWT->CYCCNT / 480 on a 480 MHz Cortex-M7 wraps after 2^32 cycles = 8.95 s
    t0 = 100_000
    t1 = (t0 + 10_500_000) % dwt_wrap  # a 10.5 s window reads 1.55 s
    assert t1 - t0 == 10_500_000 - dwt_wrap
    assert check_lap(t0, t1, 1000, 10, 10.6)[0] is None  # the host assumes 2^32 us: refused
    assert "timer wrapped inside the window" in check_lap(t0, t1, 1000, 10, 10.6)[1]
    assert check_lap(t0, t1, 1000, 10, 10.6, wrap_us=dwt_wrap)[0] is None  # longer than the wrap: refused
    t0 = 8_000_000
    t1 = (t0 + 12_000_000) % dwt_wrap  # 12 s: one wrap added (the host knows it) still reads 3.05 s
    assert t1 < t0 and check_lap(t0, t1, 1000, 10, 12.05, wrap_us=dwt_wrap)[0] is None
    t1 = (t0 + 4_000_000) % dwt_wrap  # a 4 s window across the wrap, the host knowing the wrap
    assert check_lap(t0, t1, 1000, 10, 4.05, wrap_us=dwt_wrap) == (4_000_000, None)
    assert check_lap(t0, t1, 1000, 10, 4.05)[0] is None  # ... not knowing it: 71.6 min, refused
    # hilbench firmware prints 64-bit microseconds: beyond 2^32 nothing wraps, backwards is negative
    big = 5 * 2**32
    assert check_lap(big, big + 10_500_000, 1000, 10, 10.6) == (10_500_000, None)
    assert "negative lap" in check_lap(big, big - 5, 1, 0, 0.01)[1]
    # both directions against the host: longer than the host waited, or far shorter
    assert "corrupted timestamp" in check_lap(0, 3_000_000, 100, 0, 2.0)[1]
    assert check_lap(0, 1_500_000, 100, 0, 2.0)[0] is None  # 0.5 s unaccounted for on a fast link
    assert check_lap(0, 1_900_000, 100, 0, 2.0) == (1_900_000, None)
    assert check_lap(0, 1_000_000, 100, 100, 2.1) == (1_000_000, None)  # the warmups took the rest
    # the tolerance is capped below half the wrap: a missed wrap can never pass, however slow the link
    assert check_lap(0, 300_000, 100, 0, 1.3, wrap_us=1_000_000, slack_s=5.0)[0] is None
    assert check_lap(0, 300_000, 100, 0, 0.31, wrap_us=1_000_000, slack_s=5.0) == (300_000, None)


def _profile(tmp_path: Path, **changes) -> Path:
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        prof.setdefault(section, {})[name] = value
    path = tmp_path / "h7wrap.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path


def test_profiles_keep_windows_below_the_wrap(tmp_path):
    from harness.core.jobs import RunOptions

    with pytest.raises(ConfigError) as exc:
        load_profile(_profile(tmp_path, mcu__timer_wrap_s=8.947849))  # stm32h7: 10 s windows
    assert "h7wrap.yaml" in str(exc.value)
    assert (
        "benchmark.window_seconds: 10 s windows do not fit the firmware timer, which wraps every "
        "8.94785 s (mcu.timer_wrap_s); a window may last at most 4.47392 s"
    ) in str(exc.value)
    prof = load_profile(_profile(tmp_path, mcu__timer_wrap_s=1.0, benchmark__window_seconds=0.5))
    p = session.PerfPlan.from_options(RunOptions(min_seconds=3.0).resolved(prof), prof)
    assert (p.windows, p.window_s, p.split_for_timer) == (6, 0.5, True)  # not 5 x 0.6 s: 6 x 0.5 s
    p = session.PerfPlan.from_options(RunOptions(min_seconds=2.0).resolved(prof), prof)
    assert (p.windows, p.window_s, p.split_for_timer) == (5, 0.4, False)
    assert p.per_window(1000.0, 10.0) == 500  # never more inferences than half the wrap period holds
    assert session.timer_wrap_us(prof) == 1_000_000
    assert session.timer_wrap_us(load_profile(REPO / "device_profiles" / "stm32h7.yaml")) == 2**32


def test_min_seconds_is_taken_as_asked_on_serial_devices():
    """`--min-seconds 1` equals the profile's (Linux) benchmark.min_seconds default and was taken for
    "not given": stm32h7's 5 x 10 s windows ran (79 s instead of ~5 s) (issue 20)."""
    from harness.core.jobs import RunOptions

    prof = load_profile(REPO / "device_profiles" / "stm32h7.yaml")
    assert prof.benchmark.min_seconds == 1.0 and (prof.benchmark.windows, prof.benchmark.window_seconds) == (5, 10.0)
    p = session.PerfPlan.from_options(RunOptions(min_seconds=1.0).resolved(prof), prof)
    assert (p.windows, p.window_s) == (5, 0.2)
    p = session.PerfPlan.from_options(RunOptions().resolved(prof), prof)  # not given: the profile's windows
    assert (p.windows, p.window_s) == (5, 10.0) and RunOptions().resolved(prof).min_seconds == 50.0


def _lab(workspace: Path, **changes) -> None:
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["mcu"]["timer_wrap_s"] = 1.0
    prof["benchmark"] = {"windows": 3, "window_seconds": 0.3, **changes}
    (workspace / "device_profiles" / "h7wrap.yaml").write_text(yaml.safe_dump(prof))
    t = {"type": "serial", "port": str(workspace / "dut"), "timeout": 2.0, "infer_timeout": 5.0}
    (workspace / "inventory.yaml").write_text(
        f"devices:\n  - id: h7\n    profile: h7wrap\n    transport: {json.dumps(t)}\n"
    )


def _docs(workspace: Path, run_id: str) -> list[dict]:
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    return [json.loads(r[0]) for r in db.execute("SELECT raw FROM results WHERE run_id=?", (run_id,))]


def test_hil_run_across_the_wrap_stores_the_exact_latency(workspace):
    from harness.store.results import ResultStore

    args = ("--timer-wrap-us", "1000000", "--inference-us", str(US), "--clock-start", "900000")
    _lab(workspace)
    with simulator(*args, link=workspace / "dut"):
        p = hil("run", str(SINE), "--min-runs", "3", "--warmup-seconds", "0", check=True)
    run_id = p.stdout.strip().splitlines()[-1]
    row = ResultStore(workspace / "reports" / "results.sqlite").wide(run_id).iloc[0]
    assert row["status"] == "ok" and row["latency_count"] == 3
    assert row["latency_p50_us"] == US and row["latency_min_us"] == US and row["latency_max_us"] == US
    doc = _docs(workspace, run_id)[0]
    assert any(w["t1"] < w["t0"] for w in doc["windows"]) and doc["config"]["timer_wrap_s"] == 1.0
    # --min-seconds asking for windows longer than half the wrap: more, shorter windows
    _lab(workspace)
    with simulator(*args, link=workspace / "dut"):
        p = hil("-v", "run", str(SINE), "--min-seconds", "1.8", "--min-runs", "3", "--warmup-seconds", "0", check=True)
    assert "--min-seconds: 4 windows of 0.450 s, each under half the firmware timer's wrap period" in p.stderr
    doc = _docs(workspace, p.stdout.strip().splitlines()[-1])[0]
    assert [w["latency_us"] for w in doc["windows"]] == [float(US)] * 4 and doc["config"]["windows_split_for_timer"]
    # a profile whose windows cannot fit the timer is refused before anything runs
    _lab(workspace, window_seconds=0.8)
    p = hil("run", str(SINE))
    assert p.returncode == 3
    assert re.search(
        r"h7wrap\.yaml.*benchmark\.window_seconds: 0\.8 s windows do not fit the firmware timer, "
        r"which wraps every 1 s \(mcu\.timer_wrap_s\)",
        p.stderr,
    ), p.stderr


# ------------------------------------------------------------------ the firmware side, on QEMU


@pytest.mark.qemu
def test_firmware_extends_a_fast_wrapping_cycle_counter(tmp_path):
    """hb_protocol.c with HB_PORT_TIMER_CYCLES: the QEMU port's cycle counter runs at 3.2 GHz (25 MHz
    SysTick ticks x 128) and wraps every 1.34 s, like DWT->CYCCNT on a fast core. A window spanning
    several wraps must give the same per-inference time as a short window."""
    from test_mcu_qemu import Port, _infer, _load

    from harness.mcu import qemu

    elf = qemu.build_firmware(tmp_path / "cycles", {"HB_PORT_TIMER_CYCLES": "1", "HB_QEMU_CYCLES_SHIFT": "7"})
    wrap_us = 2**32 / (25e6 * 128) * 1e6
    x = (np.arange(64) % 256 - 128).astype(np.int8).tobytes()
    with qemu.QemuDevice(elf) as dev:
        port = Port(dev.url)
        try:
            port.lines_until_ready()
            _load(port, x)
            t0, t1, short_results = _infer(port, 200, 0)
            per = (t1 - t0) / 200
            n = math.ceil(3.2 * wrap_us / per)  # > 3 wrap periods of the counter
            t0, t1, results = _infer(port, n, 0)
        finally:
            port.close()
    assert t1 - t0 > 3 * wrap_us  # the lap spans three wraps of the 32-bit counter ...
    assert abs((t1 - t0) / n / per - 1) < 0.01  # ... and still measures the same inference time
    assert results == short_results
