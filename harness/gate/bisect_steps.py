"""How one step of `hil bisect` decides whether a revision is worse than the good one: the gate's own
decisions, reused (see `harness.gate.bisect` for the search).

- latency: `confirm_key`, the gate's confirmation: the good artifact and the revision's in the same
  runner processes on the device (or alternating flashes on an MCU board), the paired t-test on log
  ratios at the gate's alpha, the in-process threshold and the absolute floor. Each step's processes
  are stored as a run of kind `bisect` (label `bisect:<commit> vs <good>`, the commit in its
  git_commit), so the evidence is inspectable like a confirmation's (`hil report --run ID`) and, like
  a confirmation, never a "latest" run, a reference or part of a series' history.
- size: exact, from the artifact (no device, nothing stored: the size is the artifact's own).
- accuracy: one runner process per artifact with the evaluation data on the device, judged as an
  absolute drop against the gate's accuracy threshold (the accuracy of an artifact on fixed data is
  one deterministic number, so there is nothing to pair and nothing stored beyond what is printed).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.jobs import Job, RunOptions, series_key
from harness.errors import HilError, InfraError
from harness.gate.bisect import Step
from harness.gate.evaluate import check_metric
from harness.gate.levels import fmt_pct
from harness.gate.process_checks import direction_of
from harness.gate.remeasure import RUNNER_TRANSPORTS, confirm_key
from harness.gate.revisions import History, Revision
from harness.lab.config import Device, DeviceProfile, Inventory, link_type
from harness.log import DETAIL
from harness.models.convert import Calibration, Converter, ModelSource, ModelVariant
from harness.run.one_process import measure_once
from harness.run.rows import flatten
from harness.store.results import ResultStore

_log = logging.getLogger(__name__)


def _detail(msg: str) -> None:
    _log.log(DETAIL, msg)


@dataclass
class Artifacts:
    """Each revision's bytes, written under the model's own file name (the name results carry) and
    converted through the artifact cache: a revision converted before (by `hil run` or an earlier
    bisection) is a cache hit."""

    history: History
    converter: Converter
    variant: str | None  # None: the default for the file (fp32; a .tflite as it is)
    calibration: Calibration | None

    def __call__(self, rev: Revision) -> ModelVariant:
        name = Path(self.history.relpath).name
        with tempfile.TemporaryDirectory(prefix="hil-bisect-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(self.history.read(rev))
            try:
                src = ModelSource.open(path)
                [variant] = self.converter.variants_for(src, [self.variant] if self.variant else None)
                return self.converter.convert(src, variant, self.calibration)
            except HilError as exc:
                raise type(exc)(f"{self.history.relpath} at {rev.short}: {str(exc).replace(str(path), name)}") from None


@dataclass
class SizeJudge:
    artifact: Callable[[Revision], ModelVariant]
    good: ModelVariant
    threshold: float
    metric: str = "model_size_bytes"

    def __call__(self, rev: Revision) -> Step:
        mv = self.artifact(rev)
        c = check_metric(self.metric, self.threshold, float(mv.size_bytes), [float(self.good.size_bytes)])
        effect = float(c.effect or 0.0)
        text = f"{fmt_pct(effect)}: {self.good.size_bytes:,} -> {mv.size_bytes:,} bytes"
        text += f", threshold {fmt_pct(self.threshold)}"
        return Step(rev, c.verdict == "regression", effect, text)


@dataclass
class LatencyJudge:
    store: ResultStore
    inventory: Inventory
    converter: Converter
    device: Device
    profile: DeviceProfile
    artifact: Callable[[Revision], ModelVariant]
    good: ModelVariant
    good_rev: Revision
    model: str
    metric: str
    threshold: float
    floor_us: float
    pairs: int | None
    alpha: float
    options: RunOptions
    wait: bool
    argv: list[str]

    @property
    def in_process(self) -> bool:
        return link_type(self.device, self.profile) in RUNNER_TRANSPORTS

    def __call__(self, rev: Revision) -> Step:
        mv = self.artifact(rev)
        if mv.artifact_sha256 == self.good.artifact_sha256:
            return Step(rev, False, 0.0, "the good revision's artifact")
        key = series_key(self.model, mv.variant, self.device.id)
        out = confirm_key(
            self.store,
            self.inventory,
            self.converter,
            f"bisect-{rev.short}",
            key,
            self.model,
            mv.variant,
            self.device.id,
            self.good.artifact_sha256,
            mv.artifact_sha256,
            {self.metric: (self.threshold, direction_of(self.metric))},
            pairs=self.pairs,
            alpha=self.alpha,
            log=_detail,
            wait=self.wait,
            options=self.options,
            kind="bisect",
            label=f"bisect:{rev.short} vs {self.good_rev.short}",
            argv=self.argv,
            git_commit=rev.commit,
        )
        if out.impossible:
            raise InfraError(f"{self.device.id}: step at {rev.short}: {out.impossible}")
        d = out.decisions.get(self.metric)
        a, b = out.levels_a.get(self.metric, []), out.levels_b.get(self.metric, [])
        if d is None or not a:
            raise InfraError(f"{self.device.id}: step at {rev.short}: the runner reported no {self.metric}")
        how = "processes timing both" if self.in_process else "pairs of processes"
        text = f"{self.metric} {fmt_pct(d.effect)}, p={d.p:.2g}, {d.n} {how}"
        if out.run_id:
            text += f", run {out.run_id}"
        change = abs(float(np.median(b)) - float(np.median(a)))
        bad = d.confirmed and change >= self.floor_us
        if d.confirmed and not bad:
            text += f"; the change of {change:.2f} us is below the {self.floor_us:g} us floor (latency_min_change_us)"
        elif not d.confirmed:
            text += f"; threshold {fmt_pct(self.threshold)}"
        if bad and out.operators:  # the confirmation profiled both artifacts (harness/profile/diff.py)
            text += f"; per-operator profile: {out.operators}"
        return Step(rev, bad, d.effect, text)


@dataclass
class AccuracyJudge:
    device: Device
    profile: DeviceProfile
    artifact: Callable[[Revision], ModelVariant]
    good: ModelVariant
    eval_file: Path
    threshold: float
    options: RunOptions
    wait: bool
    cache_root: Path
    metric: str = "accuracy_top1"
    good_value: float | None = None

    def measure(self, mv: ModelVariant) -> float:
        job = Job(mv, self.device, self.profile, self.options.resolved(self.profile), self.eval_file)
        doc = measure_once(job, self.cache_root, self.wait, _detail, run_id="bisect", lock_log=_log.info)
        if doc.get("status") != "ok":
            raise InfraError(f"{self.device.id}: {doc.get('error') or 'runner failed'}")
        values = {m: v for m, v, _ in flatten(doc)[0] if v is not None}
        if self.metric not in values:
            raise InfraError(f"{self.device.id}: the runner reported no {self.metric} (labels `y` in the --eval data?)")
        return float(values[self.metric])

    def __call__(self, rev: Revision) -> Step:
        if self.good_value is None:
            self.good_value = self.measure(self.good)
        mv = self.artifact(rev)
        value = self.measure(mv)
        c = check_metric(self.metric, self.threshold, value, [self.good_value])
        drop = self.good_value - value
        text = (
            f"{self.metric} {self.good_value:.4f} -> {value:.4f} ({-100 * drop:+.2f} points), "
            f"threshold {100 * self.threshold:.2f} points"
        )
        return Step(rev, c.verdict == "regression", drop, text)
