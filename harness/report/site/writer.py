"""Write the site, incrementally: a page is rendered and written only when its data changed.

The manifest (`manifest.json` in the site) keeps one content hash per page, taken over the page's data
before any analysis or rendering. Re-publishing after a nightly reads the store (a few whole-store
queries), hashes each page's data, and analyses, renders and rewrites only the pages whose hash moved;
the files of series that left the store are removed. Each file is written to a temporary name and
renamed, and the manifest last, so an interrupted publish leaves a site that the next one repairs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.report.site import data, pages

# part of every page's hash: a new hilbench that renders pages differently rewrites them all
FORMAT = "hilbench-site-1"
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
            self.old: dict[str, str] = json.loads((out / MANIFEST).read_text())["pages"]
        except (OSError, ValueError, KeyError, TypeError):
            self.old = {}
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

    def write(self, rel: str, content: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        self.stats.written.append(rel)


def _files(name: str) -> list[str]:
    if name.startswith("series:"):
        s = name.removeprefix("series:")
        return [f"series/{s}.html", f"data/{s}.js"]
    return [name]


def publish(
    store,
    out: Path,
    profiles: dict | None = None,
    op_profile: data.OpProfileHook | None = None,
) -> PublishStats:
    """Publish the store into `out` (created if missing). `op_profile(result_id)`: the per-operator
    profile of a result, or None; by default `store.op_profile` when the store has it."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    site = _Site(out)
    hook = op_profile if op_profile is not None else getattr(store, "op_profile", None)
    sd = data.load(store, profiles)

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
        doc = data.series_document(sd, s)
        latest = s.points[-1].result_ids[-1] if s.points and s.points[-1].result_ids else None
        profile = hook(latest) if hook is not None and latest is not None else None
        value = [doc, profile.to_dict() if profile is not None else None]
        slug = data.slug(s.key)

        def render(doc=doc, slug=slug, profile=profile) -> dict[str, str]:
            doc = {**doc, "analysis": data.analyse(doc)}
            return {
                f"data/{slug}.js": pages.js_data("HIL_SERIES", doc),
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
        for rel in _files(name):
            path = out / rel
            if path.is_file():
                path.unlink()
                site.stats.removed.append(rel)
    if site.old != site.new or not (out / MANIFEST).is_file():
        site.write(MANIFEST, json.dumps({"format": FORMAT, "pages": site.new}, indent=0, sort_keys=True).encode())
    site.stats.seconds = time.perf_counter() - t0
    return site.stats
