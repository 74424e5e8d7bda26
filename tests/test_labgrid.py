"""`hil run` through labgrid places, against a real coordinator and exporter on loopback
(tests/labgrid_lab.py) in front of `hil mcu-sim`: results name the place, and the place is always
given back, after a run, after a timeout and after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import test_serial_device
from conftest import hil
from labgrid_lab import start_lab
from test_serial_device import RUN_FAST, check_ok_row, raw_docs, results, simulator

mcu_model = test_serial_device.mcu_model  # the tiny int8 model, converted once per module

PLACE = "sim-h7"


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


@pytest.mark.labgrid
def test_ctrl_c_while_measuring_releases_the_place(workspace, mcu_model, lab):
    inventory(workspace, lab)
    args = [sys.executable, "-m", "harness", "run", mcu_model["keras"], "--variants", "int8"]
    args += ["--min-seconds", "30", "--min-runs", "5", "--warmup-seconds", "0"]
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
            os.killpg(proc.pid, signal.SIGINT)
            break
    seen += proc.stderr.readlines()
    proc.wait(timeout=120)
    assert proc.returncode == 130, "".join(seen)
    assert lab.holder(PLACE) is None, "".join(seen)


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
