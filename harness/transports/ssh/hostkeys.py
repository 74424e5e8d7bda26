"""SSH host key verification against known_hosts, the way OpenSSH does it.

A device's key is checked against the inventory's `known_hosts` file (or `~/.ssh/known_hosts` when the
inventory names none) plus the system-wide `/etc/ssh/ssh_known_hosts`. Hashed entries (`|1|...`) and the
`[host]:port` form for non-standard ports are understood (paramiko's HostKeys). An unknown key is
refused unless the user asked for trust (`hil devices trust DEVICE` or `trust_on_first_use: true`); a
changed key is always refused and never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko

from harness.errors import InfraError

USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
_WRITE_LOCK = threading.Lock()


class HostKeyError(InfraError):
    """The device's host key is unknown or changed: a security/configuration problem, not a flaky lab."""

    def __init__(self, message: str, status: str, key: paramiko.PKey):
        super().__init__(message)
        self.status = status  # "unknown" | "changed" | "mismatch"
        self.key = key
        self.fingerprint = fingerprint(key)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:<base64 without padding>` fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def entry_name(host: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, `[host]:port` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


def write_file(known_hosts: str | None) -> Path:
    """The file trusted keys are added to: the inventory's, else the user's."""
    return Path(os.path.expanduser(known_hosts or USER_KNOWN_HOSTS))


def read_files(known_hosts: str | None) -> list[Path]:
    """Existing known_hosts files consulted for a device, most specific first."""
    return [p for p in (write_file(known_hosts), Path(GLOBAL_KNOWN_HOSTS)) if p.is_file()]


def file_holding(known_hosts: str | None, name: str, key: paramiko.PKey) -> Path | None:
    """Which known_hosts file lists `key` for `name` (for the changed-key message)."""
    for path in read_files(known_hosts):
        try:
            found = paramiko.HostKeys(str(path)).lookup(name)
        except (OSError, UnicodeDecodeError):
            continue
        if found and any(k == key for k in found.values()):
            return path
    return None


def add_key(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append one `name keytype base64` line (parent created private, like ssh does with ~/.ssh)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    with _WRITE_LOCK:
        prefix = ""
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                prefix = "" if f.read(1) == b"\n" else "\n"
        with open(path, "a") as f:
            f.write(prefix + line)


def unknown_message(device_id: str, host: str, port: int, key: paramiko.PKey, known_hosts: str | None,
                    role: str = "") -> str:
    where = ", ".join(str(p) for p in [write_file(known_hosts)] + read_files(known_hosts)[1:])
    what = f"{role} {host}:{port}" if role else f"{host}:{port}"
    return (f"device '{device_id}': host key of {what} is not known ({key.get_name()} {fingerprint(key)}, "
            f"not in {where}); refusing to connect. If that fingerprint is the device's, trust it with "
            f"`hil devices trust {device_id}` or set `trust_on_first_use: true` in the device's transport "
            f"in the inventory")


def changed_message(device_id: str, host: str, port: int, got: paramiko.PKey, expected: paramiko.PKey,
                    known_hosts: str | None, role: str = "") -> str:
    name = entry_name(host, port)
    path = file_holding(known_hosts, name, expected) or write_file(known_hosts)
    what = f"{role} {host}:{port}" if role else f"{host}:{port}"
    return (f"device '{device_id}': HOST KEY CHANGED for {what}: it presented {got.get_name()} "
            f"{fingerprint(got)} but {path} has {expected.get_name()} {fingerprint(expected)}. Someone may "
            f"be intercepting the connection (man-in-the-middle), or the device was reinstalled. Refusing "
            f"to connect; the known key is not replaced automatically. If the change is expected, remove "
            f"the old entry (`ssh-keygen -R '{name}' -f {path}`) and run `hil devices trust {device_id}`")


class VerifyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for keys it found nowhere: refuse, or add when trust was asked for."""

    def __init__(self, device_id: str, host: str, port: int, known_hosts: str | None, trust: bool,
                 log: Callable[[str], None], role: str = "", expect: str | None = None,
                 why: str = "on first use"):
        self.device_id, self.host, self.port = device_id, host, port
        self.known_hosts, self.trust, self.log, self.role = known_hosts, trust, log, role
        self.expect, self.why = expect, why
        self.added: paramiko.PKey | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        fp = fingerprint(key)
        if self.expect and self.expect != fp:
            raise HostKeyError(
                f"device '{self.device_id}': {self.host}:{self.port} presented {key.get_name()} {fp}, "
                f"not the expected {self.expect}; not trusted", "mismatch", key)
        if not self.trust:
            raise HostKeyError(unknown_message(self.device_id, self.host, self.port, key, self.known_hosts,
                                               self.role), "unknown", key)
        path = write_file(self.known_hosts)
        add_key(path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.added = key
        what = f"{self.role} {hostname}" if self.role else hostname
        self.log(f"  [{self.device_id}] trusted host key of {what} {self.why}: {key.get_name()} {fp} "
                 f"(added to {path})")
