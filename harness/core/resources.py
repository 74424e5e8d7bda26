"""Files hilbench ships besides its host code, located the same way in a checkout and in a wheel.

Device-side code stays in the repository's `runners/`, the demo model in `examples/` and the board
types in `device_profiles/`; pyproject.toml maps them into the package (`harness.device`,
`harness.examples`, `harness.profiles`), so nothing reaches for `../runners` by file path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from harness.errors import InfraError


def _shipped(package: str, *parts: str) -> Path:
    path = Path(str(resources.files(package).joinpath(*parts)))
    if not path.exists():
        raise InfraError(f"{path}: missing from this hilbench installation (reinstall hilbench)")
    return path


def runner_file() -> Path:
    """`linux_runner.py`: copied to every Linux device; also answers `--probe`."""
    return _shipped("harness.device", "linux_runner.py")


def qemu_firmware_dir() -> Path:
    """C sources of the protocol-layer firmware for QEMU's mps2-an386."""
    return _shipped("harness.device", "mcu", "qemu_mps2")


def demo_model() -> Path:
    return _shipped("harness.examples", "digits", "digits.keras")


def shipped_profiles_dir() -> Path:
    return _shipped("harness.profiles")
