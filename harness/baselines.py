"""Baselines: which earlier result(s) a new result is compared with, and the gate's verdict history.

Three ways to pick the baseline of a (model, variant, device):

- ``last-pass`` (default): the newest earlier run whose gate verdict for this key was ``pass``. A
  regression therefore stays red night after night until it is fixed (or a new baseline is
  pinned); it never becomes its own baseline. The first run of a key has no baseline: its
  metrics are ``new`` and it passes (budgets still apply), so it becomes the baseline of the next.
- ``pinned``: a result chosen with ``hil baseline set`` (per device, or per profile so that one
  reference serves every board of that type). A key without a pin has no baseline.
- ``rolling:K``: the last K earlier runs with a successful result for the key, whatever their
  verdict; the samples of all K runs are pooled, so the test sees the run-to-run spread. A
  regression left unfixed is absorbed after K nights: use it for drifting lab conditions, not as
  the only gate.

Both tables live in the results database next to the results they point at.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from .errors import ConfigError
from .store import ResultStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS baselines (
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    scope TEXT NOT NULL,             -- device:<id> | profile:<name>
    run_id TEXT NOT NULL,
    result_id INTEGER NOT NULL,
    pinned_at REAL NOT NULL,
    PRIMARY KEY (model, variant, scope)
);
CREATE TABLE IF NOT EXISTS gate_verdicts (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,               -- model/variant@device
    verdict TEXT NOT NULL,           -- pass | fail | infra | error | nodata
    model TEXT,
    variant TEXT,
    device_id TEXT,
    profile TEXT,
    result_id INTEGER,
    baseline TEXT,                   -- how the baseline was chosen, and which runs
    gated_at REAL NOT NULL,
    detail TEXT,                     -- JSON: failing metrics
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS gate_verdicts_key ON gate_verdicts(key, verdict);
"""


def ensure_tables(store: ResultStore) -> None:
    store.executescript(SCHEMA)


def key_of(model: str, variant: str, device_id: str) -> str:
    return f"{model}/{variant}@{device_id}"


@dataclass(frozen=True)
class BaselineSpec:
    mode: str          # last-pass | pinned | rolling
    k: int = 1

    @classmethod
    def parse(cls, text: Optional[str]) -> "BaselineSpec":
        text = (text or "last-pass").strip()
        if text in ("last-pass", "pinned"):
            return cls(text)
        if text.startswith("rolling"):
            _, _, num = text.partition(":")
            try:
                k = int(num) if num else 5
            except ValueError:
                k = 0
            if k < 1:
                raise ConfigError(f"--baseline {text}: rolling window needs a positive run count, e.g. rolling:5")
            return cls("rolling", k)
        raise ConfigError(f"--baseline {text}: expected last-pass, pinned or rolling:K")

    def __str__(self) -> str:
        return f"rolling:{self.k}" if self.mode == "rolling" else self.mode


@dataclass
class Baseline:
    spec: BaselineSpec
    result_ids: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    source: str = ""       # e.g. "pinned (profile:raspberry-pi-4)"

    def describe(self) -> str:
        runs = ", ".join(self.run_ids[:3]) + (f" (+{len(self.run_ids) - 3})" if len(self.run_ids) > 3 else "")
        return f"{self.source or self.spec}: {runs}"


def _started_at(store: ResultStore, run_id: str) -> float:
    rows = store.execute("SELECT started_at FROM runs WHERE run_id=?", (run_id,))
    return rows[0][0] if rows else float("inf")


def select(store: ResultStore, spec: BaselineSpec, model: str, variant: str, device_id: str,
           profile: str, run_id: str) -> Optional[Baseline]:
    """The baseline of one key for the run ``run_id`` (only earlier runs qualify), or None."""
    ensure_tables(store)
    if spec.mode == "pinned":
        for scope in (f"device:{device_id}", f"profile:{profile}"):
            rows = store.execute("SELECT run_id, result_id FROM baselines WHERE model=? AND variant=? AND scope=?",
                                 (model, variant, scope))
            if rows:
                return Baseline(spec, [rows[0][1]], [rows[0][0]], f"pinned ({scope})")
        return None
    before = _started_at(store, run_id)
    if spec.mode == "last-pass":
        rows = store.execute(
            "SELECT g.result_id, g.run_id FROM gate_verdicts g JOIN runs u ON u.run_id = g.run_id "
            "JOIN results r ON r.result_id = g.result_id "
            "WHERE g.key=? AND g.verdict='pass' AND g.run_id != ? AND u.started_at < ? AND r.status='ok' "
            "ORDER BY u.started_at DESC LIMIT 1", (key_of(model, variant, device_id), run_id, before))
        if not rows:
            return None
        return Baseline(spec, [rows[0][0]], [rows[0][1]], "last passing run")
    rows = store.execute(
        "SELECT r.result_id, r.run_id FROM results r JOIN runs u ON u.run_id = r.run_id "
        "WHERE r.model=? AND r.variant=? AND r.device_id=? AND r.status='ok' AND r.run_id != ? "
        "AND u.started_at < ? ORDER BY u.started_at DESC, r.result_id DESC",
        (model, variant, device_id, run_id, before))
    chosen: dict[str, int] = {}
    for rid, run in rows:  # newest result of each run, newest runs first
        if run not in chosen:
            chosen[run] = rid
        if len(chosen) == spec.k:
            break
    if not chosen:
        return None
    return Baseline(spec, list(chosen.values()), list(chosen), f"rolling window of {len(chosen)}/{spec.k} runs")


# --------------------------------------------------------------------------- pins


def pin(store: ResultStore, run_id: str, model: Optional[str] = None, variant: Optional[str] = None,
        device: Optional[str] = None, profile: Optional[str] = None, scope: str = "device") -> list[tuple]:
    """Pin every successful result of ``run_id`` matching the filters; returns (model, variant, scope, result)."""
    ensure_tables(store)
    if not store.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)):
        raise ConfigError(f"{store.path}: no run '{run_id}'")
    sql = "SELECT result_id, model, variant, device_id, profile FROM results WHERE run_id=? AND status='ok'"
    args: list = [run_id]
    for col, val in (("model", model), ("variant", variant), ("device_id", device), ("profile", profile)):
        if val:
            sql += f" AND {col}=?"
            args.append(val)
    latest: dict[tuple, tuple] = {}
    for rid, m, v, d, p in store.execute(sql + " ORDER BY result_id", tuple(args)):
        target = f"device:{d}" if scope == "device" else f"profile:{p}"
        latest[(m, v, target)] = (rid,)  # the newest result wins (e.g. after --resume)
    if not latest:
        raise ConfigError(f"{store.path}: run '{run_id}' has no successful result matching the filters")
    now = time.time()
    out = []
    for (m, v, target), (rid,) in sorted(latest.items()):
        store.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?)", (m, v, target, run_id, rid, now))
        out.append((m, v, target, rid))
    return out


def pins(store: ResultStore) -> pd.DataFrame:
    ensure_tables(store)
    rows = store.execute("SELECT model, variant, scope, run_id, result_id, pinned_at FROM baselines "
                         "ORDER BY model, variant, scope")
    df = pd.DataFrame(rows, columns=["model", "variant", "scope", "run_id", "result_id", "pinned_at"])
    df["pinned_at"] = pd.to_datetime(df["pinned_at"], unit="s", utc=True)
    return df


def clear(store: ResultStore, model: Optional[str] = None, variant: Optional[str] = None,
          device: Optional[str] = None, profile: Optional[str] = None) -> int:
    ensure_tables(store)
    sql, args = "DELETE FROM baselines WHERE 1=1", []
    for col, val in (("model", model), ("variant", variant)):
        if val:
            sql += f" AND {col}=?"
            args.append(val)
    scopes = [s for s in ((f"device:{device}" if device else None), (f"profile:{profile}" if profile else None)) if s]
    if scopes:
        sql += " AND scope IN (" + ",".join("?" * len(scopes)) + ")"
        args += scopes
    before = store.execute("SELECT COUNT(*) FROM baselines")[0][0]
    store.execute(sql, tuple(args))
    return before - store.execute("SELECT COUNT(*) FROM baselines")[0][0]


# --------------------------------------------------------------------------- verdict history


def record_verdicts(store: ResultStore, run_id: str, rows: list[dict]) -> None:
    """Replace the gate verdicts of ``run_id`` (re-gating a run overwrites its verdicts)."""
    ensure_tables(store)
    now = time.time()
    store.execute("BEGIN IMMEDIATE")
    try:
        store.execute("DELETE FROM gate_verdicts WHERE run_id=?", (run_id,))
        for r in rows:
            store.execute("INSERT OR REPLACE INTO gate_verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                          (run_id, r["key"], r["verdict"], r.get("model"), r.get("variant"), r.get("device_id"),
                           r.get("profile"), r.get("result_id"), r.get("baseline"), now,
                           json.dumps(r.get("detail") or {})))
    except BaseException:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")


def verdicts(store: ResultStore, run_id: Optional[str] = None) -> pd.DataFrame:
    ensure_tables(store)
    sql = "SELECT run_id, key, verdict, result_id, baseline, gated_at FROM gate_verdicts"
    rows = store.execute(sql + (" WHERE run_id=?" if run_id else "") + " ORDER BY gated_at, key",
                         (run_id,) if run_id else ())
    return pd.DataFrame(rows, columns=["run_id", "key", "verdict", "result_id", "baseline", "gated_at"])


def last_passing(store: ResultStore) -> pd.DataFrame:
    """Per key, the newest run whose verdict was pass (what `last-pass` would pick for a new run)."""
    ensure_tables(store)
    rows = store.execute(
        "SELECT g.key, g.run_id, g.result_id, MAX(u.started_at) FROM gate_verdicts g "
        "JOIN runs u ON u.run_id = g.run_id WHERE g.verdict='pass' GROUP BY g.key ORDER BY g.key")
    return pd.DataFrame([r[:3] for r in rows], columns=["key", "run_id", "result_id"])
