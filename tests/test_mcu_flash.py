"""Automatic build + flash before measuring on serial devices (transport `flash: auto|never|always`).

The board is `hil mcu-sim --flash-file PATH`: on SIGHUP it loads PATH and resets (boot banner), as a
board does after flashing. The test profile (a copy of stm32h7 with its own mcu.build_cmd and
mcu.flash_cmd) "builds" by copying the bundle's model.tflite to firmware.bin and "flashes" by copying
that to PATH and sending the signal. Everything waits on output lines, never on a fixed time.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, hil

from harness.errors import ConfigError
from harness.lab.config import load_inventory

RUN = ["--variants", "int8", "--min-seconds", "0", "--min-runs", "5", "--warmup-seconds", "0"]
PROFILE = "h7sim"


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory) -> dict:
    """Two different int8 models (the tiny conv net with 4 classes, a dense net with 3), converted
    once into a cache that every test copies (`hil run` then only has cache hits)."""
    import keras

    from harness.models.convert import Calibration, Converter, ModelSource

    d = tmp_path_factory.mktemp("flash-models")
    x = tiny_model["x"]
    shutil.copyfile(tiny_model["path"], d / "tiny.keras")
    keras.utils.set_random_seed(2)
    dense = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    dense.save(d / "dense.keras")
    conv = Converter(d / "cache" / "artifacts", log=lambda m: None)
    out = {"cache": d / "cache"}
    for name in ("tiny", "dense"):
        np.savez(d / f"{name}.calibration.npz", x=x[:40])
        mv = conv.convert(
            ModelSource.open(d / f"{name}.keras"), "int8", Calibration.from_arg(str(d / f"{name}.calibration.npz"))
        )
        out[name] = {
            "name": name,
            "keras": str(d / f"{name}.keras"),
            "artifact": Path(mv.artifact),
            "sha": mv.artifact_sha256,
            "id": f"sha256:{mv.artifact_sha256[:16]}",
        }
    return out


@contextmanager
def board(model: Path, workspace: Path):
    """mcu-sim on a pty linked at workspace/dut; yields the process (its pid is the flash target);
    `proc.log` holds everything it printed, complete after the block."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "mcu-sim",
            str(model),
            "--link",
            str(workspace / "dut"),
            "--flash-file",
            str(workspace / "flash.tflite"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log = []
    try:
        for line in proc.stdout:  # the sim prints where it serves once it is ready
            proc.log.append(line)
            if line.startswith("serving on "):
                break
        else:
            raise AssertionError(f"mcu-sim exited early: {''.join(proc.log)}")
        yield proc
    finally:
        proc.terminate()
        proc.log += proc.stdout.readlines()
        proc.wait(timeout=10)


def lab(workspace: Path, models: dict, flash_cmd, build_cmd=None, flash: str = "auto") -> None:
    shutil.copytree(models["cache"] / "artifacts", workspace / "cache" / "artifacts", dirs_exist_ok=True)
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["mcu"].update(build_cmd=build_cmd, flash_cmd=flash_cmd)
    (workspace / "device_profiles" / f"{PROFILE}.yaml").write_text(yaml.safe_dump(prof))
    t = {
        "type": "serial",
        "port": str(workspace / "dut"),
        "timeout": 5.0,
        "infer_timeout": 5.0,
        "boot_timeout": 5.0,
        "flash": flash,
    }
    (workspace / "inventory.yaml").write_text(
        f"devices:\n  - id: h7\n    profile: {PROFILE}\n    transport: {json.dumps(t)}\n"
    )


def docs(workspace: Path, run_id: str) -> dict:
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    rows = db.execute("SELECT model, status, error, raw FROM results WHERE run_id=?", (run_id,))
    return {m: {"status": s, "error": e, "doc": json.loads(r) if r else None} for m, s, e, r in rows}


def bundle_dir(workspace: Path, m: dict) -> Path:
    return workspace / "cache" / "bundles" / f"{m['sha']}-{PROFILE}"


def test_each_changed_model_is_built_flashed_and_cached(workspace, models):
    a, b = models["tiny"], models["dense"]
    factory = workspace / "factory.tflite"  # the board starts with neither model
    factory.write_bytes(a["artifact"].read_bytes() + b"factory!")
    with board(factory, workspace) as sim:
        lab(
            workspace,
            models,
            build_cmd="cp model.tflite firmware.bin",
            flash_cmd=f"sh -c 'cp {{bundle}}/firmware.bin {workspace}/flash.tflite && kill -HUP {sim.pid}'",
        )
        p1 = hil("run", a["keras"], b["keras"], *RUN, check=True)
        p2 = hil("run", b["keras"], a["keras"], *RUN, check=True)  # the board now holds b
    # first night: both built and flashed, each measured on its own model
    for m in (a, b):
        assert f"flash: building bundle for {m['name']} int8 (sha256 {m['sha'][:16]}...)" in p1.stderr
    assert p1.stderr.count("build: ok in") == 2 and p1.stderr.count("flash: ok in") == 2, p1.stderr
    assert "not flashing" not in p1.stderr
    got = docs(workspace, p1.stdout.strip().splitlines()[-1])
    for m in (a, b):
        r = got[m["name"]]
        assert r["status"] == "ok", r["error"]
        doc = r["doc"]
        assert doc["device"]["model_id"] == m["id"] and doc["device"]["model_verified"] is True
        f = doc["flash"]
        assert f["mode"] == "auto" and f["flashed"] is True and f["bundle_cached"] is False
        assert f["seconds"] > 0 and set(f["steps"]) == {"build", "flash"}
        assert Path(f["bundle"]) == bundle_dir(workspace, m)
        assert Path(f["log"]) == bundle_dir(workspace, m) / "logs" / "flash-h7.log"
        assert "$ sh -c" in Path(f["log"]).read_text()
        assert len(doc["windows"]) == 5 and doc["latency_us"]["p50"] > 0  # flashing is not latency
    assert got["tiny"]["doc"]["flash"]["previous_model_id"].startswith("sha256:")
    assert got["dense"]["doc"]["flash"]["previous_model_id"] == a["id"]
    # second night: b is on the board (no flash); a is flashed from the cached bundle, not rebuilt
    assert f"flash: board already runs {b['id']}, not flashing" in p2.stderr
    assert "building bundle" not in p2.stderr and "build: ok" not in p2.stderr
    assert f"flash: bundle for tiny int8 (sha256 {a['sha'][:16]}...) cached in {bundle_dir(workspace, a)}" in p2.stderr
    assert "build: already built" in p2.stderr and p2.stderr.count("flash: ok in") == 1, p2.stderr
    got = docs(workspace, p2.stdout.strip().splitlines()[-1])
    assert got["dense"]["doc"]["flash"]["flashed"] is False and got["dense"]["status"] == "ok"
    assert got["tiny"]["doc"]["flash"]["flashed"] is True and got["tiny"]["doc"]["flash"]["bundle_cached"]
    assert got["tiny"]["doc"]["device"]["model_id"] == a["id"]
    assert sum(line.startswith("flashed ") for line in sim.log) == 3, "".join(sim.log)


def test_failed_flash_fails_that_job_only(workspace, models):
    a, b = models["tiny"], models["dense"]
    log = bundle_dir(workspace, b) / "logs" / "flash-h7.log"
    with board(a["artifact"], workspace) as sim:
        lab(workspace, models, flash_cmd="sh -c 'echo boom; exit 4'")  # no build_cmd
        p = hil("run", b["keras"], a["keras"], *RUN)
        failed_log = log.read_text()
        # a flash that does not take (nothing written): the board resets with its old model
        lab(workspace, models, flash_cmd=f"kill -HUP {sim.pid}")
        q = hil("run", b["keras"], *RUN)
    assert p.returncode == 2, p.stderr
    assert (
        f"mcu.flash_cmd (device 'h7'): flash command `sh -c 'echo boom; exit 4'` failed with exit code 4; log: {log}"
    ) in p.stderr, p.stderr
    assert "boom" in failed_log and "exit code 4" in failed_log and "Traceback" not in p.stderr
    got = docs(workspace, p.stdout.strip().splitlines()[-1])
    assert got["dense"]["status"] == "infra_error" and "exit code 4" in got["dense"]["error"]
    assert got["tiny"]["status"] == "ok" and got["tiny"]["doc"]["flash"]["flashed"] is False
    assert q.returncode == 2, q.stderr
    assert f"device 'h7' still reports model {a['id']} after flashing {b['id']} (see {log})" in q.stderr
    assert any(line.startswith("flashing ") and "failed" in line for line in sim.log)


def test_flash_never_keeps_the_refusal_and_config_is_checked(workspace, models):
    a, b = models["tiny"], models["dense"]
    with board(a["artifact"], workspace):
        lab(workspace, models, flash_cmd="sh -c 'exit 1'", flash="never")
        p = hil("run", b["keras"], *RUN)
    assert p.returncode == 2
    assert "does not match the artifact" in p.stderr and "flash the firmware built for this model" in p.stderr
    assert "flash:" not in p.stderr and not (workspace / "cache" / "bundles").exists()
    lab(workspace, models, flash_cmd=None, flash="sometimes")
    with pytest.raises(
        ConfigError,
        match=r"devices\[0\]\.transport\.flash: Input should be 'auto', "
        r"'never' or 'always' \(device 'h7'\)",
    ):
        load_inventory(workspace / "inventory.yaml")
    lab(workspace, models, flash_cmd=None, flash="always")
    with pytest.raises(
        ConfigError,
        match=r"devices\[0\]\.transport\.flash: device 'h7' has flash: always "
        r"but its profile 'h7sim' sets neither",
    ):
        load_inventory(workspace / "inventory.yaml")
