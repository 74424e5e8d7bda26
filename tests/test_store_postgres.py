"""A shared PostgreSQL store: clear one-line errors without passwords, `hil db migrate` from SQLite,
and several processes writing into one store at the same time without losing or doubling anything."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gate_helpers import add_run
from postgres import contents, direct

from harness.cli import main
from harness.store import verdicts
from harness.store.results import ResultRecord, ResultStore

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.postgres
def test_bad_urls_unreachable_servers_and_foreign_databases_are_one_line_without_the_password(postgres_server, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    port = postgres_server.port
    foreign = postgres_server.createdb()
    engine = direct(foreign)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE customers (id INTEGER)")
    engine.dispose()
    empty = postgres_server.createdb()
    cases = [
        (
            f"postgresql://bob:s3cret@127.0.0.1:{closed}/x",
            2,
            f"postgresql://bob:***@127.0.0.1:{closed}/x: cannot reach",
        ),
        ("postgresql://bob:s3cret@127.0.0.1:notaport/x", 3, "postgresql://bob:***@127.0.0.1:notaport/x: not a valid"),
        ("mysql://bob:s3cret@h/x", 3, "mysql://bob:***@h/x: unsupported database URL"),
        (f"postgresql://postgres:s3cret@127.0.0.1:{port}/nosuch", 3, "no such PostgreSQL database"),
        (foreign, 3, f"{foreign}: not a hilbench results database (no hilbench schema marker); pass another --db"),
        (empty, 3, f"{empty}: empty database, no runs recorded yet (run `hil run` first)"),
    ]
    for url, exit_code, message in cases:
        code, _, err = run_cli(capsys, "--db", url, "results")
        assert code == exit_code, (url, err)
        assert message in one_line(err) and "s3cret" not in err
    assert contents(foreign) == {"customers": []} and contents(empty) == {}  # read-only: nothing created


@pytest.mark.postgres
def test_migrate_sqlite_history_into_postgresql_gives_the_same_answers(postgres_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "device_profiles", tmp_path / "device_profiles")
    lite = tmp_path / "results.sqlite"
    rng = np.random.default_rng(3)
    for level in (100.0, 100.0, 100.0, 130.0):  # three steady nights, then a regression
        store = ResultStore(lite)
        add_run(store, [{"samples": list(rng.normal(level, 1, 60)), "repeat": i} for i in range(3)])
        store.close()
        run_cli(capsys, "--db", str(lite), "gate", "--no-confirm", "--quiet")
    store = ResultStore(lite)
    verdicts.write_pins(store, store.latest_run_id() or "", [("m", "fp32", "device:local", 1)])
    store.close()
    target = postgres_server.createdb()
    code, out, err = run_cli(capsys, "--db", str(lite), "db", "migrate", "--to", target)
    assert code == 0, err
    copied = dict(line.split("\t") for line in out.splitlines())
    assert copied["runs"] == "4" and copied["results"] == "12" and copied["gate_verdicts"] == "4"
    assert copied["baselines"] == "1" and int(copied["samples"]) == 12 * 60
    asked = [["results"], ["gate", "--no-record", "--no-confirm"], ["baseline", "show"]]
    for args in asked:
        assert run_cli(capsys, "--db", str(lite), *args)[:2] == run_cli(capsys, "--db", target, *args)[:2], args
    assert run_cli(capsys, "--db", target, "gate", "--no-record", "--no-confirm")[0] == 1  # the regression
    # a second migration into the same database is refused, and the target is unchanged
    before = contents(target)
    code, _, err = run_cli(capsys, "--db", str(lite), "db", "migrate", "--to", target)
    assert code == 3 and one_line(err).endswith(
        ": not empty (1 baselines, 4 gate_verdicts, 4 runs, 12 results, 84 measurements, 720 samples);"
        " migrate into a new, empty database"
    )
    assert contents(target) == before
    # new results continue after the copied ids
    pg = ResultStore(target)
    run = pg.start_run(["x"], "p", [], "0", "h", None)
    rec = ResultRecord(run, "x", "m", "0" * 64, "fp32", "local", "localhost", "ok")
    assert pg.record(rec, [], {}) == 13
    pg.close()


WRITER = """
import sys
from harness.store import verdicts
from harness.store.results import ClaimOwner, ResultRecord, ResultStore

db, shared, name = sys.argv[1], sys.argv[2], sys.argv[3]
jobs = sys.argv[4].split(",")
store = ResultStore(db)
me = ClaimOwner.this_process()
print("ready", flush=True)
sys.stdin.readline()  # both writers start together
own = store.start_run(jobs, "own-" + name, [], "0", name, None)
measured = []
for job in jobs:
    if store.claim_job(shared, job, me) is None:
        rec = ResultRecord(shared, job, "m", "0" * 64, "fp32", "dev-" + job, "localhost", "ok", host=name)
        store.record(rec, [("latency_p50_us", 1.0, "us")], {"steady": [1.0, 2.0]})
        measured.append(job)
    store.record(ResultRecord(own, job, "m", "0" * 64, "fp32", "d", "localhost", "ok", host=name), [], {})
verdicts.replace_verdicts(store, own, [{"key": j, "verdict": "pass"} for j in jobs])
verdicts.write_pins(store, own, [("m", "fp32", "device:" + name, 1)])
store.release_claims(me)
store.finish_run(own, "complete", planned=jobs)
print(",".join(measured), flush=True)
"""


def test_two_processes_write_one_store_at_once_without_losing_or_doubling(store_db):
    jobs = [f"j{i:02d}" for i in range(40)]
    store = ResultStore(store_db)
    shared = store.start_run(jobs, "shared", [], "0", "host", None)  # the run both resume
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store_db), shared, name, ",".join(jobs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0]
    measured = [set(filter(None, o.strip().split(","))) for o in outs]
    assert measured[0].isdisjoint(measured[1]) and measured[0] | measured[1] == set(jobs)
    results = verdicts.results_of_run(store, shared)
    assert sorted(r[1] for r in results) == jobs  # every job once: none lost, none doubled
    assert store.claims(shared) == [] and store.finish_run(shared, "complete", planned=jobs) == "complete"
    runs = store.runs()
    assert len(runs) == 3 and set(runs["status"]) == {"complete"}
    for own in runs["run_id"]:
        if own != shared:
            assert len(verdicts.results_of_run(store, own)) == len(jobs)
            assert len(verdicts.verdict_rows(store, own)) == len(jobs)
    assert len(verdicts.pin_rows(store)) == 2
    store.close()
