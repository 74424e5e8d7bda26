"""SSH host key verification against known_hosts, the way OpenSSH does it.

A device's key is checked against the inventory's `known_hosts` file (or `~/.ssh/known_hosts` when the
inventory names none) plus the system-wide `/etc/ssh/ssh_known_hosts`. The files are read here, not by
paramiko (whose reader stops with a traceback at the first `@cert-authority` or `@revoked` line, and
knows no wildcards): hashed entries (`|1|salt|hash`), the `[host]:port` form for non-standard ports,
host patterns with `*`, `?` and `!negation`, and the two markers are understood:

- `@revoked PATTERNS KEY`: that key is never accepted for a matching host, even if another line lists it
  and even with trust-on-first-use; the refusal names the file and line.
- `@cert-authority PATTERNS KEY`: a CA for host *certificates*. paramiko verifies plain host keys only, so
  these lines are skipped (other lines of the file still count); an unknown key of a host that a CA line
  covers says so in its message.

Lines OpenSSH would skip (malformed, unknown key types) are skipped too. An unknown key is refused unless
the user asked for trust (`hil devices trust DEVICE` or `trust_on_first_use: true`); a changed key is
always refused and never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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
        self.status = status  # "unknown" | "changed" | "mismatch" | "revoked"
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


# --------------------------------------------------------------------------- reading known_hosts

MARKERS = {"@revoked": "revoked", "@cert-authority": "cert-authority"}


@dataclass(frozen=True)
class Entry:
    """One usable known_hosts line."""

    path: Path
    lineno: int
    marker: str | None  # None | "revoked" | "cert-authority"
    hosts: str  # the host field as written: patterns, or one hashed name
    keytype: str
    blob: bytes

    @property
    def where(self) -> str:
        return f"{self.path} line {self.lineno}"

    def matches(self, name: str) -> bool:
        """Does this line apply to `name` (`host` or `[host]:port`)? OpenSSH's rules: lower-case
        names, `|1|` hashed names, comma lists of `*`/`?` patterns where a matching `!pattern` wins."""
        name = name.lower()
        if self.hosts.startswith("|1|"):
            return _hashed_matches(self.hosts, name)
        positive = False
        for pat in self.hosts.split(","):
            negated = pat.startswith("!")
            if _pattern_matches(pat[1:] if negated else pat, name):
                if negated:
                    return False
                positive = True
        return positive

    def same_key(self, key: paramiko.PKey) -> bool:
        return key.asbytes() == self.blob

    def pkey(self) -> paramiko.PKey | None:
        """The key as paramiko's object, or None for a type paramiko cannot use (OpenSSH skips those too)."""
        try:
            return paramiko.PKey.from_type_string(self.keytype, self.blob)
        except Exception:  # UnknownKeyType, or a blob that does not parse as that type
            return None


def _pattern_matches(pattern: str, name: str) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(rx, name, flags=re.DOTALL) is not None


def _hashed_matches(hashed: str, name: str) -> bool:
    parts = hashed.split("|")  # ['', '1', salt, hash]
    if len(parts) != 4:
        return False
    try:
        salt, want = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode("utf-8", "surrogateescape"), hashlib.sha1).digest(), want)


def parse_line(path: Path, lineno: int, line: str) -> Entry | None:
    """One known_hosts line, or None for comments, blank and unusable lines (skipped, like OpenSSH)."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = None
    if fields[0].startswith("@"):
        marker = MARKERS.get(fields[0].lower())
        if marker is None:  # an unknown marker: OpenSSH ignores the line
            return None
        fields = fields[1:]
    if len(fields) < 3:
        return None
    hosts, keytype, b64 = fields[:3]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    # the blob starts with its own key type (uint32 length + name); a line that disagrees is corrupt
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != keytype.encode("ascii", "replace"):
        return None
    return Entry(path, lineno, marker, hosts, keytype, blob)


def parse_file(path: Path) -> list[Entry]:
    """Every usable line of a known_hosts file (OSError when it cannot be read)."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    return [e for i, line in enumerate(text.splitlines(), 1) if (e := parse_line(path, i, line)) is not None]


@dataclass
class KnownHost:
    """What the known_hosts files say about one host name (`host` or `[host]:port`)."""

    name: str
    known: list[tuple[Entry, paramiko.PKey]] = field(default_factory=list)  # usable, not revoked
    revoked: list[Entry] = field(default_factory=list)
    authorities: list[Entry] = field(default_factory=list)  # @cert-authority lines for this host

    @classmethod
    def from_entries(cls, entries: list[Entry], host: str, port: int) -> KnownHost:
        """Sort the lines (most specific file first) that apply to host:port."""
        found = cls(entry_name(host, port))
        plain: list[Entry] = []
        for e in entries:
            if not e.matches(found.name):
                continue
            if e.marker == "revoked":
                found.revoked.append(e)
            elif e.marker == "cert-authority":
                found.authorities.append(e)
            else:
                plain.append(e)
        for e in plain:
            key = e.pkey()
            if key is not None and found.revoked_entry(key) is None:
                found.known.append((e, key))
        return found

    def revoked_entry(self, key: paramiko.PKey) -> Entry | None:
        return next((e for e in self.revoked if e.same_key(key)), None)

    def install(self, into: paramiko.HostKeys) -> None:
        """Give paramiko the host's usable keys (one per key type, the most specific file's first: paramiko
        keeps one per type); revoked keys are left out, so paramiko can never accept one."""
        seen: set[str] = set()
        for _, key in self.known:
            if key.get_name() not in seen:
                seen.add(key.get_name())
                into.add(self.name, key.get_name(), key)


def lookup(device_id: str, known_hosts: str | None, host: str, port: int) -> KnownHost:
    """The known_hosts files' view of a device's host (an unreadable file is an infrastructure error)."""
    entries: list[Entry] = []
    for path in read_files(known_hosts):
        try:
            entries += parse_file(path)
        except OSError as exc:
            raise InfraError(
                f"device '{device_id}': {path}: cannot read known_hosts file: {exc.strerror or exc}"
            ) from None
    return KnownHost.from_entries(entries, host, port)


def file_holding(known_hosts: str | None, name: str, key: paramiko.PKey) -> Path | None:
    """Which known_hosts file lists `key` for `name` (for the changed-key message)."""
    for path in read_files(known_hosts):
        try:
            entries = parse_file(path)
        except OSError:
            continue
        if any(e.marker is None and e.matches(name) and e.same_key(key) for e in entries):
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


def unknown_message(
    device_id: str,
    host: str,
    port: int,
    key: paramiko.PKey,
    known_hosts: str | None,
    role: str = "",
    authorities: list[Entry] | None = None,
) -> str:
    where = ", ".join(str(p) for p in [write_file(known_hosts)] + read_files(known_hosts)[1:])
    what = f"{role} {host}:{port}" if role else f"{host}:{port}"
    ca = ""
    if authorities:
        ca = (
            f"; {authorities[0].where} names a @cert-authority for this host, but hilbench checks plain "
            "host keys only (no host certificates)"
        )
    return (
        f"device '{device_id}': host key of {what} is not known ({key.get_name()} {fingerprint(key)}, "
        f"not in {where}{ca}); refusing to connect. If that fingerprint is the device's, trust it with "
        f"`hil devices trust {device_id}` or set `trust_on_first_use: true` in the device's transport "
        f"in the inventory"
    )


def revoked_message(device_id: str, host: str, port: int, key: paramiko.PKey, entry: Entry, role: str = "") -> str:
    what = f"{role} {host}:{port}" if role else f"{host}:{port}"
    return (
        f"device '{device_id}': host key of {what} is REVOKED: it presented {key.get_name()} "
        f"{fingerprint(key)}, which {entry.where} marks @revoked; refusing to connect (a revoked key "
        f"is never trusted, not even by `hil devices trust`)"
    )


def changed_message(
    device_id: str,
    host: str,
    port: int,
    got: paramiko.PKey,
    expected: paramiko.PKey,
    known_hosts: str | None,
    role: str = "",
) -> str:
    name = entry_name(host, port)
    path = file_holding(known_hosts, name, expected) or write_file(known_hosts)
    what = f"{role} {host}:{port}" if role else f"{host}:{port}"
    return (
        f"device '{device_id}': HOST KEY CHANGED for {what}: it presented {got.get_name()} "
        f"{fingerprint(got)} but {path} has {expected.get_name()} {fingerprint(expected)}. Someone may "
        f"be intercepting the connection (man-in-the-middle), or the device was reinstalled. Refusing "
        f"to connect; the known key is not replaced automatically. If the change is expected, remove "
        f"the old entry (`ssh-keygen -R '{name}' -f {path}`) and run `hil devices trust {device_id}`"
    )


class VerifyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for keys it found nowhere: refuse, or add when trust was asked for."""

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        known_hosts: str | None,
        trust: bool,
        log: Callable[[str], None],
        role: str = "",
        expect: str | None = None,
        why: str = "on first use",
        keys: KnownHost | None = None,
    ):
        self.device_id, self.host, self.port = device_id, host, port
        self.known_hosts, self.trust, self.log, self.role = known_hosts, trust, log, role
        self.expect, self.why = expect, why
        self.keys = keys if keys is not None else KnownHost(entry_name(host, port))
        self.added: paramiko.PKey | None = None

    def revoked_error(self, key: paramiko.PKey) -> HostKeyError | None:
        entry = self.keys.revoked_entry(key)
        if entry is None:
            return None
        return HostKeyError(
            revoked_message(self.device_id, self.host, self.port, key, entry, self.role), "revoked", key
        )

    def missing_host_key(self, client, hostname, key) -> None:
        revoked = self.revoked_error(key)
        if revoked is not None:
            raise revoked
        fp = fingerprint(key)
        if self.expect and self.expect != fp:
            raise HostKeyError(
                f"device '{self.device_id}': {self.host}:{self.port} presented {key.get_name()} {fp}, "
                f"not the expected {self.expect}; not trusted",
                "mismatch",
                key,
            )
        if not self.trust:
            raise HostKeyError(
                unknown_message(
                    self.device_id, self.host, self.port, key, self.known_hosts, self.role, self.keys.authorities
                ),
                "unknown",
                key,
            )
        path = write_file(self.known_hosts)
        add_key(path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.added = key
        what = f"{self.role} {hostname}" if self.role else hostname
        self.log(f"  [{self.device_id}] trusted host key of {what} {self.why}: {key.get_name()} {fp} (added to {path})")
