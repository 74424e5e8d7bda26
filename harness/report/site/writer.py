"""Write the site, incrementally: a page is rendered and written only when its data changed.

The manifest (`manifest.json` in the site) keeps one content hash per page, taken over the page's data
before any analysis or rendering. Re-publishing after a nightly reads the store (a few whole-store
queries), hashes each page's data, and analyses, renders and rewrites only the pages whose hash moved;
the files of series that left the store are removed. Each file is written to a temporary name and
renamed, and the manifest last, so an interrupted publish leaves a site that the next one repairs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import pickle
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.report.site import data, pages

# part of every page's hash: a new hilbench that renders pages differently rewrites them all
FORMAT = "hilbench-site-2"  # 2: bisect steps and `hil profile` runs are not in the history
MANIFEST = "manifest.json"
ASSETS = ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE.uPlot", "site.js", "site.css")


@dataclass
class PublishStats:
    pages: int = 0  # pages the site has
    written: list[str] = field(default_factory=list)  # files (re)written by this publish
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _hash(value: Any) -> str:
    text = json.dumps([FORMAT, value], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Site:
    def __init__(self, out: Path):
        self.out = out
        try:
            self.meta: dict[str, Any] = json.loads((out / MANIFEST).read_text())
            self.old: dict[str, str] = dict(self.meta["pages"])
            if self.meta.get("format") != FORMAT:
                raise ValueError(self.meta.get("format"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.meta, self.old = {}, {}
        self.new: dict[str, str] = {}
        self.stats = PublishStats()

    def page(self, name: str, value: Any, render: Callable[[], dict[str, str]], files: list[str]) -> None:
        """`render()` -> {relative path: text}, called only when `value` changed or a file is missing."""
        digest = _hash(value)
        self.new[name] = digest
        self.stats.pages += 1
        if self.old.get(name) == digest and all((self.out / f).is_file() for f in files):
            return
        for rel, text in render().items():
            self.write(rel, text.encode())

    def keep(self, name: str, files: list[str]) -> bool:
        """Keep a page the snapshot says did not change, without computing its data (True if kept)."""
        if name not in self.old or not all((self.out / f).is_file() for f in files):
            return False
        self.new[name] = self.old[name]
        self.stats.pages += 1
        return True

    def write(self, rel: str, content: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        self.stats.written.append(rel)


_FIXED_PAGES = ("index.html", "devices.html", "sweeps.html")
_SLUG = re.compile(r"[A-Za-z0-9._-]+-[0-9a-f]{10}")


def _files(name: str) -> list[str]:
    if name.startswith("series:"):
        s = name.removeprefix("series:")
        return [f"series/{s}.html", f"data/{s}.js"]
    return [name]


def _removable(out: Path, name: str) -> list[Path]:
    """The files of a page the previous manifest lists and this publish no longer writes: only names
    of the forms publish itself writes, inside the site. The manifest is a file in the output folder
    (often shared or downloaded): a forged entry (`../../x`, `/abs`) must never delete anything else."""
    ok = (
        (name.startswith("series:") and _SLUG.fullmatch(name.removeprefix("series:")) is not None)
        or name in _FIXED_PAGES
        or (name.startswith("assets/") and name.removeprefix("assets/") in ASSETS)
    )
    if not ok:
        return []
    root = out.resolve()
    paths = [(out / rel) for rel in _files(name)]
    return [p for p in paths if p.resolve().is_relative_to(root)]


def _read_snapshot(path: Path | None, token: str | None) -> data.Snapshot | None:
    """The previous publish's snapshot, if it belongs to the manifest in the site (same token)."""
    if path is None or token is None:
        return None
    try:
        with path.open("rb") as f:
            saved = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("token") != token:
        return None
    snap = saved.get("snapshot")
    return snap if isinstance(snap, data.Snapshot) else None


def _write_snapshot(path: Path, snap: data.Snapshot, token: str) -> None:
    """Only a speed-up: a cache that cannot be written leaves the next publish reading the store whole."""
    snap.site.profiles = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            pickle.dump({"format": FORMAT, "token": token, "snapshot": snap}, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a stale snapshot must not survive; its token no longer matches anyway
            path.unlink(missing_ok=True)


def _profiles_hash(profiles: dict | None) -> str:
    return _hash({n: [p.budgets.model_dump(), p.thresholds] for n, p in sorted((profiles or {}).items())})


def publish(
    store,
    out: Path,
    profiles: dict | None = None,
    op_profile: data.OpProfileHook | None = None,
    snapshot: Path | None = None,
) -> PublishStats:
    """Publish the store into `out` (created if missing). `op_profile(result_id)`: the per-operator
    profile of a result, or None; by default `store.op_profile` when the store has it. `snapshot`: a
    file (outside the site) where a publish keeps what it read, so that the next one reads only what
    the store added since and does not even look at the series that did not change."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    site = _Site(out)
    hook = op_profile if op_profile is not None else getattr(store, "op_profile", None)
    prof_hash = _profiles_hash(profiles)
    same_profiles = site.meta.get("profiles") == prof_hash
    snap = _read_snapshot(snapshot, site.meta.get("token")) if same_profiles else None
    old_runs = len(snap.site.runs) if snap is not None else -1  # update() extends snap.site in place
    sd, dirty, next_snap = data.update(store, snap, profiles)

    asset_dir = resources.files("harness.report.site") / "assets"
    for name in ASSETS:
        content = (asset_dir / name).read_bytes()
        site.page(f"assets/{name}", hashlib.sha256(content).hexdigest(), lambda: {}, [])
        if site.old.get(f"assets/{name}") != site.new[f"assets/{name}"] or not (out / "assets" / name).is_file():
            site.write(f"assets/{name}", content)

    runs_value = {
        "id": [r["run_id"] for r in sd.runs],
        "t": [r["started_at"] for r in sd.runs],
        "label": [r["label"] for r in sd.runs],
    }
    site.page(
        "data/runs.js", runs_value, lambda: {"data/runs.js": pages.js_data("HIL_RUNS", runs_value)}, ["data/runs.js"]
    )

    for s in sd.series.values():
        slug = data.slug(s.key)
        if dirty is not None and s.key not in dirty and site.keep(f"series:{slug}", _files(f"series:{slug}")):
            continue
        doc = data.series_document(sd, s)
        latest = s.points[-1].result_ids[-1] if s.points and s.points[-1].result_ids else None
        profile = hook(latest) if hook is not None and latest is not None else None
        text = pages.js_json(doc)  # serialised once: the page's hash and its data file
        value = [text, profile.to_dict() if profile is not None else None]

        def render(doc=doc, text=text, slug=slug, profile=profile) -> dict[str, str]:
            analysis = data.analyse(doc)
            doc = {**doc, "analysis": analysis}
            js = f"window.HIL_SERIES={text};\nwindow.HIL_SERIES.analysis={pages.js_json(analysis)};\n"
            return {
                f"data/{slug}.js": js,
                f"series/{slug}.html": pages.series_page(
                    doc, "../data/runs.js", f"../data/{slug}.js", sd.runs, profile
                ),
            }

        site.page(f"series:{slug}", value, render, _files(f"series:{slug}"))

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = data.index_rows(sd)
    # the index's hash leaves out the publish time: an unchanged store leaves the index as it was
    site.page("index.html", rows, lambda: {"index.html": pages.index_page(rows, generated)}, ["index.html"])
    comparison, drift = data.device_comparison(sd), data.drift_history(sd)
    site.page(
        "devices.html",
        [comparison, drift],
        lambda: {"devices.html": pages.devices_page(comparison, drift)},
        ["devices.html"],
    )
    sweeps, trees = data.sweeps(store, sd), data.lineage_trees(sd)
    site.page(
        "sweeps.html", [sweeps, trees], lambda: {"sweeps.html": pages.sweeps_page(sweeps, trees)}, ["sweeps.html"]
    )

    for name in sorted(set(site.old) - set(site.new)):
        for path in _removable(out, name):
            if path.is_file():
                path.unlink()
                site.stats.removed.append(str(path.relative_to(out)))
    token = site.meta.get("token") if site.old == site.new and same_profiles else None
    if token is None or not (out / MANIFEST).is_file():
        token = uuid.uuid4().hex
        manifest = {"format": FORMAT, "profiles": prof_hash, "token": token, "pages": site.new}
        site.write(MANIFEST, json.dumps(manifest, indent=0, sort_keys=True).encode())
    same = (
        snap is not None
        and not dirty
        and token == site.meta.get("token")
        and (snap.watermark, snap.processes, snap.verdicts)
        == (next_snap.watermark, next_snap.processes, next_snap.verdicts)
        and old_runs == len(next_snap.site.runs)
    )
    if snapshot is not None and not same:  # an unchanged store leaves the snapshot as it was
        _write_snapshot(snapshot, next_snap, token)
    site.stats.seconds = time.perf_counter() - t0
    return site.stats
