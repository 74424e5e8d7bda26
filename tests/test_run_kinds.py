"""What "latest" means: the newest run a user started (`hil run`, `hil sweep`), never the gate's
confirmation runs or `hil calibrate`'s A/A runs, which are recorded after the run they serve (schema
5: `runs.kind`; older databases: inferred from the labels). And a run whose session was killed reads
`abandoned`, not `running` forever. Real `hil` processes on the fixed-clock device (tests/fixed_lab.py),
so nothing here depends on how busy the host is."""

from __future__ import annotations

import hashlib
import platform
import signal
import subprocess
import sys

import pandas as pd
import sqlalchemy as sa
from conftest import hil
from fixed_lab import FAST, make_lab, popen_hil, read_until, write_latency
from gate_helpers import add_run
from postgres import direct

from harness.cli import main
from harness.gate import baselines as bl
from harness.lab.config import Device
from harness.run.device_lock import DeviceLock
from harness.store import verdicts
from harness.store.copy import copy_history
from harness.store.results import ClaimOwner, ResultRecord, ResultStore

P50 = "latency_p50_us"


def _lab(tmp_path, monkeypatch) -> dict:
    lab = make_lab(tmp_path)
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return lab


def _run(*extra: str) -> str:
    return hil("run", "net.tflite", *FAST, *extra, check=True).stdout.strip().splitlines()[-1]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI in this process: the read-only commands need no process of their own."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_gating_twice_judges_the_same_run_and_only_user_runs_are_latest(tmp_path, monkeypatch, capsys):
    """The issue's repro: a model, then the same name 12x slower, `hil gate` twice. The second gate
    judged the first gate's confirmation run (exit 2, `job-confirm:/? on unknown`); now both judge the
    nightly run and fail it. `results --latest`, `report`, `compare` and `baseline set latest` show the
    nightly run, also after `hil calibrate` has recorded newer runs."""
    lab = _lab(tmp_path, monkeypatch)
    fast = (tmp_path / "net.tflite").read_bytes()
    slow = fast + b"\0" * 16  # the fixed clock tells models apart by sha256
    write_latency(lab["script"], {hashlib.sha256(b).hexdigest()[:16]: us for b, us in ((fast, 100.0), (slow, 1200.0))})
    _run("--label", "nightly")
    hil("gate", "--quiet", check=True)
    (tmp_path / "net.tflite").write_bytes(slow)
    night = _run("--label", "nightly")
    for _ in range(2):
        p = hil("gate", "--csv", "v.csv")
        assert p.returncode == 1, p.stdout + p.stderr
        assert f"- run: `{night}` (complete, label nightly," in p.stdout and "job-confirm" not in p.stdout
        row = pd.read_csv(tmp_path / "v.csv").set_index("metric").loc[P50]
        assert row.verdict == "regression" and bool(row.confirmed) and 10 < row.confirm_effect < 12
    assert cli(capsys, "calibrate", "--device", "dut", "net.tflite", "--runs", "2", *FAST)[0] == 0
    store = ResultStore(lab["db"], read_only=True)
    runs = store.runs()
    assert list(runs[runs.kind == "confirm"].label) == [f"confirm:{night}"] * 2
    assert list(runs[runs.kind == "calibrate"].label) == ["calibration"] * 2
    assert runs.run_id.iloc[-1] != night and store.latest_run_id() == night
    confirmation = runs[runs.kind == "confirm"].run_id.iloc[0]
    store.close()

    assert cli(capsys, "results", "--latest", "--csv", "r.csv")[0] == 0
    results = pd.read_csv(tmp_path / "r.csv")
    assert set(results.run_id) == {night} and len(results) == 3
    assert f"- run: `{night}` (complete)" in cli(capsys, "report", "-o", "r.md")[1]
    assert f"- run: `{night}`" in cli(capsys, "compare")[1]
    code, out, _ = cli(capsys, "baseline", "set", "latest")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"latest run: {night} (started ")
    assert lines[0].endswith(", label nightly, complete)")
    assert lines[1].startswith(f"pinned net/asis for device:dut: run {night} (started ")
    # asked for by its id, a confirmation run is shown as such, but never gated or pinned
    report = cli(capsys, "report", "--run", confirmation, "-o", "c.md")[1]
    assert f"- run: `{confirmation}` (complete, a confirmation run of `hil gate`)" in report
    for args in (["gate", "--run", confirmation], ["baseline", "set", confirmation]):
        code, _, err = cli(capsys, *args)
        assert code == 3 and "a confirmation run" in err and "Traceback" not in err, err


def test_a_run_killed_while_waiting_for_its_device_is_abandoned_and_resumable(tmp_path, monkeypatch, capsys):
    """kill -9 of a `hil run` that holds no job claim (it waits for a busy device): while its process
    lives the run is `running`; once it is gone, `abandoned` in report, results and gate, and the same
    command with --resume measures it."""
    lab = _lab(tmp_path, monkeypatch)
    held = DeviceLock(Device(id="dut", profile="localhost", transport={"type": "local"}), run_id="held-by-the-test")
    assert held.acquire(wait=False)
    proc = popen_hil("run", "net.tflite", *FAST, cwd=tmp_path, env=lab["env"])
    try:
        read_until(proc, "is in use by")
        running = cli(capsys, "report", "-o", "r.md")[1]
        assert "(running)" in running and "abandoned" not in running
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        held.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = running.split("- run: `")[1].split("`")[0]
    report = cli(capsys, "report", "-o", "r.md")[1]
    assert f"- run: `{run}` (abandoned)" in report
    assert "- abandoned: the hilbench session measuring it is gone" in report
    code, _, err = cli(capsys, "results", "--latest")
    assert code == 0 and f"note: run {run} was abandoned: " in err and "--resume" in err
    code, out, _ = cli(capsys, "gate", "--no-confirm")
    assert code == 2, out
    who = f"pid {proc.pid} on {platform.node()}"
    assert f"> warning: run {run} was abandoned: the hilbench session measuring it ({who}) is gone" in out
    assert "has no result (run status: abandoned)" in out
    p = hil("run", "net.tflite", *FAST, "--resume", check=True)
    assert f"resuming run {run}: 0 of 3 jobs already measured" in p.stderr
    assert f"- run: `{run}` (complete)" in cli(capsys, "report", "-o", "r.md")[1]


def test_a_run_whose_job_claim_belongs_to_a_killed_process_is_abandoned(store_db):
    """A run recorded without its session (as a hilbench before schema 5 did) is told by its job
    claims: alive while the claiming process lives, abandoned once it is gone."""
    store = ResultStore(store_db)
    run = store.start_run(["j1", "j2"], "h", [], "0", "host", None)
    assert store.run_row(run)["status"] == "running"  # nothing to tell it from a live one
    code = (
        "import sys; from harness.store.results import ClaimOwner, ResultStore; "
        f"s = ResultStore({str(store_db)!r}); assert s.claim_job({run!r}, 'j1', ClaimOwner.this_process()) is None; "
        "print('claimed', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        assert store.run_row(run)["status"] == "running" and store.abandoned_runs([run]) == {}
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert store.run_row(run)["status"] == "abandoned"
    assert store.abandoned_runs([run]) == {run: f"pid {child.pid} on {platform.node()}"}
    # a live session keeps its run `running` whatever became of the other's claim
    me = ClaimOwner.this_process()
    store.reopen_run(run, me)
    assert store.run_row(run)["status"] == "running"
    assert store.finish_run(run, "interrupted", planned=["j1", "j2"], owner=me) == "interrupted"
    assert store.run_row(run)["status"] == "interrupted" and store.abandoned_runs([run]) == {}
    store.close()


def test_a_schema_4_database_keeps_confirmation_and_calibration_runs_out_of_latest(store_db, tmp_path):
    """Before schema 5 a run's kind was only in its label: read-only opens infer it, the migration
    writes it into `runs.kind`, and `hil db migrate` carries it over; a user's own
    `--label calibration` stays a measurement."""
    store = ResultStore(store_db)
    nightly = add_run(store, [{"samples": [100.0] * 20}], label="nightly")
    kinds = {nightly: "measure"}
    for argv, label, kind, plan in (
        (["calibrate", "--device", "d"], "calibration", "calibrate", "p"),
        (["gate", "--confirm", nightly], f"confirm:{nightly}", "confirm", "confirm"),
        (["run", "m.tflite", "--label", "calibration"], "calibration", "measure", "p"),
        (["gate", "--confirm", nightly], f"confirm:{nightly}", "confirm", "confirm"),
    ):
        run = store.start_run(["k"], plan, argv, "0", "host", None, label, kind=kind)
        store.finish_run(run, "complete")
        kinds[run] = kind
    users = [r for r, k in kinds.items() if k == "measure"]
    store.close()
    engine = direct(store_db)  # as hilbench left it before schema 5
    with engine.begin() as db:
        db.execute(sa.text("ALTER TABLE runs DROP COLUMN kind"))
        db.execute(sa.text("DROP TABLE run_sessions"))
        db.execute(sa.text("UPDATE meta SET value='4' WHERE key='schema_version'"))
    engine.dispose()
    old = ResultStore(store_db, read_only=True)
    assert old.schema_version == 4 and old.latest_run_id() == users[-1]
    assert dict(zip(old.runs().run_id, old.runs().kind)) == kinds
    copy = ResultStore(tmp_path / "copy.sqlite")
    copy_history(old, copy)
    assert dict(zip(copy.runs().run_id, copy.runs().kind)) == kinds
    copy.close()
    old.close()
    migrated = ResultStore(store_db)
    assert migrated.schema_version == 6 and migrated.latest_run_id() == users[-1]
    assert dict(zip(migrated.runs().run_id, migrated.runs().kind)) == kinds
    migrated.close()


def test_confirmation_runs_are_never_a_reference_a_history_or_an_artifacts_figures(tmp_path):
    """A confirmation run holds the reference's and the candidate's processes under one key, and it is
    recorded after the run it confirms: no baseline, history or measured artifact may take it up, even
    with a verdict it got from an accidental gate."""
    store = ResultStore(tmp_path / "r.sqlite")
    art = "a" * 64
    night = add_run(store, [{"samples": [100.0] * 50, "artifact": art}])
    key = bl.key_of("m", "fp32", "local")
    conf = store.start_run([f"confirm:{key}"], "confirm", [], "0", "host", None, f"confirm:{night}", kind="confirm")
    for role in ("reference", "candidate"):
        rec = ResultRecord(conf, f"confirm-{role}-0", "m", "0" * 64, "fp32", "local", "localhost", "ok")
        rec.artifact_sha256 = art
        store.record(rec, [(P50, 999.0, "us")], {})
    store.finish_run(conf)
    verdicts.replace_verdicts(store, conf, [{"key": key, "verdict": "pass", "model": "m", "variant": "fp32"}])
    later = add_run(store, [{"samples": [100.0] * 50}])
    rolling = bl.select(store, bl.BaselineSpec.parse("rolling:5"), "m", "fp32", "local", "localhost", later)
    assert rolling is not None and rolling.run_ids == [night]
    assert bl.select(store, bl.BaselineSpec.parse("last-pass"), "m", "fp32", "local", "localhost", later) is None
    assert bl.last_passing(store).empty
    assert {r[0] for r in verdicts.metric_history(store, key, "m", "fp32", "local", float("inf"))} == {night, later}
    assert set(store.measured_artifact(art).run_id) == {night}
    store.close()
