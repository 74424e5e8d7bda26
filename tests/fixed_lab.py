"""A lab for the concurrency and data-integrity tests that needs no TensorFlow: one `local` device
whose python is the fixed-clock runner double (tests/fixed_runner.py), a small real .tflite (the sine
model shipped with tflite-micro) and its own cache, lock directory and latency script."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "1", "--warmup-seconds", "0"]


def tflite_model() -> Path:
    spec = importlib.util.find_spec("tflite_micro")
    assert spec is not None and spec.submodule_search_locations, "tflite-micro is a dependency of hilbench"
    return Path(list(spec.submodule_search_locations)[0]) / "python" / "tflite_micro" / "sine_float.tflite"


def make_lab(root: Path, device: str = "dut") -> dict:
    shutil.copytree(REPO / "device_profiles", root / "device_profiles")
    py = root / "fixed-python"
    py.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "tests" / "fixed_runner.py"} "$@"\n')
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    (root / "inventory.yaml").write_text(
        f"devices:\n  - {{id: {device}, profile: localhost, transport: {{type: local, python: {py}}}}}\n"
    )
    shutil.copy(tflite_model(), root / "net.tflite")
    script = root / "latency.json"
    write_latency(script, {"": 100.0})  # every model: 100 us
    env = {
        "HILBENCH_CACHE": str(root / "cache"),
        "HILBENCH_LOCK_DIR": str(root / "locks"),
        "HILBENCH_FIXED_LATENCY": str(script),
    }
    return {"dir": root, "db": root / "reports" / "results.sqlite", "script": script, "env": env, "device": device}


def write_latency(path: Path, levels: dict[str, float], factor: float = 1.0) -> None:
    """Latency per model sha256 prefix ('' matches every model)."""
    path.write_text(json.dumps({"levels": levels, "factor": factor}))


def popen_hil(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen, needle: str) -> list[str]:
    """stderr lines of `proc` up to the first one containing `needle` (blocks on the child's output,
    line by line; fails if the child ends without writing it)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return seen
    out, err = proc.communicate()
    raise AssertionError(f"exited {proc.returncode} without '{needle}':\n{''.join(seen)}{err}\n{out}")
