"""Per-operator profiles on MCU boards (issue 22): the `hb-profile%` extension in `hil mcu-sim`, in the
generated firmware (QEMU mps2-an386 and the TFLM glue), and `hil run --profile` collecting it.

The simulator runs as a subprocess on a real pty with a virtual clock (--inference-us), so its
modelled ticks are exact; the QEMU firmware runs under -icount, so its cycle counts do not depend on
the host's load.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import hil
from test_serial_protocol import lines, scripted  # noqa: F401  (the scripted-device fixture)

from harness.mcu.serial.protocol import BadResponse
from harness.mcu.sim.op_costs import split_ticks
from harness.models.inspect.analysis import analyze

RUN_FAST = ["--min-seconds", "0.1", "--min-runs", "5", "--warmup-seconds", "0"]
INFERENCE_US = 700
ARM_GCC = shutil.which("arm-none-eabi-gcc")
ARM_GXX = shutil.which("arm-none-eabi-g++")
M4 = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def mcu_model(tiny_model, tmp_path_factory) -> dict:
    """The tiny conv classifier as int8 for the device (one conversion, shared cache)."""
    cache = tmp_path_factory.mktemp("opmcu-cache")
    env = {"HILBENCH_CACHE": str(cache)}
    p = hil("convert", str(tiny_model["path"]), "--variants", "int8", env=env, check=True)
    rows = [line.split("\t") for line in p.stdout.splitlines()]
    artifact = next(r[2] for r in rows if len(r) == 3 and r[0] == "int8")
    return {"int8": artifact, "env": env, "keras": str(tiny_model["path"])}


def lab(workspace: Path, port: str) -> None:
    t = {"type": "serial", "port": port, "timeout": 1.0, "infer_timeout": 5.0, "accuracy_samples": 0}
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: h7\n    profile: stm32h7\n    transport: " + json.dumps(t) + "\n"
    )


def run_doc(workspace: Path, stdout: str) -> dict:
    """The run's result document, its stored per-operator profile put back under `op_profile` (the
    store keeps a profile's ops in op_times and only its header in the document)."""
    from harness.store.results import ResultStore

    run_id = stdout.strip().splitlines()[-1]
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    (rid, raw) = db.execute("SELECT result_id, raw FROM results WHERE run_id=?", (run_id,)).fetchone()
    doc = json.loads(raw)
    stored = ResultStore(workspace / "reports" / "results.sqlite", create=False, read_only=True).op_profile(rid)
    if stored is not None:
        doc["op_profile"] = stored.to_dict()
    return doc


def sim_commands(proc: subprocess.Popen) -> list[str]:
    """What the simulator received (its -v trace on stderr), read after it was stopped."""
    proc.terminate()
    proc.wait(timeout=10)
    assert proc.stderr is not None
    return [line.split("<- ", 1)[1].rstrip("%\n") for line in proc.stderr if "<- " in line]


def start_sim(model: str, *args: str) -> tuple[subprocess.Popen, str]:
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "mcu-sim", model, "-v", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:  # the simulator says where it serves once it is ready
        out.append(line)
        if line.startswith("serving on "):
            return proc, line.split()[2]
    proc.wait(timeout=10)
    raise AssertionError(f"mcu-sim exited early: {''.join(out)}")


# ---------------------------------------------------------------------------------- the simulator


def test_split_ticks_adds_up_exactly_and_follows_the_weights():
    rng = random.Random(5)
    for _ in range(500):
        weights = [rng.randint(0, 10**6) for _ in range(rng.randint(1, 40))]
        total = rng.randint(0, 10**7)
        ticks = split_ticks(total, weights)
        assert sum(ticks) == total and len(ticks) == len(weights)
        if sum(weights):  # each op within one tick of its exact share
            assert all(abs(t - total * w / sum(weights)) < 1 for w, t in zip(weights, ticks))
    assert split_ticks(7, [0, 0]) == [4, 3]  # no weight at all: evenly, remainder to the earlier op
    assert split_ticks(0, [3, 1]) == [0, 0] and split_ticks(5, []) == []


def test_simulator_answers_hb_profile_only_when_built_with_it(mcu_model):
    """The simulated firmware in-process, on the host's clock: exact bytes of the extension."""
    import re

    from harness.mcu.sim.engine import TflmModel
    from harness.mcu.sim.firmware import Firmware

    model = TflmModel(mcu_model["int8"])
    out = bytearray()

    def ask(fw: Firmware, data: bytes) -> list[str]:
        out.clear()
        fw.feed(data)
        return bytes(out).decode().split("\r\n")[:-1]

    plain = Firmware(model, out.extend)
    assert ask(plain, b"hb-caps%") == ["m-hb-caps-[arena,dbbin]", "m-ready"]
    assert ask(plain, b"hb-profile%") == ["e-[Unknown command: hb-profile]", "m-ready"]
    fw = Firmware(model, out.extend, op_profiler=True)
    assert ask(fw, b"hb-caps%") == ["m-hb-caps-[arena,dbbin,profile]", "m-ready"]
    assert ask(fw, b"hb-profile%") == ["e-[hb-profile: no profiled inference yet (run infer first)]", "m-ready"]
    ask(fw, f"db load {model.input_bytes}%".encode())
    for i in range(0, model.input_bytes, 16):
        ask(fw, b"db " + b"00" * 16 + b"%")
    ask(fw, b"infer 4 0%")
    lines = ask(fw, b"hb-profile%")
    ops = [re.fullmatch(r"m-hb-op-\[(\d+),(\w+),(\d+)\]", line) for line in lines[:-2]]
    done = re.fullmatch(r"m-hb-profile-done-\[ops=(\d+),lost=0,invoke=(\d+),hz=1000000,clock=model\]", lines[-2])
    assert all(ops) and done and lines[-1] == "m-ready"
    assert [m.group(2) for m in ops] == [op.name for op in analyze(mcu_model["int8"]).operators]
    assert [int(m.group(1)) for m in ops] == list(range(len(ops))) == list(range(int(done.group(1))))
    assert sum(int(m.group(3)) for m in ops) == int(done.group(2)) == fw.last_inference_us >= 2
    assert list(fw.commands)[-2:] == ["infer 4 0", "hb-profile"]


def test_run_profile_on_the_simulator(workspace, mcu_model):
    """--profile N: N single inferences after the windows, each followed by hb-profile; the op types
    and order are the artifact's, and every run's ticks add up to the simulated inference time."""
    proc, port = start_sim(mcu_model["int8"], "--op-profiler", "--inference-us", str(INFERENCE_US))
    try:
        lab(workspace, port)
        p = hil(
            *("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, "--profile", "--profile-runs", "3"),
            env=mcu_model["env"],
            check=True,
        )
        plain = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=mcu_model["env"], check=True)
    finally:
        commands = sim_commands(proc)
    doc = run_doc(workspace, p.stdout)
    prof = doc["op_profile"]
    a = analyze(doc["model"]["path"])
    assert [o["type"] for o in prof["ops"]] == [op.name for op in a.operators]
    assert [o["index"] for o in prof["ops"]] == [op.index for op in a.operators]
    assert [o["macs"] for o in prof["ops"]] == [op.macs for op in a.operators]  # completed from the artifact
    assert prof["source"] == "tflm-sim" and prof["unit"] == "ticks" and prof["ticks_per_us"] == 1.0
    assert prof["cycles"] is False and prof["invocations"] == 3 and prof["invoke"] == [INFERENCE_US] * 3
    for k in range(3):
        assert sum(o["times"][k] for o in prof["ops"]) == INFERENCE_US
    conv = next(o for o in prof["ops"] if o["type"] == "CONV_2D")
    assert conv["times"][0] == max(o["times"][0] for o in prof["ops"])  # the most MACs, the most ticks
    # the profile pass comes after the timed windows: 3 x (infer 1 0, hb-profile), nothing in between
    assert commands.count("hb-profile") == 3
    first = commands.index("hb-profile") - 1
    assert commands[first : first + 6] == ["infer 1 0", "hb-profile"] * 3
    second_run = commands.index("name", first)  # the next `hil run` connects: name% first
    assert not any(c.startswith("infer") and c != "infer 1 0" for c in commands[first:second_run])
    # without --profile the command is never sent, and the document has no profile
    assert "op_profile" not in run_doc(workspace, plain.stdout)
    assert "hb-profile" not in commands[second_run:] and "infer 1 0" in commands[second_run:]


def test_firmware_without_profiler_warns_and_the_run_passes(workspace, mcu_model):
    proc, port = start_sim(mcu_model["int8"], "--stock")
    try:
        lab(workspace, port)
        p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, "--profile", env=mcu_model["env"])
    finally:
        commands = sim_commands(proc)
    assert p.returncode == 0, p.stderr
    warning = "device 'h7': firmware has no per-operator profiler (build with hil build --op-profiler)"
    assert p.stderr.count(warning) == 1
    doc = run_doc(workspace, p.stdout)
    assert doc["status"] == "ok" and "op_profile" not in doc and doc["latency_us"]["count"] == 5
    assert "hb-profile" not in commands


def test_garbage_in_a_profile_answer_is_a_clear_error(scripted):  # noqa: F811
    bad = lines(
        "m-hb-op-[0,CONV_2D,1200]",
        "m-hb-op-[1,FULLY_CONNECTED,1x0]",
        "m-hb-profile-done-[ops=2,lost=0,invoke=1500,hz=1000000,clock=us]",
        "m-ready",
    )
    dev, client = scripted([("hb-profile", bad)] * 2, retries=1)
    client.info.caps = {"profile"}
    with pytest.raises(BadResponse) as exc:
        client.op_profile()
    msg = str(exc.value)
    assert "device 'h7'" in msg and "'hb-profile%'" in msg and "FULLY_CONNECTED,1x0" in msg
    assert client.retried == 1 and not dev.errors


def test_a_run_keeps_its_windows_when_the_profile_stays_malformed(scripted):  # noqa: F811
    from harness.mcu.serial.session import op_profile_or_warning

    infer = lines(
        *("m-warmup-start-0", "m-warmup-done", "m-infer-start-1", "m-lap-us-100", "m-lap-us-1100"),
        *("m-infer-done", "m-results-[0.5]", "m-ready"),
    )
    garbage = lines(
        "m-hb-op-[0,CONV_2D,12]", "m-hb-profile-done-[ops=1,lost=0,invoke=1?,hz=1000000,clock=us]", "m-ready"
    )
    dev, client = scripted([("infer 1 0", infer), *[("hb-profile", garbage)] * 2], retries=1)
    client.info.caps = {"profile"}
    said: list[str] = []
    assert op_profile_or_warning(client, 2, said.append) is None
    assert len(said) == 1 and said[0].startswith("warning: no per-operator profile: device 'h7': bad answer")
    assert "m-hb-profile-done" in said[0] and not dev.errors


def test_profile_answer_parses(scripted):  # noqa: F811
    good = lines(
        "m-hb-op-[0,CONV_2D,1200]",
        "m-hb-op-[1,FULLY_CONNECTED,300]",
        "m-hb-profile-done-[ops=2,lost=0,invoke=1550,hz=480000000,clock=cycles]",
        "m-ready",
    )
    short = lines(
        "m-hb-op-[0,CONV_2D,1200]", "m-hb-profile-done-[ops=2,lost=0,invoke=1550,hz=480000000,clock=cycles]", "m-ready"
    )
    dev, client = scripted([("hb-profile", short), ("hb-profile", good)], retries=1)
    client.info.caps = {"profile"}
    got = client.op_profile()
    assert got is not None and got.ops == [(0, "CONV_2D", 1200), (1, "FULLY_CONNECTED", 300)]
    assert (got.invoke, got.hz, got.clock, got.lost) == (1550, 480_000_000, "cycles", 0)
    assert client.retried == 1  # the answer that lists one op for ops=2 was refused and asked again
    client.info.caps = set()
    assert client.op_profile() is None  # never asked without the capability
    assert dev.received == ["hb-profile", "hb-profile"] and not dev.errors


# ---------------------------------------------------------------------------------- generated firmware


@pytest.fixture(scope="module")
def bundles(mcu_model, tmp_path_factory) -> dict:
    """The int8 model as a bundle for stm32h7, with and without the per-operator profiler."""
    from conftest import REPO

    from harness.lab.config import load_profile
    from harness.mcu.bundle import build_bundle

    prof = load_profile(REPO / "device_profiles" / "stm32h7.yaml")
    d = tmp_path_factory.mktemp("opmcu-bundles")
    out = {}
    for name, flag in (("plain", False), ("profiled", True)):
        manifest = build_bundle(Path(mcu_model["int8"]), prof, d / name, log=lambda m: None, op_profiler=flag)
        out[name] = (d / name, manifest)
    return out


def test_profiler_is_only_in_bundles_built_with_it(bundles):
    plain, plain_m = bundles["plain"]
    prof, prof_m = bundles["profiled"]
    plain_config = (plain / "hb_config.h").read_text()
    assert not (plain / "hb_profile.c").exists() and "#define HB_PROFILE " not in plain_config
    assert plain_m["protocol"]["caps"] == ["arena", "dbbin"] and prof_m["protocol"]["caps"] == [
        "arena",
        "dbbin",
        "profile",
    ]
    n_ops = len(analyze(prof / "model.tflite").operators)
    config = (prof / "hb_config.h").read_text()
    assert "#define HB_PROFILE 1" in config and f"#define HB_PROFILE_MAX_OPS {n_ops}u" in config
    assert {"hb_profile.c", "hb_profile.h"} <= {p.name for p in prof.iterdir()}
    assert "not compiled in" in (plain / "README.md").read_text() and "m-hb-op-[" in (prof / "README.md").read_text()
    # every other source is the same file in both bundles
    for name in ("hb_protocol.c", "main.cc", "port.h", "model_data.cc", "op_resolver.h"):
        assert (plain / name).read_text() == (prof / name).read_text(), name


# The one TFLM header the profiling glue adds, as tflite-micro declares it
# (tensorflow/lite/micro/micro_profiler_interface.h).
_PROFILER_INTERFACE = """
#pragma once
#include <cstdint>
namespace tflite {
class MicroProfilerInterface {
 public:
  virtual ~MicroProfilerInterface() {}
  virtual uint32_t BeginEvent(const char* tag) = 0;
  virtual void EndEvent(uint32_t event_handle) = 0;
};
}  // namespace tflite
"""


@pytest.mark.arm_gcc
def test_profiling_firmware_compiles_for_cortex_m4(bundles, tmp_path):
    from test_mcu_build import type_check_main

    b, _ = bundles["profiled"]
    for src in ("hb_protocol.c", "hb_profile.c"):
        for extra in ([], ["-DHB_PORT_TIMER_CYCLES=1"]):
            proc = subprocess.run(
                [
                    ARM_GCC,
                    *M4,
                    "-std=c99",
                    "-Wpedantic",
                    *extra,
                    f"-I{b}",
                    "-c",
                    str(b / src),
                    "-o",
                    str(tmp_path / "x.o"),
                ],
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, proc.stderr
    proc = type_check_main(
        b, tmp_path / "tflm", {"tensorflow/lite/micro/micro_profiler_interface.h": _PROFILER_INTERFACE}
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def dense_tflite(tmp_path_factory) -> Path:
    """The QEMU stand-in's layer (int8 fully connected, 64 -> 10) as a real converted .tflite."""
    import keras
    import numpy as np

    from harness.models.convert import Calibration, Converter, ModelSource

    keras.utils.set_random_seed(3)
    d = tmp_path_factory.mktemp("dense")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.save(d / "dense.keras")
    np.savez(d / "calib.npz", x=np.random.default_rng(3).random((20, 64), dtype=np.float32))
    mv = Converter(d / "cache", log=lambda m: None).convert(
        ModelSource.open(d / "dense.keras"), "int8", Calibration.from_arg(str(d / "calib.npz"))
    )
    return Path(mv.artifact)


@pytest.fixture(scope="module")
def qemu_firmware(tmp_path_factory) -> dict:
    """One QEMU build with the profiler (cycle counter as its time base), one without."""
    from harness.mcu import qemu

    d = tmp_path_factory.mktemp("qemu-opmcu")
    return {
        "profiled": qemu.build_firmware(d / "profiled", defines={"HB_PROFILE": "1", "HB_PORT_TIMER_CYCLES": "1"}),
        "plain": qemu.build_firmware(d / "plain"),
    }


@pytest.mark.qemu
def test_qemu_firmware_returns_a_profile_of_its_operators(qemu_firmware, dense_tflite):
    import numpy as np

    from harness.lab.config import SerialSettings
    from harness.mcu import qemu
    from harness.mcu.serial import session

    params = qemu.parse_params()
    x = np.random.default_rng(2).integers(-128, 128, params["inputs"]).astype(np.int8)
    said: list[str] = []
    with qemu.QemuDevice(qemu_firmware["profiled"]) as dev:
        client = session.connect("qemu-m4", SerialSettings(type="serial", port=dev.url), log=said.append)
        try:
            assert "profile" in client.info.caps
            early = client.transact("hb-profile", check=lambda r: None)
            assert early.lines == ["e-[hb-profile: no profiled inference yet (run infer first)]"]
            client.load(x.tobytes())
            doc = session.op_profile(client, 3, said.append, analysis=analyze(dense_tflite))
            r = client.infer(20, 0)
        finally:
            client.link.close()
    assert doc is not None
    assert [o["type"] for o in doc["ops"]] == [op.name for op in analyze(dense_tflite).operators]
    assert doc["source"] == "tflm-micro-profiler" and doc["cycles"] is True and doc["ticks_per_us"] == 25.0
    assert doc["invocations"] == 3 and doc["ops"][0]["macs"] == 64 * 10
    ticks, invoke = doc["ops"][0]["times"], doc["invoke"]
    # -icount: the same instructions take the same cycles (a SysTick interrupt may land inside one)
    assert max(ticks) - min(ticks) <= 200
    assert all(64 * 10 <= t <= i for t, i in zip(ticks, invoke))
    # the timed loop's laps agree with the profiled inference (25 cycles per us)
    assert r.per_inference_us == pytest.approx(invoke[0] / 25.0, rel=0.2)
    assert any("per-operator profile: 1 ops x 3 run(s)" in m for m in said)
    with qemu.QemuDevice(qemu_firmware["plain"]) as dev:  # a build without the profiler says so
        client = session.connect("qemu-m4", SerialSettings(type="serial", port=dev.url), log=said.append)
        try:
            assert "profile" not in client.info.caps and client.op_profile() is None
            unknown = client.transact("hb-profile", check=lambda r: None)
            assert unknown.lines == ["e-[Unknown command: hb-profile]"]
        finally:
            client.link.close()
