"""A private, real OpenSSH server for the SSH transport tests.

`/usr/sbin/sshd -D -e -f <own config>` runs as a plain child process: its own ed25519 host key made with
ssh-keygen, key-only authentication with a generated client key, `AuthorizedKeysFile` pointing at a file
in the test's directory, 127.0.0.1 on a free port. Readiness is sshd's own "Server listening" line on
stderr (no sleeps). Tests skip with a reason when sshd or ssh-keygen is missing.

sshd's per-connection processes call setsid(), so they leave sshd's process group; `kill()` therefore
kills the process group *and* every descendant, which is what a crashed or rebooted device looks like.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"

CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/ssh_host_ed25519_key
PidFile none
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
AllowUsers {user}
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel INFO
MaxStartups 50
"""


def keygen(path: Path, comment: str = "hilbench-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_sshd() -> None:
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} not installed (apt-get install openssh-server)")
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not installed (apt-get install openssh-client)")
    if not os.path.isdir(PRIVSEP_DIR):
        if os.geteuid() != 0:
            pytest.skip(f"sshd needs its privilege separation directory {PRIVSEP_DIR}")
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)  # what the openssh-server service creates


@dataclass
class SshServer:
    dir: Path
    port: int
    user: str
    client_key: Path
    proc: subprocess.Popen
    log: list = field(default_factory=list)
    host = "127.0.0.1"

    @property
    def host_key_line(self) -> str:
        """`type base64` of the server's public host key."""
        return " ".join((self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key_line}\n"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.dir / "ssh_host_ed25519_key.pub")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def kill(self) -> None:
        """Kill sshd and all its session processes (as if the device lost power)."""
        import psutil

        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            victims = []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def start_sshd(directory: Path) -> SshServer:
    """Start a private sshd in `directory` (keys and config live there); returns when it listens."""
    require_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    keygen(directory / "ssh_host_ed25519_key", "hilbench-test-host")
    client_key = keygen(directory / "client_key")
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    user = getpass.getuser()
    last_log: list = []
    for _ in range(5):  # the free port can be taken between probing and binding
        port = free_port()
        cfg = directory / "sshd_config"
        cfg.write_text(CONFIG.format(port=port, dir=directory, user=user))
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue = queue.Queue()
        log: list = []

        def drain(stream=proc.stderr, log=log, lines=lines) -> None:  # keep the pipe from filling up
            for line in stream:
                log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                line = None
            if line is None:
                break
            if "Server listening on" in line:
                return SshServer(directory, port, user, client_key, proc, log)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        last_log = log
        if not any("Address already in use" in ln or "Bind to port" in ln for ln in log):
            break
    raise RuntimeError("sshd did not start:\n" + "".join(last_log))
