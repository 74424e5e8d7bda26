"""A minimal "device-like" Python environment: a venv with only numpy + ai-edge-litert.

Used by the runner tests (and the SSH tests) to prove that ``runners/linux_runner.py`` works
without TensorFlow, as it must on a real board.

The venv lives in ``$HILBENCH_DEVICE_VENV`` (default ``~/.cache/hilbench/device-venv``) and is
reused across sessions once its marker file exists. Creation is serialised with a file lock so
parallel test workers do not race. ``$HILBENCH_DEVICE_BASE_PYTHON`` optionally selects the
interpreter the venv is created from (default: the base interpreter of the current Python).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("numpy", "ai-edge-litert")
MARKER = ".hilbench-device-venv.json"
_CHECK = (
    "import json, sys, numpy, ai_edge_litert; from ai_edge_litert import interpreter; "
    "print(json.dumps({'python': sys.version.split()[0], 'numpy': numpy.__version__, "
    "'ai_edge_litert': getattr(ai_edge_litert, '__version__', None)}))"
)


class DeviceVenvError(RuntimeError):
    pass


def venv_dir() -> Path:
    env = os.environ.get("HILBENCH_DEVICE_VENV")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hilbench" / "device-venv"


def _python_in(root: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - devices are Linux
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def _clean_env() -> dict:
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(k, None)
    return env


def _run(cmd, timeout):
    proc = subprocess.run(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise DeviceVenvError("command failed (exit %d): %s\n%s" % (proc.returncode, " ".join(map(str, cmd)), tail))
    return proc.stdout


def _is_ready(root: Path) -> bool:
    return (root / MARKER).is_file() and _python_in(root).exists()


def device_python() -> str:
    """Path of the device venv's python, creating the venv on first use."""
    root = venv_dir()
    if _is_ready(root):
        return str(_python_in(root))
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / (root.name + ".lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        if _is_ready(root):  # another worker built it while we waited
            return str(_python_in(root))
        if root.exists():
            shutil.rmtree(root)  # half-built leftover without a marker
        base = os.environ.get("HILBENCH_DEVICE_BASE_PYTHON") or sys.executable
        _run([base, "-m", "venv", root], timeout=300)
        py = _python_in(root)
        _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *PACKAGES], timeout=900)
        info = json.loads(_run([py, "-c", _CHECK], timeout=120).strip().splitlines()[-1])
        info["packages"] = list(PACKAGES)
        (root / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    return str(_python_in(root))


if __name__ == "__main__":
    print(device_python())
