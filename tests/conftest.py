"""Shared fixtures: small real Keras models and data, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from labgrid_lab import available as labgrid_available
from postgres import bindir as postgres_bindir
from postgres import start_postgres
from sshd import start_sshd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


# marker -> (tool found?, how to install it). CI installs every tool and sets HILBENCH_REQUIRE_TOOLS=1,
# so there a missing tool fails the test instead of skipping it silently.
def _any(*paths: str) -> bool:
    return any(shutil.which(p) or os.path.exists(p) for p in paths)


TOOLS = {
    "sshd": (lambda: _any("/usr/sbin/sshd") and _any("ssh-keygen"), "apt-get install openssh-server"),
    "arm_gcc": (
        lambda: _any("arm-none-eabi-gcc") and _any("arm-none-eabi-g++"),
        "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
    ),
    "qemu": (
        lambda: _any("qemu-system-arm") and _any("arm-none-eabi-gcc"),
        "apt-get install qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi",
    ),
    "chromium": (lambda: _any("chromium", "/usr/bin/chromium"), "apt-get install chromium"),
    "ser2net": (lambda: _any("ser2net", "/usr/sbin/ser2net"), "apt-get install ser2net"),
    "postgres": (lambda: postgres_bindir() is not None, "apt-get install postgresql"),
    "labgrid": (labgrid_available, "pip install 'hilbench[labgrid]' in a venv of its own (.ci/run)"),
}


# the labgrid extra cannot share the main venv (pyserial-labgrid replaces pyserial's `serial`), so the
# main test run skips its tests; .ci/run runs them again from .venv-labgrid with this variable set
_REQUIRE = {"labgrid": "HILBENCH_REQUIRE_LABGRID"}


def pytest_configure(config):
    for name, (_, how) in TOOLS.items():
        config.addinivalue_line("markers", f"{name}: needs a system tool ({how})")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for mark in item.iter_markers():
        if mark.name in TOOLS:
            found, how = TOOLS[mark.name]
            if not found():
                if os.environ.get(_REQUIRE.get(mark.name, "HILBENCH_REQUIRE_TOOLS")) == "1":
                    pytest.fail(f"{mark.name} missing on a machine that must have it ({how})")
                pytest.skip(f"{mark.name} not installed ({how})")


@pytest.fixture()
def sshd_server(tmp_path_factory):
    """A real OpenSSH sshd on a free loopback port, with a throwaway user key and host key."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on loopback for the whole session (each test makes its own database)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_db(request, tmp_path) -> Path | str:
    """Where a store test keeps its results: an SQLite file, or a new database on the test server.
    The same test runs against both, because one code path serves both."""
    if request.param == "sqlite":
        return tmp_path / "r.sqlite"
    return request.getfixturevalue("postgres_server").createdb()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> dict:
    """A tiny conv classifier on 8x8x1 inputs with sidecar calibration/eval data (real TF)."""
    import keras

    keras.utils.set_random_seed(1)
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(1)
    x = rng.random((120, 8, 8, 1), dtype=np.float32)
    y = (x.reshape(120, -1).mean(axis=1) > 0.5).astype(np.int64) + 2 * (x[:, 0, 0, 0] > 0.5)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    path = d / "tiny.keras"
    model.save(path)
    np.savez(d / "tiny.calibration.npz", x=x[:50])
    np.savez(d / "tiny.eval.npz", x=x[50:], y=y[50:])
    return {"dir": d, "path": path, "x": x, "y": y, "model": model}


@pytest.fixture()
def workspace(tmp_path, monkeypatch) -> Path:
    """A lab directory with the shipped profiles and a local-only inventory; isolated cache."""
    (tmp_path / "device_profiles").mkdir()
    for p in (REPO / "device_profiles").glob("*.yaml"):
        (tmp_path / "device_profiles" / p.name).write_text(p.read_text())
    (tmp_path / "inventory.yaml").write_text((REPO / "inventory.yaml").read_text())
    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hil(
    *args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `hil` CLI in a subprocess (what a user or CI job does)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hil {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


FAST = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "1", "--warmup-seconds", "0", "--repeats", "1"]
