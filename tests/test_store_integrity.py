"""Nothing written where nothing should be: read-only commands open the database with SQLite's
`mode=ro`, a file that is not hilbench's is refused untouched by every command, and job claims keep
sessions of one run from measuring a job twice (schema v3)."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import hil
from fixed_lab import FAST, make_lab, tflite_model, write_latency
from gate_helpers import add_run
from postgres import contents, direct

from harness.cli import main
from harness.errors import ConfigError
from harness.lab.config import Device
from harness.run.device_lock import DeviceLock
from harness.store import schema
from harness.store.results import ClaimOwner, ResultRecord, ResultStore

READ_ONLY = [
    ["results"],
    ["report", "-o", "{dir}/report.md"],
    ["gate", "--no-record", "--no-confirm"],
    ["baseline", "show"],
]


def snapshot(db: Path) -> tuple:
    """What a command could change, independent of bytes and mtime: every table, row, index and
    setting (SQL dump), the journal mode and the schema version."""
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as c:
        dump = "\n".join(c.iterdump())
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    c.close()
    return tables, mode, dump


def cli(capsys, db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--db", str(db), *[a.format(dir=db.parent) for a in args]])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_every_command_refuses_a_foreign_sqlite_file_and_leaves_it_as_it_was(tmp_path, capsys):
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO customers VALUES (1, 'ada')")
    c.close()
    before, files = snapshot(foreign), sorted(p.name for p in tmp_path.iterdir())
    assert before[1] == "delete"
    for args in READ_ONLY:
        code, _, err = cli(capsys, foreign, *args)
        assert code == 3, (args, err)
        assert one_error_line(err) == (
            f"hil: error: {foreign}: not a hilbench results database (no hilbench schema marker); pass another --db"
        )
        assert snapshot(foreign) == before, args
    # a writing command is refused the same way, before anything is measured or created
    p = hil("--db", str(foreign), "run", str(tflite_model()), cwd=tmp_path)
    assert p.returncode == 3 and "other.sqlite: not a hilbench results database" in p.stderr
    assert snapshot(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no -wal/-shm/journal


def test_a_database_of_another_application_is_refused_even_with_our_table_names(store_db):
    ResultStore(store_db).close()
    engine = direct(store_db)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE meta SET value='someone-else' WHERE key='application'"))
    engine.dispose()
    before = contents(store_db)
    for read_only in (True, False):
        with pytest.raises(ConfigError, match=f"^{store_db}: not a hilbench results database"):
            ResultStore(store_db, read_only=read_only)
    assert contents(store_db) == before


def _v2_database(path: Path) -> str:
    """A hilbench database as the previous release left it: schema 2, one run, and (as after
    `sqlite3 results.sqlite 'PRAGMA journal_mode=DELETE'` or a copy) not in WAL mode."""
    store = ResultStore(path)
    rng = np.random.default_rng(1)
    run = add_run(store, [{"samples": list(rng.normal(100, 1, 50))}])
    store.close()
    with sqlite3.connect(path) as c:
        c.execute("DROP TABLE job_claims")
        c.execute("DROP TABLE run_sessions")
        c.execute("ALTER TABLE runs DROP COLUMN kind")
        c.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    c.execute("PRAGMA journal_mode=DELETE")
    c.close()
    return run


def test_read_only_commands_never_write_to_a_hilbench_database(tmp_path, capsys, monkeypatch):
    db = tmp_path / "results.sqlite"
    run = _v2_database(db)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(Path(__file__).resolve().parents[1] / "device_profiles", tmp_path / "device_profiles")
    before = snapshot(db)
    assert before[1] == "delete" and "job_claims" not in before[0]
    for args in READ_ONLY:
        code, out, err = cli(capsys, db, *args)
        assert code in (0, 2), (args, err)  # the gate: no baseline yet for a first run
        assert snapshot(db) == before, args  # no migration, no WAL, no verdicts
        assert not (tmp_path / "results.sqlite-wal").exists()
    code, out, _ = cli(capsys, db, "results")
    assert code == 0 and run in out
    # the first writing command migrates: schema 3, WAL, the claims table
    code, _, err = cli(capsys, db, "gate", "--no-confirm", "--quiet")
    tables, mode, _ = snapshot(db)
    assert mode == "wal" and "job_claims" in tables
    with sqlite3.connect(db) as c:
        assert dict(c.execute("SELECT key, value FROM meta").fetchall()) == {
            "application": "hilbench",
            "schema_version": str(schema.SCHEMA_VERSION),
        }
        assert c.execute("SELECT COUNT(*) FROM gate_verdicts").fetchone()[0] == 1
    c.close()


def test_missing_zero_byte_and_empty_databases(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "results.sqlite"
    for args in READ_ONLY:
        code, _, err = cli(capsys, missing, *args)
        assert code == 3 and one_error_line(err) == (
            f"hil: error: {missing}: no results database here (run `hil run` first, or pass --db)"
        )
    assert not missing.parent.exists()
    zero = tmp_path / "zero.sqlite"
    zero.touch()
    for args in READ_ONLY:
        code, _, err = cli(capsys, zero, *args)
        assert code == 3 and one_error_line(err) == (
            f"hil: error: {zero}: empty database, no runs recorded yet (run `hil run` first)"
        )
    assert zero.stat().st_size == 0
    empty = tmp_path / "empty.sqlite"
    ResultStore(empty).close()
    before = snapshot(empty)
    for args in READ_ONLY[:3]:  # `results` exits like `report` and `gate` (it printed "no results", exit 0)
        code, _, err = cli(capsys, empty, *args)
        assert code == 3 and one_error_line(err) == f"hil: error: {empty}: no runs recorded yet (run `hil run` first)"
    code, out, _ = cli(capsys, empty, "baseline", "show")
    assert code == 0 and "none" in out
    assert snapshot(empty) == before


def test_output_paths_that_cannot_be_written_are_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """A directory (or a file where a folder should be) given as an output file is one line naming it,
    exit 3, before the command's work: the gate neither judges nor records, `run`/`demo` measure nothing."""
    db = tmp_path / "results.sqlite"
    store = ResultStore(db)
    add_run(store, [{"samples": list(np.random.default_rng(1).normal(100, 1, 50))}])
    store.close()
    monkeypatch.chdir(tmp_path)
    shutil.copytree(Path(__file__).resolve().parents[1] / "device_profiles", tmp_path / "device_profiles")
    (tmp_path / "out").mkdir()
    (tmp_path / "file").write_text("")
    before = snapshot(db)
    for args, what in [
        (["results", "--csv", "{dir}/out"], "CSV export"),
        (["results", "--parquet", "{dir}/out"], "parquet export"),
        (["report", "-o", "{dir}/out"], "report"),
        (["gate", "--junit", "{dir}/out"], "JUnit XML"),
        (["gate", "--csv", "{dir}/out"], "verdict CSV"),
        (["gate", "--markdown", "{dir}/out"], "Markdown summary"),
        (["gate", "--html", "{dir}/out"], "HTML report"),
        (["compare", "--csv", "{dir}/out"], "comparison CSV"),
        (["run", "net.tflite", "--report", "{dir}/out"], "report"),
        (["demo", "-o", "{dir}/out"], "report"),
    ]:
        code, out, err = cli(capsys, db, *args)
        assert code == 3 and out == "", (args, err)
        assert one_error_line(err) == f"hil: error: {tmp_path / 'out'}: is a directory; give a file name for the {what}"
    code, _, err = cli(capsys, db, "report", "-o", "{dir}/file/report.md")
    blocker = tmp_path / "file"
    assert code == 3 and one_error_line(err) == (
        f"hil: error: {blocker / 'report.md'}: cannot write the report: {blocker} is not a directory"
    )
    assert snapshot(db) == before  # no verdict recorded, no run started
    code, _, _ = cli(capsys, db, "results", "--csv", "{dir}/new/r.csv")  # a missing folder is made
    assert code == 0 and (tmp_path / "new" / "r.csv").read_text().startswith("result_id,run_id,")


def test_schema_2_without_the_marker_is_migrated_and_marked(tmp_path):
    """Databases an older hilbench migrated from v1 carry no `application` row; they are ours."""
    db = tmp_path / "r.sqlite"
    run = _v2_database(db)
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM meta WHERE key='application'")
    c.close()
    ro = ResultStore(db, read_only=True)
    assert ro.schema_version == 2 and ro.latest_run_id() == run
    with pytest.raises(ConfigError, match="opened read-only"):
        ro.finish_run(run)
    ro.close()
    ResultStore(db).close()
    with sqlite3.connect(db) as c:
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        assert meta == {"application": "hilbench", "schema_version": str(schema.SCHEMA_VERSION)}
        assert c.execute("SELECT COUNT(*) FROM job_claims").fetchone()[0] == 0
    c.close()


# --------------------------------------------------------------------------- job claims


def rec(run_id: str, key: str, status: str) -> ResultRecord:
    return ResultRecord(
        run_id=run_id,
        job_key=key,
        model="m",
        model_sha256="0" * 64,
        variant="fp32",
        device_id="d",
        profile="localhost",
        status=status,
    )


def test_a_job_is_claimed_by_one_session_until_its_result_is_recorded(store_db):
    store = ResultStore(store_db)
    other = ResultStore(store_db)  # a second connection, as a second process has
    run = store.start_run(["j1", "j2"], "h", [], "0", "host", None)
    a, b = ClaimOwner.this_process(), ClaimOwner.this_process()
    assert store.claim_job(run, "j1", a) is None
    assert store.claim_job(run, "j1", a) is None  # the owner itself may claim again
    why = other.claim_job(run, "j1", b)
    assert why is not None and f"being measured by another session of this run (pid {a.pid} on {a.host})" in why
    store.record(rec(run, "j1", "infra_error"), [], {})  # a failure ends the claim: it can be retried
    assert other.claim_job(run, "j1", b) is None
    other.record(rec(run, "j1", "ok"), [], {})
    assert store.claim_job(run, "j1", a) == "measured already by another session of this run"
    assert store.claim_job(run, "j2", a) is None
    assert other.claim_job(run, "j2", b) is not None
    assert store.release_claims(a) == 1 and store.claims(run) == []  # a session's end frees the rest
    assert other.claim_job(run, "j2", b) is None
    assert store.finish_run(run, "complete", planned=["j1", "j2"]) == "incomplete"  # j2 has no result
    other.record(rec(run, "j2", "ok"), [], {})
    assert store.finish_run(run, "interrupted", planned=["j1", "j2"]) == "complete"
    store.close()
    other.close()


def test_the_claim_of_a_session_that_died_is_taken_over(store_db):
    db = store_db
    store = ResultStore(db)
    run = store.start_run(["j1"], "h", [], "0", "host", None)
    code = (
        "import sys; from harness.store.results import ClaimOwner, ResultStore; "
        f"s = ResultStore({str(db)!r}); assert s.claim_job({run!r}, 'j1', ClaimOwner.this_process()) is None; "
        "print('claimed', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "claimed"
        me = ClaimOwner.this_process()
        assert f"pid {child.pid}" in (store.claim_job(run, "j1", me) or "")
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
        assert store.claim_job(run, "j1", me) is None  # its process is gone: the job is ours
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # a claim whose pid now belongs to another process (started at another time) is stale too
    engine = direct(db)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE job_claims SET owner='ghost', pid_started=pid_started - 3600"))
    engine.dispose()
    assert store.claim_job(run, "j1", ClaimOwner.this_process()) is None
    store.close()


# --------------------------------------------------------------------------- the gate's confirmation


def test_gate_no_record_remeasures_under_the_device_lock_and_writes_nothing(tmp_path, monkeypatch):
    """A confirmed regression with `--no-record`: the gate re-measures on the device (holding its
    lock, `--no-wait` refuses a busy device) and the database stays exactly as it was."""
    lab = make_lab(tmp_path)
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    blob = (tmp_path / "net.tflite").read_bytes()
    versions = {"a": blob, "b": blob + b"\0" * 16}  # the fixed clock tells models apart by sha256
    levels = {hashlib.sha256(v).hexdigest()[:16]: lat for v, lat in ((versions["a"], 100.0), (versions["b"], 110.0))}
    write_latency(lab["script"], levels)
    for night in ("a", "a", "a", "b"):
        (tmp_path / "net.tflite").write_bytes(versions[night])
        hil("run", "net.tflite", *FAST, check=True)
        if night == "a":
            hil("gate", "--quiet", check=True)
    before = snapshot(lab["db"])
    held = DeviceLock(Device(id="dut", profile="localhost", transport={"type": "local"}), run_id="busy-run")
    assert held.acquire(wait=False)
    try:
        p = hil("gate", "--no-record", "--no-wait")
    finally:
        held.release()
    assert p.returncode == 1, p.stdout + p.stderr  # the nightly verdict stands, unconfirmed
    assert "device 'dut' is busy" in p.stdout and "run busy-run" in p.stdout
    assert snapshot(lab["db"]) == before
    p = hil("-v", "gate", "--no-record")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "confirming net/asis@dut on dut: 8 runner processes, reference and candidate in each" in p.stderr
    assert "confirming net/asis@dut: reference and candidate in one process 8/8" in p.stderr and "confirmed" in p.stdout
    assert snapshot(lab["db"]) == before  # no verdicts, no confirmation runs


def test_the_python_api_reads_without_writing(tmp_path):
    from harness.store import open_results  # as the README shows it

    db = tmp_path / "r.sqlite"
    run = _v2_database(db)
    before = snapshot(db)
    assert set(open_results(db)["run_id"]) == {run}
    assert snapshot(db) == before
    with pytest.raises(ConfigError, match="no results database here"):
        open_results(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()
