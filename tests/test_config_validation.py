"""Lab files say one thing or are refused: duplicate and non-text keys, unknown top-level keys, secrets
(never echoed), unreadable files, impossible profile values, `.yml` profiles, the README's nightly job
against the shipped inventory. Every refusal is one line naming the file (and line / field), exit 3."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser, main
from harness.errors import ConfigError
from harness.lab.config import DEFAULT_INVENTORY, load_default_inventory, load_inventory, load_profile, load_profiles

REPO = Path(__file__).resolve().parents[1]
SECRET = "hunter2"
LOCAL = "  - {id: local, profile: localhost, transport: {type: local}}\n"


@pytest.fixture()
def lab(tmp_path: Path) -> Path:
    """A lab directory with a copy of the shipped profiles; tests write inventory.yaml."""
    (tmp_path / "device_profiles").mkdir()
    for p in (REPO / "device_profiles").glob("*.yaml"):
        (tmp_path / "device_profiles" / p.name).write_text(p.read_text())
    return tmp_path


def inventory(lab: Path, text: str | bytes) -> Path:
    path = lab / "inventory.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_inventory(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI in-process: exit code, stdout, stderr (a traceback would raise here)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ duplicate and non-text keys


@pytest.mark.parametrize(
    "text, line, key, where",
    [
        # the case: the second transport silently turned an SSH board into the host itself
        (
            "devices:\n  - id: pi\n    profile: raspberry-pi-4\n    transport: {type: ssh, host: pi.lan}\n"
            "    transport: {type: local}\n",
            5,
            "transport",
            "devices[0]",
        ),
        ("devices:\n" + LOCAL + "devices:\n" + LOCAL, 3, "devices", "the top level"),
        (
            "devices:\n  - id: pi\n    profile: raspberry-pi-4\n    transport:\n      type: ssh\n"
            "      host: a.lan\n      host: b.lan\n",
            7,
            "host",
            "devices[0].transport",
        ),
        (
            "devices:\n  - {id: a, profile: localhost, transport: {type: local}, tags: [x], tags: [y]}\n",
            2,
            "tags",
            "devices[0]",
        ),
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(lab, text, line, key, where):
    msg = refused(inventory(lab, text))
    assert re.search(rf"inventory.yaml: line {line} column \d+: duplicate key '{key}'", msg), msg
    assert where in msg


def test_duplicate_key_in_a_profile_names_the_profile_file(lab):
    prof = lab / "device_profiles" / "localhost.yaml"
    lines = prof.read_text().splitlines()
    first = lines.index("cores: 2") + 1
    prof.write_text(prof.read_text() + "cores: 8\n")
    with pytest.raises(ConfigError) as exc:
        load_inventory(inventory(lab, "devices:\n" + LOCAL))
    assert str(exc.value) == (
        f"{prof}: line {len(lines) + 1} column 1: duplicate key 'cores' at the top level "
        f"(first on line {first}); each key may appear once"
    )


def test_merge_keys_may_be_overridden_and_anchors_work(lab):
    inv = load_inventory(
        inventory(
            lab,
            "devices:\n"
            "  - &base {id: a, profile: localhost, transport: {type: local}, tags: [x]}\n"
            "  - <<: *base\n    id: b\n    tags: [y]\n",
        )
    )
    assert [(d.id, d.tags) for d in inv.devices] == [("a", ["x"]), ("b", ["y"])]


@pytest.mark.parametrize(
    "extra, added_line, column, key, shown",
    [
        ("1: x\n", 1, 1, "1", "key '1' is read as a number"),
        ("mcu:\n  on: 1\n", 2, 3, "on", "key 'on' in mcu is read as a boolean"),
    ],
)
def test_non_text_keys_in_a_profile_are_refused_with_a_line(lab, capsys, extra, added_line, column, key, shown):
    prof = lab / "device_profiles" / "localhost.yaml"
    where = f"line {len(prof.read_text().splitlines()) + added_line} column {column}"
    prof.write_text(prof.read_text() + extra)
    code, _, err = cli(capsys, "--inventory", str(inventory(lab, "devices:\n" + LOCAL)), "devices", "list")
    assert code == 3
    assert err.strip() == f'hil: error: {prof}: {where}: {shown}; keys must be text (quote it: "{key}")'


# ------------------------------------------------------------------ unknown top-level keys, secrets


def test_unknown_top_level_keys_are_refused_with_a_suggestion(lab):
    msg = refused(inventory(lab, "device:\n" + LOCAL))
    assert "device: unknown top-level key (did you mean 'devices'?)" in msg
    msg = refused(inventory(lab, "devices:\n" + LOCAL + "default_profile: localhost\n"))
    assert "default_profile: unknown top-level key" in msg


@pytest.mark.parametrize(
    "text, line, where",
    [
        ("password: hunter2\ndevices:\n" + LOCAL, 1, "password"),
        (
            "devices:\n  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan, "
            "key_passphrase: hunter2}}\n",
            2,
            "devices[0].transport.key_passphrase",
        ),
        (
            "devices:\n" + LOCAL + "  - id: pi\n    profile: raspberry-pi-4\n"
            '    transport: {type: ssh, host: "pi:hunter2@x"}\n',
            5,
            "devices[1].transport.host",
        ),
        (
            "devices:\n  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan, "
            'jump_host: "ssh://me:hunter2@bastion:22"}}\n',
            2,
            "devices[0].transport.jump_host",
        ),
        (
            'devices:\n  - {id: a, profile: localhost, transport: {type: local}, tags: ["u:hunter2@h"]}\n',
            2,
            "devices[0].tags[0]",
        ),
        ("devices:\n  - {id: a, profile: localhost, transport: {type: local}}\napi_token: hunter2\n", 3, "api_token"),
        (
            "devices:\n  - {id: pi, profile: raspberry-pi-4,"
            ' transport: {type: ssh, host: pi.lan, user: "pi:hunter2"}}\n',
            2,
            "devices[0].transport.user",
        ),
    ],
)
def test_secrets_anywhere_are_refused_without_echoing_them(lab, capsys, text, line, where):
    inv = inventory(lab, text)
    msg = refused(inv)
    assert SECRET not in msg
    assert msg.startswith(f"{inv}: line {line}: {where}") and "secrets must not live" in msg
    assert "key_passphrase_env" in msg and "SSH agent" in msg  # where secrets belong (README: Devices)
    code, out, err = cli(capsys, "--inventory", str(inv), "devices", "list")
    assert code == 3 and SECRET not in out + err and len(err.strip().splitlines()) == 1


def test_a_passphrase_pasted_as_its_variable_name_is_refused_unechoed(lab):
    inv = inventory(
        lab,
        "devices:\n  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan, "
        'key_passphrase_env: "correct horse hunter2"}}\n',
    )
    msg = refused(inv)
    assert SECRET not in msg
    assert (
        "devices[0].transport.key_passphrase_env: must be the name of an environment variable holding the "
        "passphrase (e.g. PI_KEY_PASSPHRASE), not the passphrase (device 'pi')"
    ) in msg


def test_secret_key_in_a_profile_gets_the_secrets_message(lab):
    prof = lab / "device_profiles" / "raspberry-pi-4.yaml"
    prof.write_text(prof.read_text() + "key_passphrase: hunter2\n")
    line = len(prof.read_text().splitlines())
    with pytest.raises(ConfigError) as exc:
        load_profile(prof)
    msg = str(exc.value)
    assert msg.startswith(f"{prof}: line {line}: key_passphrase: secrets must not live") and SECRET not in msg


def test_references_to_secrets_and_ordinary_addresses_are_not_secrets(lab):
    """The README's SSH example (key_file, key_passphrase_env, user@host:port jump host) and a
    rfc2217:// serial port load: only the secret itself is refused."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(devices:\n  - id: pi4-desk\n.*?)```", readme, re.S)
    assert block, "README's SSH inventory example not found"
    example = block.group(1).replace("# key_passphrase_env", "key_passphrase_env").replace("# jump_host", "jump_host")
    example += (
        '  - {id: s3, profile: esp32-s3, transport: {type: serial, port: "rfc2217://labhost:4001"}}\n'
        "  - {id: h7, profile: stm32h7, transport: {type: serial, port: /dev/ttyACM0}}\n"
    )
    inv = load_inventory(inventory(lab, example))
    pi = inv.device("pi4-desk").transport
    assert pi.key_passphrase_env == "PI_KEY_PASSPHRASE" and pi.jump_host == "me@bastion.example.org:22"
    assert inv.device("s3").transport.port == "rfc2217://labhost:4001"


# ------------------------------------------------------------------ files that used to be tracebacks


def test_inventory_that_is_a_directory(lab, capsys):
    inventory(lab, "devices:\n" + LOCAL)
    code, _, err = cli(capsys, "--inventory", str(lab), "devices", "list")
    assert code == 3
    assert err.strip() == (
        f"hil: error: {lab}: is a directory; --inventory expects the inventory file "
        f"(did you mean {lab / 'inventory.yaml'}?)"
    )


@pytest.mark.parametrize("target", ["inventory", "profile"])
def test_non_utf8_bytes_name_file_line_and_column(lab, capsys, target):
    if target == "inventory":
        path = inventory(lab, b"devices:\n  - {id: caf\xe9, profile: localhost, transport: {type: local}}\n")
    else:
        inventory(lab, "devices:\n" + LOCAL)
        path = lab / "device_profiles" / "localhost.yaml"
        shipped_lines = len(path.read_text().splitlines())
        path.write_bytes(path.read_bytes() + b"cpu: \xff\xfe\n")
    code, _, err = cli(capsys, "--inventory", str(lab / "inventory.yaml"), "devices", "list")
    line, column = (2, 13) if target == "inventory" else (shipped_lines + 1, 6)
    assert code == 3
    assert err.strip() == (
        f"hil: error: {path}: line {line} column {column}: not UTF-8 text "
        f"(byte 0x{'e9' if target == 'inventory' else 'ff'}); save the file as UTF-8"
    )


def test_profile_with_a_source_key(lab, capsys):
    prof = lab / "device_profiles" / "localhost.yaml"
    prof.write_text(prof.read_text() + "source: somewhere\n")
    code, _, err = cli(capsys, "--inventory", str(inventory(lab, "devices:\n" + LOCAL)), "devices", "list")
    assert code == 3
    assert err.strip() == (
        f"hil: error: {prof}: profile 'localhost': source: unknown field (hilbench sets it to the profile's file path)"
    )


@pytest.mark.parametrize(
    "text, where",
    [
        ("devices:\n  - id: x\n   profile: [\n", "line 3 column 4: malformed YAML: expected <block end>"),
        ("devices: [\n", "line 2 column 1: malformed YAML: expected the node content, but found '<stream end>'"),
        ("devices: []\n---\ndevices: []\n", "line 2 column 1: malformed YAML: expected a single document"),
        ('devices: "\x07"\n', "line 1: malformed YAML: character #x0007 is not allowed"),
        (
            "devices: !!python/object:os.system {}\n",
            "line 1 column 10: malformed YAML: could not determine a constructor",
        ),
    ],
)
def test_malformed_yaml_is_one_line_with_line_and_column(lab, capsys, text, where):
    inv = inventory(lab, text)
    code, _, err = cli(capsys, "--inventory", str(inv), "devices", "list")
    assert code == 3 and err.startswith(f"hil: error: {inv}: {where}") and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ profile values


def write_profile(directory: Path, name: str, extra: str, suffix: str = ".yaml") -> Path:
    path = directory / f"{name}{suffix}"
    path.write_text("arch: aarch64\ncores: 4\nram_mb: 4096\n" + extra)
    return path


@pytest.mark.parametrize(
    "extra, field, says",
    [
        ("thresholds: {latency_p50_us: .nan}\n", "thresholds.latency_p50_us", "finite number"),
        ("thresholds: {latency_p50_us: -0.1}\n", "thresholds.latency_p50_us", "threshold must be a finite number >= 0"),
        (
            "benchmark: {min_seconds: 200, max_seconds: 150}\n",
            "benchmark.min_seconds",
            "200 is more than max_seconds 150",
        ),
        ("benchmark: {max_seconds: .inf}\n", "benchmark.max_seconds", "finite number"),
        ("benchmark: {window_seconds: .inf}\n", "benchmark.window_seconds", "finite number"),
        ("budgets: {max_latency_p50_us: -5}\n", "budgets.max_latency_p50_us", "greater than 0"),
        ("budgets: {max_flash_bytes: -1}\n", "budgets.max_flash_bytes", "greater than 0"),
        (
            "budgets: {min_accuracy_top1: 97}\n",
            "budgets.min_accuracy_top1",
            "97 is not a fraction: accuracy is a fraction from 0 to 1 (0.97 for 97 %)",
        ),
        ("energy_meter: {type: hwmon}\n", "energy_meter.path", "required for type hwmon"),
        (
            "energy_meter: {type: estimate, idle_power_mw: 500}\n",
            "energy_meter.typical_power_mw",
            "required for type estimate",
        ),
        (
            "energy_meter: {type: estimate, idle_power_mw: 5000, typical_power_mw: 3000}\n",
            "energy_meter.typical_power_mw",
            "below idle_power_mw",
        ),
        (
            "energy_meter: {type: hwmon, path: /sys/class/hwmon/hwmon0, sample_rate_hz: -1}\n",
            "energy_meter.sample_rate_hz",
            "greater than 0",
        ),
    ],
)
def test_impossible_profile_values_are_refused(tmp_path, extra, field, says):
    path = write_profile(tmp_path, "board", extra)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: profile 'board': ") and f"{field}: " in msg and says in msg, msg


def test_sane_profile_values_still_load(tmp_path):
    prof = load_profile(
        write_profile(
            tmp_path,
            "board",
            "thresholds: {latency_p50_us: 0}\n"
            "benchmark: {min_seconds: 150, max_seconds: 150}\n"
            "budgets: {min_accuracy_top1: 0.97, max_latency_p50_us: 1e5}\n",
        )
    )
    assert prof.budgets.min_accuracy_top1 == 0.97 and prof.benchmark.min_seconds == 150
    assert all(math.isfinite(v) for v in prof.thresholds.values())


def test_yml_profiles_load_and_a_profile_defined_twice_is_refused(tmp_path):
    write_profile(tmp_path, "pi-zero", "", suffix=".yml")
    write_profile(tmp_path, "rock5", "")
    assert sorted(load_profiles(tmp_path)) == ["pi-zero", "rock5"]
    twice = write_profile(tmp_path, "rock5", "", suffix=".yml")
    with pytest.raises(ConfigError) as exc:
        load_profiles(tmp_path)
    assert str(exc.value) == (
        f"{twice}: profile 'rock5' is also defined by {tmp_path / 'rock5.yaml'}; keep one of the two files"
    )


def test_yml_profile_next_to_an_inventory_is_found(lab):
    write_profile(lab / "device_profiles", "rock5", "", suffix=".yml")
    inv = load_inventory(inventory(lab, "devices:\n  - {id: r, profile: rock5, transport: {type: local}}\n"))
    assert inv.profile_of(inv.device("r")).source.endswith("rock5.yml")


# ------------------------------------------------------------------ README nightly job vs shipped lab


def nightly_commands() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Nightly") :]
    script = re.search(r"```sh\n(.*?)```", section, re.S)
    assert script, "README's nightly script not found"
    text = script.group(1).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        for m in re.finditer(r"(?:^|\$\(|;|&&|\|\|)\s*(hil\s[^)|;#>]*)", line):
            argv = shlex.split(m.group(1).replace("$run_id", "RUN").replace("$out", "OUT"))
            commands.append(argv[1:])
    return commands


def test_readme_nightly_job_works_with_the_shipped_inventory():
    commands = nightly_commands()
    assert [c[0] for c in commands] == ["run", "gate", "compare"]
    parser = build_parser()
    for argv in commands:  # every flag exists (argparse exits 3 on an unknown one)
        parser.parse_args(argv)
    run = parser.parse_args(commands[0])
    shipped = load_inventory(REPO / "inventory.yaml")
    for lab in (shipped, load_default_inventory()):  # the repository's lab and the embedded one
        chosen = lab.select(run.devices.split(",") if run.devices else None, run.tags.split(",") if run.tags else None)
        assert [d.id for d in chosen] == ["local"]


def test_embedded_default_lab_equals_the_shipped_inventory():
    assert yaml.safe_load((REPO / "inventory.yaml").read_text()) == DEFAULT_INVENTORY


def test_gate_thresholds_file_is_read_as_strictly_as_the_lab_files(tmp_path):
    from harness.gate.thresholds import load_threshold_file

    f = tmp_path / "thr.yaml"
    f.write_text("net: {latency_p50_us: 0.05}\nnet: {latency_p50_us: 0.50}\n")
    with pytest.raises(ConfigError, match=r"thr.yaml: line 2 .*duplicate key 'net'"):
        load_threshold_file(f)
    f.write_bytes(b"net: {latency_p50_us: 0.05}  # caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_threshold_file(f)
