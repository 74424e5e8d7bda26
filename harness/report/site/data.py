"""What the results site shows, read from the store once and shaped per page.

Everything a page shows is built here as plain JSON-able values, before any HTML: the writer hashes a
page's values to decide whether it changed since the last publish (so unchanged series are neither
analysed nor rendered again), and the tests check the values without a browser.

A series is (model, variant, device) on the gate's main metric, `latency_p50_us`. A run's level is the
median of its undisturbed processes (harness/gate/levels.py); the steps are those the gate's creep
detection finds over the same last `CREEP_RUNS` run levels it looks at (harness/gate/steps.py).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.jobs import series_key
from harness.gate.budgets import BUDGET_METRICS
from harness.gate.drift import MIN_SERIES, MIN_SHARE
from harness.gate.process_checks import CREEP_RUNS, creep
from harness.gate.thresholds import resolve
from harness.lab.config import DeviceProfile
from harness.store import history
from harness.store.results import ResultStore
from harness.store.schema import NOT_HISTORY_KINDS
from harness.store.verdicts import pin_rows

METRIC = "latency_p50_us"
UNIT = "us"

# gate verdicts (harness/gate/evaluate.py `record`) as the site names them; a series measured but
# never gated is `new`
VERDICT_NAMES = {"fail": "regression"}
NEW = "new"


def verdict_name(verdict: str | None) -> str:
    return NEW if verdict is None else VERDICT_NAMES.get(verdict, verdict)


@dataclass
class Point:
    """One run of a series: its processes (and which were disturbed) and the provenance to hover."""

    run: int  # index into SiteData.runs
    values: list[float] = field(default_factory=list)
    disturbed: list[bool] = field(default_factory=list)
    result_ids: list[int] = field(default_factory=list)
    artifact: str | None = None
    runtime: str | None = None
    commit: str | None = None

    level: float | None = None  # set by `finish` once every process is in

    def finish(self) -> None:
        """The run level the gate uses (`process_checks.run_level`): the median of the undisturbed
        processes; statistics.median gives the same value and is far cheaper for a handful of them."""
        good = [v for v, d in zip(self.values, self.disturbed) if not d and v > 0]
        self.level = statistics.median(good) if good else None


@dataclass
class Series:
    model: str
    variant: str
    device: str
    profile: str
    points: list[Point] = field(default_factory=list)
    verdicts: list[tuple[int, str, str | None]] = field(default_factory=list)  # (run, verdict, baseline)
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    pins: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return series_key(self.model, self.variant, self.device)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled by columns (the publish snapshot): 100,000 points load in a fraction of the time
        that pickling each Point object takes."""
        pts = self.points
        return {
            "meta": (self.model, self.variant, self.device, self.profile, self.verdicts, self.confirmations, self.pins),
            "cols": tuple(
                [getattr(p, f) for p in pts]
                for f in ("run", "values", "disturbed", "result_ids", "artifact", "runtime", "commit", "level")
            ),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model, self.variant, self.device, self.profile, self.verdicts, self.confirmations, self.pins = state[
            "meta"
        ]
        self.points = [Point(*c) for c in zip(*state["cols"])]

    @property
    def latest_verdict(self) -> str:
        return verdict_name(self.verdicts[-1][1] if self.verdicts else None)


@dataclass
class SiteData:
    runs: list[dict[str, Any]]  # user runs (no confirmation runs), oldest first
    series: dict[str, Series]
    lineage: list[dict[str, Any]]
    profiles: Mapping[str, DeviceProfile]
    gated: dict[tuple[int, str], list[str]] = field(default_factory=dict)  # (run, device) -> verdicts

    def run_id(self, index: int) -> str:
        return str(self.runs[index]["run_id"])


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _read_runs(store: ResultStore) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for row in store.runs().to_dict("records"):
        if row.get("kind") in NOT_HISTORY_KINDS:  # confirmations, bisect steps, `hil profile` looks
            continue
        try:
            argv = json.loads(row["argv"]) if row.get("argv") else []
        except ValueError:
            argv = []
        runs.append(
            {
                "run_id": row["run_id"],
                "label": _text(row.get("label")),
                "started_at": float(row["started_at"]),
                "status": row["status"],
                "kind": row.get("kind") or "measure",
                "git_commit": _text(row.get("git_commit")),
                "argv": argv if isinstance(argv, list) else [],
            }
        )
    return runs


class _OutOfOrder(Exception):
    """New processes belong before a series' last run: the snapshot cannot simply be extended."""


def _add_processes(series: dict[str, Series], rows: list[tuple], runs: list[dict[str, Any]]) -> set[str]:
    """Append processes (oldest run first) to their series; the keys of the series that changed."""
    index = {r["run_id"]: i for i, r in enumerate(runs)}
    rows = [row for row in rows if row[1] in index and row[9] is not None and row[9] == row[9]]
    rows.sort(key=lambda row: (index[row[1]], row[0]))  # oldest run first, then result order
    touched: dict[str, list[Point]] = {}
    for rid, run_id, model, variant, device, profile, art, rt, commit, value, disturbed in rows:
        i = index[run_id]
        key = series_key(model, variant, device)
        s = series.get(key)
        if s is None:
            s = series[key] = Series(model, variant, device, profile)
        if s.points and s.points[-1].run > i:
            raise _OutOfOrder(key)
        if not s.points or s.points[-1].run != i:
            s.points.append(Point(i, artifact=art, runtime=rt, commit=commit or runs[i]["git_commit"]))
            touched.setdefault(key, []).append(s.points[-1])
        elif not touched.get(key) or touched[key][-1] is not s.points[-1]:
            touched.setdefault(key, []).append(s.points[-1])
        p = s.points[-1]
        p.values.append(float(value))
        p.disturbed.append(bool(disturbed))
        p.result_ids.append(int(rid))
    for points in touched.values():
        for p in points:
            p.finish()
    return set(touched)


def _apply_verdicts(site: SiteData, rows: list[tuple], runs_changed: set[int] | None) -> set[str]:
    """Put verdict rows into their series (replacing those of `runs_changed`; None: all of them);
    the keys of the series whose verdicts changed."""
    index = {r["run_id"]: i for i, r in enumerate(site.runs)}
    verdicts = sorted(((index[row[0]], row) for row in rows if row[0] in index), key=lambda v: (v[0], v[1][1]))
    before = {k: list(s.verdicts) for k, s in site.series.items()}
    for one in site.series.values():
        one.verdicts = [v for v in one.verdicts if v[0] not in runs_changed] if runs_changed is not None else []
    site.gated = {k: v for k, v in site.gated.items() if runs_changed is not None and k[0] not in runs_changed}
    gated: dict[tuple[int, str], list[str]] = defaultdict(list, site.gated)
    added: set[str] = set()
    for i, (run_id, key, verdict, model, variant, device, profile, _rid, baseline) in verdicts:
        s = site.series.get(key)
        if s is None and model and variant and device:
            s = site.series[key] = Series(model, variant, device, profile or "")
        if s is not None:
            s.verdicts.append((i, verdict, baseline))
            added.add(key)
        gated[i, device or key.rpartition("@")[2]].append(verdict)
    site.gated = dict(gated)
    for key in added:
        site.series[key].verdicts.sort(key=lambda v: v[0])
    return {k for k, s in site.series.items() if s.verdicts != before.get(k)}


def _attach_extras(store: ResultStore, site: SiteData) -> set[str]:
    """Confirmations and pins (small tables, read whole); the keys of the series where they changed."""
    before = {k: (s.confirmations, s.pins) for k, s in site.series.items()}
    for s in site.series.values():
        s.confirmations, s.pins = [], []
    _attach_confirmations(store, site.series)
    _attach_pins(store, site.series)
    return {k for k, s in site.series.items() if (s.confirmations, s.pins) != before.get(k)}


def load(store: ResultStore, profiles: Mapping[str, DeviceProfile] | None = None) -> SiteData:
    """The whole store as the site needs it: a handful of queries, whatever the number of series."""
    return update(store, None, profiles)[0]


@dataclass
class Snapshot:
    """What a publish read, kept for the next one (`update`): results are only ever added, so the next
    publish reads the processes after `watermark` and the verdicts of the runs whose verdicts changed."""

    site: SiteData
    watermark: int  # highest result id read
    processes: int  # process rows read up to it
    verdicts: dict[str, tuple]  # run_id -> fingerprint of its verdicts


def update(
    store: ResultStore, snap: Snapshot | None, profiles: Mapping[str, DeviceProfile] | None = None
) -> tuple[SiteData, set[str] | None, Snapshot]:
    """The site data, from `snap` plus what the store added since, or read whole (no snapshot, or one
    the store no longer extends: runs inserted before others, results removed, processes of an old run).
    Returns (data, keys of the series that changed or None for all, the snapshot for the next time)."""
    runs = _read_runs(store)
    if snap is not None:
        old = [r["run_id"] for r in snap.site.runs]
        if [r["run_id"] for r in runs[: len(old)]] != old:
            snap = None
        elif history.process_count(store, METRIC, snap.watermark) != snap.processes:
            snap = None
    fingerprints = {run: tuple(fp) for run, *fp in history.verdict_fingerprints(store)}
    if snap is not None:
        site = snap.site
        site.runs, site.profiles = runs, profiles or {}
        rows = history.series_processes(store, METRIC, after=snap.watermark)
        try:
            dirty: set[str] | None = _add_processes(site.series, rows, runs)
        except _OutOfOrder:
            return update(store, None, profiles)
        assert dirty is not None
        changed = {r for r in set(fingerprints) | set(snap.verdicts) if fingerprints.get(r) != snap.verdicts.get(r)}
        index = {r["run_id"]: i for i, r in enumerate(runs)}
        if changed:
            rows_v = history.all_verdicts(store, sorted(r for r in changed if r in fingerprints))
            dirty |= _apply_verdicts(site, rows_v, {index[r] for r in changed if r in index})
        watermark, processes = max([snap.watermark] + [r[0] for r in rows]), snap.processes + len(rows)
    else:
        site = SiteData(runs, {}, [], profiles or {})
        rows = history.series_processes(store, METRIC)
        _add_processes(site.series, rows, runs)
        _apply_verdicts(site, history.all_verdicts(store), None)
        dirty, watermark, processes = None, max([0] + [r[0] for r in rows]), len(rows)
    extras = _attach_extras(store, site)
    if dirty is not None:
        dirty |= extras
    site.lineage = store.lineage()
    next_snap = Snapshot(site, watermark, processes, fingerprints)
    return site, dirty, next_snap


def _attach_confirmations(store: ResultStore, series: dict[str, Series]) -> None:
    """Each confirmation run re-measured the reference artifact and the candidate in pairs (job keys
    `confirm-reference-<i>` / `confirm-candidate-<i>`): its paired effect is the median of the
    candidate's level over the reference's, pair by pair (positive = slower)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for run_id, label, started, job_key, model, variant, device, value in history.confirmation_processes(store, METRIC):
        m = re.fullmatch(r"confirm-(reference|candidate)-(\d+)", job_key or "")
        if m is None or value is None:
            continue
        key = series_key(model, variant, device)
        g = groups.setdefault(
            (run_id, key),
            {"run_id": run_id, "gated_run": (label or "").removeprefix("confirm:"), "at": started, "pairs": {}},
        )
        g["pairs"].setdefault(int(m.group(2)), {})[m.group(1)] = float(value)
    for (_, key), g in groups.items():
        s = series.get(key)
        if s is None:
            continue
        ratios = [
            p["candidate"] / p["reference"] for p in g["pairs"].values() if p.get("reference") and "candidate" in p
        ]
        s.confirmations.append(
            {
                "run_id": g["run_id"],
                "gated_run": g["gated_run"],
                "at": g["at"],
                "pairs": len(ratios),
                "effect": statistics.median(ratios) - 1.0 if ratios else None,
            }
        )


def _attach_pins(store: ResultStore, series: dict[str, Series]) -> None:
    """Accepted baselines pinned with `hil baseline pin` (scope device:<id> or profile:<name>)."""
    for model, variant, scope, run_id, result_id, pinned_at in pin_rows(store):
        kind, _, name = scope.partition(":")
        for s in series.values():
            if s.model != model or s.variant != variant:
                continue
            if (kind == "device" and s.device == name) or (kind == "profile" and s.profile == name):
                level = next((p.level for p in s.points if result_id in p.result_ids), None)
                s.pins.append({"scope": scope, "run_id": run_id, "result_id": result_id, "level": level})


# --------------------------------------------------------------------------- per page


def slug(key: str) -> str:
    """A file name for a series: readable, and unique whatever characters its names hold."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:60]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def series_document(site: SiteData, s: Series) -> dict[str, Any]:
    """A series' page data before analysis: what the page's content hash covers."""
    prof = site.profiles.get(s.profile)
    budgets = []
    if prof is not None:
        for name, (metric, _kind) in BUDGET_METRICS.items():
            limit = getattr(prof.budgets, name, None)
            if metric == METRIC and limit is not None:
                budgets.append({"name": name, "limit": float(limit)})
    artifacts: dict[str | None, int] = {}
    runtimes: dict[str | None, int] = {}
    commits: dict[str | None, int] = {}
    # each distinct artifact, runtime and commit once (they stay the same night after night)
    run: list[int] = []
    level: list[float | None] = []
    procs: list[list[float]] = []
    disturbed: list[list[int]] = []
    art: list[int] = []
    rt: list[int] = []
    commit: list[int] = []
    for p in s.points:
        run.append(p.run)
        level.append(None if p.level is None else _short(p.level))
        procs.append([_short(v) for v in p.values])
        disturbed.append([i for i, d in enumerate(p.disturbed) if d] if any(p.disturbed) else [])
        art.append(artifacts.setdefault(p.artifact, len(artifacts)))
        rt.append(runtimes.setdefault(p.runtime, len(runtimes)))
        commit.append(commits.setdefault(p.commit, len(commits)))
    return {
        "key": s.key,
        "model": s.model,
        "variant": s.variant,
        "device": s.device,
        "profile": s.profile,
        "metric": METRIC,
        "unit": UNIT,
        "threshold": resolve(METRIC, s.model, prof.thresholds if prof else None, {}),
        "run": run,
        "level": level,
        "procs": procs,
        "disturbed": disturbed,
        "art": art,
        "rt": rt,
        "commit": commit,
        "artifacts": list(artifacts),
        "runtimes": list(runtimes),
        "commits": list(commits),
        "verdicts": [[r, verdict_name(v), b] for r, v, b in s.verdicts],
        "confirmations": s.confirmations,
        "pins": s.pins,
        "budgets": budgets,
    }


def _short(v: float) -> float:
    """Six significant digits (0.1 us of a 100 ms level): what a reader can use, half the bytes."""
    return float(f"{v:.6g}")


def analyse(doc: dict[str, Any]) -> dict[str, Any]:
    """The steps the gate's creep detection finds in the last CREEP_RUNS run levels, as point ranges."""
    positions = [i for i, v in enumerate(doc["level"]) if v is not None and v > 0][-CREEP_RUNS:]
    found = creep([doc["level"][i] for i in positions], doc["threshold"], doc["metric"])
    steps = []
    if found is not None:
        for st in found.steps:
            steps.append({"start": positions[st.start], "end": positions[st.end - 1], "level": st.level})
    return {
        "steps": steps,
        "creep": None if found is None else {"flagged": found.flagged, "reason": found.reason},
    }


def index_rows(site: SiteData) -> list[dict[str, Any]]:
    """One row per series, newest regressions first, then the rest by name."""
    rows = []
    order: dict[str, tuple[float, str]] = {}
    for s in site.series.values():
        last = s.points[-1] if s.points else None
        run = s.verdicts[-1][0] if s.verdicts else (last.run if last is not None else None)
        at = site.runs[run]["started_at"] if run is not None else 0.0
        verdict = s.latest_verdict
        order[s.key] = (-at if verdict == "regression" else math.inf, s.key)
        rows.append(
            {
                "key": s.key,
                "slug": slug(s.key),
                "model": s.model,
                "variant": s.variant,
                "device": s.device,
                "profile": s.profile,
                "verdict": verdict,
                "run_id": site.run_id(run) if run is not None else "",
                "at": at,
                "level": last.level if last is not None else None,
                "runs": len(s.points),
            }
        )
    rows.sort(key=lambda r: order[str(r["key"])])
    return rows


def device_comparison(site: SiteData) -> dict[str, Any]:
    """The same model/variant across devices: each series' latest level and verdict, side by side."""
    devices = sorted({(s.device, s.profile) for s in site.series.values()})
    table: dict[str, dict[str, Any]] = {}
    for s in site.series.values():
        level = next((p.level for p in reversed(s.points) if p.level is not None), None)
        cell = {"level": level, "slug": slug(s.key), "verdict": s.latest_verdict}
        table.setdefault(f"{s.model}/{s.variant}", {})[s.device] = cell
    return {"devices": [list(d) for d in devices], "rows": [[k, table[k]] for k in sorted(table)]}


def drift_history(site: SiteData) -> dict[str, list[dict[str, Any]]]:
    """Per device, the runs where the gate's device-drift rule holds on the recorded verdicts: at
    least MIN_SERIES series, and MIN_SHARE of those gated, came out `level-off` (an unchanged
    artifact's level tripped). The gate's own warning lines are not stored; this is the same rule
    read back from the verdicts, with the median change of those series against their previous run."""
    off: dict[tuple[int, str], list[Series]] = defaultdict(list)
    for s in site.series.values():
        for run, verdict, _ in s.verdicts:
            if verdict == "level-off":
                off[run, s.device].append(s)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (run, device), series in sorted(off.items()):
        gated = len(site.gated.get((run, device), []))
        if len(series) < MIN_SERIES or len(series) < MIN_SHARE * gated:
            continue
        changes = [c for c in (_change(s, run) for s in series) if c is not None]
        out[device].append(
            {
                "run_id": site.run_id(run),
                "at": site.runs[run]["started_at"],
                "off": len(series),
                "gated": gated,
                "median_change": statistics.median(changes) if changes else None,
            }
        )
    return dict(out)


def _change(s: Series, run: int) -> float | None:
    """A series' level at `run` against its previous run level."""
    import bisect

    at = bisect.bisect_left([p.run for p in s.points], run)
    if at >= len(s.points) or s.points[at].run != run or s.points[at].level is None:
        return None
    prev = next((p.level for p in reversed(s.points[:at]) if p.level is not None), None)
    level = s.points[at].level
    return None if prev is None or level is None else level / prev - 1.0


def _argv_option(argv: list[str], name: str) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(name + "="):
            out.append(a.split("=", 1)[1])
    return out


def sweeps(store: ResultStore, site: SiteData) -> list[dict[str, Any]]:
    """Each `hil sweep` run: per device its candidates, the Pareto front and the choice, decided again
    with the sweep's own rules (harness/compress/pareto.py) from what the store holds: the profile's
    budgets and the run's --budget/--prefer. Accuracy is the device's, else the host's from lineage."""
    from harness.compress.pareto import Point as ParetoPoint
    from harness.compress.pareto import choose, parse_budgets
    from harness.errors import ConfigError

    host_acc = {
        n["model_name"]: (n.get("metrics") or {}).get("host_accuracy") for n in site.lineage if n.get("model_name")
    }
    roots = {n["model_name"]: n["root_id"] for n in site.lineage if n.get("model_name")}
    out = []
    for run in site.runs:
        argv = run["argv"]
        if not argv or argv[0] != "sweep":
            continue
        wide = store.wide(run["run_id"])
        if wide.empty:
            continue
        ok = wide[wide["status"] == "ok"]
        prefer = (_argv_option(argv, "--prefer") or ["accuracy"])[-1]
        try:
            extra = parse_budgets(_argv_option(argv, "--budget"))
        except ConfigError:
            extra = {}
        devices = []
        for (device, profile), rows in ok.groupby(["device_id", "profile"]):
            points = []
            for (model, variant), r in rows.groupby(["model", "variant"]):
                values: dict[str, float | None] = {}
                for metric in ("latency_p50_us", "model_size_bytes", "arena_bytes", "energy_per_inference_uj"):
                    vals = [float(v) for v in r[metric] if v == v] if metric in r else []
                    values[metric] = statistics.median(vals) if vals else None
                acc = [float(v) for v in r["accuracy_top1"] if v == v] if "accuracy_top1" in r else []
                values["accuracy"] = statistics.median(acc) if acc else host_acc.get(model)
                points.append(ParetoPoint(f"{model}/{variant}", values))
            prof = site.profiles.get(str(profile))
            try:
                ch = choose(str(device), str(profile), points, prof.budgets if prof else None, extra, prefer)
            except ConfigError:
                ch = choose(str(device), str(profile), points, prof.budgets if prof else None, extra)
            devices.append(
                {
                    "device": device,
                    "profile": profile,
                    "objectives": ch.objectives,
                    "choice": ch.choice,
                    "prefer": ch.prefer,
                    "points": [
                        {
                            "name": p.name,
                            "latency": p.get("latency_p50_us"),
                            "accuracy": p.get("accuracy"),
                            "size": p.get("model_size_bytes"),
                            "front": ch.verdicts[p.name].pareto,
                            "ruled_out": ch.verdicts[p.name].ruled_out_by,
                        }
                        for p in points
                    ],
                }
            )
        models = set(ok["model"])
        out.append(
            {
                "run_id": run["run_id"],
                "label": run["label"],
                "at": run["started_at"],
                "devices": devices,
                "roots": sorted({roots[m] for m in models if m in roots}),
            }
        )
    return out


def lineage_trees(site: SiteData) -> list[dict[str, Any]]:
    """The lineage as nested nodes per root model (parents before children)."""
    nodes = {n["node_id"]: {**n, "children": []} for n in site.lineage}
    roots: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in nodes.values():
        parent = nodes.get(n["parent_id"])
        (parent["children"] if parent is not None else roots[n["root_id"]]).append(n)
    return [{"root_id": r, "children": kids} for r, kids in sorted(roots.items())]


OpProfileHook = Callable[[int], Any]  # result_id -> harness.profile.document.OpProfile | None
