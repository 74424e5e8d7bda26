"""The contract between the orchestrator and a way of reaching a device."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.core.jobs import Job
from harness.errors import InfraError
from harness.lab.config import Device, DeviceProfile
from harness.log import DETAIL
from harness.meters.select import on_device

RUNNER_SCHEMA = "hilbench.runner/1"
RUNNER_TAG = "[linux_runner]"  # prefix of the runner's own stderr lines
RUNNER_WARNING = RUNNER_TAG + " warning: "
_log = logging.getLogger(__name__)
S = TypeVar("S")


def transport_settings(device: Device, kind: type[S], name: str) -> S:
    """The device's transport settings as `kind`; a device on another transport is a caller bug, not
    an inventory error (the inventory decided the transport class)."""
    t = device.transport
    if not isinstance(t, kind):
        raise TypeError(f"device '{device.id}' uses the {t.type} transport, not {name}")
    return t


class Transport:
    """One open connection to one device; the orchestrator runs one job at a time on it."""

    cache_root: Path | None = None  # hilbench cache (artifacts, MCU bundles); None = default

    def __init__(self, device: Device, profile: DeviceProfile, log: Callable[[str], None]):
        self.device = device
        self.profile = profile
        self.log = log

    def _say(self, msg: str) -> None:
        self.log(f"  [{self.device.id}] {msg}")

    def _detail(self, msg: str) -> None:
        """A step of one job on the device (files deployed, the runner's phases): shown with `hil -v`;
        by default the job is the orchestrator's one `done`/`FAILED` line."""
        _log.log(DETAIL, f"  [{self.device.id}] {msg}")

    def open(self) -> None:
        """Connect; raise InfraError when the device cannot be reached."""

    def benchmark(self, job: Job) -> dict:
        """Measure one job and return a runner document (docs/ARCHITECTURE.md)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection and any remote temporary files."""

    def runner_line(self, line: str) -> None:
        """One stderr line of the device runner: its warnings always (a missing energy meter); its own
        `[linux_runner]` progress with `-v`; native chatter of the TFLite runtime ("INFO: Created
        TensorFlow Lite XNNPACK delegate ...", CUDA probing) and tracebacks only with `-vv` (callers keep
        a tail of every line for error messages)."""
        text = line.rstrip()
        if text.startswith(RUNNER_WARNING):
            self._say(text)
        elif line.startswith(RUNNER_TAG):
            self._detail(text)
        else:
            _log.debug(f"  [{self.device.id}] {text}")

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def runner_args(job: Job, model_path: str, eval_path: str | None, paired_path: str | None = None) -> list[str]:
    """Command-line arguments for runners/linux_runner.py (not yet shell-quoted)."""
    o = job.options
    args = [
        "--model",
        model_path,
        "--min-runs",
        str(o.min_runs),
        "--min-seconds",
        str(o.min_seconds),
        "--max-seconds",
        str(o.max_seconds),
        "--warmup-runs",
        str(o.warmup_runs),
        "--warmup-seconds",
        str(o.warmup_seconds),
    ]
    if o.num_threads:
        args += ["--num-threads", str(o.num_threads)]
    if o.xnnpack is False:
        args.append("--no-xnnpack")
    for name, dims in o.input_shapes or ():  # one flag per input: NAME:D1,D2,... (or D1,... unnamed)
        args += ["--input-shape", (f"{name}:" if name else "") + ",".join(str(d) for d in dims)]
    if eval_path:
        args += ["--eval", eval_path]
    if paired_path:
        args += ["--paired-model", paired_path]
    if o.profile_runs:  # a pass of its own after the timed windows; without it the profiler is never loaded
        args += ["--profile-runs", str(o.profile_runs)]
    return args + on_device(job.profile).runner_args()


def parse_runner_output(stdout: str, device_id: str, returncode: int, stderr_tail: str) -> dict:
    """Find the runner's JSON document; anything else is a crashed runner (infrastructure)."""
    text = stdout.strip()
    start = text.rfind("\n{")
    candidate = text[start + 1 :] if start >= 0 else text
    try:
        doc = json.loads(candidate)
    except json.JSONDecodeError:
        hint = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else "no output"
        raise InfraError(
            f"device '{device_id}': runner exited with code {returncode} without a result ({hint})"
        ) from None
    if not isinstance(doc, dict):
        raise InfraError(
            f"device '{device_id}': runner printed {type(doc).__name__} JSON, not a result "
            f"document (is `python` of the device really a Python interpreter?)"
        )
    if doc.get("schema") != RUNNER_SCHEMA:
        raise InfraError(
            f"device '{device_id}': runner spoke schema {doc.get('schema')!r}, "
            f"expected {RUNNER_SCHEMA!r} (update the runner on the device)"
        )
    return doc
