"""A board behind a labgrid place that hangs: hilbench power-cycles it through the place's power port
and tries once more, against a real coordinator and exporter on loopback (tests/labgrid_lab.py) in
front of `hil mcu-sim`, and in front of the test sshd as a Linux board.

The power switch is the one fake part (no relay exists here): a loopback HTTP server speaking the
protocol of labgrid's `rest`/`simplerest` power backends, which labgrid's NetworkPowerDriver in the
hil process calls; switching off and on sends the simulator SIGUSR1/SIGUSR2 (`--power-signals`), which
cut and restore its supply. The Linux board's link is a loopback forwarder in front of the test sshd
(`labgrid_lab.BoardLink`) that the switch hangs, cuts and restores.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_serial_device
import test_ssh
from conftest import hil
from labgrid_lab import BoardLink, PowerSwitch, ssh_options, start_lab
from test_serial_device import RUN_FAST, check_ok_row, raw_docs, results, simulator_process

mcu_model = test_serial_device.mcu_model  # the tiny int8 model, converted once per module
converted = test_ssh.converted  # tiny fp32 in an artifact cache, for the Linux board
dev_python = test_ssh.dev_python  # the device venv the Linux board runs the runner with

PLACE = "sim-h7"
INDEX = 3


@contextmanager
def powered_lab(tmp_path_factory, model: str, *sim_args: str, power_model: str = "rest"):
    """Coordinator + exporter (serial port and power port) + place, for a simulator run with `sim_args`."""
    d = tmp_path_factory.mktemp("labgrid")
    with simulator_process(model, "--power-signals", *sim_args) as (pty, _, proc):

        def switched(index: int, on: bool) -> None:
            assert index == INDEX
            os.kill(proc.pid, signal.SIGUSR2 if on else signal.SIGUSR1)

        switch = PowerSwitch(switched)
        lab = start_lab(d)
        try:
            power = power_port(switch, power_model)
            match = lab.export_serial("bench1", pty, power=power)
            lab.place(PLACE, match, match.replace("NetworkSerialPort", power.get("cls", "NetworkPowerPort")))
            yield lab, switch
        finally:
            lab.stop()
            switch.stop()


def power_port(switch: PowerSwitch, model: str) -> dict:
    """The exporter's parameters of a power port on `switch`: a NetworkPowerPort of that labgrid
    model, or for `pdudaemon` a PDUDaemonPort (pdudaemon's host:port, the PDU's name, the port)."""
    if model == "pdudaemon":
        return {"cls": "PDUDaemonPort", "host": switch.host(model), "pdu": switch.PDU, "index": INDEX}
    return {"model": model, "host": switch.host(model), "index": INDEX}


def inventory(workspace: Path, lab, **transport) -> None:
    t = {
        "type": "labgrid",
        "place": PLACE,
        "coordinator": lab.address,
        "power_off_seconds": 0.2,
        # a hang is noticed after infer_timeout plus the resync attempts of `timeout` each
        "serial": {"timeout": 0.5, "infer_timeout": 1.0, "accuracy_samples": 20},
        **transport,
    }
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: h7\n    profile: stm32h7\n    transport: " + json.dumps(t) + "\n"
    )


@pytest.mark.labgrid
@pytest.mark.parametrize("power_model", ["rest", "simplerest", "pdudaemon"])
def test_hung_board_is_power_cycled_and_measured_again(workspace, mcu_model, tmp_path_factory, power_model):
    sim = ("--fault", "stall-after:infer")  # the first infer hangs, until the board is reset
    with powered_lab(tmp_path_factory, mcu_model["int8"], *sim, power_model=power_model) as (lab, switch):
        inventory(workspace, lab)
        p = hil("run", mcu_model["keras"], "--variants", "int8", *RUN_FAST, env=mcu_model["env"])
        assert p.returncode == 0, p.stderr
        assert switch.switching() == ["off", "on"]  # through labgrid's driver, in its wire format
        if power_model == "rest":
            assert [(m, path, body) for m, path, body in switch.requests] == [
                ("PUT", f"/relay/{INDEX}/value", "0"),
                ("PUT", f"/relay/{INDEX}/value", "1"),
            ]
        if power_model == "pdudaemon":  # off and on, not pdudaemon's reboot: the off time is ours
            assert [path for _, path, _ in switch.requests] == [
                f"/power/control/{cmd}?hostname={switch.PDU}&port={INDEX}" for cmd in ("off", "on")
            ]
        assert lab.holder(PLACE) is None
    run_id = p.stdout.strip().splitlines()[-1]
    store, wide = results(workspace, run_id)
    assert len(wide) == 1
    check_ok_row(store, wide.iloc[0])
    assert wide.iloc[0]["power_cycles"] == 1
    doc = raw_docs(workspace, run_id)[0]
    cycled = doc["labgrid"]["power_cycled"]
    assert cycled["stage"] == "measuring" and cycled["off_seconds"] == 0.2
    if power_model == "pdudaemon":
        port = f"PDUDaemonPort 'PDUDaemonPort' (pdudaemon {switch.host(power_model)} pdu {switch.PDU} index {INDEX})"
    else:
        port = f"NetworkPowerPort 'NetworkPowerPort' ({power_model} {switch.host(power_model)} index {INDEX})"
    assert cycled["switch"] == port
    assert "no m-ready within 1.0 s after 'infer" in cycled["reason"]
    assert "the board hung (device 'h7': no m-ready" in p.stderr
    assert f"power-cycling it through {port}" in p.stderr
    shown = hil("results", "--run", run_id, env=mcu_model["env"], check=True).stdout
    header, row = shown.splitlines()[:2]
    assert header.split()[-1] == "power_cycles" and row.split()[-1] == "1", shown


@pytest.mark.labgrid
def test_board_that_hangs_again_after_the_cycle_fails_naming_device_and_place(workspace, mcu_model, tmp_path_factory):
    # Two models on one board; the firmware reports a stock-style model ID, so the host runs both (as in
    # test_reboot_mid_infer_fails_that_job_only). Job a takes infers 1-7 (first inference, probe, five
    # windows); from the 8th infer on, every infer hangs, also after a power cycle.
    data = Path(mcu_model["int8"]).read_bytes()
    for name, pad in (("a", b""), ("b", b"pad1pad1")):
        (workspace / f"{name}.tflite").write_bytes(data + pad)
    sim = ("--model-id", "ic01", "--fault", "stall-from-infer:8")
    with powered_lab(tmp_path_factory, mcu_model["int8"], *sim) as (lab, switch):
        inventory(workspace, lab)
        p = hil("run", "a.tflite", "b.tflite", "--min-seconds", "0", "--min-runs", "5", "--warmup-seconds", "0")
        assert switch.switching() == ["off", "on"]  # one power cycle, then the job fails
        assert lab.holder(PLACE) is None
    assert p.returncode == 2, p.stderr
    failure = (
        f"device 'h7' hung again after a power cycle through NetworkPowerPort 'NetworkPowerPort' "
        f"(rest {switch.host('rest')} index {INDEX}) of labgrid place '{PLACE}' on {lab.address}: "
        f"no m-ready within 1.0 s after 'infer"
    )
    lines = [line for line in p.stderr.splitlines() if failure in line]
    assert lines, p.stderr
    assert "Traceback" not in p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    store, wide = results(workspace, run_id)
    status = dict(zip(wide["model"], wide["status"]))
    assert status == {"a": "ok", "b": "infra_error"}  # the result measured before the hang is kept
    error = wide[wide["model"] == "b"].iloc[0]["error"]
    assert failure in error and "\n" not in error


SSH_PLACE = "pi-lab"


@contextmanager
def powered_linux_board(tmp_path_factory, sshd_server, **link):
    """Coordinator + exporter (NetworkService on a BoardLink in front of the test sshd, and a power
    port whose switching powers the link) + place."""
    board = BoardLink(sshd_server.port, **link)
    switch = PowerSwitch(lambda index, on: board.power(on))
    lab = start_lab(tmp_path_factory.mktemp("labgrid-ssh"))
    try:
        power = {"model": "rest", "host": switch.host("rest"), "index": INDEX}
        match = lab.export_service("pi1", board.port, sshd_server.user, power=power)
        lab.place(SSH_PLACE, match, match.replace("NetworkService", "NetworkPowerPort"))
        yield lab, switch, board
    finally:
        lab.stop()
        switch.stop()
        board.stop()


def linux_inventory(workspace: Path, lab, sshd_server, board, dev_python, **transport) -> list[str]:
    """A labgrid device for the Linux board (host key known for the link's address); returns the
    arguments of a fast `hil run`."""
    known = workspace / "known_hosts"
    known.write_text(sshd_server.known_hosts_line().replace(f":{sshd_server.port} ", f":{board.port} "))
    (workspace / "device_profiles" / "sshbox.yaml").write_text(json.dumps(test_ssh.PROFILE))
    t = {
        "type": "labgrid",
        "place": SSH_PLACE,
        "coordinator": lab.address,
        "power_off_seconds": 0.2,
        # a hung board shows no SSH banner within connect_timeout
        "ssh": ssh_options(sshd_server, known, dev_python, workspace / "dev", connect_timeout=1, retries=0),
        **transport,
    }
    device = {"id": "pi-lab", "profile": "sshbox", "transport": t}
    (workspace / "inventory.yaml").write_text("devices:\n  - " + json.dumps(device) + "\n")
    return ["--variants", "fp32", *test_ssh.FAST]


@pytest.mark.labgrid
@pytest.mark.sshd
def test_hung_linux_board_is_power_cycled_waited_for_and_measured(
    workspace, tiny_model, converted, dev_python, sshd_server, tmp_path_factory
):
    """A Linux board that shows no SSH banner: power-cycled through the place's power port, its sshd
    waited for while it refuses connections after power-on, then measured; the result says so."""
    with powered_linux_board(tmp_path_factory, sshd_server, state="hung", boot_refusals=2) as (lab, switch, board):
        fast = linux_inventory(workspace, lab, sshd_server, board, dev_python)
        p = hil("run", str(tiny_model["path"]), *fast, env={"HILBENCH_CACHE": str(converted)})
        assert p.returncode == 0, p.stderr
        assert switch.switching() == ["off", "on"]
        assert board.refused >= 2  # it connected again while the board was booting, and waited
        assert lab.holder(SSH_PLACE) is None
    run_id = p.stdout.strip().splitlines()[-1]
    store, wide = results(workspace, run_id)
    assert list(wide["status"]) == ["ok"] and wide.iloc[0]["latency_p50_us"] > 0
    assert wide.iloc[0]["power_cycles"] == 1
    cycled = raw_docs(workspace, run_id)[0]["labgrid"]["power_cycled"]
    assert cycled["stage"] == "connecting" and cycled["switch"].startswith("NetworkPowerPort 'NetworkPowerPort' (rest ")
    assert f"127.0.0.1:{board.port}" in cycled["reason"]
    assert "power-cycling it through NetworkPowerPort" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.labgrid
@pytest.mark.sshd
def test_linux_board_that_hangs_again_after_the_cycle_fails_after_boot_timeout(
    workspace, tiny_model, converted, dev_python, sshd_server, tmp_path_factory
):
    link = {"state": "hung", "boot_refusals": 0, "hangs_after_boot": True}
    with powered_linux_board(tmp_path_factory, sshd_server, **link) as (lab, switch, board):
        fast = linux_inventory(workspace, lab, sshd_server, board, dev_python, boot_timeout=2)
        p = hil("run", str(tiny_model["path"]), *fast, env={"HILBENCH_CACHE": str(converted)})
        assert switch.switching() == ["off", "on"]  # one power cycle only
        assert lab.holder(SSH_PLACE) is None
    assert p.returncode == 2, p.stderr
    failure = (
        f"device 'pi-lab' hung again after a power cycle through NetworkPowerPort 'NetworkPowerPort' "
        f"(rest {switch.host('rest')} index {INDEX}) of labgrid place '{SSH_PLACE}' on {lab.address}: "
    )
    lines = [line for line in p.stderr.splitlines() if failure in line]
    assert lines and lines[0].endswith("(not up 2 s after power-on)"), p.stderr
    assert "Traceback" not in p.stderr
