"""Measurement conditions in the device runner: disturbed windows from fed sysfs files, the default
of one thread, CPU pinning, and model memory that excludes the runner's own buffers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.device import linux_runner as runner


@pytest.fixture()
def sysfs(tmp_path, monkeypatch):
    cpu = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    (cpu / "stats").mkdir(parents=True)
    files = {"freq": cpu / "scaling_cur_freq", "gov": cpu / "scaling_governor", "tis": cpu / "stats/time_in_state"}
    monkeypatch.setattr(runner, "CPU_FREQ", str(files["freq"]))
    monkeypatch.setattr(runner, "CPU_GOVERNOR", str(files["gov"]))
    monkeypatch.setattr(runner, "TIME_IN_STATE", str(files["tis"]))
    monkeypatch.setattr(runner, "_throttled_raw", lambda: None)

    def write(freq=1800000, gov="performance", tis=None):
        files["freq"].write_text(f"{freq}\n")
        files["gov"].write_text(gov + "\n")
        files["tis"].write_text("".join(f"{f} {t}\n" for f, t in (tis or {}).items()))

    return write


def test_steady_window_is_clean(sysfs):
    sysfs(tis={600000: 100, 1800000: 5000})
    before = runner.telemetry_snapshot()
    sysfs(tis={600000: 100, 1800000: 5300})
    after = runner.telemetry_snapshot()
    assert before["governor"] == "performance" and before["time_in_state"]["1800000"] == 5000
    assert runner.window_disturbed(before, after) == []


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"freq": 1500000}, "cpu frequency changed (1800000 -> 1500000 kHz)"),
        ({"gov": "ondemand"}, "governor changed (performance -> ondemand)"),
        ({"tis": {600000: 130, 1800000: 5270}}, "10% of the window away from 1800000 kHz"),
    ],
)
def test_frequency_or_governor_changes_disturb_the_window(sysfs, change, reason):
    sysfs(tis={600000: 100, 1800000: 5000})
    before = runner.telemetry_snapshot()
    after_state = {"freq": 1800000, "gov": "performance", "tis": {600000: 100, 1800000: 5300}}
    after_state.update(change)
    sysfs(**after_state)
    reasons = runner.window_disturbed(before, runner.telemetry_snapshot())
    assert any(reason in r for r in reasons), reasons


def test_throttling_bits_disturb_the_window():
    before = {"throttled_raw": "0x0"}
    assert runner.window_disturbed(before, {"throttled_raw": "0x0"}) == []
    assert runner.window_disturbed(before, {"throttled_raw": "0x50005"})  # under-voltage + throttled now
    assert runner.window_disturbed(before, {"throttled_raw": "0x40000"})  # throttling occurred meanwhile


def test_one_thread_by_default_pinning_and_model_memory(tmp_path, tiny_model):
    import tensorflow as tf

    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tiny_model["model"]).convert())
    docs = []
    for extra in ([], ["--cpus", "0"]):
        p = subprocess.run(
            [
                sys.executable,
                runner.__file__,
                "--model",
                str(path),
                "--min-runs",
                "20",
                "--min-seconds",
                "0",
                "--warmup-runs",
                "5",
                "--warmup-seconds",
                "0",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        docs.append(json.loads(p.stdout))
    plain, pinned = docs
    assert plain["config"]["num_threads"] == 1
    assert pinned["config"]["cpus"] == [0]
    if hasattr(os, "sched_getaffinity"):
        assert plain["config"]["cpus"] == sorted(os.sched_getaffinity(0))
    mem = plain["memory"]
    assert 0 < mem["model_memory_kb"] <= mem["peak_rss_delta_kb"]
    assert plain["telemetry"]["disturbed"] in (True, False) and "disturbed_reasons" in plain["telemetry"]
    bad = subprocess.run(
        [sys.executable, runner.__file__, "--model", str(path), "--cpus", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--cpus must be a comma list" in json.loads(bad.stdout)["error"]
