"""hilbench as a user installs it: a real wheel, installed non-editable into a fresh venv, used from a
directory that is not the checkout (no `../runners` or `../examples` to fall back on)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


def test_declared_packages_match_the_tree():
    """Packages are listed in pyproject.toml (three are mapped from outside harness/): a new
    sub-package that is not listed would be missing from the wheel."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "harness").rglob("__init__.py")}
    mapped = set(tool["package-dir"])
    assert set(tool["packages"]) == found | mapped
    for pkg, folder in tool["package-dir"].items():
        assert (REPO / folder / "__init__.py").is_file(), pkg


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel and install it without its dependencies into a new venv; the dependencies come
    from this test environment through a .pth line (installing TensorFlow again would take minutes)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp / "dist").glob("hilbench-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {"wheel": wheel, "venv": venv, "python": py, "hil": venv / "bin" / "hil", "site": site}


def _hil(inst: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HILBENCH_CACHE"] = str(cwd / "cache")
    return subprocess.run([str(inst["hil"]), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_wheel_carries_device_code_demo_model_and_profiles(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for member in (
        "harness/device/linux_runner.py",
        "harness/device/mcu/qemu_mps2/main.c",
        "harness/examples/digits/digits.keras",
        "harness/profiles/localhost.yaml",
        "harness/mcu/templates/main.cc",
        "harness/py.typed",
        "harness/compress/recipes/qat-int8.yaml",
        "harness/examples/digits/digits.train.npz",
    ):
        assert member in names, member
    where = subprocess.run(
        [
            str(installed["python"]),
            "-c",
            "import harness, harness.device.linux_runner as r; print(harness.__file__); print(r.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.split()
    assert all(Path(w).is_relative_to(installed["site"]) for w in where), where


def test_demo_run_and_devices_check_outside_the_checkout(installed, tmp_path):
    fast = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "1", "--warmup-seconds", "0"]
    demo = _hil(installed, tmp_path, "demo", *fast)
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "| digits | fp32 | local | localhost |" in report and "| digits | int8 | local |" in report
    check = _hil(installed, tmp_path, "devices", "check")
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    assert "local" in check.stdout and "OK" in check.stdout
    model = Path(
        subprocess.run(
            [str(installed["python"]), "-c", "from harness.core.resources import demo_model;print(demo_model())"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()
    )
    run = _hil(installed, tmp_path, "run", str(model), "--variants", "int8", *fast)
    assert run.returncode == 0, run.stderr[-3000:]
    run_id = run.stdout.strip().splitlines()[-1]
    results = _hil(installed, tmp_path, "results", "--run", run_id, "--csv", "r.csv")
    assert results.returncode == 0, results.stderr[-2000:]
    assert "int8" in (tmp_path / "r.csv").read_text()
