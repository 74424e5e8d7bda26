"""Storage faults (issue 20): a write-protected database, a database in a folder this user cannot
write, cache and lock settings that point at files, and a full database. Each is one line with its
exit code and no traceback, before anything is measured, and nothing measured is lost: a result the
database cannot take is spooled and stored by the next writable open or `hil db recover`.

The tests run as root here and in CI, and root writes through any file mode. The commands that must
meet a write-protected file therefore run without the capabilities that let root do so
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: `setpriv --bounding-set`), so the kernel applies the file
modes to them as to any user. A full disk is SQLite's own limit: `PRAGMA max_page_count` on every
connection of the real store makes SQLite fail with SQLITE_FULL ("database or disk is full"), the
error a full disk gives, in the real write path."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fixed_lab import FAST, make_lab
from postgres import _as_postgres, start_postgres

from harness.cli import main
from harness.store.location import locate
from harness.store.results import ResultRecord, ResultStore
from harness.store.spool import Spool

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "net.tflite", *FAST, "--repeats", "2"]


def without_dac_override() -> list[str]:
    """A command prefix under which file modes bind this process (nothing when it is not root)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode != 0:
        pytest.fail("root, but cannot drop CAP_DAC_OVERRIDE with setpriv (util-linux)")
    return prefix


_DRIVER = """
import contextlib, io, json, os, sys, traceback
from harness.cli import main
from harness.store.location import locate
from harness.store.results import ResultRecord, ResultStore
from harness.store.spool import Spool
out = []
for args in json.loads(sys.argv[1]):
    if args[0] == "!fill":  # fill the disk holding args[1]: the last write gets ENOSPC
        fd = os.open(args[1], os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError as exc:
            out.append((exc.errno, "", ""))
        os.close(fd)
        continue
    if args[0] == "!touch":
        open(args[1], "w").close()
        out.append((0, "", ""))
        continue
    if args[0] == "!free":
        os.remove(args[1])
        out.append((0, "", ""))
        continue
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            code = main(args)
        except BaseException:
            traceback.print_exc()
            code = "traceback"
    out.append((code, o.getvalue(), e.getvalue()))
print(json.dumps(out))
"""


def hil_as_user(lab: dict, *commands: list[str], prefix: list[str] | None = None) -> list[tuple]:
    """(exit code, stdout, stderr) of each command, run by the CLI's entry point one after the other in
    one process without DAC override (one interpreter start instead of one per command)."""
    cmd = [*(without_dac_override() if prefix is None else prefix), sys.executable, "-c", _DRIVER]
    p = subprocess.run(
        [*cmd, json.dumps(commands)],
        cwd=lab["dir"],
        env={**os.environ, **lab["env"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return [tuple(r) for r in json.loads(p.stdout)]


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as c:
        n = tuple(c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "results", "samples"))
    c.close()
    return n  # type: ignore[return-value]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    """A lab with one measured run (two results), made once."""
    lab = make_lab(tmp_path_factory.mktemp("measured"))
    [(code, _, err)] = hil_as_user(lab, RUN, prefix=[])
    assert code == 0, err
    return lab


def copy_lab(lab: dict, to: Path) -> dict:
    shutil.copytree(lab["dir"], to, symlinks=True)
    fixed = {k: v.replace(str(lab["dir"]), str(to)) for k, v in lab["env"].items()}
    return {**lab, "dir": to, "db": to / "reports" / "results.sqlite", "env": fixed}


def test_a_write_protected_database_is_one_line_exit_2_before_any_work(measured, tmp_path):
    lab = copy_lab(measured, tmp_path / "lab")
    db = lab["db"]
    before = counts(db)
    db.chmod(0o444)
    fix = f"make it writable (chmod u+w {db.relative_to(lab['dir'])}) or pass another --db"
    run, gate, judge = hil_as_user(
        lab, RUN, ["gate", "--no-confirm"], ["gate", "--no-confirm", "--no-record", "--quiet"]
    )
    assert run[0] == 2 and run[1] == "", run
    line = one_line(run[2])
    assert (
        line.startswith("hil: error: reports/results.sqlite: the results database is write-protected") and fix in line
    )
    assert gate[0] == 2 and "write-protected" in one_line(gate[2]) and "hil gate --no-record" in gate[2]
    assert counts(db) == before  # nothing started, nothing recorded
    assert judge[0] == 0, judge  # judging without recording only reads: it works


def test_read_only_commands_work_where_the_folder_cannot_be_written(measured, tmp_path):
    """A WAL database SQLite cannot make its -shm file for (a folder without write permission, a
    read-only mount): `results`, `report`, `gate --no-record` read it as immutable; with writes still
    in a -wal file that cannot be, and the line says how to get at them."""
    lab = copy_lab(measured, tmp_path / "lab")
    db, folder = lab["db"], lab["db"].parent
    assert not Path(f"{db}-wal").exists()  # closed cleanly: everything is in the main file
    # a copy whose last writes are still in its -wal file (copied while open, or after a crash)
    pending = tmp_path / "pending"
    pending.mkdir()
    shutil.copy(db, pending / "results.sqlite")
    conn = sqlite3.connect(pending / "results.sqlite")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE runs SET label='x'")
    conn.commit()
    shutil.copy(pending / "results.sqlite-wal", tmp_path / "wal")
    conn.close()  # the last connection checkpoints and removes the -wal: put it back, as a crash leaves it
    shutil.copy(tmp_path / "wal", pending / "results.sqlite-wal")
    out = tmp_path / "out"
    out.mkdir()
    db.chmod(0o444)
    for d in (folder, pending):
        d.chmod(0o555)
    try:
        results, report, judge, gate, stale = hil_as_user(
            lab,
            ["results"],
            ["report", "-o", str(out / "r.md")],
            ["gate", "--no-record", "--no-confirm", "--quiet"],
            ["gate", "--no-confirm", "--quiet"],
            ["--db", str(pending / "results.sqlite"), "results"],
        )
        assert sorted(x.name for x in folder.iterdir()) == ["results.sqlite"]  # no -wal/-shm made
    finally:
        for d in (folder, pending):
            d.chmod(0o755)
    assert results[0] == 0 and results[1].count(" ok ") == 2, results
    assert report[0] == 0 and "net" in (out / "r.md").read_text(), report
    assert judge[0] == 0, judge
    assert gate[0] == 2 and "make the folder writable or pass another --db" in one_line(gate[2])  # recording cannot
    assert stale[0] == 2 and "its latest writes are in results.sqlite-wal" in one_line(stale[2]), stale


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare")
def test_read_only_commands_work_on_a_read_only_mount(measured, tmp_path):
    lab = copy_lab(measured, tmp_path / "lab")
    folder = lab["db"].parent
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace here (unshare -m not permitted)")
    script = f'mount --bind -o ro {folder} {folder} && exec "$@"'
    for code, _, err in hil_as_user(
        lab,
        ["results"],
        ["gate", "--no-record", "--no-confirm", "--quiet"],
        prefix=["unshare", "-m", "sh", "-c", script, "sh"],
    ):
        assert code == 0, err


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare")
def test_a_disk_that_fills_up_during_a_run_loses_nothing(tmp_path):
    """A real full disk: the database on a small tmpfs of its own (a mount namespace), the spool in the
    cache on another disk. The device's python fills the tmpfs before it measures (once the run is
    open), so each result meets ENOSPC when it is stored. Everything happens in one process inside the
    namespace (the tmpfs goes with it)."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace here (unshare -m not permitted)")
    lab = make_lab(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    flag, filler = tmp_path / "fill-the-disk", reports / "filler"
    python = tmp_path / "filling-python"
    python.write_text(
        f"#!/bin/sh\n[ -e {flag} ] && dd if=/dev/zero of={filler} bs=4k 2>/dev/null\n"
        f'exec {tmp_path / "fixed-python"} "$@"\n'
    )
    python.chmod(0o755)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace(str(tmp_path / "fixed-python"), str(python)))
    script = f'mount -t tmpfs -o size=4m tmpfs {reports} && exec "$@"'
    first, filled, before_run, _, _, during_run, _, _, recover, results = hil_as_user(
        lab,
        RUN,
        ["!fill", str(filler)],
        RUN,  # full before the run: nothing can be measured and kept, so nothing starts
        ["!free", str(filler)],
        ["!touch", str(flag)],
        RUN,  # full once the run is open: every result goes to the spool
        ["!free", str(filler)],
        ["!free", str(flag)],
        ["db", "recover"],
        ["results", "--latest"],
        prefix=["unshare", "-m", "sh", "-c", script, "sh"],
    )
    assert first[0] == 0 and filled[0] == errno.ENOSPC, first
    assert before_run[0] == 2 and before_run[1] == ""
    assert "the disk holding the results database is full" in one_line(before_run[2].splitlines()[-1])
    code, out, err = during_run
    assert code == 2 and "Traceback" not in err, err
    assert err.count("the disk holding the results database is full") >= 2 and err.count("kept in") == 2, err
    assert recover[0] == 0 and "recovered 2 spooled result(s)" in recover[2], recover
    run_id = out.strip()
    assert results[0] == 0 and run_id in results[1] and results[1].count(" ok ") == 2, results
    assert not list((Path(lab["env"]["HILBENCH_CACHE"]) / "spool").glob("*.json"))


@pytest.mark.parametrize("setting", ["HILBENCH_CACHE", "HILBENCH_LOCK_DIR"])
def test_cache_and_lock_settings_pointing_at_a_file_stop_the_run_before_it_exists(
    setting, tmp_path, capsys, monkeypatch
):
    lab = make_lab(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for k, v in {**lab["env"], setting: str(blocker)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    code = main(RUN)
    _, err = capsys.readouterr()
    what = "artifact cache" if setting == "HILBENCH_CACHE" else "device lock directory"
    assert code == 3
    assert one_line(err) == f"hil: error: {blocker}: the {what} is a file, not a folder; point {setting} at a folder"
    assert not lab["db"].exists()  # no run was created (no `interrupted` run left behind)


class _FullDisk:
    """SQLite's page limit on every connection of the real store: past it, SQLITE_FULL."""

    def __init__(self) -> None:
        self.pages: int | None = None

    def __call__(self, dbapi, _record) -> None:
        if self.pages is not None and isinstance(dbapi, sqlite3.Connection):
            dbapi.execute(f"PRAGMA max_page_count={self.pages}")


@pytest.fixture()
def full_disk():
    limit = _FullDisk()
    sa.event.listen(sa.Engine, "connect", limit)
    try:
        yield limit
    finally:
        sa.event.remove(sa.Engine, "connect", limit)


def spool_files(lab: dict) -> list[Path]:
    return sorted((Path(lab["env"]["HILBENCH_CACHE"]) / "spool").glob("*.json"))


def test_results_the_full_database_cannot_take_are_spooled_and_recovered(
    measured, tmp_path, capsys, monkeypatch, full_disk
):
    lab = copy_lab(measured, tmp_path / "lab")
    db = lab["db"]
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(lab["dir"])
    runs0, results0, samples0 = counts(db)
    with sqlite3.connect(db) as c:
        full_disk.pages = c.execute("PRAGMA page_count").fetchone()[0]  # full: no page more
    c.close()
    code = main(RUN)
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err, err
    run_id = out.strip()
    assert "database or disk is full" in err and err.count("kept in") == 2, err
    assert "2 result(s) of run" in err and "`hil db recover`" in err
    assert counts(db)[:2] == (runs0 + 1, results0)  # the run was opened; its results are not in the database
    files = spool_files(lab)
    spooled = [json.loads(f.read_text()) for f in files]
    assert {e["record"]["run_id"] for e in spooled if e["kind"] == "result"} == {run_id}
    keep = tmp_path / "spooled-copy.json"
    shutil.copy(files[0], keep)

    full_disk.pages = None  # space again
    assert main(["results"]) == 0  # a read-only command stores nothing
    assert len(spool_files(lab)) == len(files)
    capsys.readouterr()
    assert main(["db", "recover"]) == 0
    err = capsys.readouterr().err
    assert "recovered 2 spooled result(s)" in err, err
    assert spool_files(lab) == []
    store_counts = counts(db)
    assert store_counts[1] == results0 + 2
    n_samples = sum(len(v) for e in spooled if e["kind"] == "result" for v in e["samples"].values())
    assert n_samples > 0 and store_counts[2] == samples0 + n_samples  # every sample, not only the summary
    with sqlite3.connect(db) as c:
        stored = dict(c.execute("SELECT job_key, status FROM results WHERE run_id=?", (run_id,)).fetchall())
        status = c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
    c.close()
    assert set(stored.values()) == {"ok"} and len(stored) == 2
    assert status == "complete"  # the run's end was spooled after its results, and applied after them

    # a spooled file stored once already (replay interrupted before the file was removed): no second copy
    shutil.copy(keep, files[0])
    assert main(["db", "recover"]) == 0
    assert counts(db) == store_counts and spool_files(lab) == []


def test_the_next_writing_command_stores_spooled_results_and_says_so(
    measured, tmp_path, capsys, monkeypatch, full_disk
):
    lab = copy_lab(measured, tmp_path / "lab")
    db = lab["db"]
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(lab["dir"])
    with sqlite3.connect(db) as c:
        full_disk.pages = c.execute("PRAGMA page_count").fetchone()[0]
    c.close()
    assert main(RUN) == 2
    capsys.readouterr()
    assert len([f for f in spool_files(lab) if json.loads(f.read_text())["kind"] == "result"]) == 2
    results0 = counts(db)[1]
    full_disk.pages = None
    assert main(RUN) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("recovered 2 spooled result(s) from"), err
    assert counts(db)[1] == results0 + 4 and spool_files(lab) == []


def test_a_spool_that_cannot_be_written_either_stops_the_run_and_says_what_is_lost(
    measured, tmp_path, capsys, monkeypatch, full_disk
):
    lab = copy_lab(measured, tmp_path / "lab")
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(lab["dir"])
    (Path(lab["env"]["HILBENCH_CACHE"]) / "spool").write_text("")  # the spool's place is taken by a file
    with sqlite3.connect(lab["db"]) as c:
        full_disk.pages = c.execute("PRAGMA page_count").fetchone()[0]
    c.close()
    code = main(RUN)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("LOST net/asis@dut") == 1, err  # the run stopped at the first: the next would be lost too
    assert "could be neither stored nor kept in" in err.splitlines()[-1] and "hil run --resume" in err
    assert stat.S_ISREG((Path(lab["env"]["HILBENCH_CACHE"]) / "spool").stat().st_mode)


def test_a_spooled_result_is_stored_once_in_either_store(store_db, tmp_path):
    """The replay itself on SQLite and PostgreSQL: every measurement and sample, the measurement time
    kept, a file replayed twice stored once, another database's files left alone."""
    store = ResultStore(store_db)
    try:
        run = store.start_run(["k"], "plan", ["test"], "0", "host", None)
        spool = Spool(tmp_path / "spool", store.location)
        rec = ResultRecord(run, "k", "m", "sha", "fp32", "dev", "localhost", "ok", raw={"latency_us": {"p50": 1.5}})
        stamp = 1_700_000_000.123456789
        path = spool.keep_result(
            rec, [("latency_p50_us", 1.5, "us"), ("accuracy_top1", None, "")], {"steady": [1.0, 2.0]}, stamp
        )
        Spool(tmp_path / "spool", locate(tmp_path / "other.sqlite")).keep_result(rec, [], {}, stamp)
        shutil.copy(path, tmp_path / "again.json")
        done = spool.replay(store)
        assert (done.stored, done.left, list(done.other_databases.values())) == (1, 0, [1])
        shutil.copy(tmp_path / "again.json", path)
        assert spool.replay(store).stored == 1  # recognised as stored already: no second row
        df = store.dataframe(run)
        assert df["result_id"].nunique() == 1 and df["timestamp"].iloc[0].timestamp() == pytest.approx(stamp, abs=1e-6)
        assert dict(zip(df["metric"], df["value"])) == pytest.approx(
            {"latency_p50_us": 1.5, "accuracy_top1": float("nan")}, nan_ok=True
        )
        assert store.samples(int(df["result_id"].iloc[0])) == [1.0, 2.0]
        assert store.raw(int(df["result_id"].iloc[0])) == {"latency_us": {"p50": 1.5}}
        assert len(spool.pending()) == 1  # the other database's file
    finally:
        store.close()


@pytest.mark.postgres
def test_a_postgresql_server_lost_during_a_run_loses_nothing(tmp_path, capsys, monkeypatch):
    """Several controllers share one PostgreSQL store: when its server goes away in the middle of a
    run (here: stopped by the device's python once the run is open), the results are spooled, and
    the first command after its return stores them."""
    server = start_postgres()  # its own server: this test stops it
    try:
        db = server.createdb()
        lab = make_lab(tmp_path)
        flag = tmp_path / "stop-the-server"
        stop = [str(server.bin / "pg_ctl"), "-D", str(server.dir / "data"), "-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            stop = ["runuser", "-u", "postgres", "--", *stop]
        python = tmp_path / "stopping-python"
        python.write_text(
            f"#!/bin/sh\n[ -e {flag} ] && rm {flag} && {' '.join(stop)} >/dev/null\n"
            f'exec {tmp_path / "fixed-python"} "$@"\n'
        )
        python.chmod(0o755)
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(inventory.read_text().replace(str(tmp_path / "fixed-python"), str(python)))
        for k, v in lab["env"].items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        flag.touch()
        code = main(["--db", db, *RUN])
        out, err = capsys.readouterr()
        assert code == 2 and "Traceback" not in err, err
        assert "cannot reach the PostgreSQL server" in err and err.count("kept in") == 2, err
        run_id = out.strip()
        restart(server)
        assert main(["--db", db, "db", "recover"]) == 0
        assert "recovered 2 spooled result(s)" in capsys.readouterr().err
        assert main(["--db", db, "results", "--run", run_id]) == 0
        assert capsys.readouterr().out.count(" ok ") == 2
    finally:
        server.stop()


def restart(server) -> None:
    opts = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.dir} -c fsync=off -c full_page_writes=off"
    log = str(server.dir / "log")
    _as_postgres([str(server.bin / "pg_ctl"), "-D", str(server.dir / "data"), "-l", log, "-o", opts, "-w", "start"])
