"""Baselines: which earlier result(s) a new result is compared with, and the gate's verdict history.

Three ways to pick the baseline of a (model, variant, device):

- ``last-pass[:K]`` (default K=5): the newest K earlier runs whose gate verdict for this key was
  ``pass`` (accepted). The reference is the median of all their process levels, so one lucky or
  unlucky night cannot move it. A regression stays red night after night until it is fixed (or a
  new baseline is pinned); it never becomes its own reference, and neither does an improvement
  until `hil baseline accept` says so (its verdict is stored as ``improved``), nor a night whose
  unchanged artifact's level was off (``level-off``, `harness.gate.remeasure`). The first run of a
  key has no baseline: its metrics are ``new`` and it passes (budgets still apply), so it becomes
  the reference of the next.
- ``pinned``: a result chosen with ``hil baseline set`` (per device, or per profile so that one
  reference serves every board of that type). A key without a pin has no baseline.
- ``rolling:K``: the last K earlier runs with a successful result for the key, whatever their
  verdict; the samples of all K runs are pooled, so the test sees the run-to-run spread. A
  regression left unfixed is absorbed after K nights: use it for drifting lab conditions, not as
  the only gate.

Both tables live in the results database next to the results they point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.core.jobs import series_key
from harness.errors import ConfigError
from harness.store import verdicts as db
from harness.store.results import ResultStore


def key_of(model: str, variant: str, device_id: str) -> str:
    return series_key(model, variant, device_id)


DEFAULT_K = 5


@dataclass(frozen=True)
class BaselineSpec:
    mode: str  # last-pass | pinned | rolling
    k: int = DEFAULT_K

    @classmethod
    def parse(cls, text: str | None) -> BaselineSpec:
        text = (text or "last-pass").strip()
        if text == "pinned":
            return cls(text, 1)
        for mode, what in (("last-pass", "last-pass"), ("rolling", "rolling window")):
            if text.startswith(mode):
                _, _, num = text.partition(":")
                try:
                    k = int(num) if num else DEFAULT_K
                except ValueError:
                    k = 0
                if k < 1:
                    raise ConfigError(f"--baseline {text}: {what} needs a positive run count, e.g. {mode}:5")
                return cls(mode, k)
        raise ConfigError(f"--baseline {text}: expected last-pass, pinned or rolling:K")

    def __str__(self) -> str:
        if self.mode == "rolling" or (self.mode == "last-pass" and self.k != DEFAULT_K):
            return f"{self.mode}:{self.k}"
        return self.mode


@dataclass
class Baseline:
    spec: BaselineSpec
    result_ids: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    source: str = ""  # e.g. "pinned (profile:raspberry-pi-4)"

    def describe(self) -> str:
        runs = ", ".join(self.run_ids[:3]) + (f" (+{len(self.run_ids) - 3})" if len(self.run_ids) > 3 else "")
        return f"{self.source or self.spec}: {runs}"


def select(
    store: ResultStore, spec: BaselineSpec, model: str, variant: str, device_id: str, profile: str, run_id: str
) -> Baseline | None:
    """The baseline of one key for the run ``run_id`` (only earlier runs qualify), or None."""
    if spec.mode == "pinned":
        for scope in (f"device:{device_id}", f"profile:{profile}"):
            pinned = db.pinned_result(store, model, variant, scope)
            if pinned:
                return Baseline(spec, [pinned[1]], [pinned[0]], f"pinned ({scope})")
        return None
    before = db.run_started_at(store, run_id)
    if spec.mode == "last-pass":
        runs = db.accepted_run_ids(store, key_of(model, variant, device_id), run_id, before, spec.k)
        results = db.ok_results_in_runs(store, runs, model, variant, device_id)
        if not results:
            return None
        runs = [r for r in runs if any(run == r for _, run in results)]
        return Baseline(
            spec,
            [rid for rid, _ in results],
            runs,
            f"last {len(runs)} accepted run(s)" if len(runs) > 1 else "last passing run",
        )
    rows = db.earlier_ok_results(store, model, variant, device_id, run_id, before)
    chosen: list[str] = []
    for _, run in rows:  # newest runs first
        if run not in chosen:
            if len(chosen) == spec.k:
                break
            chosen.append(run)
    if not chosen:
        return None
    ids = [rid for rid, run in rows if run in chosen]
    return Baseline(spec, ids, chosen, f"rolling window of {len(chosen)}/{spec.k} runs")


# --------------------------------------------------------------------------- pins


def pin(
    store: ResultStore,
    run_id: str,
    model: str | None = None,
    variant: str | None = None,
    device: str | None = None,
    profile: str | None = None,
    scope: str = "device",
) -> list[tuple]:
    """Pin every successful result of ``run_id`` matching the filters; returns (model, variant, scope, result)."""
    if not db.run_exists(store, run_id):
        raise ConfigError(f"{store.path}: no run '{run_id}'")
    latest: dict[tuple, tuple] = {}
    filters = {"model": model, "variant": variant, "device_id": device, "profile": profile}
    for rid, m, v, d, p in db.ok_results_of_run(store, run_id, filters):
        target = f"device:{d}" if scope == "device" else f"profile:{p}"
        latest[(m, v, target)] = (rid,)  # the newest result wins (e.g. after --resume)
    if not latest:
        raise ConfigError(f"{store.path}: run '{run_id}' has no successful result matching the filters")
    out = [(m, v, target, rid) for (m, v, target), (rid,) in sorted(latest.items())]
    db.write_pins(store, run_id, out)
    return out


def pins(store: ResultStore) -> pd.DataFrame:
    df = pd.DataFrame(db.pin_rows(store), columns=["model", "variant", "scope", "run_id", "result_id", "pinned_at"])
    df["pinned_at"] = pd.to_datetime(df["pinned_at"], unit="s", utc=True)
    return df


def clear(
    store: ResultStore,
    model: str | None = None,
    variant: str | None = None,
    device: str | None = None,
    profile: str | None = None,
) -> int:
    scopes = [s for s in ((f"device:{device}" if device else None), (f"profile:{profile}" if profile else None)) if s]
    return db.delete_pins(store, model, variant, scopes)


# --------------------------------------------------------------------------- verdict history


def record_verdicts(store: ResultStore, run_id: str, rows: list[dict]) -> None:
    """Replace the gate verdicts of ``run_id`` (re-gating a run overwrites its verdicts)."""
    db.replace_verdicts(store, run_id, rows)


def verdicts(store: ResultStore, run_id: str | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        db.verdict_rows(store, run_id), columns=["run_id", "key", "verdict", "result_id", "baseline", "gated_at"]
    )


def last_passing(store: ResultStore) -> pd.DataFrame:
    """Per key, the newest run whose verdict was pass (what `last-pass` would pick for a new run)."""
    return pd.DataFrame(db.last_passing_rows(store), columns=["key", "run_id", "result_id"])


def accept(
    store: ResultStore, run_id: str, model: str | None = None, variant: str | None = None, device: str | None = None
) -> int:
    """`hil baseline accept`: the run's improved, level-off or failed keys become accepted references."""
    if not db.run_exists(store, run_id):
        raise ConfigError(f"{store.path}: no run '{run_id}'")
    keys = None
    if model or variant or device:
        rows = db.verdict_rows(store, run_id)
        keys = [
            key
            for _, key, *_ in rows
            if (not model or key.startswith(f"{model}/"))
            and (not variant or f"/{variant}@" in key)
            and (not device or key.endswith(f"@{device}"))
        ]
        if not keys:
            return 0
    return db.accept_improvements(store, run_id, keys)
