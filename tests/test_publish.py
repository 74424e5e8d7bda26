"""`hil publish`: what the site's pages hold, the incremental writer, and escaping (no browser here:
tests/test_publish_browser.py drives the same site in Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import site_store
from conftest import hil

from harness.profile.document import OpProfile, OpTime
from harness.report.site import data
from harness.report.site.writer import ASSETS, MANIFEST, publish
from harness.store.results import ResultRecord, ResultStore
from harness.store.verdicts import replace_verdicts, write_pins

RUNS, SERIES = 20, 12
HOSTILE = "<script>alert('model')</script>"
HOSTILE_LABEL = "<script>alert('label')</script>&<b>"


def hostile_store(path: Path) -> site_store.Synthetic:
    """The synthetic store, plus a last night whose label and one model name are markup."""
    syn = site_store.build(path, RUNS, SERIES)
    names = site_store.series_names(SERIES) + [(HOSTILE, "int8", "dev1", "board1")]
    store = ResultStore(path)
    syn.run_ids.append(site_store.add_night(store, syn, RUNS, names, np.random.default_rng(3), label=HOSTILE_LABEL))
    store.close()
    site_store.backdate(path, syn.run_ids)
    return syn


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("publish") / "results.sqlite"
    syn = hostile_store(path)
    store = ResultStore(path, read_only=True)
    yield syn, store
    store.close()


def op_profile() -> OpProfile:
    ops = [
        OpTime(0, "CONV_2D", [40.0, 42.0], name="<img src=x onerror=alert(1)>"),
        OpTime(1, "FULLY_CONNECTED", [10.0, 10.0]),
        OpTime(2, "SOFTMAX", [1.0, 1.0]),
    ]
    return OpProfile("litert-builtin", "us", 2, ops)


def test_series_levels_steps_verdicts_confirmations_and_pins(synthetic):
    syn, store = synthetic
    site = data.load(store)
    assert len(site.series) == SERIES + 1
    reg = site.series[syn.regressed]
    assert len(reg.points) == RUNS + 1
    p = reg.points[0]
    assert p.level == pytest.approx(float(np.median(p.values)))
    assert [site.run_id(v[0]) for v in reg.verdicts if v[1] == "fail"] == [syn.run_ids[syn.step_at]]
    assert reg.latest_verdict == "pass"
    (conf,) = reg.confirmations
    assert conf["gated_run"] == syn.run_ids[syn.step_at] and conf["pairs"] == 3
    assert conf["effect"] == pytest.approx(0.10)
    pinned = [s for s in site.series.values() if s.pins]
    assert len(pinned) == 1 and pinned[0].pins[0]["level"] == pytest.approx(pinned[0].points[0].level)

    doc = data.series_document(site, reg)
    assert len(doc["run"]) == RUNS + 1 and doc["artifacts"] == ["a" * 64, "b" * 64]
    assert doc["art"][syn.step_at - 1 : syn.step_at + 1] == [0, 1]
    steps = data.analyse(doc)["steps"]
    # the gate's creep detection sees the +10 % step where it happened (an outlier night may split)
    assert steps[-1]["start"] == syn.step_at and steps[-1]["level"] > 1.08 * steps[0]["level"]
    assert data.analyse(doc)["creep"]["flagged"]


def test_index_lists_newest_regressions_first_and_new_series(synthetic, tmp_path):
    syn, store = synthetic
    writer = ResultStore(shutil.copy(syn.path, tmp_path / "r.sqlite"))
    names = site_store.series_names(SERIES)
    for model, variant, device, profile in (names[3], names[7]):  # names[7] fails in the newer run
        run = writer.start_run(["x"], "x", ["run"], "0", "host", None, "late")
        rid = writer.record(ResultRecord(run, "k", model, "m", variant, device, profile, "ok"), [], {})
        key = f"{model}/{variant}@{device}"
        replace_verdicts(writer, run, [{"key": key, "verdict": "fail", "model": model, "variant": variant,
                                        "device_id": device, "profile": profile, "result_id": rid}])  # fmt: skip
        writer.finish_run(run)
    rec = ResultRecord(run, "k2", "fresh", "m", "fp32", "dev9", "board0", "ok")
    writer.record(rec, [("latency_p50_us", 5.0, "us")], {})
    rows = data.index_rows(data.load(writer))
    assert [(r["model"], r["verdict"]) for r in rows[:3]] == [
        (names[7][0], "regression"),
        (names[3][0], "regression"),
        (HOSTILE, "pass"),  # then the rest by name
    ]
    assert next(r for r in rows if r["model"] == "fresh")["verdict"] == "new"
    writer.close()


def test_device_drift_history_from_level_off_verdicts(synthetic):
    syn, store = synthetic
    drift = data.drift_history(data.load(store))
    assert list(drift) == ["dev0"]
    (night,) = drift["dev0"]
    assert night["run_id"] == syn.drift_run and night["off"] == night["gated"] == 3
    assert night["median_change"] == pytest.approx(0.06, abs=0.01)


def test_publish_writes_every_page_and_escapes_markup(synthetic, tmp_path):
    _, store = synthetic
    site = tmp_path / "site"
    stats = publish(store, site)
    manifest = json.loads((site / MANIFEST).read_text())["pages"]
    series = list((site / "series").glob("*.html"))
    assert len(series) == SERIES + 1 == len(list((site / "data").glob("*.js"))) - 1
    assert stats.pages == len(manifest)
    for name in ("index.html", "devices.html", "sweeps.html", "assets/uPlot.iife.min.js", "assets/LICENSE.uPlot"):
        assert (site / name).is_file(), name
    texts = {p: p.read_text() for p in site.rglob("*") if p.suffix in (".html", ".js") and "assets" not in p.parts}
    for path, text in texts.items():
        assert "<script>alert" not in text, path
        assert "<b>" not in text, path
    assert "&lt;script&gt;alert(&#x27;model&#x27;)&lt;/script&gt;" in (site / "index.html").read_text()
    assert (
        "\\u003cscript\\u003ealert('label')\\u003c/script\\u003e\\u0026\\u003cb\\u003e"
        in (site / "data" / "runs.js").read_text()
    )
    # one shared copy of the chart library: pages link it, none embeds it
    assert all("uPlot.iife.min.js" not in t or 'src="../assets/uPlot.iife.min.js"' in t for t in texts.values())
    assert max(len(t) for t in texts.values()) < 60_000


def site_files(site: Path) -> dict[str, str]:
    published = re.compile(r"published [^.]*\.")
    return {
        str(p.relative_to(site)): published.sub("", p.read_text())
        for p in site.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }


@pytest.mark.parametrize("snapshot", [False, True], ids=["manifest", "snapshot"])
def test_republish_rewrites_only_changed_pages(synthetic, tmp_path, snapshot):
    syn, _ = synthetic
    db = Path(shutil.copy(syn.path, tmp_path / "r.sqlite"))
    site = tmp_path / "site"
    snap = tmp_path / "cache" / "snap.pickle" if snapshot else None
    store = ResultStore(db, read_only=True)
    first = publish(store, site, snapshot=snap)
    assert publish(store, site, snapshot=snap).written == []  # nothing changed: nothing written, not the index
    store.close()
    # a run that measured one series only: that series, the run list and the overviews change
    writer = ResultStore(db)
    model, variant, device, profile = site_store.series_names(SERIES)[5]
    run = writer.start_run(["x"], "x", ["run"], "0", "host", None, "one")
    rec = ResultRecord(run, "k", model, "m", variant, device, profile, "ok", artifact_sha256="a" * 64)
    writer.record(rec, [("latency_p50_us", 1234.0, "us")], {})
    writer.finish_run(run)
    writer.close()
    key = f"{model}/{variant}@{device}"
    slug = data.slug(key)
    store = ResultStore(db, read_only=True)
    asked: list[int] = []
    again = publish(store, site, snapshot=snap, op_profile=lambda rid: asked.append(rid))
    assert sorted(again.written) == sorted(
        [f"series/{slug}.html", f"data/{slug}.js", "data/runs.js", "index.html", "devices.html", MANIFEST]
    )
    assert len(first.written) > 3 * len(again.written)
    if snapshot:
        assert len(asked) == 1  # the other series were not even looked at
    store.close()
    # an old run gated again (its verdicts replaced) and one pinned: exactly those series change
    writer = ResultStore(db)
    other = site_store.series_names(SERIES)[2]
    okey = f"{other[0]}/{other[1]}@{other[2]}"
    row = {"key": okey, "verdict": "fail", "model": other[0], "variant": other[1], "device_id": other[2]}
    replace_verdicts(writer, syn.run_ids[3], [row])
    third = site_store.series_names(SERIES)[4]
    pin = [p for p in data.load(writer).series[f"{third[0]}/{third[1]}@{third[2]}"].points[2].result_ids]
    write_pins(writer, syn.run_ids[2], [(third[0], third[1], f"device:{third[2]}", pin[0])])
    writer.close()
    store = ResultStore(db, read_only=True)
    regated = publish(store, site, snapshot=snap)
    changed = {data.slug(okey), data.slug(f"{third[0]}/{third[1]}@{third[2]}")}
    # the gated run lost its other verdicts: the overviews and every series gated in it change too
    assert {f"series/{s}.html" for s in changed} <= set(regated.written)
    assert "data/runs.js" not in regated.written
    # whatever the path, the site is the one a publish from scratch writes
    fresh = tmp_path / "fresh"
    publish(store, fresh)
    assert site_files(site) == site_files(fresh)
    # a series that left the store (another store published into the same site) loses its files
    manifest = json.loads((site / MANIFEST).read_text())
    manifest["pages"]["series:gone-0000000000"] = "x"
    (site / MANIFEST).write_text(json.dumps(manifest))
    for rel in ("series/gone-0000000000.html", "data/gone-0000000000.js"):
        (site / rel).write_text("old")
    gone = publish(store, site, snapshot=snap)
    assert sorted(gone.removed) == ["data/gone-0000000000.js", "series/gone-0000000000.html"]
    # a deleted page is written again although its data did not change
    (site / f"series/{slug}.html").unlink()
    assert sorted(publish(store, site, snapshot=snap).written) == [f"data/{slug}.js", f"series/{slug}.html"]
    assert site_files(site) == site_files(fresh)
    store.close()


def test_op_profile_hook_renders_the_slowest_ops(synthetic, tmp_path):
    syn, store = synthetic
    asked: list[int] = []

    def hook(result_id: int) -> OpProfile | None:  # ResultStore.op_profile: one result's profile, if stored
        asked.append(result_id)
        return op_profile() if len(asked) == 1 else None

    site = tmp_path / "site"
    publish(store, site, op_profile=hook)
    site_data = data.load(store)
    assert sorted(asked) == sorted(s.points[-1].result_ids[-1] for s in site_data.series.values())
    pages = [p.read_text() for p in (site / "series").glob("*.html")]
    (text,) = [t for t in pages if 'id="op-profile"' in t]
    ops = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([A-Z_0-9]+)</td>", text)
    assert ops == [("0", "CONV_2D"), ("1", "FULLY_CONNECTED"), ("2", "SOFTMAX")]
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img" not in text
    assert "78.8 %" in text  # CONV_2D: 41 of 52 us


def test_sweep_front_and_choice(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    site_store.add_sweep(store)
    site = data.load(store)
    (sweep,) = data.sweeps(store, site)
    (dev,) = sweep["devices"]
    assert dev["choice"] == "c-fast/int8" and dev["prefer"] == "latency"
    assert {p["name"] for p in dev["points"] if p["front"]} == {"c-fast/int8", "c-good/int8"}
    assert sweep["roots"] == ["file:abc"]
    (tree,) = data.lineage_trees(site)
    assert tree["children"][0]["model_name"] == "c-fast"
    store.close()


def test_cli_publish_and_its_errors(synthetic, tmp_path):
    syn, _ = synthetic
    site = tmp_path / "site"
    env = {"HILBENCH_CACHE": str(tmp_path / "cache")}
    proc = hil("--db", str(syn.path), "publish", "-o", str(site), env=env)
    assert proc.returncode == 0, proc.stderr
    pages = len(ASSETS) + 1 + 3 + SERIES + 1  # assets, runs.js, 3 overviews, the series
    assert f"{pages} pages" in proc.stderr and (site / "index.html").is_file()
    assert len(list((tmp_path / "cache" / "publish").glob("*.pickle"))) == 1  # the snapshot, outside the site
    proc = hil("--db", str(syn.path), "publish", "-o", str(site), env=env)
    assert proc.returncode == 0 and "0 file(s) written" in proc.stderr, proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = hil("--db", str(syn.path), "publish", "-o", str(blocker), env=env)
    assert proc.returncode == 3 and "not a directory" in proc.stderr and "Traceback" not in proc.stderr


def test_publish_a_real_run_after_the_gate(tmp_path_factory, tmp_path):
    """The real tiny model measured by the real runner (shared with the gate/report tests), gated
    twice, then published: every measured series has its page, with the verdicts the gate recorded."""
    from gate_helpers import recorded_lab

    real = recorded_lab(tmp_path_factory, hil)
    lab = tmp_path / "lab"
    shutil.copytree(real["dir"] / "device_profiles", lab / "device_profiles")
    shutil.copy(real["dir"] / "inventory.yaml", lab)
    (lab / "reports").mkdir()
    shutil.copy(real["db"], lab / "reports" / "results.sqlite")
    for run in real["runs"]:
        hil("gate", "--run", run, "--quiet", cwd=lab, check=True)
    hil("publish", "-o", "site", cwd=lab, env={"HILBENCH_CACHE": str(lab / "cache")}, check=True)
    store = ResultStore(lab / "reports" / "results.sqlite", read_only=True)
    site = data.load(store)
    store.close()
    # the second run replays the `local` device's results only (recorded_lab)
    assert {k: len(s.verdicts) for k, s in site.series.items()} == {
        f"convnet/{v}@{d}": 2 if d == "local" else 1 for v in ("fp32", "int8") for d in ("local", "local2")
    }
    index = (lab / "site" / "index.html").read_text()
    for s in site.series.values():
        page = (lab / "site" / "series" / f"{data.slug(s.key)}.html").read_text()
        assert s.verdicts[-1][1] in page
        assert f'series/{data.slug(s.key)}.html"' in index


@pytest.mark.postgres
def test_postgresql_store_publishes_the_same_site(synthetic, postgres_server, tmp_path):
    """One code path serves both stores: the same history in PostgreSQL gives the same files."""
    from harness.store.copy import copy_history

    syn, lite = synthetic
    target = postgres_server.createdb()
    pg = ResultStore(target)
    copy_history(lite, pg)
    pg.close()
    pg = ResultStore(target, read_only=True)
    publish(lite, tmp_path / "lite")
    publish(pg, tmp_path / "pg")
    pg.close()
    assert site_files(tmp_path / "lite") == site_files(tmp_path / "pg")


def test_bisect_steps_and_profile_looks_are_not_history(tmp_path):
    """A `hil bisect` step (two artifacts under one key) and a `hil profile` look (a short window) are
    never points of a series: the trend, the index level and the step detection see the nights only."""
    path = tmp_path / "results.sqlite"
    syn = site_store.build(path, 4, 2)
    store = ResultStore(path)
    before = {k: len(s.points) for k, s in data.load(store).series.items()}
    key = next(iter(before))
    model, _, rest = key.partition("/")
    variant, _, device = rest.partition("@")
    for kind in ("bisect", "profile"):
        run_id = store.start_run([f"{kind}:{key}"], kind, [kind], "0", "host", None, kind, kind=kind)
        rec = ResultRecord(
            run_id=run_id, job_key=f"{kind}-0", model=model, model_sha256="m" * 64, variant=variant,
            device_id=device, profile="board0", status="ok",
        )  # fmt: skip
        store.record(rec, [("latency_p50_us", 99999.0, "us")], {})
        store.finish_run(run_id)
    after = data.load(store).series
    assert {k: len(s.points) for k, s in after.items()} == before
    assert max(p.level for p in after[key].points) < 99999.0
    store.close()
    assert syn.run_ids


def test_a_forged_manifest_never_deletes_outside_the_site(synthetic, tmp_path):
    """The manifest lives in the output folder (often shared): names publish does not write itself,
    or that lead out of the site, are ignored when pages are cleaned up."""
    _, store = synthetic
    site = tmp_path / "site"
    publish(store, site)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    inside = site / "notes.txt"
    inside.write_text("not ours")
    manifest = json.loads((site / MANIFEST).read_text())
    manifest["pages"].update({"../victim.txt": "x", str(victim): "x", "notes.txt": "x", "series:../../victim": "x"})
    (site / MANIFEST).write_text(json.dumps(manifest))
    publish(store, site)
    assert victim.read_text() == "keep me" and inside.read_text() == "not ours"
