"""Linux boards (Raspberry Pi, ...) over SSH: push the runner and the artifacts, run, parse the JSON.

Deploy is content-addressed: files land in the device's work dir as `artifacts/<sha256>.tflite`,
`artifacts/<sha256>.npz` and `runner-<sha256>.py`, so a file already there with the right hash is never
sent again. Every upload goes to a temporary name, is verified by its remote sha256 and then renamed into
place, so a dropped connection never leaves a half-written file under a real name. Remote commands are
built from argument lists with `shlex.quote`; no inventory, model or path string is ever interpreted by
the remote shell.

A connection that drops or times out is retried (`retries`, exponential `retry_backoff`); after that the
job fails as an infrastructure error naming the device and the cause. Host key and authentication
problems are never retried.
"""

from __future__ import annotations

import secrets
import select
import shlex
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import paramiko

from harness.core.hashing import sha256_file
from harness.core.jobs import Job
from harness.core.resources import runner_file
from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, DeviceProfile, SshSettings
from harness.transports.base import Transport, parse_runner_output, runner_args
from harness.transports.ssh import hostkeys
from harness.transports.ssh.connect import SshAuthError, SshConnection, SshUnreachable, connect, describe, ssh_settings

TMP_MARK = ".hil-tmp-"
PID_TAG = "hilbench-runner-pid:"
_PY_SHA256 = "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"


class _Dropped(Exception):
    """The SSH connection went away under us."""


class _Timeout(Exception):
    """A remote command or transfer exceeded its time budget."""


class _Corrupt(Exception):
    """An upload arrived with the wrong hash."""


_RETRYABLE = (
    _Dropped,
    _Timeout,
    _Corrupt,
    SshUnreachable,
    EOFError,
    socket.timeout,
    ConnectionError,
    paramiko.SSHException,
)


def quote_command(argv: list) -> str:
    """One shell command line in which every argument stays exactly one literal argument."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def expand_home(path: str, home: str) -> str:
    """`~` / `~/x` -> the remote home; other paths unchanged (quoting would stop the shell doing it)."""
    if path == "~":
        return home
    if path.startswith("~/"):
        return home.rstrip("/") + path[1:]
    if path.startswith("~"):
        raise ConfigError(f"'{path}': ~user paths are not supported; use an absolute path or ~/...")
    return path


def remote_workdir(workdir: str, home: str) -> str:
    path = expand_home(workdir, home)
    if not path.startswith("/"):
        path = home.rstrip("/") + "/" + path
    return path.rstrip("/") or "/"


class SshTransport(Transport):
    """One SSH connection (plus one SFTP channel) to one device."""

    def __init__(self, device: Device, profile: DeviceProfile, log: Callable[[str], None]):
        super().__init__(device, profile, log)
        self.t: SshSettings = ssh_settings(device)
        self._conn: SshConnection | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.home: str | None = None
        self.workdir: str | None = None
        self._phase = "connect"
        self._local_sha: dict[tuple, str] = {}

    # ------------------------------------------------------------------ connection

    @property
    def _short(self) -> float:
        """Budget for housekeeping commands (hashing, mkdir): a hung link must not wait the full run time."""
        return min(self.t.command_timeout, 60.0)

    def python(self) -> str:
        raw = self.t.python or self.profile.python
        return expand_home(raw, self.home or "~")

    @property
    def connection(self) -> SshConnection | None:
        return self._conn

    def open(self, trust: bool | None = None) -> None:
        """Connect and prepare the work dir; raises InfraError (HostKeyError for key problems)."""
        self._drop()
        self._phase = "connect"
        conn = connect(self.device, self.log, trust=trust)
        self._conn = conn
        try:
            rc, out, _ = self._exec('printf "%s" "$HOME"', self._short)
            home = out.decode("utf-8", "replace").strip()
            if rc != 0 or not home.startswith("/"):
                raise InfraError(f"device '{self.device.id}': cannot determine the remote home directory")
            self.home = home
            self.workdir = remote_workdir(self.t.workdir, home)
            # stale temporaries from a connection that died mid-upload more than an hour ago
            rc, _, err = self._exec(
                f"mkdir -p -- {quote_command([self.workdir + '/artifacts'])} && "
                f"{{ find {quote_command([self.workdir])} -maxdepth 2 -name '*{TMP_MARK}*' -mmin +60 "
                f"-exec rm -f -- {{}} + 2>/dev/null; true; }}",
                self._short,
            )
            if rc != 0:
                raise InfraError(
                    f"device '{self.device.id}': cannot create work dir {self.workdir}: {err.strip() or f'exit {rc}'}"
                )
        except (_Dropped, _Timeout, EOFError, OSError, paramiko.SSHException) as exc:
            self._drop()
            raise SshUnreachable(
                f"device '{self.device.id}': connection lost while preparing {self.t.workdir}: {self._cause(exc)}"
            ) from None
        except BaseException:
            self._drop()
            raise

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _alive(self) -> bool:
        return self._conn is not None and self._conn.active

    def _cause(self, exc: BaseException) -> str:
        text = describe(exc) if not isinstance(exc, (_Dropped, _Timeout, _Corrupt, InfraError)) else str(exc)
        prefix = f"device '{self.device.id}': "
        return text[len(prefix) :] if text.startswith(prefix) else text

    # ------------------------------------------------------------------ benchmark

    def benchmark(self, job: Job) -> dict:
        attempts = self.t.retries + 1
        first_cause = None
        for attempt in range(1, attempts + 1):
            try:
                if not self._alive():
                    self.open()
                return self._benchmark_once(job)
            except (hostkeys.HostKeyError, SshAuthError, ConfigError):
                self._drop()
                raise
            except (_Dropped, _Timeout, _Corrupt, EOFError, OSError, paramiko.SSHException, SshUnreachable) as exc:
                retryable = isinstance(exc, _RETRYABLE) or not self._alive()
                cause = self._cause(exc)
                if not isinstance(exc, (SshUnreachable, _Corrupt)) and self._phase != "connect":
                    cause = f"{cause} during {self._phase}"
                self._drop()
                if not retryable:
                    raise InfraError(f"device '{self.device.id}': {cause}") from None
                first_cause = first_cause or cause
                if attempt == attempts:
                    if cause != first_cause:
                        cause = f"{cause} (first failure: {first_cause})"
                    raise SshUnreachable(  # the board, not the runner: a labgrid place may power-cycle it
                        f"device '{self.device.id}' ({self.t.host}:{self.t.port}): {cause}; "
                        f"gave up after {attempts} attempt(s)"
                    ) from None
                delay = self.t.retry_backoff * 2 ** (attempt - 1)
                self.log(
                    f"  [{self.device.id}] {cause}; retrying in {delay:.1f} s (attempt {attempt + 1} of {attempts})"
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _benchmark_once(self, job: Job) -> dict:
        self._phase = "deploy"
        runner, model, eval_path, paired = self.deploy(job)
        self._phase = "run"
        argv = [self.python(), runner, *runner_args(job, model, eval_path, paired)]
        pid: list[str] = []  # the shell reports its pid, then exec's the runner under that same pid
        try:
            rc, out, tail = self._exec(
                f"echo {PID_TAG}$$ >&2; exec {quote_command(argv)}", self.t.command_timeout, stream=True, pid_sink=pid
            )
        except _Timeout:
            if not self._responsive():
                raise _Dropped(f"no answer from the device for {self.t.command_timeout:g} s") from None
            self._kill_remote(pid)  # the link is fine: the runner itself hung; never leave it burning CPU
            raise InfraError(
                f"device '{self.device.id}': runner did not finish within "
                f"{self.t.command_timeout:g} s (command_timeout); killed it"
            ) from None
        return parse_runner_output(out.decode("utf-8", "replace"), self.device.id, rc, tail)

    def _responsive(self) -> bool:
        try:
            return self._exec("true", min(10.0, 2 * self.t.connect_timeout))[0] == 0
        except (_Dropped, _Timeout, EOFError, OSError, paramiko.SSHException):
            return False

    def _kill_remote(self, pid: list[str]) -> None:
        if pid and pid[0].isdigit():
            try:
                self._exec(f"kill -KILL {pid[0]} 2>/dev/null; true", min(10.0, self._short))
            except (_Dropped, _Timeout, EOFError, OSError, paramiko.SSHException):
                pass

    # ------------------------------------------------------------------ deploy

    def _sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._local_sha:
            self._local_sha[key] = sha256_file(path)
        return self._local_sha[key]

    def deploy(self, job: Job) -> tuple[str, str, str | None, str | None]:
        """Make sure runner, model, eval data (and a paired model) are on the device; return their
        remote paths."""
        wd = self.workdir
        items = []  # (what, local file, remote path, sha256, is the model)
        rsha = self._sha(runner_file())
        items.append(("runner", runner_file(), f"{wd}/runner-{rsha}.py", rsha, False))
        msha = self._sha(Path(job.variant.artifact))
        label = f"{job.variant.model_name} {job.variant.variant}"
        items.append((label, Path(job.variant.artifact), f"{wd}/artifacts/{msha}.tflite", msha, True))
        if job.eval_file:
            esha = self._sha(Path(job.eval_file))
            items.append(("eval data", Path(job.eval_file), f"{wd}/artifacts/{esha}.npz", esha, False))
        paired = None
        if job.paired is not None:
            psha = self._sha(Path(job.paired.artifact))
            paired = f"{wd}/artifacts/{psha}.tflite"
            items.append(
                (
                    f"{job.paired.model_name} {job.paired.variant} (paired)",
                    Path(job.paired.artifact),
                    paired,
                    psha,
                    True,
                )
            )
        remote = self.remote_sha256([item[2] for item in items])
        for (what, local, dest, sha, is_model), have in zip(items, remote):
            if have == sha:
                if is_model:
                    self._detail(f"deploy: {what} already on device (sha256 {sha[:12]}...), 0 bytes sent")
                continue
            sent = self._upload(local, dest, sha)
            self._detail(f"deploy: {what} sent (sha256 {sha[:12]}...), {sent} bytes sent")
        return items[0][2], items[1][2], (items[2][2] if job.eval_file else None), paired

    def remote_sha256(self, paths: list[str]) -> list[str | None]:
        """sha256 of each remote file (None if missing), with `sha256sum` or else the device's python."""
        fallback = f"{quote_command([self.python()])} -c {shlex.quote(_PY_SHA256)}"
        script = (
            f'for f in {quote_command(paths)}; do if [ -f "$f" ]; then '
            f'sha256sum < "$f" 2>/dev/null || {fallback} < "$f" 2>/dev/null || echo \'?\'; '
            f"else echo -; fi; done"
        )
        rc, out, err = self._exec(script, self._short)
        lines = out.decode("utf-8", "replace").splitlines()
        if len(lines) != len(paths):
            raise InfraError(
                f"device '{self.device.id}': cannot hash files in {self.workdir} "
                f"(exit {rc}: {err.strip() or 'no output'})"
            )
        result: list[str | None] = []
        for line in lines:
            token = (line.split() or ["-"])[0].lower()
            result.append(token if len(token) == 64 and all(c in "0123456789abcdef" for c in token) else None)
        return result

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            conn = self._conn
            if conn is None or not conn.active:
                raise _Dropped("connection lost")
            self._sftp = sftp = conn.client.open_sftp()
            chan = sftp.get_channel()
            assert chan is not None, "open_sftp() returns a client on an open channel"
            chan.settimeout(self.t.command_timeout)
        return self._sftp

    def _upload(self, local: Path, dest: str, sha: str) -> int:
        """Temp name -> verify remote sha256 -> rename; the temp file never outlives a failure."""
        sftp = self._sftp_client()
        tmp = f"{dest}{TMP_MARK}{secrets.token_hex(6)}"
        placed = False
        try:
            sftp.put(str(local), tmp, confirm=True)
            got = self.remote_sha256([tmp])[0]
            if got != sha:
                raise _Corrupt(f"upload of {local.name} arrived corrupted (remote sha256 {got}, expected {sha})")
            try:
                sftp.posix_rename(tmp, dest)
            except OSError:  # server without posix-rename@openssh.com
                rc, _, err = self._exec(f"mv -f -- {quote_command([tmp, dest])}", self._short)
                if rc != 0:
                    raise InfraError(f"device '{self.device.id}': cannot move {tmp} to {dest}: {err.strip()}") from None
            placed = True
            return local.stat().st_size
        finally:
            if not placed:
                self._remove_quietly(tmp)

    def _remove_quietly(self, path: str) -> None:
        if self._sftp is None or not self._alive():
            return  # the next open() sweeps temporaries left by dead connections
        try:
            self._sftp.remove(path)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    # ------------------------------------------------------------------ remote commands

    def _exec(
        self,
        command: str,
        timeout: float,
        stdin: bytes | None = None,
        stream: bool = False,
        pid_sink: list | None = None,
    ) -> tuple[int, bytes, str]:
        """Run one command line; returns (exit code, stdout, stderr tail). stderr lines go to the log
        when `stream`. Raises _Dropped / _Timeout for transport problems."""
        tr = self._conn.transport if self._conn is not None else None
        if tr is None or not tr.is_active():  # same test as _alive(), in a form the type checker follows
            raise _Dropped("connection lost")
        try:
            chan = tr.open_session(timeout=self.t.connect_timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not tr.is_active():
                raise _Dropped(f"connection lost ({describe(exc)})") from None
            raise
        out = bytearray()
        tail: deque[str] = deque(maxlen=40)
        pending = b""

        def take_err(data: bytes, final: bool = False) -> None:
            nonlocal pending
            pending += data
            *lines, pending = pending.split(b"\n")
            if final and pending:
                lines, pending = lines + [pending], b""
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if pid_sink is not None and not pid_sink and line.startswith(PID_TAG):
                    pid_sink.append(line[len(PID_TAG) :].strip())
                    continue
                tail.append(line + "\n")
                if stream:
                    self.runner_line(line)

        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout(f"remote command did not finish within {timeout:g} s")
                select.select([chan], [], [], min(remaining, 1.0))
                while chan.recv_ready():
                    out += chan.recv(1 << 16)
                while chan.recv_stderr_ready():
                    take_err(chan.recv_stderr(1 << 16))
                if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not tr.is_active():
                    break
            take_err(b"", final=True)
            if not chan.status_event.wait(max(0.1, deadline - time.monotonic())):
                raise _Timeout(f"remote command did not report an exit status within {timeout:g} s")
            status = chan.exit_status
            if status == -1:  # no exit-status: killed by a signal, or the connection died
                tr.join(1.0)
                if not tr.is_active():
                    raise _Dropped("connection lost")
            return status, bytes(out), "".join(tail)
        finally:
            chan.close()

    # ------------------------------------------------------------------ probe

    def probe(self, script: bytes) -> tuple[int, bytes, str]:
        """Run the runner's probe with the device's python, fed on stdin (`python - --probe --workdir DIR`):
        nothing is written to the board before it is known to be usable."""
        return self._exec(
            quote_command([self.python(), "-", "--probe", "--workdir", self.workdir]), self._short, stdin=script
        )
