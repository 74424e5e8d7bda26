"""A job is one (model variant, device) measurement; its key makes runs resumable."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .config import Device, DeviceProfile
from .convert import ModelVariant
from .energy import runner_meter_args


@dataclass(frozen=True)
class RunOptions:
    """Measurement settings; None means "take the profile's default"."""

    min_runs: Optional[int] = None
    min_seconds: Optional[float] = None
    max_seconds: Optional[float] = None
    warmup_runs: Optional[int] = None
    warmup_seconds: Optional[float] = None
    num_threads: Optional[int] = None
    xnnpack: Optional[bool] = None

    def resolved(self, profile: DeviceProfile) -> "RunOptions":
        b = profile.benchmark
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return RunOptions(
            min_runs=pick(self.min_runs, b.min_runs),
            min_seconds=pick(self.min_seconds, b.min_seconds),
            max_seconds=pick(self.max_seconds, b.max_seconds),
            warmup_runs=pick(self.warmup_runs, b.warmup_runs),
            warmup_seconds=pick(self.warmup_seconds, b.warmup_seconds),
            num_threads=pick(self.num_threads, profile.num_threads),
            xnnpack=pick(self.xnnpack, profile.xnnpack),
        )


@dataclass
class Job:
    variant: ModelVariant
    device: Device
    profile: DeviceProfile
    options: RunOptions
    eval_file: Optional[Path] = None

    @property
    def key(self) -> str:
        ident = {"artifact": self.variant.artifact_sha256, "variant": self.variant.variant,
                 "device": self.device.id, "options": asdict(self.options),
                 "eval": self.eval_file.name if self.eval_file else None}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        return f"{self.variant.model_name}/{self.variant.variant}@{self.device.id}"

    def runner_args(self, model_path: str, eval_path: Optional[str]) -> list[str]:
        """Command-line arguments for runners/linux_runner.py (not yet shell-quoted)."""
        o = self.options
        args = ["--model", model_path, "--min-runs", str(o.min_runs), "--min-seconds", str(o.min_seconds),
                "--max-seconds", str(o.max_seconds), "--warmup-runs", str(o.warmup_runs),
                "--warmup-seconds", str(o.warmup_seconds)]
        if o.num_threads:
            args += ["--num-threads", str(o.num_threads)]
        if o.xnnpack is False:
            args.append("--no-xnnpack")
        if eval_path:
            args += ["--eval", eval_path]
        return args + runner_meter_args(self.profile)
