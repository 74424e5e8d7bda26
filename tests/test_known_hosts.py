"""known_hosts files as OpenSSH writes them: markers (`@revoked`, `@cert-authority`), hashed names,
patterns, lines to skip; the user's file and /etc/ssh/ssh_known_hosts.

The file-level tests use paramiko-generated keys; the `sshd` tests connect to a real OpenSSH server
(tests/sshd.py) with `hil` in a subprocess, or in-process through `harness.transports.ssh.connect`.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
import yaml
from conftest import hil

from harness.transports.ssh import hostkeys
from harness.transports.ssh.hostkeys import KnownHost, VerifyPolicy, parse_file

PROFILE = {
    "description": "test box reached over ssh",
    "arch": "x86_64",
    "cores": 2,
    "ram_mb": 1024,
    "runtime": "litert",
    "num_threads": 1,
    "python": "python3",
}


def _key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def _line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _hashed(name: str) -> str:
    return paramiko.HostKeys.hash_host(name)


def test_markers_hashes_patterns_and_junk_lines(tmp_path):
    ca, revoked, a, b, c, d = (_key() for _ in range(6))
    path = tmp_path / "known_hosts"
    lines = [
        "# a comment",
        "",
        f"@cert-authority *.lan,[*.lan]:* {_line(ca)} lab CA",
        f"@revoked * {_line(revoked)}",
        f"{_hashed('[10.0.0.7]:2222')} {_line(a)}",
        f"*.example.org,!bad.example.org {_line(b)}",
        f"Pi4-Desk.lan {_line(revoked)}",  # listed, but revoked by the line above
        f"pi4-desk.lan {_line(c)}",
        "@future-marker host " + _line(d),  # unknown marker: skipped, like OpenSSH
        "justonefield",
        "host ssh-ed25519 !!!notbase64!!!",
        f"host ssh-rsa {a.get_base64()}",  # blob of another key type: corrupt, skipped
        "caf\udce9.lan " + _line(d),  # a non-UTF-8 byte in the name
    ]
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")

    entries = parse_file(path)
    assert [(e.lineno, e.marker) for e in entries] == [
        (3, "cert-authority"),
        (4, "revoked"),
        (5, None),
        (6, None),
        (7, None),
        (8, None),
        (13, None),
    ]

    pi = KnownHost.from_entries(entries, "PI4-desk.lan", 22)  # names compare lower-case, like OpenSSH
    assert [e.lineno for e, _ in pi.known] == [8]  # the revoked key is not usable, even if listed
    assert pi.revoked_entry(revoked).where == f"{path} line 4" and pi.revoked_entry(c) is None
    assert [e.lineno for e in pi.authorities] == [3]

    hashed = KnownHost.from_entries(entries, "10.0.0.7", 2222)
    assert [k for _, k in hashed.known] == [a] and hashed.authorities == []
    assert KnownHost.from_entries(entries, "10.0.0.7", 22).known == []  # the port is part of the name

    assert [k for _, k in KnownHost.from_entries(entries, "x.example.org", 22).known] == [b]
    assert KnownHost.from_entries(entries, "bad.example.org", 22).known == []  # negation wins
    assert KnownHost.from_entries(entries, "example.org", 22).known == []
    assert [e.lineno for e in KnownHost.from_entries(entries, "pi.lan", 2200).authorities] == [3]

    # paramiko gets the usable keys under the exact name it looks up (the host as the inventory spells it)
    into = paramiko.HostKeys()
    pi.install(into)
    found = into.lookup("PI4-desk.lan")
    assert found is not None and list(found.values()) == [c]


def test_revoked_key_is_refused_even_with_trust_and_never_written(tmp_path, monkeypatch):
    revoked, other = _key(), _key()
    user = tmp_path / "user_known_hosts"
    user.write_text(f"[10.0.0.7]:2222 {_line(other)}\n")
    system = tmp_path / "ssh_known_hosts"
    system.write_text(f"@cert-authority * {_line(other)}\n@revoked [10.0.0.*]:* {_line(revoked)}\n")
    monkeypatch.setattr(hostkeys, "GLOBAL_KNOWN_HOSTS", str(system))

    known = hostkeys.lookup("pi", str(user), "10.0.0.7", 2222)
    assert [k for _, k in known.known] == [other]
    policy = VerifyPolicy("pi", "10.0.0.7", 2222, str(user), True, lambda m: None, keys=known)
    with pytest.raises(hostkeys.HostKeyError) as err:
        policy.missing_host_key(paramiko.SSHClient(), "[10.0.0.7]:2222", revoked)
    msg = str(err.value)
    assert err.value.status == "revoked" and err.value.exit_code == 2
    assert "device 'pi'" in msg and "10.0.0.7:2222" in msg and f"{system} line 2" in msg and "REVOKED" in msg
    assert "\n" not in msg
    assert user.read_text() == f"[10.0.0.7]:2222 {_line(other)}\n"  # trust never adds a revoked key

    # an unknown key of a host a CA line covers: the message says why the CA does not help
    with pytest.raises(hostkeys.HostKeyError) as err:
        VerifyPolicy("pi", "10.0.0.7", 2222, str(user), False, lambda m: None, keys=known).missing_host_key(
            paramiko.SSHClient(), "[10.0.0.7]:2222", _key()
        )
    assert err.value.status == "unknown" and f"{system} line 1 names a @cert-authority" in str(err.value)


# --------------------------------------------------------------------------- a real sshd


def _lab(workspace: Path, server, known_hosts: Path, tofu: bool = False) -> Path:
    (workspace / "device_profiles" / "sshbox.yaml").write_text(yaml.safe_dump(PROFILE))
    t = {
        "type": "ssh",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "key_file": str(server.client_key),
        "use_agent": False,
        "known_hosts": str(known_hosts),
        "trust_on_first_use": tofu,
        "workdir": str(workspace / "dev"),
        "connect_timeout": 5,
        "retries": 0,
    }
    inv = workspace / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"devices": [{"id": "pi", "profile": "sshbox", "transport": t}]}))
    return inv


def _server_key(server) -> paramiko.PKey:
    kind, b64 = server.host_key_line.split()
    return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64))


@pytest.mark.sshd
def test_revoked_host_key_of_real_sshd_is_refused_in_one_line(workspace, sshd_server):
    ca = _key()
    known = workspace / "known_hosts"
    text = (
        f"@cert-authority * {_line(ca)}\n"
        f"{_hashed(f'[127.0.0.1]:{sshd_server.port}')} {sshd_server.host_key_line}\n"
        f"@revoked * {sshd_server.host_key_line}\n"
    )
    known.write_text(text)
    _lab(workspace, sshd_server, known, tofu=True)
    where = f"{known} line 3"

    t = hil("devices", "trust", "pi")
    assert t.returncode == 2, t.stderr
    errors = [ln for ln in t.stderr.splitlines() if ln.startswith("hil: error:")]
    assert len(errors) == 1 and "Traceback" not in t.stderr
    assert "device 'pi'" in errors[0] and "REVOKED" in errors[0] and where in errors[0]
    assert sshd_server.fingerprint() in errors[0]

    c = hil("devices", "check", "pi")
    assert c.returncode == 2 and "Traceback" not in c.stderr, c.stderr
    assert "REVOKED" in c.stdout and where in c.stdout and "a revoked key is never accepted" in c.stdout
    assert known.read_text() == text  # nothing added, nothing removed
    assert not (workspace / "dev").exists()  # refused before anything was sent


@pytest.mark.sshd
def test_marker_lines_in_user_and_system_files_do_not_break_other_hosts(workspace, sshd_server, monkeypatch):
    from harness.lab.config import load_inventory
    from harness.transports.ssh.connect import connect

    other_ca, other_revoked = _key(), _key()
    system = workspace / "ssh_known_hosts"
    monkeypatch.setattr(hostkeys, "GLOBAL_KNOWN_HOSTS", str(system))
    known = workspace / "known_hosts"

    def login() -> str:
        dev = load_inventory(_lab(workspace, sshd_server, known)).device("pi")
        conn = connect(dev, lambda m: None)
        try:
            _, out, _ = conn.client.exec_command("echo reached", timeout=10)
            return out.read().decode().strip()
        finally:
            conn.close()

    # the server is listed hashed in the user's file; both files also hold CA and revoked lines of others
    system.write_text(f"@cert-authority *.lan {_line(other_ca)}\n@revoked * {_line(other_revoked)}\n")
    known.write_text(
        f"@revoked [127.0.0.1]:* {_line(other_revoked)}\n@cert-authority * {_line(other_ca)}\n"
        f"{_hashed(f'[127.0.0.1]:{sshd_server.port}')} {sshd_server.host_key_line}\n"
    )
    assert login() == "reached"

    # the server listed only in the system file, by a pattern (wildcards work, like OpenSSH)
    known.write_text(f"@cert-authority * {_line(other_ca)}\n")
    system.write_text(
        f"@revoked * {_line(other_revoked)}\n[127.0.0.?]:{sshd_server.port} {sshd_server.host_key_line}\n"
    )
    assert login() == "reached"

    # revoked in the system file wins over the user's plain entry
    known.write_text(sshd_server.known_hosts_line())
    system.write_text(f"@revoked * {sshd_server.host_key_line}\n")
    with pytest.raises(hostkeys.HostKeyError) as err:
        login()
    assert err.value.status == "revoked" and err.value.key == _server_key(sshd_server)
    assert f"{system} line 1" in str(err.value)
