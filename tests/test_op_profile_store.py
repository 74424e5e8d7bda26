"""Per-operator profiles (issue 22): stored per op (schema 6) on SQLite and PostgreSQL, read back as
the document devices send, printed as benchmark_model-like tables by `hil profile`, and shown in the
run reports. Profiles here are hand-written contract documents (harness.profile.document), or come
from the fixed-clock device double, whose op times are split from a fixed level by MACs, so that
every share is known exactly."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import hil
from fixed_lab import FAST, make_lab
from postgres import direct

from harness.cli import main
from harness.commands.report import write_report
from harness.errors import ModelError
from harness.profile import tables
from harness.profile.complete import complete
from harness.profile.document import from_dict
from harness.report.op_profiles import markdown_section, run_profiles
from harness.report.run_markdown import render_run
from harness.store import schema
from harness.store.copy import copy_history
from harness.store.results import ResultRecord, ResultStore

REPO = Path(__file__).resolve().parents[1]


def contract(times: dict[tuple[int, str], list[float]], **header) -> dict:
    """A profile document as a device sends it: {(index, type): times per invocation}."""
    n = len(next(iter(times.values())))
    ops = [{"index": i, "subgraph": 0, "type": t, "delegated": False, "times": v} for (i, t), v in times.items()]
    return {"source": "litert-builtin", "unit": "us", "invocations": n, "ops": ops, **header}


CONV = {
    (0, "CONV_2D"): [40.0, 44.0, 42.0],
    (1, "DEPTHWISE_CONV_2D"): [10.0, 10.0, 13.0],
    (2, "CONV_2D"): [30.0, 30.0, 30.0],
    (3, "MEAN"): [2.0, 2.0, 2.0],
    (4, "FULLY_CONNECTED"): [5.0, 6.0, 4.0],
    (5, "SOFTMAX"): [1.0, 1.0, 1.0],
}


def shaped(times=CONV, **header) -> dict:
    """The contract document with the host's shapes and MACs (what attach_analysis adds)."""
    doc = contract(times, invoke=[91.0, 96.0, 95.0], **header)
    for i, op in enumerate(doc["ops"]):
        op.update(inputs=[[1, 8, 8, 4 * (i + 1)], [4, 3, 3, 1]], outputs=[[1, 8, 8, 4]], macs=1000 * (6 - i))
    return doc


def record(store: ResultStore, run: str, job: str, raw: dict | None, device: str = "dut", variant: str = "fp32") -> int:
    rec = ResultRecord(run, job, "net", "0" * 64, variant, device, "localhost", "ok", artifact_sha256="a" * 64)
    rec.raw = raw
    return store.record(rec, [("latency_p50_us", 100.0, "us")], {"steady": [100.0, 101.0]})


def test_profiles_are_stored_per_operator_and_read_back_whole(store_db, tmp_path):
    store = ResultStore(store_db)
    assert store.schema_version == 6
    old = store.start_run(["j"], "p", ["run"], "0", "host", None)
    first = record(store, old, "j", {"status": "ok", "op_profile": shaped()})
    store.finish_run(old)
    quick = store.start_run(["j", "k"], "q", ["profile"], "0", "host", None, kind="profile")
    doc = shaped(unit="ticks", ticks_per_us=480.0, cycles=True, source="tflm-micro-profiler")
    newer = record(store, quick, "j", {"status": "ok", "op_profile": doc, "latency_us": {"p50": 1.0}})
    other = record(store, quick, "k", {"status": "ok", "op_profile": shaped()}, variant="int8")
    plain = record(store, quick, "l", {"status": "ok"})
    store.finish_run(quick)

    back = store.op_profile(newer)
    assert back is not None and back.to_dict() == from_dict(doc).to_dict()  # every field, times included
    assert back.unit == "ticks" and back.ticks_per_us == 480.0 and back.cycles and back.invoke == [91.0, 96.0, 95.0]
    assert [(op.index, op.type, op.macs) for op in back.ops][:2] == [
        (0, "CONV_2D", 6000),
        (1, "DEPTHWISE_CONV_2D", 5000),
    ]
    assert back.ops[0].inputs == [[1, 8, 8, 4], [4, 3, 3, 1]] and back.ops[0].median == 42.0
    assert store.op_profile(plain) is None and store.op_profile(10**6) is None
    # the ops live in their table; the stored document keeps the profile's header, not a second copy
    raw = store.raw(newer)
    assert raw is not None and "ops" not in raw["op_profile"] and raw["op_profile"]["ops_stored"] == 6
    assert raw["latency_us"] == {"p50": 1.0}

    newest = store.op_profiles()  # the newest per series: fp32 from the quick look, and int8
    assert [(r["variant"], r["result_id"], r["kind"]) for r, _ in newest] == [
        ("fp32", newer, "profile"),
        ("int8", other, "profile"),
    ]
    row = newest[0][0]
    assert row["run_id"] == quick and row["device_id"] == "dut" and row["model"] == "net"
    assert row["artifact_sha256"] == "a" * 64
    assert [r["result_id"] for r, _ in store.op_profiles(run_id=old)] == [first]
    assert [r["result_id"] for r, _ in store.op_profiles(variant="int8")] == [other]
    assert store.op_profiles(device="elsewhere") == [] and store.op_profiles(model="other") == []
    # a quick look is never "latest", a reference or a series' history
    assert store.latest_run_id() == old
    shares = sa.select(sa.func.sum(schema.op_times.c.share)).where(schema.op_times.c.result_id == first)
    assert store._query(shares)[0][0] == pytest.approx(1.0)
    copy = ResultStore(tmp_path / "copy.sqlite")  # `hil db migrate` carries profiles over
    assert copy_history(store, copy)["op_times"] == 18
    assert [(r, p.to_dict()) for r, p in copy.op_profiles()] == [(r, p.to_dict()) for r, p in newest]
    copy.close()
    store.close()


def test_every_profile_of_a_runner_document_is_kept_under_its_key(store_db):
    """With XNNPACK the runner also profiles the built-in kernels, and a paired process both artifacts:
    each is stored under its document key; the default is the profile of what ran."""
    store = ResultStore(store_db)
    run = store.start_run(["j"], "p", ["run"], "0", "host", None)
    xnn = contract({(0, "SHAPE"): [1.0], (7, "Fully Connected (NC, F32) GEMM"): [3.0]}, source="litert-xnnpack")
    xnn["ops"][1].update(delegated=True, name="XNNPACK partition 0 op 0")
    builtin, paired = shaped(), shaped({(0, "CONV_2D"): [9.0, 9.0, 9.0]})
    doc = {"status": "ok", "op_profile": xnn, "op_profile_builtin": builtin, "paired_op_profile": paired}
    rid = record(store, run, "j", doc)
    ran = store.op_profile(rid)
    assert ran is not None and ran.source == "litert-xnnpack" and ran.ops[1].delegated
    assert ran.ops[1].name == "XNNPACK partition 0 op 0"
    for key, want in (("op_profile_builtin", builtin), ("paired_op_profile", paired)):
        back = store.op_profile(rid, key)
        assert back is not None and back.to_dict() == from_dict(want).to_dict()
        assert [r["result_id"] for r, _ in store.op_profiles(key=key)] == [rid]
    assert store.op_profile(rid, "paired_op_profile_builtin") is None
    assert {k: v.get("ops_stored") for k, v in (store.raw(rid) or {}).items() if isinstance(v, dict)} == {
        "op_profile": 2,
        "op_profile_builtin": 6,
        "paired_op_profile": 1,
    }
    store.close()


def test_a_spooled_result_brings_its_profile_into_the_store(tmp_path):
    """A result the database could not take is spooled with its profile, and stored whole later."""
    from harness.store.spool import Spool

    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run(["j"], "p", ["run"], "0", "host", None)
    rec = ResultRecord(run, "j", "net", "0" * 64, "fp32", "dut", "localhost", "ok", artifact_sha256="a" * 64)
    rec.raw = {"status": "ok", "op_profile": shaped()}
    spool = Spool(tmp_path / "spool", store.location)
    spool.keep_result(rec, [("latency_p50_us", 100.0, "us")], {"steady": [100.0]}, 1234.5)
    assert spool.replay(store).stored == 1
    ((row, prof),) = store.op_profiles(run_id=run)
    assert prof.to_dict() == from_dict(shaped()).to_dict() and row["job_key"] == "j"
    store.close()


def test_a_malformed_profile_is_a_warning_and_the_result_is_kept(store_db, caplog):
    store = ResultStore(store_db)
    run = store.start_run(["j"], "p", ["run"], "0", "host", None)
    bad = contract({(0, "CONV_2D"): [1.0, 2.0], (1, "MEAN"): [1.0]})  # op 1 is one time short
    doc = {"status": "ok", "op_profile": bad}
    with caplog.at_level(logging.WARNING, logger="harness"):
        rid = record(store, run, "j", doc, device="pi4")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("warning: device 'pi4': op_profile: ops[1] (MEAN) times: need 2 finite")
    assert "net/fp32@pi4 stored without its per-operator profile" in warning
    assert store.raw(rid) == doc and store.op_profile(rid) is None  # the document as the device sent it
    assert store.wide(run)["latency_p50_us"].tolist() == [100.0] and store.samples(rid) == [100.0, 101.0]
    twice = contract({(0, "CONV_2D"): [1.0], (0, "MEAN"): [1.0]})
    odd = contract({(0, "CONV_2D"): [1.0]})
    cases = [
        (twice, "an op index appears twice in one subgraph"),
        ({**odd, "ops": [{**odd["ops"][0], "subgraph": "x"}]}, "invalid literal for int()"),
        ({**odd, "ops": [{**odd["ops"][0], "name": {"a": 1}}]}, "has a name that is not text"),
        ({**odd, "ops": [{**odd["ops"][0], "inputs": [[1, "8"]]}]}, "a shape not of integers"),
        ({**odd, "ops": [{**odd["ops"][0], "inputs": [5]}]}, "not iterable"),
    ]
    for i, (doc, why) in enumerate(cases):
        rid = record(store, run, f"bad{i}", {"status": "ok", "op_profile": doc})
        message = caplog.records[-1].getMessage()
        assert store.op_profile(rid) is None and store.raw(rid) == {"status": "ok", "op_profile": doc}
        assert message.startswith("warning: device 'dut': op_profile: ") and why in message, message
    store.close()


def test_a_schema_5_store_is_read_as_it_is_and_migrated_by_a_writing_open(store_db, tmp_path, capsys):
    """An existing store of schema 5 (before per-operator profiles): read-only commands read it
    unchanged (no profiles), the first writing open migrates it, and profiles are stored after."""
    store = ResultStore(store_db)
    run = store.start_run(["j"], "p", ["run"], "0", "host", None)
    record(store, run, "j", {"status": "ok"})
    store.finish_run(run)
    store.close()
    engine = direct(store_db)  # as hilbench left it before schema 6
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE op_times"))
        db.execute(sa.text("UPDATE meta SET value='5' WHERE key='schema_version'"))
    engine.dispose()
    old = ResultStore(store_db, read_only=True)
    assert old.schema_version == 5 and old.op_profiles() == [] and old.op_profile(1) is None
    assert run_profiles(old, run) == []
    old.close()
    db_arg = ["--db", str(store_db)]
    assert main([*db_arg, "results", "--latest"]) == 0 and run in capsys.readouterr().out
    assert main([*db_arg, "report", "-o", str(tmp_path / "r.md")]) == 0
    assert "Where the time goes" not in capsys.readouterr().out
    engine = direct(store_db)
    with engine.connect() as db:  # the read-only opens wrote nothing
        assert db.execute(sa.text("SELECT value FROM meta WHERE key='schema_version'")).scalar_one() == "5"
        assert "op_times" not in sa.inspect(db).get_table_names()
    engine.dispose()
    migrated = ResultStore(store_db)
    assert migrated.schema_version == 6 and migrated.op_profiles() == []
    rid = record(migrated, run, "j2", {"status": "ok", "op_profile": shaped()})
    assert migrated.op_profile(rid) is not None and migrated.latest_run_id() == run
    migrated.close()


def test_tables_add_up_to_the_whole_invocation_and_name_their_source_and_unit():
    prof = from_dict(shaped())
    text = tables.render(prof, "net/fp32@dut")
    assert text.startswith("== net/fp32@dut ==\nsource: LiteRT built-in kernels; unit: us; 3 profiled invocation(s)")
    for heading in ("Operator-wise profiling info in run order", "Top 6 operators by time", "Summary by operator type"):
        assert heading in text
    headers, rows = tables.run_order_rows(prof)
    assert headers[:5] == ["index", "type", "shapes", "mean (us)", "median (us)"]
    share, cumulative = headers.index("% of total"), headers.index("cumulative %")
    assert sum(float(r[share]) for r in rows) == pytest.approx(100.0, abs=0.01) and rows[-1][cumulative] == "100.00"
    assert rows[0][:5] == ["0", "CONV_2D", "1x8x8x4,4x3x3x1 -> 1x8x8x4", "42.00", "42.00"]
    assert rows[0][headers.index("MAC/us")] == f"{6000 / 42:,.1f}"
    _, top = tables.top_rows(prof, 2)
    assert [r[1] for r in top] == ["CONV_2D", "CONV_2D"] and top[1][0] == "2"
    types = tables.by_type(prof)
    assert [t[0] for t in types][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"] and types[0][1] == 2
    assert sum(t[3] for t in types) == pytest.approx(1.0) and types[0][4] == 6000 + 4000
    type_headers, type_rows = tables.type_rows(prof)
    assert type_rows[-1][type_headers.index("cumulative %")] == "100.00"

    ticks = from_dict(shaped(unit="ticks", ticks_per_us=2.0, cycles=True, source="tflm-micro-profiler"))
    headers, rows = tables.run_order_rows(ticks)
    assert headers[3:7] == ["mean (ticks)", "median (ticks)", "mean (us)", "median (us)"]
    assert rows[0][3:7] == ["42.00", "42.00", "21.00", "21.00"]
    assert "source: TFLM MicroProfiler; unit: cycles (2 ticks/us)" in tables.render(ticks)
    unknown = from_dict(contract(CONV, unit="ticks", source="tflm-sim"))
    headers, rows = tables.run_order_rows(unknown)
    assert "mean (us)" not in headers and rows[0][-1] == "-"  # no rate, no microseconds, no MAC/us
    assert "source: simulator estimate; unit: ticks (tick rate unknown)" in tables.render(unknown)
    empty = from_dict(contract({(0, "X"): [1.0]}) | {"ops": []})
    assert "The device profiled no operators." in tables.render(empty)


def test_the_host_adds_shapes_and_refuses_a_profile_of_another_artifact():
    from fixed_lab import tflite_model

    sine = tflite_model()
    ops = {(0, "FULLY_CONNECTED"): [1.0], (1, "FULLY_CONNECTED"): [2.0], (2, "FULLY_CONNECTED"): [1.0]}
    done = complete(contract(ops), sine, "device 'dut': op_profile")
    assert [op["macs"] for op in done["ops"]] == [16, 256, 16] and done["ops"][1]["inputs"][0] == [1, 16]
    with pytest.raises(
        ModelError, match=r"^device 'dut': op_profile: op #0 is CONV_2D on the device but FULLY_CONNECTED in "
    ):
        complete(contract({(0, "CONV_2D"): [1.0]}), sine, "device 'dut': op_profile")


def _escaped_store(tmp_path: Path) -> tuple[ResultStore, str]:
    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run(["j"], "p", ["run"], "0", "host", None)
    rec = ResultRecord(run, "j", "<b>net*</b>", "0" * 64, "fp32", "dut$1", "localhost", "ok", artifact_sha256="a" * 64)
    rec.raw = {"status": "ok", "op_profile": shaped({(0, "<script>X"): [5.0], (1, "CONV_2D"): [15.0]})}
    store.record(rec, [("latency_p50_us", 100.0, "us")], {"steady": [100.0] * 20})
    store.finish_run(run)
    return store, run


def test_the_run_report_shows_each_profiled_series_slowest_operators(tmp_path):
    store, run = _escaped_store(tmp_path)
    md = write_report(store, run, tmp_path / "r.md")
    assert md == (tmp_path / "r.md").read_text() and md.startswith(render_run(store.wide(run), store.run_row(run)))
    section = md.split("## Where the time goes")[1]
    assert "### \\<b>net\\*\\</b>/fp32@dut$1" in section  # escaped: no HTML, no emphasis
    assert not re.search(r"(?<!\\)<script>", md) and "\\<script>X" in section
    table = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| index | type | shapes | mean (us) | % of total | cumulative % |")
    assert table[2].startswith("| 1 | CONV_2D |") and "| 75.00 | 75.00 |" in table[2]
    assert "| 25.00 | 100.00 |" in table[3]
    assert markdown_section([]) == []
    store.close()


def test_the_gate_html_report_charts_the_slowest_operators_by_type(tmp_path):
    from harness.gate import baselines as bl
    from harness.gate import evaluate as gate
    from harness.report.html import render_gate_html

    store, run = _escaped_store(tmp_path)
    page = render_gate_html(gate.evaluate(store, run, bl.BaselineSpec("last-pass", 5)), store)
    assert '<img id="fig-ops" alt="slowest operators by type" src="data:image/png;base64,' in page
    assert "<h3>&lt;b&gt;net*&lt;/b&gt;/fp32@dut$1</h3>" in page and "&lt;script&gt;X" in page
    assert "<script" not in page and "<b>net" not in page
    store.close()


# --------------------------------------------------------------------------- hil profile, end to end


def _fixed_lab(tmp_path: Path, monkeypatch) -> dict:
    lab = make_lab(tmp_path)
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return lab


def test_hil_profile_prints_the_tables_and_stores_a_run_of_its_own(tmp_path, monkeypatch, capsys):
    """On the fixed-clock device (100 us per inference, split over the sine model's three ops by their
    MACs + 8: 24, 264, 24 of 312): the tables, a stored `profile` run that is never "latest", and
    `hil run --profile` storing through the same path, shown by `hil report`."""
    lab = _fixed_lab(tmp_path, monkeypatch)
    env = {"HILBENCH_FIXED_PROFILE": "4"}
    p = hil("profile", "net.tflite", "--device", "dut", "--top", "2", env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert re.search(r"^== net/asis@dut \(result \d+\) ==$", out, re.M)
    assert "source: LiteRT built-in kernels; unit: us; 4 profiled invocation(s); 3 op(s)" in out
    run_order = out.split("Operator-wise profiling info in run order\n")[1].split("\n\n")[0].splitlines()
    assert run_order[0].split() == ["index", "type", "shapes", "mean", "(us)", "median", "(us)", "%", "of", "total",
                                    "cumulative", "%", "MACs", "MAC/us"]  # fmt: skip
    cells = [ln.split() for ln in run_order[2:]]
    assert [c[:2] for c in cells] == [["0", "FULLY_CONNECTED"], ["1", "FULLY_CONNECTED"], ["2", "FULLY_CONNECTED"]]
    assert [c[-4] for c in cells] == ["7.69", "84.62", "7.69"] and [c[-3] for c in cells] == ["7.69", "92.31", "100.00"]
    assert cells[1][2:5] == ["1x16,16x16,16", "->", "1x16"] and cells[1][-2] == "256"
    assert "Top 2 operators by time" in out and "Summary by operator type" in out
    store = ResultStore(lab["db"], read_only=True)
    (run,) = store.runs().itertuples()
    assert run.kind == "profile" and run.status == "complete" and store.latest_run_id() is None
    ((row, prof),) = store.op_profiles(run_id=run.run_id)
    assert prof.invocations == 4 and [op.macs for op in prof.ops] == [16, 256, 16]
    assert sum(prof.share(op) for op in prof.ops) == pytest.approx(1.0)
    store.close()

    assert main(["run", "net.tflite", *FAST, "--report", "r.md"]) == 0  # in this process: the runs are quick
    measured = capsys.readouterr().out.strip().splitlines()[0]
    report = (tmp_path / "r.md").read_text()  # no profile in this run: the quick look's, of the same artifact
    assert f"### net/asis@dut (profiled in run `{run.run_id}`)" in report
    monkeypatch.setenv("HILBENCH_FIXED_PROFILE", "2")  # the device double profiles (runner --profile-runs)
    assert main(["run", "net.tflite", *FAST, "--report", "r.md"]) == 0
    report = (tmp_path / "r.md").read_text()
    assert "### net/asis@dut\n" in report and "2 profiled invocation(s)" in report
    store = ResultStore(lab["db"], read_only=True)
    assert store.latest_run_id() != run.run_id and store.latest_run_id() != measured
    store.close()


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("malformed", "device 'dut': op_profile: ops[0] (FULLY_CONNECTED) times: need 3 finite"),
        ("foreign", "device 'dut': op_profile: op #0 is CONV_2D on the device but FULLY_CONNECTED in "),
    ],
)
def test_hil_profile_without_a_usable_profile_says_why_and_keeps_the_measurement(
    tmp_path, monkeypatch, capsys, mode, why
):
    lab = _fixed_lab(tmp_path, monkeypatch)
    monkeypatch.setenv("HILBENCH_FIXED_PROFILE", mode)
    code = main(["profile", "net.tflite", "--device", "dut"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err, err
    assert f"warning: {why}" in err and "net/asis@dut stored without its per-operator profile" in err
    assert "no per-operator profile from device 'dut' for net/asis" in err and out == ""
    store = ResultStore(lab["db"], read_only=True)
    (run,) = store.runs().itertuples()
    wide = store.wide(run.run_id)
    assert wide["status"].tolist() == ["ok"] and wide["latency_p50_us"].iloc[0] == pytest.approx(100.0, rel=0.01)
    raw = store.raw(int(wide["result_id"].iloc[0]))
    assert raw is not None and raw["op_profile_rejected"]["error"].startswith(why) and "op_profile" not in raw
    assert store.op_profiles() == []
    store.close()


def test_hil_profile_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    _fixed_lab(tmp_path, monkeypatch)
    for args, message in (
        (["--device", "nosuch"], "nosuch"),
        (["--device", "dut", "--profile-runs", "0"], "--profile-runs: 0 must be at least 1"),
        (["--device", "dut", "--variants", "fp64"], "fp64"),
        (["--device", "dut", "--top", "x"], "'x' is not a whole number"),
    ):
        try:
            code = main(["profile", "net.tflite", *args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 3 and "Traceback" not in err and message in err, (args, err)
    db = tmp_path / "reports" / "results.sqlite"
    if db.exists():  # refused before a run was created
        store = ResultStore(db, read_only=True)
        assert store.runs().empty
        store.close()


LINUX_PROFILER = "--profile-runs" in (REPO / "runners" / "linux_runner.py").read_text()


@pytest.mark.skipif(not LINUX_PROFILER, reason="the Linux runner's LiteRT profiler (issue 22) is not merged yet")
def test_hil_profile_on_the_local_device_with_the_litert_profiler(workspace):
    """The real runner on this machine, built-in kernels (--no-xnnpack: one node per model op): the
    sine model's three FULLY_CONNECTED ops, with the MACs the host adds, shares adding up to 100 %."""
    from fixed_lab import tflite_model

    (workspace / "net.tflite").write_bytes(tflite_model().read_bytes())
    p = hil("profile", "net.tflite", "--device", "local", "--profile-runs", "3", "--no-xnnpack")
    assert p.returncode == 0, p.stderr
    assert "source: LiteRT built-in kernels; unit: us; 3 profiled invocation(s); 3 op(s)" in p.stdout
    store = ResultStore(workspace / "reports" / "results.sqlite", read_only=True)
    ((row, prof),) = store.op_profiles()
    assert row["kind"] == "profile" and [(op.index, op.type, op.macs) for op in prof.ops] == [
        (0, "FULLY_CONNECTED", 16),
        (1, "FULLY_CONNECTED", 256),
        (2, "FULLY_CONNECTED", 16),
    ]
    assert prof.invocations == 3 and sum(prof.share(op) for op in prof.ops) == pytest.approx(1.0)
    store.close()


def test_a_profile_run_is_never_latest_a_reference_a_history_or_an_artifacts_figures(tmp_path, capsys):
    """`hil profile`'s short window must not move a series: no baseline, history, `latest` or `hil
    analyze` figures take a profile run up, and `baseline set` refuses it by name."""
    from gate_helpers import add_run

    from harness.gate import baselines as bl
    from harness.store import verdicts

    store = ResultStore(tmp_path / "r.sqlite")
    art = "a" * 64
    night = add_run(store, [{"samples": [100.0] * 50, "artifact": art}])
    quick = store.start_run(["j"], "q", ["profile"], "0", "host", None, kind="profile")
    rec = ResultRecord(quick, "j", "m", "0" * 64, "fp32", "local", "localhost", "ok", artifact_sha256=art)
    rec.raw = {"status": "ok", "op_profile": shaped()}
    store.record(rec, [("latency_p50_us", 50.0, "us")], {"steady": [50.0] * 10})
    store.finish_run(quick)
    verdicts.replace_verdicts(store, quick, [{"key": bl.key_of("m", "fp32", "local"), "verdict": "pass"}])
    later = add_run(store, [{"samples": [100.0] * 50}])
    rolling = bl.select(store, bl.BaselineSpec.parse("rolling:5"), "m", "fp32", "local", "localhost", later)
    assert rolling is not None and rolling.run_ids == [night]
    history = verdicts.metric_history(store, bl.key_of("m", "fp32", "local"), "m", "fp32", "local", float("inf"))
    assert {r[0] for r in history} == {night, later}
    assert set(store.measured_artifact(art).run_id) == {night} and store.latest_run_id() == later
    assert [r["run_id"] for r, _ in store.op_profiles()] == [quick]  # its profile is what it is for
    store.close()
    code = main(["--db", str(tmp_path / "r.sqlite"), "baseline", "set", quick])
    err = capsys.readouterr().err
    assert code == 3 and f"run {quick}: a `hil profile` run" in err and "Traceback" not in err
    code = main(["--db", str(tmp_path / "r.sqlite"), "gate", "--run", quick, "--no-record"])
    err = capsys.readouterr().err
    assert code == 3 and f"run {quick}: a `hil profile` run (a short look), not a measurement to gate" in err


def test_a_paired_process_stores_the_references_profile_with_the_references_shapes(tmp_path, monkeypatch, capsys):
    """A changed model is timed beside its series' reference in the same processes: the device's
    profile of the reference is completed (shapes, MACs from the reference's artifact) and stored
    under its own key beside the job's."""
    lab = _fixed_lab(tmp_path, monkeypatch)
    monkeypatch.setenv("HILBENCH_FIXED_PROFILE", "2")
    assert main(["run", "net.tflite", *FAST, "--repeats", "1"]) == 0
    assert main(["gate", "--quiet"]) == 0  # an accepted run: its artifact is the series' reference
    (tmp_path / "net.tflite").write_bytes((tmp_path / "net.tflite").read_bytes() + b"\0" * 16)
    assert main(["run", "net.tflite", *FAST, "--repeats", "1"]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    store = ResultStore(lab["db"], read_only=True)
    ran = store.op_profiles(run_id=second)  # one per process (the profile's repeats)
    refs = dict((r["result_id"], p) for r, p in store.op_profiles(run_id=second, key="paired_op_profile"))
    assert ran and {r["result_id"] for r, _ in ran} == set(refs)
    for row, prof in ran:
        assert [op.macs for op in prof.ops] == [op.macs for op in refs[row["result_id"]].ops] == [16, 256, 16]
        raw = store.raw(row["result_id"]) or {}
        assert raw["paired"]["artifact_sha256"] != row["artifact_sha256"]  # it was another artifact
    store.close()


def test_compare_ops_diffs_two_runs_of_a_series_op_by_op(tmp_path, monkeypatch):
    """`hil compare --ops RUN1:S RUN2:S`: the device double's 100 us per inference becomes 200 us; split
    by MACs (24, 264, 24 of 312), the big FULLY_CONNECTED #1 carries 84.6 % of the change and is named
    alone; a bad spec or a series without a profile is one line, exit 3."""
    from fixed_lab import write_latency

    lab = _fixed_lab(tmp_path, monkeypatch)
    env = {"HILBENCH_FIXED_PROFILE": "3"}
    first = hil("profile", "net.tflite", "--device", "dut", env=env, check=True)
    write_latency(lab["script"], {"": 200.0})
    hil("profile", "net.tflite", "--device", "dut", env=env, check=True)
    store = ResultStore(lab["db"], read_only=True)
    runs = sorted(store.runs()["run_id"])
    store.close()
    assert len(runs) == 2 and first.returncode == 0
    p = hil("compare", "--ops", f"{runs[0]}:net/asis@dut", f"{runs[1]}:net/asis@dut")
    assert p.returncode == 0, p.stderr
    assert "ops matched: same graph" in p.stdout
    rows = {ln.split()[1]: ln.split() for ln in p.stdout.splitlines() if ln.startswith("FULLY_CONNECTED #")}
    assert set(rows) == {"#0", "#1", "#2"}
    assert rows["#1"][2:4] == ["84.62", "169.23"] and rows["#1"][-1] == "85%"
    assert "80 % of the change: +100 us: FULLY_CONNECTED #1 +84.6 us (85 %)" in p.stdout
    bad = hil("compare", "--ops", "net@dut", "net/asis@dut")
    assert bad.returncode == 3 and "expected MODEL/VARIANT@DEVICE" in bad.stderr
    none = hil("compare", "--ops", "net/asis@dut", "other/asis@dut")
    assert none.returncode == 3 and "no per-operator profile of other/asis@dut" in none.stderr
