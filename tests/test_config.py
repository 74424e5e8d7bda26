"""Inventory/profile validation: errors must name the file, the device/profile and the field."""

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.lab.config import load_inventory, load_profile

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    prof = tmp_path / "device_profiles"
    prof.mkdir(exist_ok=True)
    for p in (REPO / "device_profiles").glob("*.yaml"):
        (prof / p.name).write_text(p.read_text())
    inv = tmp_path / "inventory.yaml"
    inv.write_text(text)
    return inv


def test_shipped_inventory_and_profiles_load():
    inv = load_inventory(REPO / "inventory.yaml")
    assert [d.id for d in inv.devices] == ["local"]
    assert inv.devices[0].transport.type == "local"
    assert {"localhost", "raspberry-pi-4", "raspberry-pi-5", "stm32h7", "esp32-s3"} <= set(inv.profiles)
    assert inv.profiles["stm32h7"].runtime == "tflm" and inv.profiles["stm32h7"].mcu is not None


def test_serial_port_required_names_file_index_field_and_device(tmp_path):
    inv = write(
        tmp_path,
        "devices:\n  - {id: local, profile: localhost, transport: {type: local}}\n"
        "  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan}}\n"
        "  - {id: h7, profile: stm32h7, transport: {type: serial}}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_inventory(inv)
    msg = str(e.value)
    assert msg.startswith(f"{inv}: devices[2].transport.port: required for serial")
    assert "h7" in msg


def test_secret_in_inventory_is_refused(tmp_path):
    inv = write(
        tmp_path,
        "devices:\n  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan, password: hunter2}}\n",
    )
    with pytest.raises(ConfigError, match=r"devices\[0\]\.transport\.password: secrets must not live"):
        load_inventory(inv)


def test_unknown_profile_lists_known_ones(tmp_path):
    inv = write(tmp_path, "devices:\n  - {id: x, profile: raspberry-pi-9, transport: {type: local}}\n")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.profile: .*'raspberry-pi-9'.*raspberry-pi-4"):
        load_inventory(inv)


def test_malformed_yaml_reports_line(tmp_path):
    inv = write(tmp_path, "devices:\n  - id: x\n   profile: [\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml: line \d+ column \d+: malformed YAML"):
        load_inventory(inv)


def test_duplicate_ids_and_mcu_without_serial(tmp_path):
    inv = write(
        tmp_path,
        "devices:\n  - {id: a, profile: localhost, transport: {type: local}}\n"
        "  - {id: a, profile: localhost, transport: {type: local}}\n",
    )
    with pytest.raises(ConfigError, match=r"devices\[1\]\.id: duplicate"):
        load_inventory(inv)
    inv = write(tmp_path, "devices:\n  - {id: h7, profile: stm32h7, transport: {type: local}}\n")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.transport\.type: .*serial"):
        load_inventory(inv)


def test_profile_field_errors_name_profile_and_field(tmp_path):
    p = tmp_path / "board-x.yaml"
    p.write_text("arch: arm\ncores: 0\nram_mb: 10\nbudgets: {max_latency_p50_us: fast}\n")
    with pytest.raises(ConfigError) as e:
        load_profile(p)
    msg = str(e.value)
    assert "board-x.yaml: profile 'board-x'" in msg
    assert "cores:" in msg and "budgets.max_latency_p50_us:" in msg


def test_select_by_tag(tmp_path):
    inv = load_inventory(
        write(
            tmp_path,
            "devices:\n"
            "  - {id: a, profile: localhost, transport: {type: local}, tags: [x]}\n"
            "  - {id: b, profile: localhost, transport: {type: local}, tags: [y]}\n",
        )
    )
    assert [d.id for d in inv.select(tags=["y"])] == ["b"]
    with pytest.raises(ConfigError, match="no device 'zz'"):
        inv.select(ids=["zz"])
