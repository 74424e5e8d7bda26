"""A job is one (model variant, device) measurement; its key makes runs resumable.

Shared by every stage (planning, transports, the MCU serial host, the store), so it imports none of
them at run time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: this module sits below the stages that define them
    from harness.lab.config import Device, DeviceProfile
    from harness.models.convert import ModelVariant


def series_key(model: str, variant: str, device_id: str) -> str:
    """The name of one series (what the gate compares night after night) in verdicts and reports."""
    return f"{model}/{variant}@{device_id}"


def default_min_seconds(profile: DeviceProfile) -> float:
    """The timed duration of a process without --min-seconds. On an MCU (runtime tflm, timed in
    MLPerf Tiny windows) it is all its windows, `windows` x `window_seconds`: --min-seconds there is the
    total over the windows, and a value that happens to equal the profile's (Linux) `min_seconds`
    must still be taken as asked."""
    b = profile.benchmark
    return b.windows * b.window_seconds if profile.runtime == "tflm" else b.min_seconds


@dataclass(frozen=True)
class RunOptions:
    """Measurement settings; None means "take the profile's default"."""

    min_runs: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    warmup_runs: int | None = None
    warmup_seconds: float | None = None
    num_threads: int | None = None
    xnnpack: bool | None = None
    repeats: int | None = None
    # --input-shape: ((input name or "" for the only input), dims) of dynamic inputs (harness.models.shapes)
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    # --profile: per-operator profile of N invocations in a pass of its own after the timed windows
    # (harness.profile); None or 0 = no profiling (the profiler is never loaded)
    profile_runs: int | None = None

    def resolved(self, profile: DeviceProfile) -> RunOptions:
        b = profile.benchmark
        pick = lambda mine, theirs: theirs if mine is None else mine
        return RunOptions(
            min_runs=pick(self.min_runs, b.min_runs),
            min_seconds=pick(self.min_seconds, default_min_seconds(profile)),
            max_seconds=pick(self.max_seconds, b.max_seconds),
            warmup_runs=pick(self.warmup_runs, b.warmup_runs),
            warmup_seconds=pick(self.warmup_seconds, b.warmup_seconds),
            num_threads=pick(self.num_threads, profile.num_threads),
            xnnpack=pick(self.xnnpack, profile.xnnpack),
            repeats=pick(self.repeats, b.repeats),
            input_shapes=self.input_shapes,
            profile_runs=self.profile_runs or None,
        )


@dataclass
class Job:
    variant: ModelVariant
    device: Device
    profile: DeviceProfile
    options: RunOptions
    eval_file: Path | None = None
    repeat: int = 0  # which of the run's fresh runner processes for this job
    # a second artifact timed in the same runner process, interleaved with this one (runner
    # --paired-model): the series' reference artifact on nightly runs (harness.run.reference), the
    # candidate in the gate's confirmation; not part of the job's identity
    paired: ModelVariant | None = None

    @property
    def key(self) -> str:
        options = asdict(self.options)
        if options["input_shapes"] is None:
            del options["input_shapes"]  # keys of jobs without it stay what they were before the option
        # profiling is an extra pass after the timed windows: it does not change what the job measures
        del options["profile_runs"]
        ident = {
            "artifact": self.variant.artifact_sha256,
            "variant": self.variant.variant,
            "device": self.device.id,
            "options": options,
            "eval": self.eval_file.name if self.eval_file else None,
        }
        base = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
        return base if self.repeat == 0 else f"{base}#{self.repeat}"

    @property
    def label(self) -> str:
        rep = f" [{self.repeat + 1}/{self.options.repeats}]" if (self.options.repeats or 1) > 1 else ""
        return f"{self.variant.model_name}/{self.variant.variant}@{self.device.id}{rep}"
