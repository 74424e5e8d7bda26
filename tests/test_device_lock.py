"""One measurement per device at a time, across processes (harness/run/device_lock.py), and
`hil run --resume` sessions of one run that share its jobs instead of measuring them twice.

Processes are synchronised through the lock itself: the test holds a device's lock, reads the child's
"in use ... waiting" line (so the child has planned and is blocked), then releases it. No sleeps."""

from __future__ import annotations

import os
import platform
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import hil
from fixed_lab import FAST, make_lab, popen_hil, read_until

from harness.errors import InfraError
from harness.lab.config import Device
from harness.run.device_lock import DeviceLock, lock_names


def dev(ident: str, **transport) -> Device:
    return Device(id=ident, profile="localhost", transport=transport or {"type": "local"})


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    lab = make_lab(tmp_path)
    for k, v in lab["env"].items():
        monkeypatch.setenv(k, v)  # the test's own DeviceLock uses the same lock directory as the children
    monkeypatch.chdir(tmp_path)
    return lab


def ok_results(db) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT run_id, job_key FROM results WHERE status='ok' ORDER BY result_id").fetchall()


def test_devices_on_one_piece_of_hardware_share_a_lock(tmp_path):
    (tmp_path / "ttyACM0").touch()
    (tmp_path / "by-id").symlink_to(tmp_path / "ttyACM0")
    serial_a = dev("h7-a", type="serial", port=str(tmp_path / "ttyACM0"))
    serial_b = dev("h7-b", type="serial", port=str(tmp_path / "by-id"))  # the same board through a symlink
    assert lock_names(serial_a)[1] == lock_names(serial_b)[1] == f"hardware:serial:{tmp_path / 'ttyACM0'}"
    assert lock_names(dev("pi", type="ssh", host="pi.lan")) == ["device:pi", "hardware:ssh:pi.lan:22"]
    assert lock_names(dev("a"))[1] == lock_names(dev("b"))[1] == "hardware:host"

    locks = tmp_path / "locks"
    held = DeviceLock(serial_a, run_id="r1", directory=locks)
    assert held.acquire(wait=False)
    for other in (serial_a, serial_b):  # flock excludes a second descriptor, also in this process
        with pytest.raises(InfraError) as err:
            DeviceLock(other, directory=locks).acquire(wait=False)
        assert err.value.exit_code == 2
        who = f"in use by pid {os.getpid()} on {platform.node()}, run r1"
        assert f"device '{other.id}' is busy: {who}" in str(err.value)
    free = DeviceLock(dev("h7-c", type="serial", port=str(tmp_path / "ttyUSB1")), directory=locks)
    assert free.acquire(wait=False)  # another board is not blocked
    free.release()
    held.release()
    again = DeviceLock(serial_b, directory=locks)
    assert again.acquire(wait=False) and again.holder()["pid"] == os.getpid()
    again.release()


def test_a_crashed_holder_releases_the_lock(tmp_path):
    """flock belongs to the open descriptor: kill -9 of the holder frees the device, no pid file stays."""
    code = (
        "import sys; from pathlib import Path; from harness.lab.config import Device; "
        "from harness.run.device_lock import DeviceLock; "
        "d = Device(id='dut', profile='localhost', transport={'type': 'local'}); "
        f"DeviceLock(d, run_id='child-run', directory=Path({str(tmp_path)!r})).acquire(wait=False); "
        "print('locked', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        mine = DeviceLock(dev("dut"), directory=tmp_path)
        with pytest.raises(InfraError, match=f"in use by pid {child.pid} on .*, run child-run"):
            mine.acquire(wait=False)
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
        assert mine.acquire(wait=False)
        mine.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_second_run_waits_for_the_device_and_names_the_holder(lab):
    held = DeviceLock(dev(lab["device"]), run_id="held-by-the-test")
    assert held.acquire(wait=False)
    proc = popen_hil("run", "net.tflite", *FAST, "--repeats", "2", cwd=lab["dir"], env=lab["env"])
    try:
        lines = read_until(proc, "is in use by")
        assert f"device 'dut' is in use by pid {os.getpid()} on {platform.node()}, run held-by-the-test" in lines[-1]
        assert "waiting" in lines[-1] and "--no-wait" in lines[-1]
        assert ok_results(lab["db"]) == []  # it waits: nothing measured while the device is held
    finally:
        held.release()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "device 'dut' is free; measuring" in err
    assert len(ok_results(lab["db"])) == 2


def test_no_wait_fails_fast_with_one_line_and_writes_no_run(lab):
    held = DeviceLock(dev(lab["device"]), run_id="nightly-1")
    assert held.acquire(wait=False)
    try:
        for args in (
            ["run", "net.tflite", *FAST, "--no-wait"],
            ["calibrate", "--device", "dut", "net.tflite", "--runs", "2", *FAST, "--no-wait"],
        ):
            p = hil(*args)
            errors = [ln for ln in p.stderr.splitlines() if ln.startswith("hil: error:")]
            assert p.returncode == 2, p.stderr
            assert len(errors) == 1 and "Traceback" not in p.stderr
            assert errors[0].startswith(f"hil: error: device 'dut' is busy: in use by pid {os.getpid()}")
            assert "run nightly-1" in errors[0] and "--no-wait" in errors[0]
            with sqlite3.connect(lab["db"]) as c:
                assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    finally:
        held.release()


def test_devices_check_leaves_a_device_being_measured_alone(lab):
    held = DeviceLock(dev(lab["device"]), run_id="nightly-2")
    assert held.acquire(wait=False)
    try:
        busy = hil("devices", "check")
    finally:
        held.release()
    assert f"dut: SKIP (device 'dut' is busy: in use by pid {os.getpid()}" in busy.stdout, busy.stdout
    assert "run nightly-2" in busy.stdout
    free = hil("devices", "check")  # now it is checked (the fixed-clock double's probe is minimal: FAIL)
    assert "| dut | local | local |" in free.stdout and "SKIP" not in free.stdout, free.stdout + free.stderr
    assert DeviceLock(dev(lab["device"])).acquire(wait=False)  # and the check let go of it


def _failed_first_run(lab) -> str:
    """A run whose 4 jobs all failed (the runner could not start): the run a nightly resumes."""
    p = hil(
        "run", "net.tflite", *FAST, "--repeats", "4", env={"HILBENCH_FIXED_LATENCY": str(lab["dir"] / "missing.json")}
    )
    assert p.returncode == 2, p.stderr
    return p.stdout.strip().splitlines()[-1]


def _resume_concurrently(lab, lock_envs: list[dict]) -> tuple[str, list[subprocess.CompletedProcess]]:
    """Start one `hil run --resume` per entry of `lock_envs` while the test holds the device in each
    lock directory; once every child says it waits, release them all at once."""
    run_id = _failed_first_run(lab)
    dirs = {Path(e.get("HILBENCH_LOCK_DIR", lab["env"]["HILBENCH_LOCK_DIR"])) for e in lock_envs}
    held = [DeviceLock(dev(lab["device"]), run_id="test", directory=d) for d in dirs]
    for h in held:
        assert h.acquire(wait=False)
    procs = []
    try:
        for i, extra in enumerate(lock_envs):
            script = lab["dir"] / f"latency-{i}.json"  # the double's call counter is per script file
            script.write_text(lab["script"].read_text())
            env = {**lab["env"], **extra, "HILBENCH_FIXED_LATENCY": str(script)}
            procs.append(popen_hil("run", "net.tflite", *FAST, "--repeats", "4", "--resume", cwd=lab["dir"], env=env))
        for p in procs:  # both planned, found the run, and now wait for the device
            assert f"resuming run {run_id}: 0 of 4" in "".join(read_until(p, "is in use by"))
    finally:
        for h in held:
            h.release()
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return run_id, done


def _assert_each_job_measured_once(lab, run_id: str, done: list[subprocess.CompletedProcess]) -> None:
    for p in done:
        assert p.returncode == 0, p.stderr[-2000:]
        assert p.stdout.strip().splitlines()[-1] == run_id
    results = ok_results(lab["db"])
    assert {r for r, _ in results} == {run_id}
    assert sorted(Counter(k for _, k in results).values()) == [1, 1, 1, 1]  # 4 jobs, each exactly once
    measured = sum(p.stderr.count("done net/asis@dut") for p in done)
    skipped = sum(p.stderr.count("skipped net/asis@dut") for p in done)
    assert measured == 4 and skipped == 4  # what one session measured, the other skipped
    with sqlite3.connect(lab["db"]) as c:
        assert c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0] == "complete"
        assert c.execute("SELECT COUNT(*) FROM job_claims").fetchone()[0] == 0  # every claim ended
        assert c.execute("SELECT COUNT(*) FROM results WHERE run_id=?", (run_id,)).fetchone()[0] == 8  # 4 failed + 4


def test_concurrent_resumes_of_one_run_measure_each_job_once(lab):
    """The issue's case (7 results for 4 jobs): two `--resume` of one run, started together."""
    run_id, done = _resume_concurrently(lab, [{}, {}])
    _assert_each_job_measured_once(lab, run_id, done)
    assert sum("measured already by another session" in p.stderr for p in done) == 1


def test_concurrent_resumes_share_jobs_through_claims_even_without_a_shared_lock(lab, tmp_path):
    """Two lock directories (two users' caches): the device locks do not see each other, so both
    sessions measure at once; the claims in the database still give every job to exactly one."""
    run_id, done = _resume_concurrently(
        lab, [{"HILBENCH_LOCK_DIR": str(tmp_path / "locks-a")}, {"HILBENCH_LOCK_DIR": str(tmp_path / "locks-b")}]
    )
    _assert_each_job_measured_once(lab, run_id, done)
