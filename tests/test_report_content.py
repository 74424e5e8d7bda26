"""What the reports say: variants in order with speed-up and size against fp32, MACs / parameters /
MCU memory columns, the run label, no 'nan', everything escaped in HTML, a readable Pareto chart.

Results are written through the real `ResultStore`; pages come from the real renderers and `hil`
sub-commands; one end-to-end test measures a real model.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, REPO, hil

from harness.report import plots
from harness.report.compare import comparison, render_markdown
from harness.report.html import render_compare_html
from harness.report.run_markdown import render_run
from harness.store.results import ResultRecord, ResultStore

EVIL = "<script>alert(1)</script>"
# p50 (us), size (bytes), MACs, parameters, top-1 of each variant of `net` on `pi`
VARIANTS = {
    "fp32": (400.0, 40_000, 1_230_000, 9_800, 0.91),
    "fp16": (380.0, 20_500, 1_230_000, 9_800, 0.91),
    "dynamic": (250.0, 11_000, 1_230_000, 9_800, 0.905),
    "int8": (100.0, 10_000, 1_230_000, 9_800, 0.90),
    "int16x8": (800.0, 12_000, 1_230_000, 9_800, 0.91),
    "asis": (390.0, 40_100, 1_230_000, 9_800, None),
}


def _rows(p50: float, size: int, macs: int, params: int, top1: float | None, **extra) -> list:
    rows = [
        ("latency_p50_us", p50, "us"),
        ("latency_p90_us", p50 * 1.1, "us"),
        ("latency_p99_us", p50 * 1.3, "us"),
        ("latency_count", 50.0, "count"),
        ("model_size_bytes", float(size), "B"),
        ("model_macs", float(macs), "MAC"),
        ("model_params", float(params), "count"),
        ("peak_rss_kb", 30_000.0, "kB"),
    ]
    rows += [("accuracy_top1", top1, "fraction")] if top1 is not None else []
    return rows + [(k, float(v), "B") for k, v in extra.items()]


def _store(path: Path, label: str, model: str = "net", device: str = "pi") -> tuple[ResultStore, str]:
    store = ResultStore(path)
    run = store.start_run(["k"], "plan", ["run"], "0", "host", None, label)
    order = ["int16x8", "asis", "int8", "fp32", "dynamic", "fp16"]  # recorded out of order on purpose
    for i, v in enumerate(order):
        p50, size, macs, params, top1 = VARIANTS[v]
        for rep in range(2 if v == "fp32" else 1):  # fp32 measured by two processes: their median counts
            rec = ResultRecord(
                run_id=run,
                job_key=f"{v}#{rep}",
                model=model,
                model_sha256="s",
                variant=v,
                device_id=device,
                profile="localhost",
                status="ok",
                runtime="ai_edge_litert",
            )
            level = p50 + (20 if rep else -20) if v == "fp32" else p50
            store.record(
                rec, _rows(level, size, macs, params, top1), {"steady": list(np.full(60, p50) + np.arange(60) * 0.01)}
            )
    for v, p50, arena in (("int8", 900.0, 20_480), ("fp32", 4_500.0, 81_920)):  # an MCU board
        rec = ResultRecord(
            run_id=run,
            job_key=f"mcu-{v}",
            model=model,
            model_sha256="s",
            variant=v,
            device_id="h7",
            profile="stm32h7",
            status="ok",
            runtime="tflm-serial",
        )
        store.record(
            rec,
            _rows(p50, VARIANTS[v][1], 1_230_000, 9_800, None, arena_bytes=arena, flash_bytes=VARIANTS[v][1] + 61_440),
            {"steady": [p50] * 5},
        )
    rec = ResultRecord(
        run_id=run,
        job_key="broken",
        model=model,
        model_sha256="s",
        variant="fp16",
        device_id="h7",
        profile="stm32h7",
        status="infra_error",
        error=f"board hung {EVIL}",
    )
    store.record(rec, [], {})
    store.finish_run(run, "incomplete")
    return store, run


def _table(md: str) -> list[dict]:
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| --")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]


def test_run_report_orders_variants_with_ratios_complexity_and_mcu_columns(tmp_path):
    store, run = _store(tmp_path / "r.sqlite", "nightly")
    md = render_run(store.wide(run), store.run_row(run))
    assert "- label: nightly" in md
    assert "nan" not in md.lower()
    rows = _table(md)
    pi = [r for r in rows if r["device"] == "pi"]
    assert [r["variant"] for r in pi] == ["fp32", "fp16", "dynamic", "int8", "int16x8", "asis"]
    by = {r["variant"]: r for r in pi}
    # speed-up = fp32 p50 / p50 and size ratio = size / fp32 size, same model and device
    assert by["fp32"]["speed-up vs fp32"] == "1.00x" and by["fp32"]["size vs fp32"] == "1.00x"
    assert by["int8"]["speed-up vs fp32"] == "4.00x" and by["int8"]["size vs fp32"] == "0.25x"
    assert by["int16x8"]["speed-up vs fp32"] == "0.50x"
    assert by["fp32"]["p50"] == "400 us" and by["fp32"]["processes"] == "2"  # median of 380 and 420
    assert by["fp32"]["inf/s"] == "2500.0" and by["int8"]["inf/s"] == "10000.0"  # 1 s / p50
    assert by["fp32"]["MACs"] == "1.23 M" and by["fp32"]["params"] == "9.8 k"
    assert by["int8"]["top-1 (%)"] == "90.00" and by["asis"]["top-1 (%)"] == "-"
    assert by["int8"]["arena (KiB)"] == "-" and by["int8"]["flash (KiB)"] == "-"  # a Linux board has neither
    h7 = [r for r in rows if r["device"] == "h7"]
    assert [r["variant"] for r in h7] == ["fp32", "int8"]  # the failed fp16 is listed under Failures
    assert h7[1]["arena (KiB)"] == "20.0" and h7[1]["flash (KiB)"] == "69.8" and h7[1]["speed-up vs fp32"] == "5.00x"
    assert "**net/fp16 on h7** (infrastructure): board hung" in md


def test_markdown_shows_labels_names_and_errors_as_literal_text(tmp_path):
    """A label with a newline injected a heading; a model name with <b> rendered bold (issue 20)."""
    store, run = _store(tmp_path / "r.sqlite", "nightly\n# Injected heading", model="<b>net</b>_v2", device="pi*")
    md = render_run(store.wide(run), store.run_row(run))
    assert not any(line.startswith("# Injected") for line in md.splitlines())
    assert "- label: nightly # Injected heading" in md
    assert "| \\<b>net\\</b>\\_v2 | fp32 | pi\\* |" in md
    assert "board hung \\<script>alert(1)\\</script>" in md
    assert not re.search(r"(?<!\\)<[a-z/]", md)  # no raw HTML anywhere
    assert "| net | fp32 |" not in md  # nothing else of the name got lost
    # words keep their inner underscores readable; a cell's | never splits the table
    from harness.report.run_markdown import markdown_table, md_rows, md_text

    assert md_text("tiny_net_v2") == "tiny_net_v2" and md_text("_x_ [a](b) `c` ~d~ &amp; <= & ->") == (
        "\\_x\\_ \\[a\\](b) \\`c\\` \\~d\\~ \\&amp; <= & ->"
    )
    assert markdown_table(["a"], md_rows([["x|y\nz"]])).splitlines()[-1] == "| x\\|y z |"


def test_report_without_mcu_or_repeats_has_no_empty_columns(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run(["k"], "plan", ["run"], "0", "host", None, None)
    for v in ("int8", "fp32"):
        rec = ResultRecord(
            run_id=run,
            job_key=v,
            model="m",
            model_sha256="s",
            variant=v,
            device_id="local",
            profile="localhost",
            status="ok",
        )
        store.record(rec, [("latency_p50_us", 10.0, "us"), ("model_size_bytes", 100.0, "B")], {})
    md = render_run(store.wide(run), store.run_row(run))
    header = next(ln for ln in md.splitlines() if ln.startswith("| model"))
    assert "arena" not in header and "processes" not in header and "- label: -" in md
    rows = _table(md)
    assert [r["variant"] for r in rows] == ["fp32", "int8"] and rows[1]["MACs"] == "-"
    assert "nan" not in md.lower()


def test_compare_pages_keep_variant_order_show_label_and_escape(tmp_path):
    store, run = _store(tmp_path / "r.sqlite", f"night {EVIL}", model=f"net{EVIL}", device="pi")
    table, ref = comparison(store.wide(run), where="t")
    md = render_markdown(table, ref, run, f"night {EVIL}")
    assert [r["variant"] for r in _table(md)] == ["fp32", "fp16", "dynamic", "int8", "int16x8", "asis"]
    assert "label night \\<script>alert(1)\\</script>" in md and not re.search(r"(?<!\\)<[a-z/]", md)
    page = render_compare_html(table, ref, run, f"night {EVIL}")
    assert "<script" not in page and html.escape(EVIL) in page
    assert f"label <b>night {html.escape(EVIL)}</b>" in page


def test_gate_html_escapes_names_label_and_errors_and_lists_results(tmp_path):
    db = tmp_path / "reports" / "results.sqlite"
    db.parent.mkdir()
    store, run = _store(db, f"<img src=x onerror=alert(1)> {EVIL}", model=f"m{EVIL}", device=f"d<i>{EVIL}")
    store.close()
    p = hil(
        "--profiles",
        str(REPO / "device_profiles"),
        "gate",
        "--run",
        run,
        "--no-record",
        "--no-confirm",
        "--quiet",
        "--html",
        "gate.html",
        cwd=tmp_path,
    )
    assert p.returncode in (0, 2), p.stderr  # 2: the infrastructure failure of the MCU board
    page = (tmp_path / "gate.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "<i>" not in page
    assert f"label <b>{html.escape('<img src=x onerror=alert(1)> ' + EVIL)}</b>" in page
    assert html.escape(f"board hung {EVIL}") in page
    results = page.split("<h2>Results</h2>", 1)[1].split("</table>", 1)[0]
    variants = re.findall(r"<tr><td>[^<]*</td><td>([a-z0-9]+)</td><td>d&lt;i&gt;", results)
    assert variants == ["fp32", "fp16", "dynamic", "int8", "int16x8", "asis"]


def test_pareto_chart_has_a_log_latency_axis_and_labels_that_do_not_overlap():
    # five variants crowded in latency and accuracy (the usual picture), plus a far one
    pts = pd.DataFrame(
        {
            "model": ["m"] * 6,
            "device_id": ["d"] * 6,
            "variant": ["fp32", "fp16", "dynamic", "int8", "int16x8", "asis"],
            "latency": [100.0, 98.0, 101.0, 97.0, 99.0, 1500.0],
            "quality": [91.0, 91.0, 90.95, 90.9, 91.0, 91.0],
            "size": [40_000, 20_000, 11_000, 10_500, 12_000, 40_000],
        }
    )
    fig = plots.pareto(pts, "top-1 (%)")
    assert plots.to_png(fig)[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    renderer = fig.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text()]
    assert sorted(t.get_text().split()[0] for t in texts) == sorted(pts["variant"])
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not [(a, b) for a, b in itertools.combinations(range(len(boxes)), 2) if boxes[a].overlaps(boxes[b])]
    frame = ax.get_window_extent(renderer)
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)
    # tick labels of the log axis are plain numbers and do not collide either
    ticks = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    assert ticks and all(re.fullmatch(r"[\d.]+", t.get_text()) for t in ticks)
    tick_boxes = [t.get_window_extent(renderer) for t in ticks]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(tick_boxes, 2))


def test_real_run_records_macs_and_parameters_and_the_report_shows_the_label(workspace, tiny_model):
    p = hil("run", str(tiny_model["path"]), "--variants", "int8,fp32", *FAST, "--label", "nightly")
    assert p.returncode == 0, p.stderr[-3000:]
    r = hil("report", "-o", "out/report.md", check=True)
    md = r.stdout
    assert "- label: nightly" in md and "nan" not in md.lower()
    rows = _table(md)
    assert [x["variant"] for x in rows] == ["fp32", "int8"]
    from harness.models.inspect.analysis import analyze

    store = ResultStore(workspace / "reports" / "results.sqlite")
    wide = store.wide()
    found = {a.sha256: a for a in map(analyze, (workspace / "cache" / "artifacts").rglob("model.tflite"))}
    for _, row in wide.iterrows():  # what the model file says, recorded with every result
        a = found[row["artifact_sha256"]]
        assert a.total_macs > 0 and row["model_macs"] == a.total_macs and row["model_params"] == a.param_count
    assert rows[0]["MACs"] != "-" and rows[0]["params"] != "-" and rows[0]["speed-up vs fp32"] == "1.00x"
    assert re.fullmatch(r"\d+\.\d\dx", rows[1]["speed-up vs fp32"])
    assert 0 < float(rows[1]["size vs fp32"].rstrip("x")) < 1  # int8 is smaller than fp32


def test_summaries_never_print_nan(tmp_path):
    from harness.report.gate_markdown import fmt_p, fmt_threshold, fmt_value

    nan = float("nan")
    assert fmt_value("latency_p50_us", nan) == "-" and fmt_p(nan) == "-"
    assert fmt_threshold(type("C", (), {"threshold": nan, "absolute": False})()) == "-"
    store, run = _store(tmp_path / "r.sqlite", "nightly")  # holds a failed job: no numbers at all
    store.close()
    p = hil("--db", str(tmp_path / "r.sqlite"), "results", "--run", run)
    assert p.returncode == 0, p.stderr
    assert "infra_error" in p.stdout and "nan" not in p.stdout.lower()
    long = hil("--db", str(tmp_path / "r.sqlite"), "results", "--run", run, "--long")
    assert "infra_error" in long.stdout and "nan" not in long.stdout.lower()


def test_a_run_without_a_commit_beside_runs_with_one_says_dash_not_nan(tmp_path):
    from harness.store import ResultStore as Exported  # the README's `ResultStore(path).wide()`

    store = Exported(tmp_path / "r.sqlite")
    store.start_run(["k"], "plan", ["run"], "0", "host", "0123abcd", "with commit")
    run = store.start_run(["k"], "plan", ["run"], "0", "host", None, None)
    row = store.run_row(run)
    assert row["git_commit"] is None and row["label"] is None
    md = render_run(store.wide(run), row)
    assert "- models repo commit: -" in md and "- label: -" in md and "nan" not in md.lower()
    from harness.gate.baselines import BaselineSpec
    from harness.gate.evaluate import GateResult
    from harness.report.gate_markdown import render_gate_markdown

    gate_md = render_gate_markdown(GateResult(run, row, BaselineSpec("last-pass", 5), 0.01))
    assert "models commit -)" in gate_md and "nan" not in gate_md.lower()


def test_the_trend_plots_each_runs_level_as_the_gate_forms_it(tmp_path):
    """Not the last process of a run (the demo's trend drew 5.96 us for a run whose level was 4.41 us)."""
    from gate_helpers import add_run

    from harness.gate import baselines as bl
    from harness.gate import evaluate as gate
    from harness.report.html import _trend_series

    store = ResultStore(tmp_path / "r.sqlite")
    flat = lambda level: {"samples": np.full(200, level) + np.arange(200) * 1e-4}
    add_run(store, [{**flat(v), "repeat": i} for i, v in enumerate((100.0, 101.0, 99.0))], started_at=1000.0)
    gate.record(store, gate.evaluate(store, None, bl.BaselineSpec("last-pass", 5)))
    # the last process of the run is 35 % off; another is marked disturbed
    procs = [{**flat(100.5), "repeat": 0}, {**flat(60.0), "repeat": 1, "metrics": {"disturbed": 1.0}}]
    run = add_run(store, [*procs, {**flat(99.5), "repeat": 2}, {**flat(135.0), "repeat": 3}], started_at=2000.0)
    res = gate.evaluate(store, run, bl.BaselineSpec("last-pass", 5))
    (series,) = _trend_series(res, store, 20)
    check = next(c for c in res.keys[0].checks if c.metric == "latency_p50_us")
    first, second = series["y"]
    assert first == pytest.approx(100.0, abs=0.05) and second == pytest.approx(check.current)
    assert second == pytest.approx(100.5, abs=0.05)  # median of 100.5, 99.5, 135 (the disturbed 60 left out)
    assert sorted(series["processes"][1]) == pytest.approx([60.0, 99.5, 100.5, 135.0], abs=0.05)
    fig = plots.trend(series=[series])
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert list(lines["run level (median of its processes)"].get_ydata()) == series["y"]
    assert len(lines["processes"].get_ydata()) == 7


def test_a_series_with_two_nights_of_history_says_how_many_runs_it_needs(tmp_path):
    """Not "critical change 15307731213.15 %": the table cell, the note (Markdown, JUnit) and the HTML
    say how many more runs the series needs, and how `hil calibrate` makes them."""
    from gate_helpers import add_run

    from harness.gate import baselines as bl
    from harness.gate import evaluate as gate
    from harness.report.gate_markdown import render_gate_markdown
    from harness.report.html import render_gate_html
    from harness.report.junit import render_junit

    store = ResultStore(tmp_path / "r.sqlite")
    rng = np.random.default_rng(7)
    for night, shift in enumerate((1.0, 1.02, 1.01)):  # nights 2 % apart, processes 0.2 % apart
        levels = 100.0 * shift * np.exp(rng.normal(0, 0.002, 3))
        procs = [{"samples": np.full(200, v) + np.arange(200) * 1e-4, "repeat": i} for i, v in enumerate(levels)]
        run = add_run(store, procs, started_at=1000.0 * (night + 1))
        res = gate.evaluate(store, run, bl.BaselineSpec("last-pass", 5))
        gate.record(store, res)
    check = next(c for c in res.keys[0].checks if c.metric == "latency_p50_us")
    assert check.sigma_source == "history" and check.verdict == "pass" and check.runs_needed
    want = f"needs {check.runs_needed} more run"
    md = render_gate_markdown(res)
    (row,) = [r for r in _table(md.split("<summary>All checks</summary>")[1]) if r["metric"] == "latency_p50_us"]
    assert row["critical change"].startswith(want) and "`hil calibrate --device local" in row["critical change"]
    assert not re.search(r"\d{4,}\.\d\d %", md)  # no absurd percentage anywhere
    assert want in render_junit(res) and "the history is too short for a critical change" in render_junit(res)
    page = render_gate_html(res, store)
    assert want in page and not re.search(r"\d{4,}\.\d\d %", page)
    assert "Mann-Whitney" not in page and "significant across the whole gate (Holm" in page  # the caption
    (csv_row,) = [r for r in res.rows() if r["metric"] == "latency_p50_us"]
    assert csv_row["runs_needed"] == check.runs_needed
