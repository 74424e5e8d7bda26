"""Measured flash and static RAM of built firmware (issue 11, part 3).

The firmware is the real QEMU mps2-an386 build (arm-none-eabi-gcc), read with pyelftools and checked
against binutils' own `arm-none-eabi-size`; then the whole path: a profile whose build_cmd compiles
that firmware, `hil run` on the QEMU board storing measured flash_bytes/ram_bytes, and `hil gate`
failing the max_flash_bytes budget on them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, hil

from harness.errors import ConfigError
from harness.lab.config import Device, load_profile
from harness.mcu import footprint, qemu
from harness.mcu.flash import deploy_bundle


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Path:
    if not qemu.toolchain():
        pytest.skip("arm-none-eabi-gcc not installed")
    return qemu.build_firmware(tmp_path_factory.mktemp("fw"))


def _size(elf: Path, *flags: str) -> str:
    return subprocess.run(["arm-none-eabi-size", *flags, str(elf)], capture_output=True, text=True, check=True).stdout


@pytest.mark.arm_gcc
def test_elf_measurement_matches_binutils_size(firmware):
    fp = footprint.measure_elf(firmware)
    # Berkeley format: text (= code + read-only data), data, bss
    text, data, bss = (int(v) for v in _size(firmware).splitlines()[1].split()[:3])
    assert (fp.text_bytes + fp.rodata_bytes, fp.data_bytes, fp.bss_bytes) == (text, data, bss)
    assert fp.flash_bytes == text + data and fp.ram_bytes == data + bss
    # section by section (System V format): every allocated section, nothing else (no .debug_*)
    sysv = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+$", _size(firmware, "-A"), re.M)}
    assert set(fp.sections) == {".isr_vector", ".text", ".ARM.exidx", ".data", ".bss"}
    assert all(fp.sections[name]["bytes"] == sysv[name] for name in fp.sections)
    assert fp.sections[".text"]["kind"] == "text" and fp.sections[".isr_vector"]["kind"] == "rodata"
    assert fp.sections[".data"]["address"] == 0x20000000  # RAM on mps2-an386
    assert fp.machine == "EM_ARM" and fp.sha256 and fp.to_json()["flash_bytes"] == fp.flash_bytes
    # a bigger .bss (the tensor arena is one) shows up in RAM, not in flash
    bigger = qemu.build_firmware(firmware.parent / "bigger", {"HB_DB_BUFFER_BYTES": "4096"})
    fp2 = footprint.measure_elf(bigger)
    assert fp2.bss_bytes == fp.bss_bytes + 4096 - 256 and fp2.flash_bytes - fp.flash_bytes < 64


def test_bad_elf_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'nope.elf'))}: cannot read the firmware ELF"):
        footprint.measure_elf(tmp_path / "nope.elf")
    (tmp_path / "fw.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match=r"fw\.bin: not an ELF file .*mcu\.firmware_elf"):
        footprint.measure_elf(tmp_path / "fw.bin")
    (tmp_path / "cut.elf").write_bytes(b"\x7fELF\x01\x01\x01" + b"\x00" * 9)
    with pytest.raises(ConfigError, match=r"cut\.elf: malformed ELF file"):
        footprint.measure_elf(tmp_path / "cut.elf")


@pytest.mark.arm_gcc
def test_finding_the_builds_elf(firmware, tmp_path):
    b = tmp_path / "bundle"
    (b / "logs").mkdir(parents=True)
    assert footprint.find_elf(b, None)[0] is None and "set mcu.firmware_elf" in footprint.find_elf(b, None)[1]
    (b / "out").mkdir()
    shutil.copy(firmware, b / "out" / "fw.elf")
    shutil.copy(firmware, b / "logs" / "old.elf")  # logs/ is never searched
    assert footprint.find_elf(b, None)[0] == b / "out" / "fw.elf"
    shutil.copy(firmware, b / "boot.elf")
    os.utime(b / "boot.elf", (1, 1))  # an old file: the one the build wrote is the newer one
    assert footprint.find_elf(b, None, since=os.path.getmtime(b / "out" / "fw.elf"))[0] == b / "out" / "fw.elf"
    elf, why = footprint.find_elf(b, None, since=None)
    assert elf is None and "2 *.elf files" in why and "set mcu.firmware_elf" in why
    assert footprint.find_elf(b, "out/*.elf")[0] == b / "out" / "fw.elf"
    assert footprint.find_elf(b, "missing.elf")[0] is None


@pytest.mark.arm_gcc
def test_deploy_measures_the_firmware_the_build_wrote(tmp_path):
    prof_path = tmp_path / "qemu-m4.yaml"
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["mcu"].update(build_cmd=f"{sys.executable} -m harness.mcu.qemu build -o qemu", flash_cmd=None)
    prof_path.write_text(yaml.safe_dump(prof))
    profile = load_profile(prof_path)
    device = Device(id="m4", profile="qemu-m4", transport={"type": "serial", "port": "/dev/null"})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = {"profile": {"name": "qemu-m4"}, "model": {"model_id": "x"}}
    logs: list[str] = []
    steps = deploy_bundle(device, profile, bundle, manifest, flash=False, log=logs.append)
    fp = steps[0].footprint
    assert fp is not None and fp.elf == str(bundle / "qemu" / "fw.elf")
    assert fp.flash_bytes == footprint.measure_elf(bundle / "qemu" / "fw.elf").flash_bytes
    assert footprint.recorded(bundle).to_json() == fp.to_json()
    assert any(
        line.startswith(f"footprint: {bundle / 'qemu' / 'fw.elf'}: flash {fp.flash_bytes:,} bytes")
        and line.endswith("measured")
        for line in logs
    ), logs
    # a named firmware_elf that the build did not write is an error naming the setting
    prof["mcu"]["firmware_elf"] = "build/{profile}.elf"
    prof_path.write_text(yaml.safe_dump(prof))
    with pytest.raises(
        ConfigError,
        match=r"firmware ELF not found after the build: mcu\.firmware_elf "
        r"'build/qemu-m4\.elf': no such file",
    ):
        deploy_bundle(device, load_profile(prof_path), bundle, manifest, flash=False, log=logs.append)
    assert footprint.recorded(bundle) is None  # the old measurement does not outlive a new build


# ------------------------------------------------------------------ hil run on the QEMU board + hil gate


@pytest.fixture(scope="module")
def standin_model(tmp_path_factory) -> Path:
    """An int8 model with the stand-in's interface (64 int8 inputs -> 10 outputs): what `hil run` is
    asked to measure; the QEMU board runs the stand-in (model ID unverifiable, as stock firmware)."""
    import keras

    from harness.models.convert import Calibration, Converter, ModelSource

    d = tmp_path_factory.mktemp("standin")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.save(d / "fc.keras")
    np.savez(d / "calib.npz", x=np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32))
    mv = Converter(d / "cache", log=lambda m: None).convert(
        ModelSource.open(d / "fc.keras"), "int8", Calibration.from_arg(str(d / "calib.npz"))
    )
    out = d / "fc_int8.tflite"
    shutil.copyfile(mv.artifact, out)
    return out


def _qemu_lab(workspace: Path, url: str, max_flash: int, firmware_elf: str | None) -> None:
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["mcu"].update(
        build_cmd=f"{sys.executable} -m harness.mcu.qemu build -o qemu", flash_cmd=None, firmware_elf=firmware_elf
    )
    prof["budgets"] = {"max_flash_bytes": max_flash}
    (workspace / "device_profiles" / "qemu-m4.yaml").write_text(yaml.safe_dump(prof))
    t = {"type": "serial", "port": url, "timeout": 5.0, "infer_timeout": 10.0, "boot_timeout": 10.0, "flash": "always"}
    (workspace / "inventory.yaml").write_text(
        f"devices:\n  - id: m4\n    profile: qemu-m4\n    transport: {json.dumps(t)}\n"
    )


@pytest.mark.qemu
def test_hil_run_stores_the_measured_footprint_and_the_gate_budgets_it(workspace, standin_model):
    with qemu.QemuDevice(Path(qemu.build_firmware(workspace / "board"))) as board:
        _qemu_lab(workspace, board.url, max_flash=1_000_000, firmware_elf=None)
        p = hil(
            "run", str(standin_model), "--min-seconds", "0.02", "--min-runs", "5", "--warmup-seconds", "0", check=True
        )
    run_id = p.stdout.strip().splitlines()[-1]
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    raw = json.loads(db.execute("SELECT raw FROM results WHERE run_id=?", (run_id,)).fetchone()[0])
    rows = dict(
        db.execute(
            "SELECT m.metric, m.value FROM measurements m JOIN results r USING (result_id) WHERE r.run_id=?", (run_id,)
        ).fetchall()
    )
    elf = Path(raw["flash"]["bundle"]) / "qemu" / "fw.elf"
    want = footprint.measure_elf(elf)
    assert raw["flash"]["flashed"] is True and raw["flash"]["footprint_source"] == "build"
    assert raw["flash"]["footprint"]["elf"] == str(elf)
    assert raw["memory"]["flash_bytes"] == rows["flash_bytes"] == want.flash_bytes
    assert raw["memory"]["ram_bytes"] == rows["ram_bytes"] == want.ram_bytes
    assert rows["arena_bytes"] == 40  # the stand-in's hb-arena, as before
    assert "footprint: " in p.stderr and "measured" in p.stderr
    # the budget gates on the measured value: one byte less fails, the value itself passes
    for limit, code in ((want.flash_bytes - 1, 1), (want.flash_bytes, 0)):
        _qemu_lab(workspace, "socket://127.0.0.1:9", max_flash=limit, firmware_elf=None)
        g = hil("gate", "--run", run_id, "--no-record")
        assert g.returncode == code, g.stdout + g.stderr
        exceeded = f"flash_bytes {want.flash_bytes:g} exceeds budget max_flash_bytes (<= {limit:g})"
        assert (exceeded in g.stdout) == bool(code), g.stdout
        assert "no flash_bytes measured" not in g.stdout
