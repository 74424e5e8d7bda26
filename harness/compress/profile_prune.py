"""Profile-guided channel pruning (NetAdapt-like): narrow the layers that take the most *measured* time.

MACs are a poor proxy for time on a given board: a depthwise conv with few MACs may be the slowest op on
an MCU without an optimised depthwise kernel, a 1x1 conv the cheapest on a CPU with XNNPACK. Like
NetAdapt (Yang et al., ECCV 2018), this step asks the target itself: every iteration converts the
current model, has the target's profiler time each operator (`OpProfiler`: a device in a sweep, or an
explicit cost model), maps the ops back to prunable channel groups (op_map.py), and narrows a group
until the measured total falls by the iteration's budget (`step` x the first measured total, at most
what is left to the target). The channels removed are the group's weakest (structured.py's
importance), in multiples of `align` for groups whose size is a multiple of it (a group of 16 goes to
8 and stops there with align 8). Each narrowed model is fine-tuned shortly (`iteration_epochs`) and
profiled again, until the measured time is `latency_reduction` below the first one, no group can be
narrowed, or `max_iterations` is reached; then the result is fine-tuned for the recipe's epochs.

Which group: with `candidates: 1` (default) the one with the most time at stake (the summed time of
every op that reads or writes its channels), a deterministic, cheap variant of NetAdapt. With
`candidates: k` the k groups with the most time at stake are each narrowed to the budget, fine-tuned
and profiled, and the one with the best score (validation accuracy, or -MSE for an autoencoder) wins
the iteration, as in NetAdapt (k times the fine-tuning and profiling).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.compress.channels import ChannelGraph
from harness.compress.narrow import narrowed
from harness.compress.op_map import Attribution, attribute, tagged
from harness.compress.structured import _graph, _Planner
from harness.errors import ModelError, NotApplicable
from harness.models.inspect.analysis import analyze
from harness.profile.document import OpProfile

_log = logging.getLogger(__name__)

# more of the measured time than this on ops that map to no layer (a delegate node standing for the
# whole graph, as XNNPACK's is in LiteRT's profile): the ranking would be guesswork, so the step refuses
UNATTRIBUTED_MAX = 0.5


@dataclass(frozen=True)
class OpProfiler:
    """Where the per-operator times come from. `key` is what the lineage ID records of it (a device
    profile's name, a cost model's parameters): measured numbers are not inputs, so the same board type
    reuses the pruned model; `name` labels the candidate (`<model>+<recipe>@<name>`)."""

    name: str
    key: dict[str, Any]
    fn: Callable[[Path], OpProfile]


@dataclass
class Settings:
    latency_reduction: float
    step: float = 0.1
    candidates: int = 1
    max_iterations: int = 20
    iteration_epochs: int = 1
    criterion: str = "l1"
    align: int = 8


@dataclass
class Measured:
    graph: ChannelGraph
    attribution: Attribution
    profile: OpProfile

    @property
    def total(self) -> float:
        return self.attribution.total


@dataclass
class Outcome:
    model: Any
    initial: float
    final: float
    unit: str
    source: str
    stopped: str
    iterations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def achieved(self) -> float:
        return 1.0 - self.final / self.initial if self.initial > 0 else 0.0

    def report(self, requested: float) -> dict[str, Any]:
        return {
            "target": "latency",
            "requested": requested,
            "achieved": self.achieved,
            "initial": self.initial,
            "final": self.final,
            "unit": self.unit,
            "source": self.source,
            "stopped": self.stopped,
            "iterations": self.iterations,
        }


def measure(model, profiler: OpProfiler, convert: Callable[[Any], Path], where: str) -> Measured:
    """Profile the model's conversion (layers tagged, op_map.py) and put each op's time on its groups."""
    graph = ChannelGraph(model)
    path = convert(tagged(graph))
    profile = profiler.fn(path)
    if not profile.ops:
        raise ModelError(f"{where}: the profile of {profiler.name} has no operators")
    att = attribute(graph, profile, analyze(path))
    if att.total <= 0 or att.unattributed > UNATTRIBUTED_MAX * att.total:
        delegated = sum(o.delegated for o in profile.ops)
        raise NotApplicable(
            f"{where}: {profiler.name}: {att.unattributed / att.total if att.total > 0 else 1:.0%} of the profiled "
            f"time is on ops that name no layer ({delegated} delegate node(s) of {len(profile.ops)} ops): "
            "profile without a delegate, or per operator inside it"
        )
    return Measured(graph, att, profile)


def _unit(n: int, align: int) -> int:
    return align if align > 1 and n % align == 0 else 1


def _narrowing(m: Measured, planner: _Planner, gi: int, budget: float, align: int) -> np.ndarray | None:
    """The channels kept when group `gi` loses what the budget needs (estimated from its time at stake
    per channel), whole units, at least one unit left; None if it cannot lose any."""
    n = len(planner.ranked[gi])
    unit = _unit(n, align)
    stake = float(m.attribution.stake[gi])
    if n <= unit or stake <= 0:
        return None
    need = math.ceil(budget * n / stake) if budget > 0 else unit
    drop = min(max(unit, unit * math.ceil(need / unit)), n - unit)
    sizes = [len(c) for c in planner.ranked]
    sizes[gi] = n - drop
    return planner.keep(1.0, sizes)


def profile_prune(
    model,
    settings: Settings,
    profiler: OpProfiler,
    convert: Callable[[Any], Path],
    finetune: Callable[[Any, int], float],
    final_epochs: int,
    where: str = "profile_prune",
    log: Callable[[str], None] = _log.info,
) -> Outcome:
    """Narrow `model` until the profiler's total is `latency_reduction` lower (module doc). `convert`
    turns a Keras model into the .tflite the profiler times (the recipe's variant); `finetune(model,
    epochs)` compiles and trains it and returns its score (higher is better); `final_epochs` (0: none)
    fine-tune the result. Each iteration's record names the three groups with the most time at stake."""
    _graph(model, where, log)  # no prunable group: not applicable
    m = measure(model, profiler, convert, where)
    initial = m.total
    goal = initial * (1.0 - settings.latency_reduction)
    log(f"{where}: {profiler.name}: {initial:,.1f} {m.profile.unit} per inference, target {goal:,.1f}")
    current, history, stopped = model, [], "max_iterations"
    for it in range(1, settings.max_iterations + 1):
        if m.total <= goal:
            stopped = "target met"
            break
        budget = min(settings.step * initial, m.total - goal)
        planner = _Planner(m.graph, settings.criterion, settings.align)
        groups = m.graph.prunable()
        tries: list[tuple[Any, Measured, dict[str, Any]]] = []
        for gi in m.attribution.ranked():
            if len(tries) >= settings.candidates:
                break
            keep = _narrowing(m, planner, gi, budget, settings.align)
            if keep is None:
                continue
            cand = narrowed(m.graph, keep, keep_weights=True)
            score = finetune(cand, settings.iteration_epochs)
            after = measure(cand, profiler, convert, where)
            saved = m.total - after.total
            tries.append(
                (
                    cand,
                    after,
                    {
                        "group": groups[gi].producers,
                        "channels": [len(planner.ranked[gi]), int(keep[planner.ranked[gi]].sum())],
                        "stake": float(m.attribution.stake[gi]),
                        "total": after.total,
                        "saved": saved,
                        "score": score,
                    },
                )
            )
        if not tries:
            stopped = "nothing left to prune"
            break
        m_before = m
        cand, m, rec = max(tries, key=lambda t: _merit(t[2]))
        ranking = [(groups[g].producers, float(m_before.attribution.stake[g])) for g in m_before.attribution.ranked()]
        rec = dict(rec, iteration=it, ranked=[{"group": p, "stake": s} for p, s in ranking[:3]])
        if len(tries) > 1:
            rec["tried"] = [{k: t[2][k] for k in ("group", "channels", "saved", "score")} for t in tries]
        history.append(rec)
        current = cand
        log(
            f"{where}: iteration {it}: {', '.join(rec['group'])} {rec['channels'][0]} -> {rec['channels'][1]} "
            f"channels: {m.total:,.1f} {m.profile.unit} ({1 - m.total / initial:.0%} less), score {rec['score']:.4f}"
        )
    else:
        if m.total <= goal:
            stopped = "target met"
    if stopped != "target met":
        log(f"{where}: stopped ({stopped}) at {1 - m.total / initial:.0%} less than {initial:,.1f} {m.profile.unit}")
    if history and final_epochs > 0:
        finetune(current, final_epochs)
    return Outcome(current, initial, m.total, m.profile.unit, m.profile.source, stopped, history)


def _merit(rec: dict[str, Any]) -> tuple:
    """NetAdapt's choice among groups narrowed to the same budget: the best score; a candidate that
    saved no measured time ranks last; ties by the larger saving."""
    return (rec["saved"] > 0, rec["score"], rec["saved"])


def converter_for(converter, variant: str, calibration) -> Callable[[Any], Path]:
    """`convert` for profile_prune through the project's Converter (its cache, its variants)."""
    from harness.compress.train import save_model
    from harness.models.convert import ModelSource

    def convert(model) -> Path:
        with tempfile.TemporaryDirectory(prefix="hil-profile-") as tmp:
            path = Path(tmp) / "model.keras"
            save_model(model, path)
            mv = converter.convert(ModelSource.open(path), variant, calibration, quiet=True)
        return Path(mv.artifact)

    return convert
