"""The contract between the orchestrator and a way of reaching a device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from ..config import Device, DeviceProfile
from ..errors import InfraError
from ..jobs import Job

RUNNER_PATH = Path(__file__).resolve().parents[2] / "runners" / "linux_runner.py"
RUNNER_SCHEMA = "hilbench.runner/1"


class Backend:
    """One open connection to one device; the orchestrator runs one job at a time on it."""

    cache_root: Optional[Path] = None  # hilbench cache (artifacts, MCU bundles); None = default
    def __init__(self, device: Device, profile: DeviceProfile, log: Callable[[str], None]):
        self.device = device
        self.profile = profile
        self.log = log

    def open(self) -> None:
        """Connect; raise InfraError when the device cannot be reached."""

    def benchmark(self, job: Job) -> dict:
        """Measure one job and return a runner document (docs/ARCHITECTURE.md)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection and any remote temporary files."""

    def __enter__(self) -> "Backend":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def runner_file() -> Path:
    if not RUNNER_PATH.exists():
        raise InfraError(f"{RUNNER_PATH}: device runner missing from this hilbench checkout")
    return RUNNER_PATH


def parse_runner_output(stdout: str, device_id: str, returncode: int, stderr_tail: str) -> dict:
    """Find the runner's JSON document; anything else is a crashed runner (infrastructure)."""
    text = stdout.strip()
    start = text.rfind("\n{")
    candidate = text[start + 1:] if start >= 0 else text
    try:
        doc = json.loads(candidate)
    except json.JSONDecodeError:
        hint = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else "no output"
        raise InfraError(f"device '{device_id}': runner exited with code {returncode} without a "
                         f"result ({hint})") from None
    if not isinstance(doc, dict):
        raise InfraError(f"device '{device_id}': runner printed {type(doc).__name__} JSON, not a result "
                         f"document (is `python` of the device really a Python interpreter?)")
    if doc.get("schema") != RUNNER_SCHEMA:
        raise InfraError(f"device '{device_id}': runner spoke schema {doc.get('schema')!r}, "
                         f"expected {RUNNER_SCHEMA!r} (update the runner on the device)")
    return doc
