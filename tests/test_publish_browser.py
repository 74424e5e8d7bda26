"""The published site in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright),
opened from file:// with every other request refused: pages load without console errors, a trend has
one point per run, hovering names the run, links resolve, the index filter filters, markup in labels
and model names stays text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import site_store
from test_publish import HOSTILE, HOSTILE_LABEL, RUNS, SERIES, hostile_store, op_profile

from harness.report.site import data
from harness.report.site.writer import publish
from harness.store.results import ResultStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.chromium


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("HILBENCH_REQUIRE_TOOLS") == "1":
            pytest.fail("playwright missing on a machine that must have it (pip install -e '.[dev]')")
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    syn = hostile_store(root / "results.sqlite")
    writer = ResultStore(syn.path)
    site_store.add_sweep(writer)  # measured after the nights: a run of its own, three series of its own
    writer.close()
    store = ResultStore(syn.path, read_only=True)
    first: list[int] = []
    publish(store, root / "site", op_profile=lambda rid: op_profile() if first.append(rid) or len(first) == 1 else None)
    store.close()
    return syn, root / "site"


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A fresh page that refuses every request off file:// and records console errors and dialogs."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.network: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.route("**/*", self._route)

    def _route(self, route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.network.append(route.request.url)
            route.abort()

    def open(self, path: Path):
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def clean(self) -> None:
        assert self.errors == [] and self.network == [] and self.dialogs == []


@pytest.fixture()
def page(browser):
    p = Page(browser)
    yield p
    p.page.close()


def test_every_page_loads_without_errors_and_links_resolve(site, page):
    _, root = site
    series = sorted((root / "series").glob("*.html"))
    pages = [root / "index.html", root / "devices.html", root / "sweeps.html", *series]
    assert len(pages) == 3 + SERIES + 1 + 3
    for path in pages:
        pg = page.open(path)
        for href in pg.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            url = urlparse(href)
            assert url.scheme == "file", href
            assert Path(unquote(url.path)).is_file(), f"{path.name}: broken link {href}"
        if path.parent.name == "series":
            assert pg.locator("#trend canvas").count() == 1, path.name
    page.clean()


def test_trend_points_and_hover_show_the_run(site, page):
    syn, root = site
    pg = page.open(root / "series" / f"{data.slug(syn.regressed)}.html")
    assert pg.get_attribute("#trend", "data-points") == str(RUNS + 1)
    assert pg.evaluate("HIL_PLOT.data[1].filter(v => v !== null).length") == RUNS + 1
    over = pg.locator("#trend .u-over").bounding_box()
    assert over is not None
    for i in (0, syn.step_at, RUNS):
        x = pg.evaluate(f"HIL_PLOT.valToPos(HIL_PLOT.data[0][{i}], 'x')")
        pg.mouse.move(over["x"] + min(max(x, 1), over["width"] - 1), over["y"] + over["height"] / 2)
        hover = pg.locator("#hover").inner_text()
        assert f"run {syn.run_ids[i]}" in hover, (i, hover)
        assert "artifact " + ("b" if i >= syn.step_at else "a") * 64 in hover
    # the last run's label is markup: the hover shows it as text, nothing ran
    assert HOSTILE_LABEL in hover
    # drag to zoom in on the step, then the hover still names the runs in the zoomed range
    x0 = pg.evaluate(f"HIL_PLOT.valToPos(HIL_PLOT.data[0][{syn.step_at - 2}], 'x')")
    x1 = pg.evaluate(f"HIL_PLOT.valToPos(HIL_PLOT.data[0][{syn.step_at + 2}], 'x')")
    pg.mouse.move(over["x"] + x0, over["y"] + 20)
    pg.mouse.down()
    pg.mouse.move(over["x"] + x1, over["y"] + 20, steps=5)
    pg.mouse.up()
    lo, hi = pg.evaluate("[HIL_PLOT.scales.x.min, HIL_PLOT.scales.x.max]")
    t = pg.evaluate("HIL_PLOT.data[0]")
    assert t[syn.step_at - 3] < lo <= t[syn.step_at - 1] and t[syn.step_at + 1] <= hi < t[syn.step_at + 3]
    assert pg.locator("#op-profile").count() in (0, 1)
    page.clean()


def test_index_filter_and_escaped_names(site, page):
    _, root = site
    pg = page.open(root / "index.html")
    total = SERIES + 1 + 3  # and the sweep's three candidates
    assert pg.locator("#shown").inner_text() == str(total)
    pg.fill("#filter", "dev1")
    visible = pg.locator("#series tbody tr:visible")
    want = sum(1 for *_, d, _p in [(0, 0, *n[2:]) for n in site_store.series_names(SERIES)] if d == "dev1") + 1
    assert visible.count() == want == int(pg.locator("#shown").inner_text())
    assert all("dev1" in t for t in visible.locator("td:nth-child(3)").all_inner_texts())
    pg.fill("#filter", "")
    pg.select_option("#verdict", "pass")
    assert visible.count() == SERIES + 1
    pg.select_option("#verdict", "new")
    assert sorted(visible.locator("td:first-child").all_inner_texts()) == ["c-bad", "c-fast", "c-good"]
    pg.select_option("#verdict", "")
    pg.fill("#filter", "script")
    assert visible.locator("td:first-child").all_inner_texts() == [HOSTILE]
    # follow the link: the hostile series' page, its title as text
    visible.locator("a").first.click()
    pg.wait_for_load_state("load")
    assert pg.locator("h1").inner_text() == f"{HOSTILE}/int8 on dev1"
    page.clean()


def test_devices_and_sweeps_pages(site, page):
    syn, root = site
    pg = page.open(root / "devices.html")
    models = {(m, v) for m, v, *_ in site_store.series_names(SERIES)}
    assert pg.locator("#comparison tbody tr").count() == len(models) + 1 + 3
    assert pg.locator("h3").all_inner_texts() == ["dev0"]
    assert syn.drift_run in pg.locator("main").inner_text()
    pg.locator("#comparison a").first.click()
    pg.wait_for_load_state("load")
    assert pg.locator("#trend canvas").count() == 1
    pg = page.open(root / "sweeps.html")
    assert pg.locator("h3").first.inner_text() == "dev0 (board0): choice c-fast/int8"
    assert pg.locator("tr.front td:first-child").all_inner_texts() == ["c-fast/int8", "c-good/int8"]
    assert pg.locator("tr.chosen td:first-child").all_inner_texts() == ["c-fast/int8"]
    pg.locator("a[href='#lineage-file:abc']").click()
    assert pg.locator("#lineage-file\\:abc").is_visible()
    assert "= c-fast" in pg.locator("main ul").first.inner_text()
    page.clean()
