"""`hil run` through labgrid places, against a real coordinator and exporters on loopback
(tests/labgrid_lab.py) in front of `hil mcu-sim` and of the test sshd: results name the place, the
place is always given back (after a run, a refused host key, a timeout and Ctrl-C), and two
controllers sharing one place and one PostgreSQL store take turns on the board."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import test_serial_device
import test_ssh
from conftest import hil
from labgrid_lab import ssh_options, start_lab
from test_serial_device import RUN_FAST, check_ok_row, raw_docs, results, simulator

mcu_model = test_serial_device.mcu_model  # the tiny int8 model, converted once per module
converted = test_ssh.converted  # tiny fp32 in an artifact cache, for the SSH board
dev_python = test_ssh.dev_python  # the device venv the SSH board runs the runner with

PLACE = "sim-h7"
SSH_PLACE = "pi-lab"


@pytest.fixture()
def lab(tmp_path_factory, mcu_model):
    """Coordinator + exporter + a place for a simulated STM32H7 running the tiny int8 model."""
    d = tmp_path_factory.mktemp("labgrid")
    with simulator(mcu_model["int8"]) as (pty, _):
        lab = start_lab(d)
        try:
            lab.place(PLACE, lab.export_serial("bench1", pty))
            yield lab
        finally:
            lab.stop()


def inventory(workspace: Path, lab, **transport) -> None:
    t = {
        "type": "labgrid",
        "place": PLACE,
        "coordinator": lab.address,
        "serial": {"timeout": 1.0, "infer_timeout": 5.0, "accuracy_samples": 20},
        **transport,
    }
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: h7\n    profile: stm32h7\n    transport: " + json.dumps(t) + "\n"
    )


@pytest.mark.labgrid
def test_run_through_a_place_stores_the_serial_result_and_names_the_place(workspace, mcu_model, lab):
    inventory(workspace, lab)
    p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=mcu_model["env"], check=True)
    run_id = p.stdout.strip().splitlines()[-1]
    store, wide = results(workspace, run_id)
    assert len(wide) == 1
    check_ok_row(store, wide.iloc[0])  # the same row as the board wired directly (transport serial)
    doc = raw_docs(workspace, run_id)[0]
    assert doc["labgrid"]["place"] == PLACE and doc["labgrid"]["coordinator"] == lab.address
    assert doc["labgrid"]["via"].startswith("NetworkSerialPort RawSerialPort rfc2217://127.0.0.1:")
    assert doc["host"]["port"].endswith("?ign_set_control")
    assert f"acquired labgrid place '{PLACE}'" in p.stderr and f"released labgrid place '{PLACE}'" in p.stderr
    assert lab.holder(PLACE) is None


@pytest.mark.labgrid
def test_place_held_by_someone_else_waits_then_fails_naming_the_holder(workspace, mcu_model, lab):
    lab.client("-p", PLACE, "acquire", user="otherhost/alice")
    inventory(workspace, lab, acquire_timeout=1.5)
    p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=mcu_model["env"])
    assert p.returncode == 2, p.stderr
    assert f"waiting for labgrid place '{PLACE}': acquired by otherhost/alice" in p.stderr
    assert (
        f"device 'h7': labgrid place '{PLACE}' on {lab.address} is still acquired by otherhost/alice "
        f"after waiting 1.5 s (transport.acquire_timeout)"
    ) in p.stderr
    assert "Traceback" not in p.stderr
    assert lab.holder(PLACE) == "otherhost/alice"  # never taken from its holder
    assert reservations(lab) == []  # it left the coordinator's queue when it gave up


def reservations(lab) -> list[dict]:
    """The coordinator's reservations as `labgrid-client reservations` shows them: owner, state."""
    found: list[dict] = []
    for line in lab.client("reservations").stdout.splitlines():
        if line.startswith("Reservation '"):
            found.append({"token": line.split("'")[1]})
        elif line.strip().startswith(("owner:", "state:")) and found:
            key, value = line.strip().split(":", 1)
            found[-1][key] = value.strip()
    return found


@pytest.mark.labgrid
def test_a_reservation_of_someone_else_is_waited_for_in_the_coordinators_queue(workspace, mcu_model, lab):
    """hilbench queues behind a reservation (labgrid's own, made by a person with `labgrid-client
    reserve`) instead of failing or polling for a free moment: its own reservation waits in the
    coordinator's queue, it measures once the other one is cancelled, and leaves no reservation."""
    alice = "otherhost/alice"
    line = lab.client("reserve", "--shell", f"name={PLACE}", user=alice).stdout.strip()
    token = line.removeprefix("export LG_TOKEN=")
    assert reservations(lab) == [{"token": token, "owner": alice, "state": "allocated"}]
    inventory(workspace, lab, acquire_timeout=300)
    args = [sys.executable, "-m", "harness", "run", mcu_model["keras"], "--variants", "int8", *RUN_FAST]
    out = open(workspace / "run.out", "w")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True, env={**os.environ, **mcu_model["env"]})
    out.close()
    lines: list[str] = []
    wait = f"waiting for labgrid place '{PLACE}': reserved for {alice}"
    try:
        assert _watch(proc, lines, wait).wait(timeout=300) and any(wait in x for x in lines), "".join(lines)
        queue = reservations(lab)
        assert [(r["owner"], r["state"]) for r in queue] == [(alice, "allocated"), (queue[1]["owner"], "waiting")]
        assert queue[1]["owner"] != alice and lab.holder(PLACE) is None  # queued, not holding
        lab.client("cancel-reservation", token, user=alice)
        assert proc.wait(timeout=600) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = (workspace / "run.out").read_text().strip().splitlines()[-1]
    store, wide = results(workspace, run_id)
    assert len(wide) == 1
    check_ok_row(store, wide.iloc[0])
    assert reservations(lab) == [] and lab.holder(PLACE) is None


@pytest.mark.labgrid
def test_a_place_the_coordinator_does_not_have_fails_at_once_naming_the_places_it_has(workspace, mcu_model, lab):
    """A reservation for a place that does not exist would wait forever: refused in one line instead."""
    inventory(workspace, lab, place="sim-h8")
    p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=mcu_model["env"])
    assert p.returncode == 2, p.stderr
    assert f"labgrid coordinator {lab.address} has no place 'sim-h8' (places: {PLACE})" in p.stderr
    assert "Traceback" not in p.stderr and reservations(lab) == []


def _check_row(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.startswith("| h7 ")][0]


@pytest.mark.labgrid
def test_devices_check_looks_at_the_place_and_with_acquire_probes_the_board_through_it(workspace, mcu_model, lab):
    """Without --acquire the check only asks the coordinator (it never waits for or takes a shared
    place); with it, the board is probed through the place as a directly wired board is, and the place
    goes back."""
    inventory(workspace, lab)
    lab.client("-p", PLACE, "acquire", user="otherhost/alice")
    p = hil("devices", "check")
    assert p.returncode == 0, p.stdout + p.stderr
    row = _check_row(p.stdout)
    assert "| labgrid |" in row and "held by otherhost/alice" in row and "| OK |" in row
    assert f"place '{PLACE}' is acquired by otherhost/alice: a run waits for it" in p.stdout
    assert "exports no power port" in p.stdout  # a hang would fail the job: said before the night
    assert lab.holder(PLACE) == "otherhost/alice"
    lab.client("-p", PLACE, "release", user="otherhost/alice")

    p = hil("devices", "check", "--acquire")
    assert p.returncode == 0, p.stdout + p.stderr
    row = _check_row(p.stdout)
    assert "| labgrid |" in row and "| OK |" in row and "sha256:" in row  # the firmware answered its probe
    assert "extensions: arena, dbbin" in p.stdout and f"through labgrid place '{PLACE}'" in p.stdout
    assert f"acquired labgrid place '{PLACE}'" in p.stderr and f"released labgrid place '{PLACE}'" in p.stderr
    assert lab.holder(PLACE) is None

    inventory(workspace, lab, place="sim-h8")
    p = hil("devices", "check")
    assert p.returncode == 2 and "| FAIL |" in _check_row(p.stdout)
    assert f"labgrid coordinator {lab.address} has no place 'sim-h8' (places: {PLACE})" in p.stdout

    inventory(workspace, lab)
    lab.stop_exporter("bench1")  # the exporter host went down: its port is gone from the place
    p = hil("devices", "check", "--acquire")
    assert p.returncode == 2 and "| FAIL |" in _check_row(p.stdout)
    assert f"labgrid place '{PLACE}' exports no NetworkSerialPort" in p.stdout
    assert "its matches bench1/board/NetworkSerialPort find: is that exporter running?" in p.stdout
    assert lab.holder(PLACE) is None  # a place that cannot serve the profile is not taken
    assert "Traceback" not in p.stderr


def _stop_while_measuring(workspace, mcu_model, lab, sig: int, min_seconds: str = "5") -> tuple[int, str]:
    """Start `hil run` through the place and send `sig` to it once it measures the board (in 5
    windows of `min_seconds` / 5 each: a killed run leaves the board finishing the window in flight).
    An interrupted run stops after the job in flight, here the board's whole measurement: seconds,
    not tens of seconds, while still far longer than the signal takes to arrive."""
    args = [sys.executable, "-m", "harness", "-v", "run", mcu_model["keras"], "--variants", "int8"]
    args += ["--min-seconds", min_seconds, "--min-runs", "5", "--warmup-seconds", "0"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **mcu_model["env"]},
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:  # event-driven: interrupt once the board is being measured
        seen.append(line)
        if "measuring " in line:
            assert lab.holder(PLACE) is not None
            os.killpg(proc.pid, sig)
            break
    seen += proc.stderr.readlines()
    proc.wait(timeout=120)
    return proc.returncode, "".join(seen)


@pytest.mark.labgrid
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_while_measuring_releases_the_place(workspace, mcu_model, lab, sig):
    """Ctrl-C, or SIGTERM as from a cancelled CI job (Python's default would die on the spot)."""
    inventory(workspace, lab)
    rc, err = _stop_while_measuring(workspace, mcu_model, lab, sig)
    assert rc == (130 if sig == signal.SIGINT else 143), err
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in err.splitlines()[-1]
    assert lab.holder(PLACE) is None, err
    assert f"released labgrid place '{PLACE}'" in err


@pytest.mark.labgrid
def test_a_place_left_acquired_by_a_killed_run_is_taken_back_by_the_next_but_a_persons_is_not(
    workspace, mcu_model, lab
):
    """kill -9 leaves the place acquired by this host/user (labgrid gives it to the identity, not the
    process). The next run, under the same identity, finds hilbench's claim naming a process that is
    gone and takes the place back; a place acquired by a person under the same identity (no claim)
    is refused with the hint to release it."""
    inventory(workspace, lab)
    me = {"LG_HOSTNAME": "ctl", "LG_USERNAME": "nightly"}
    env = {**mcu_model["env"], **me}
    os.environ.update(me)  # the killed run below inherits it
    try:
        rc, err = _stop_while_measuring(workspace, mcu_model, lab, signal.SIGKILL, min_seconds="5")
    finally:
        for k in me:
            os.environ.pop(k)
    assert rc == -signal.SIGKILL and lab.holder(PLACE) == "ctl/nightly", err  # nothing could release it
    # the board may still be busy with the killed run's window (~1 s; an MCU answers nothing meanwhile):
    # the next run's first command waits longer than that, as a lab's serial timeout would
    inventory(workspace, lab, serial={"timeout": 3.0, "infer_timeout": 5.0, "accuracy_samples": 20})
    p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=env)
    assert p.returncode == 0, p.stderr
    assert f"released labgrid place '{PLACE}', left acquired by hilbench pid " in p.stderr
    assert lab.holder(PLACE) is None
    # the same identity acquiring by hand is a person: never taken
    lab.client("-p", PLACE, "acquire", user="ctl/nightly")
    p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=env)
    assert p.returncode == 2
    assert "is already acquired by this host and user (ctl/nightly), not by this hilbench process" in p.stderr
    assert lab.holder(PLACE) == "ctl/nightly"


@pytest.mark.parametrize("env", [None, "127.0.0.1:1"])
def test_coordinator_comes_from_the_inventory_or_lg_coordinator(tmp_path, monkeypatch, env):
    """Checked when the inventory is loaded, so that the lock, the link and the provenance agree."""
    from harness.errors import ConfigError
    from harness.lab.config import link_type, load_inventory

    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    if env:
        monkeypatch.setenv("LG_COORDINATOR", env)
    path = tmp_path / "inventory.yaml"
    path.write_text("devices:\n  - id: h7\n    profile: stm32h7\n    transport: {type: labgrid, place: p1}\n")
    if env is None:
        with pytest.raises(ConfigError) as err:
            load_inventory(path)
        assert str(err.value) == (
            f"{path}: devices[0].transport.coordinator: device 'h7' (labgrid place 'p1') names no coordinator: "
            "set transport.coordinator: HOST:PORT or the environment variable LG_COORDINATOR"
        )
        return
    inv = load_inventory(path)
    dev = inv.device("h7")
    assert dev.transport.coordinator == env and link_type(dev, inv.profile_of(dev)) == "serial"


def test_devices_check_of_a_place_it_cannot_ask_about_fails_in_one_line(workspace):
    """Runs in both venvs: without labgrid the line says how to install it; with it, that the
    coordinator does not answer (a free loopback port: nothing listens)."""
    from labgrid_lab import free_port

    address = f"127.0.0.1:{free_port()}"
    t = {"type": "labgrid", "place": PLACE, "coordinator": address}
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: h7\n    profile: stm32h7\n    transport: " + json.dumps(t) + "\n"
    )
    p = hil("devices", "check")
    assert p.returncode == 2 and "| h7 | labgrid | no |" in p.stdout and "| FAIL |" in p.stdout
    [line] = [x for x in p.stdout.splitlines() if x.startswith("h7: FAIL: ")]
    if importlib.util.find_spec("labgrid") is not None:
        assert f"labgrid coordinator {address}: cannot connect" in line
    else:
        assert line.endswith("install it with pip install 'hilbench[labgrid]'")
    assert "Traceback" not in p.stderr and "ERROR:root:" not in p.stderr  # labgrid's own report of it: once is enough


@pytest.fixture()
def ssh_lab(tmp_path_factory, sshd_server):
    """Coordinator + an exporter publishing the test sshd as a NetworkService + a place for it."""
    lab = start_lab(tmp_path_factory.mktemp("labgrid-ssh"))
    try:
        lab.place(SSH_PLACE, lab.export_service("pi1", sshd_server.port, sshd_server.user))
        yield lab
    finally:
        lab.stop()


@pytest.mark.labgrid
@pytest.mark.sshd
def test_ssh_board_behind_a_place_verifies_its_host_key_and_stores_the_rows_of_a_direct_ssh_device(
    workspace, tiny_model, converted, dev_python, sshd_server, ssh_lab
):
    """The same sshd as a plain `ssh` device and behind a labgrid place: the place only says where the
    board is, so the host key is checked against the same known_hosts entry and the rows agree."""
    known = workspace / "known_hosts"
    via_place = {
        "id": "pi-lab",
        "profile": "sshbox",
        "transport": {
            "type": "labgrid",
            "place": SSH_PLACE,
            "coordinator": ssh_lab.address,
            "ssh": ssh_options(sshd_server, known, dev_python, workspace / "dev-lab"),
        },
    }
    test_ssh.write_lab(
        workspace, sshd_server, dev_python, workdir=workspace / "dev", known_hosts=known, extra=[via_place]
    )
    env = {"HILBENCH_CACHE": str(converted), "LG_HOSTNAME": "ctl", "LG_USERNAME": "nightly"}
    run = ["run", str(tiny_model["path"]), "--variants", "fp32", *test_ssh.FAST]

    # an unknown host key is refused exactly as for the ssh device, and the place goes back
    p = hil(*run, "--devices", "pi-lab", env=env)
    assert p.returncode == 2, p.stderr
    assert f"device 'pi-lab': host key of 127.0.0.1:{sshd_server.port} is not known" in p.stderr
    assert sshd_server.fingerprint() in p.stderr and "hil devices trust pi-lab" in p.stderr
    assert "Traceback" not in p.stderr
    assert not known.exists() and not (workspace / "dev-lab").exists()  # nothing trusted, nothing sent
    assert f"released labgrid place '{SSH_PLACE}'" in p.stderr and ssh_lab.holder(SSH_PLACE) is None

    # trusting it holds the place just for the key exchange, and writes the entry a direct ssh device uses
    fp = sshd_server.fingerprint()
    t = hil("devices", "trust", "pi-lab", "--expect", fp, env=env)
    assert t.returncode == 0, t.stderr
    assert f"pi-lab: trusted [127.0.0.1]:{sshd_server.port} ssh-ed25519 {fp} (added to {known})" in t.stdout
    assert known.read_text() == sshd_server.known_hosts_line() and ssh_lab.holder(SSH_PLACE) is None
    p = hil(*run, env=env)
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    from harness.store.results import ResultStore

    store = ResultStore(workspace / "reports" / "results.sqlite")
    wide = store.wide(run_id).set_index("device_id")
    assert sorted(wide.index) == ["pi", "pi-lab"]
    direct, placed = wide.loc["pi"], wide.loc["pi-lab"]
    filled = {d: {k for k, v in wide.loc[d].items() if not pd.isna(v)} for d in ("pi", "pi-lab")}
    assert filled["pi"] == filled["pi-lab"]
    for column in (
        "status",
        "transport",
        "runtime",
        "runtime_version",
        "profile",
        "model",
        "variant",
        "artifact_sha256",
    ):
        assert direct[column] == placed[column], column
    assert placed["status"] == "ok" and placed["transport"] == "ssh" and placed["latency_count"] >= 5
    long = store.dataframe(run_id)
    assert set(long[long["device_id"] == "pi"]["metric"]) == set(long[long["device_id"] == "pi-lab"]["metric"])
    doc_direct, doc_placed = (store.raw(int(wide.loc[d, "result_id"])) for d in ("pi", "pi-lab"))
    assert set(doc_placed) - set(doc_direct) == {"labgrid"}
    lg = doc_placed["labgrid"]
    assert {k: lg[k] for k in ("place", "coordinator", "identity", "via")} == {
        "place": SSH_PLACE,
        "coordinator": ssh_lab.address,
        "identity": "ctl/nightly",
        "via": f"NetworkService NetworkService {sshd_server.user}@127.0.0.1:{sshd_server.port}",
    }
    assert lg["acquired_at"] <= wide.loc["pi-lab", "timestamp"].timestamp()  # acquired, then measured
    assert f"acquired labgrid place '{SSH_PLACE}'" in p.stderr and f"released labgrid place '{SSH_PLACE}'" in p.stderr
    assert ssh_lab.holder(SSH_PLACE) is None
    assert known.read_text() == sshd_server.known_hosts_line()  # verified, never rewritten


def _watch(proc: subprocess.Popen, lines: list, needle: str) -> threading.Event:
    """Collect a process's stderr (so its pipe never fills); signal when `needle` appears or the
    process closed its stderr (exited) without it."""
    seen = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                seen.set()
        seen.set()

    threading.Thread(target=drain, daemon=True).start()
    return seen


@pytest.mark.labgrid
@pytest.mark.postgres
def test_two_controllers_share_one_place_and_one_postgresql_store_taking_turns_on_the_board(
    workspace, mcu_model, lab, postgres_server
):
    """Two controllers (two `hil run` processes with their own labgrid identity and their own
    device-lock directory, as on two hosts) queue for one place and write one PostgreSQL store. Both
    queue behind a third holder first, so they really contend once it lets go: one measures, the other
    waits for it, both finish, and the coordinator's acquisition times against the stored results show
    they were never on the board at the same time."""
    db = postgres_server.createdb()
    inventory(workspace, lab, acquire_timeout=300)
    lab.client("-p", PLACE, "acquire", user="gatehost/alice")
    hosts = ("ctl-a", "ctl-b")
    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, list] = {h: [] for h in hosts}
    queued: dict[str, threading.Event] = {}
    gate = f"waiting for labgrid place '{PLACE}': acquired by gatehost/alice"
    args = [sys.executable, "-m", "harness", "--db", db, "run", mcu_model["keras"], "--variants", "int8", *RUN_FAST]
    try:
        for host in hosts:
            env = {
                **os.environ,
                **mcu_model["env"],
                "LG_HOSTNAME": host,
                "LG_USERNAME": "ci",
                "HILBENCH_LOCK_DIR": str(workspace / f"locks-{host}"),  # two hosts: two device locks
            }
            out = open(workspace / f"{host}.out", "w")
            procs[host] = subprocess.Popen(
                [*args, "--repeats", "3"], stdout=out, stderr=subprocess.PIPE, text=True, env=env
            )
            out.close()
            queued[host] = _watch(procs[host], logs[host], gate)
        for host in hosts:  # event-driven: both are polling the coordinator for the place
            assert queued[host].wait(timeout=300) and any(gate in line for line in logs[host]), "".join(logs[host])
        lab.client("-p", PLACE, "release", user="gatehost/alice")
        for host in hosts:
            procs[host].wait(timeout=600)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for host in hosts:
        assert procs[host].returncode == 0, "".join(logs[host])
    assert lab.holder(PLACE) is None

    import sqlalchemy as sa
    from postgres import direct

    from harness.store.results import ResultStore

    store = ResultStore(db)
    runs = store.runs()
    assert len(runs) == 2 and set(runs["status"]) == {"complete"}
    run_of = {h: (workspace / f"{h}.out").read_text().strip().splitlines()[-1] for h in hosts}
    engine = direct(db)
    with engine.connect() as conn:  # the rows as stored, not a view that folds duplicates
        stored = conn.execute(sa.text("SELECT run_id, job_key, timestamp FROM results")).all()
    engine.dispose()
    acquired, stamps = {}, {}
    for host in hosts:
        plan = json.loads(store.run_row(run_of[host])["plan"])
        mine = [row for row in stored if row.run_id == run_of[host]]
        assert sorted(row.job_key for row in mine) == sorted(plan) and len(plan) == 3  # each job exactly once
        wide = store.wide(run_of[host])
        for _, row in wide.iterrows():
            check_ok_row(store, row)
        docs = [store.raw(int(r)) for r in wide["result_id"]]
        assert {d["labgrid"]["identity"] for d in docs} == {f"{host}/ci"}
        (acquired[host],) = {d["labgrid"]["acquired_at"] for d in docs}  # one acquisition per run
        stamps[host] = sorted(row.timestamp for row in mine)
        assert acquired[host] <= stamps[host][0]
    assert len(stored) == 6
    first, second = sorted(hosts, key=lambda h: acquired[h])
    # the second got the board only after the first's last result was stored: never both at once
    assert stamps[first][-1] < acquired[second], (stamps, acquired)
    waited = f"waiting for labgrid place '{PLACE}': acquired by {first}/ci"
    assert any(waited in line for line in logs[second]), "".join(logs[second])  # it waited, and said for whom
    assert not any(waited.replace(first, second) in line for line in logs[first])


@pytest.mark.labgrid
def test_devices_import_writes_entries_for_tagged_places_and_keeps_existing_ones(workspace, lab):
    """Against the real coordinator: places selected by tag, profile from the place's tag, appended to
    the inventory as text (its comments kept), an id already there left alone and said so."""
    lab.client("-p", PLACE, "set-tags", "hilbench-profile=stm32h7", "hilbench-tags=nightly,mcu", "lab=here")
    match = "bench1/board/NetworkSerialPort"
    lab.place("untagged", match, tags={"lab": "here"})  # no profile tag: skipped, saying how to tag it
    lab.place("elsewhere", match, tags={"lab": "there", "hilbench-profile": "stm32h7"})  # not selected
    lab.place("local", match, tags={"lab": "here", "hilbench-profile": "stm32h7"})  # id the inventory has
    before = (workspace / "inventory.yaml").read_text()

    env = {"LG_COORDINATOR": lab.address}
    printed = hil("devices", "import", "--labgrid", "--match", "lab=here", env=env)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == (
        "devices:\n"
        f"  - id: {PLACE}\n    profile: stm32h7\n"
        f"    transport:\n      type: labgrid\n      place: {PLACE}\n      coordinator: {lab.address}\n"
        "    tags:\n    - nightly\n    - mcu\n"
    )
    assert (workspace / "inventory.yaml").read_text() == before  # printing writes nothing
    skipped = "place 'untagged': skipped: no tag hilbench-profile (set it with `labgrid-client -p untagged"
    assert skipped in printed.stderr
    assert "place 'local': skipped: inventory.yaml already has a device 'local'" in printed.stderr
    assert "elsewhere" not in printed.stderr

    p = hil("devices", "import", "--labgrid", "--coordinator", lab.address, "--match", "lab=h*", "-o", "inventory.yaml")
    assert p.returncode == 0, p.stderr
    after = (workspace / "inventory.yaml").read_text()
    assert after.startswith(before) and after[len(before) :] == printed.stdout[len("devices:\n") :]
    assert f"inventory.yaml: added 1 device(s): {PLACE}" in p.stderr
    listed = hil("devices", "list", check=True).stdout
    assert f"place {PLACE} @ {lab.address}" in listed

    again = hil("devices", "import", "--labgrid", "--match", "lab=here", "-o", "inventory.yaml", env=env)
    assert again.returncode == 0 and (workspace / "inventory.yaml").read_text() == after  # nothing twice
    assert f"place '{PLACE}': skipped: inventory.yaml already has it as device '{PLACE}' (left as is)" in again.stderr

    none = hil("devices", "import", "--labgrid", "--coordinator", "127.0.0.1:1", "-o", "inventory.yaml")
    assert none.returncode == 2 and "labgrid coordinator 127.0.0.1:1" in none.stderr
    assert "Traceback" not in none.stderr and (workspace / "inventory.yaml").read_text() == after


@pytest.mark.parametrize(
    "text",
    [
        "devices:\n  - id: a\n    profile: localhost\n    transport: {type: local}\n# a comment\n",
        "# lab\ndevices:\n- id: a\n  profile: localhost\n  transport: {type: local}",  # indentless, no newline
        "devices:\n    -   id: a\n        profile: localhost\n        transport: {type: local}\n",
        "devices: [{id: a, profile: localhost, transport: {type: local}}]\n",
    ],
)
def test_import_appends_to_the_inventory_as_it_is_written(tmp_path, text):
    """Whatever the indentation of the lab's list, the appended entries join it, and the text before
    them is untouched; a flow-style list is refused in one line rather than rewritten."""
    import yaml

    from harness.errors import ConfigError
    from harness.lab.labgrid_import import append_to

    new = [{"id": "b", "profile": "stm32h7", "transport": {"type": "labgrid", "place": "b", "coordinator": "h:1"}}]
    path = tmp_path / "inventory.yaml"
    if text.startswith("devices: ["):
        with pytest.raises(ConfigError) as err:
            append_to(text, new, path)
        assert str(err.value).startswith(f"{path}: devices: is not a block list of `- id: ...` entries")
        return
    merged = append_to(text, new, path)
    assert merged.startswith(text)
    assert [d["id"] for d in yaml.safe_load(merged)["devices"]] == ["a", "b"]
    assert yaml.safe_load(merged)["devices"][1] == new[0]
