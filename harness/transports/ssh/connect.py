"""Opening a verified, authenticated SSH connection to a device (optionally through a jump host).

Authentication is by key only: the inventory's `key_file` (its passphrase, if any, from the environment
variable named by `key_passphrase_env`), the SSH agent, or the default keys in ~/.ssh. Host keys are
verified by `hostkeys` before any credential is sent.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, SshSettings
from harness.transports.base import transport_settings
from harness.transports.ssh import hostkeys

# paramiko logs transport-thread failures (e.g. "Error reading SSH protocol banner", with a traceback)
# to stderr through logging's last-resort handler, or through the root logger once anything configured
# it (a module-level `logging.warning()` in a library does): our errors already carry the cause, in one line.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False


class SshUnreachable(InfraError):
    """No SSH session could be set up (refused, timed out, dropped during the handshake)."""


class SshAuthError(InfraError):
    """The device answered but refused our key: retrying will not help."""


@dataclass
class Endpoint:
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_jump(spec: str, default_user: str) -> Endpoint:
    """`[user@]host[:port]` (IPv6 as `[addr]:port`)."""
    user, _, hostport = spec.rpartition("@")
    port = 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif hostport.count(":") == 1:
        host, _, p = hostport.partition(":")
        port = int(p)
    else:
        host = hostport
    if not host:
        raise ConfigError(f"jump_host: '{spec}' is not [user@]host[:port]")
    return Endpoint(user or default_user, host, port)


def describe(exc: BaseException) -> str:
    """A short cause for messages: 'connection refused', 'timed out after 3 s', ..."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errnos = {getattr(e, "errno", None) for e in exc.errors.values()}
        return "connection refused" if errnos <= {111, None} else str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror or exc})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, EOFError):
        return "connection closed by the device"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SshConnection:
    """An authenticated client (and the jump client carrying it, if any)."""

    def __init__(
        self,
        device: Device,
        client: paramiko.SSHClient,
        jump: paramiko.SSHClient | None,
        endpoint: Endpoint,
        trusted_now: bool,
    ):
        self.device = device
        self.client = client
        self.jump = jump
        self.endpoint = endpoint
        self.trusted_now = trusted_now

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.client.get_transport()

    @property
    def active(self) -> bool:
        t = self.transport
        return bool(t is not None and t.is_active())

    def server_key(self) -> paramiko.PKey:
        t = self.transport
        if t is None:
            raise SshUnreachable(f"device '{self.device.id}': connection to {self.endpoint} is closed")
        return t.get_remote_server_key()

    def close(self) -> None:
        for c in (self.client, self.jump):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass


def ssh_settings(device: Device) -> SshSettings:
    """The device's SSH settings; a device on another transport is a caller bug, not an inventory error."""
    return transport_settings(device, SshSettings, "ssh")


def _live_transport(client: paramiko.SSHClient) -> paramiko.Transport:
    """The transport of a client that has connected (paramiko only clears it on close())."""
    tr = client.get_transport()
    assert tr is not None, "SSHClient.get_transport() is None after a successful connect()"
    return tr


def _auth_kwargs(device: Device) -> dict:
    t = ssh_settings(device)
    kw: dict = {"allow_agent": t.use_agent, "look_for_keys": t.key_file is None}
    if t.key_file:
        path = os.path.expanduser(t.key_file)
        if not os.path.isfile(path):
            raise ConfigError(f"device '{device.id}': transport.key_file: {path}: file not found")
        kw["key_filename"] = path
    if t.key_passphrase_env:
        value = os.environ.get(t.key_passphrase_env)
        if value is None:
            raise ConfigError(
                f"device '{device.id}': transport.key_passphrase_env: environment variable "
                f"{t.key_passphrase_env} is not set"
            )
        kw["passphrase"] = value
    return kw


def _client(
    device: Device, ep: Endpoint, sock, trust: bool, log: Callable[[str], None], role: str, expect: str | None, why: str
) -> tuple[paramiko.SSHClient, bool]:
    t = ssh_settings(device)
    client = paramiko.SSHClient()
    # known_hosts files are read by hostkeys (markers, patterns, revoked keys), not by paramiko; the
    # host's usable keys go into the client's in-memory set, which nothing writes back to a file
    known = hostkeys.lookup(device.id, t.known_hosts, ep.host, ep.port)
    known.install(client.get_host_keys())
    policy = hostkeys.VerifyPolicy(device.id, ep.host, ep.port, t.known_hosts, trust, log, role, expect, why, known)
    client.set_missing_host_key_policy(policy)
    what = f"{role} {ep}" if role else str(ep)
    try:
        client.connect(
            ep.host,
            port=ep.port,
            username=ep.user,
            timeout=t.connect_timeout,
            banner_timeout=t.connect_timeout,
            auth_timeout=t.connect_timeout,
            channel_timeout=t.connect_timeout,
            sock=sock,
            **_auth_kwargs(device),
        )
    except (hostkeys.HostKeyError, ConfigError):
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        revoked = policy.revoked_error(exc.key)
        if revoked is not None:
            raise revoked from None
        raise hostkeys.HostKeyError(
            hostkeys.changed_message(device.id, ep.host, ep.port, exc.key, exc.expected_key, t.known_hosts, role),
            "changed",
            exc.key,
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        how = f"key_file {t.key_file}" if t.key_file else "the SSH agent / ~/.ssh default keys"
        raise SshAuthError(f"device '{device.id}': {what} refused authentication with {how} ({exc})") from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        tr = client.get_transport()
        saved = getattr(tr, "saved_exception", None) if tr is not None else None
        client.close()
        cause = describe(saved or exc)
        if cause == "timed out" or any(m in cause for m in ("protocol banner", "No existing session")):
            cause = f"no SSH answer within {t.connect_timeout:g} s (connect_timeout)"
        raise SshUnreachable(f"device '{device.id}': cannot reach {what}: {cause}") from None
    return client, policy.added is not None


def connect(
    device: Device, log: Callable[[str], None], trust: bool | None = None, expect: str | None = None
) -> SshConnection:
    """Connect to the device; `trust=None` means the inventory's trust_on_first_use setting."""
    t = ssh_settings(device)
    why = "as asked (hil devices trust)" if trust else "on first use (trust_on_first_use: true)"
    if trust is None:
        trust = t.trust_on_first_use
    user = t.user or getpass.getuser()
    target = Endpoint(user, t.host, t.port)
    jump = sock = None
    if t.jump_host:
        jep = parse_jump(t.jump_host, user)
        # a fingerprint pinned with --expect is the target's; it must not wave through an unknown jump host
        jump, _ = _client(device, jep, None, trust and expect is None, log, "jump host", None, why)
        try:
            sock = _live_transport(jump).open_channel(
                "direct-tcpip", (t.host, t.port), ("127.0.0.1", 0), timeout=t.connect_timeout
            )
        except (OSError, EOFError, paramiko.SSHException) as exc:
            jump.close()
            raise SshUnreachable(
                f"device '{device.id}': jump host {jep} cannot reach {t.host}:{t.port}: {describe(exc)}"
            ) from None
    try:
        client, added = _client(device, target, sock, trust, log, "", expect, why)
    except BaseException:
        if jump is not None:
            jump.close()
        raise
    conn = SshConnection(device, client, jump, target, added)
    _live_transport(client).set_keepalive(15)
    return conn
