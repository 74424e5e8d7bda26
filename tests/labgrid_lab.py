"""A real labgrid lab on loopback for the labgrid transport tests: a `labgrid-coordinator`, a
`labgrid-exporter` exporting the pty of a `hil mcu-sim` as a RawSerialPort (the exporter runs ser2net
in front of it once a place is acquired) or the test sshd as a NetworkService, and a place matching
that resource, made with `labgrid-client`.

The exporter starts ser2net with an accepter on all interfaces and no way to change it; a `ser2net`
wrapper early in the exporter's PATH rewrites the accepter to 127.0.0.1, so nothing a test starts is
reachable from the network. Readiness is polled (a port that accepts, a resource the coordinator
lists), never slept for.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BIN = Path(sys.executable).parent  # labgrid's scripts live next to the interpreter running the tests
START_TIMEOUT = 60.0

SER2NET_WRAPPER = """\
#!{python}
# labgrid's exporter gives ser2net `accepter: ...,tcp,PORT` (all interfaces): keep it on loopback
import os, re, sys
real = {real!r}
args = [re.sub(r",tcp,(\\d+)$", r",tcp,127.0.0.1,\\1", a) if "accepter:" in a else a for a in sys.argv[1:]]
os.execv(real, [real, *args])
"""


def available() -> bool:
    try:
        import labgrid  # noqa: F401
    except ImportError:
        return False
    ser2net = shutil.which("ser2net") or os.path.exists("/usr/sbin/ser2net")
    return (BIN / "labgrid-coordinator").exists() and bool(ser2net)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Lab:
    address: str
    dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    exporters: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self, *args: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """`labgrid-client`, as this host's user or as someone else (`user`: `host/name`)."""
        env = {**os.environ, "LG_COORDINATOR": self.address}
        if user:
            env["LG_HOSTNAME"], env["LG_USERNAME"] = user.split("/")
        p = subprocess.run([str(BIN / "labgrid-client"), *args], env=env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"labgrid-client {' '.join(args)} -> {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def holder(self, place: str) -> str | None:
        """Who holds the place, from `labgrid-client show` (its `acquired:` line)."""
        out = self.client("-p", place, "show").stdout
        for line in out.splitlines():
            if line.strip().startswith("acquired:"):
                value = line.split(":", 1)[1].strip()
                return None if value in ("", "None") else value
        raise AssertionError(f"no acquired: line in {out}")

    def export_serial(self, name: str, pty: str, power: dict | None = None) -> str:
        """An exporter `name` with the pty as a RawSerialPort (and, given `power`, the parameters of a
        power port, in the same group: a NetworkPowerPort, or the class its `cls` key names); returns
        the match for a place once the coordinator lists the resources (the power port's match: the
        same with the power port's class)."""
        bindir = self.dir / "bin"
        bindir.mkdir(exist_ok=True)
        wrapper = bindir / "ser2net"
        real = shutil.which("ser2net") or "/usr/sbin/ser2net"
        wrapper.write_text(SER2NET_WRAPPER.format(python=sys.executable, real=real))
        wrapper.chmod(0o755)
        config = f"board:\n  RawSerialPort:\n    port: {pty}\n    speed: 115200\n"
        config, also = _with_power(name, config, power)
        env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        return self._exporter(name, config, f"{name}/board/NetworkSerialPort", env, also)

    def export_service(self, name: str, port: int, username: str, power: dict | None = None) -> str:
        """An exporter `name` with an SSH service on 127.0.0.1:port as a NetworkService (the exporter
        only publishes it: clients connect to the address themselves), and given `power` a
        power port as in export_serial; returns the match for a place."""
        config = f"board:\n  NetworkService:\n    address: 127.0.0.1\n    port: {port}\n    username: {username}\n"
        config, also = _with_power(name, config, power)
        return self._exporter(name, config, f"{name}/board/NetworkService", also=also)

    def _exporter(
        self, name: str, config: str, match: str, env: dict | None = None, also: list[str] | None = None
    ) -> str:
        path = self.dir / f"{name}.yaml"
        path.write_text(config)
        log = open(self.dir / f"{name}.log", "w")
        self.procs.append(
            subprocess.Popen(
                [str(BIN / "labgrid-exporter"), "-c", self.address, "-n", name, "--hostname", "127.0.0.1", str(path)],
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        )
        self.exporters[name] = self.procs[-1]
        wanted = [match, *(also or [])]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(m in self.client("resources").stdout for m in wanted):
            assert self.procs[-1].poll() is None, (self.dir / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"exporter {name} did not register {', '.join(wanted)}"
            time.sleep(0.1)  # polling the coordinator's resource list
        return match

    def stop_exporter(self, name: str) -> None:
        """The exporter host goes down: stopped, and waited for until the coordinator no longer lists
        its resources as available."""
        proc = self.exporters.pop(name)
        proc.terminate()
        proc.wait(timeout=10)
        deadline = time.monotonic() + START_TIMEOUT
        while f"{name}/" in self.client("resources").stdout:
            assert time.monotonic() < deadline, f"the coordinator still lists the resources of exporter {name}"
            time.sleep(0.1)  # polling the coordinator's resource list

    def place(self, name: str, *matches: str, tags: dict[str, str] | None = None) -> None:
        self.client("-p", name, "create")
        for match in matches:
            self.client("-p", name, "add-match", match)
        if tags:
            self.client("-p", name, "set-tags", *(f"{k}={v}" for k, v in tags.items()))

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _with_power(exporter: str, config: str, power: dict | None) -> tuple[str, list[str]]:
    """The exporter config with the power port added to the board's group, and its match."""
    if not power:
        return config, []
    params = dict(power)
    cls = params.pop("cls", "NetworkPowerPort")
    config += f"  {cls}:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in params.items())
    return config, [f"{exporter}/board/{cls}"]


def start_lab(directory: Path) -> Lab:
    """A coordinator on a free loopback port, its state files in `directory`."""
    port = free_port()
    lab = Lab(f"127.0.0.1:{port}", directory)
    log = open(directory / "coordinator.log", "w")
    lab.procs.append(
        subprocess.Popen(
            [str(BIN / "labgrid-coordinator"), "-l", lab.address],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _accepts(port):
        if lab.procs[0].poll() is not None or time.monotonic() > deadline:
            lab.stop()
            raise AssertionError(f"labgrid-coordinator did not start: {(directory / 'coordinator.log').read_text()}")
        time.sleep(0.05)  # polling the port
    return lab


class PowerSwitch:
    """A network power switch on loopback, for a board that cannot have a real one here: it speaks the
    HTTP protocols of labgrid's `rest` power backend (GET/PUT `.../relay/INDEX/value`, body `0`/`1`)
    and `simplerest` (GET `.../relay/INDEX/0|1` switches, GET `.../relay/INDEX` reads), and that of
    pdudaemon's HTTP listener (GET `/power/control/on|off|reboot?hostname=PDU&port=INDEX`, answered
    `OK - accepted request` or 500 `Invalid request: ...`; its one PDU is `PDU`), records every
    request, and calls `switched(index, on)` before it answers, as a relay has switched when the switch
    says so (the tests wire that to the simulated board's supply)."""

    PDU = "rack1-pdu"

    def __init__(self, switched: Callable[[int, bool], None]):
        self.requests: list[tuple[str, str, str]] = []  # (method, path, body)
        self.state: dict[int, bool] = {}
        switch = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                switch.requests.append((method, self.path, body))
                if self.path.startswith("/power/control/"):
                    return self._pdudaemon(method)
                parts = self.path.strip("/").split("/")
                if len(parts) < 2 or parts[0] != "relay" or not parts[1].isdigit():
                    return self._answer(404)
                index = int(parts[1])
                rest = parts[2] if len(parts) > 2 else ""
                if method == "PUT" and rest == "value" and body in ("0", "1"):
                    return self._switch(index, body == "1")
                if method == "GET" and rest in ("0", "1"):
                    return self._switch(index, rest == "1")
                if method == "GET" and rest in ("", "value"):
                    return self._answer(200, "1" if switch.state.get(index, True) else "0")
                return self._answer(400)

            def _pdudaemon(self, method: str) -> None:
                url = urlsplit(self.path)
                command = url.path.rsplit("/", 1)[-1]
                query = parse_qs(url.query)
                pdu, port = query.get("hostname", [""])[0], query.get("port", [""])[0]
                if method != "GET" or command not in ("on", "off", "reboot"):
                    return self._answer(404)
                if pdu != switch.PDU or not port.isdigit():
                    return self._answer(500, f"Invalid request: unknown PDU {pdu} or port {port}\n")
                if command == "reboot":
                    switched(int(port), False)
                    switched(int(port), True)
                else:
                    switched(int(port), command == "on")
                return self._answer(200, "OK - accepted request\n")

            def _switch(self, index: int, on: bool) -> None:
                switch.state[index] = on
                switched(index, on)
                self._answer(200)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def host(self, model: str) -> str:
        """The `host` parameter of a NetworkPowerPort of that model pointing here (of a PDUDaemonPort
        for model `pdudaemon`)."""
        if model == "pdudaemon":
            return f"127.0.0.1:{self.port}"
        last = "value" if model == "rest" else "{value}"
        return f"http://127.0.0.1:{self.port}/relay/{{index}}/{last}"

    def switching(self) -> list[str]:
        """The switching requests in order: 'off'/'on'."""
        out = []
        for method, path, body in self.requests:
            if path.startswith("/power/control/"):
                out.append(urlsplit(path).path.rsplit("/", 1)[-1])
            elif method == "PUT" and body in ("0", "1"):
                out.append("on" if body == "1" else "off")
            elif method == "GET" and path.rstrip("/").split("/")[-1] in ("0", "1") and path.count("/") >= 3:
                out.append("on" if path.endswith("1") else "off")
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BoardLink:
    """The network link of a Linux board that can hang, in front of the test sshd: a loopback TCP
    forwarder whose state the fake power switch sets. `up` forwards; `hung` accepts connections and
    answers nothing (a frozen kernel: SSH sees no banner); `off` closes every connection at once (no
    power); after power-on the board refuses `boot_refusals` connections (sshd not up yet), then is
    `up` again, or `hung` again with `hangs_after_boot`. Counted connections, not time, so that a
    test does not depend on how fast the host is."""

    def __init__(self, target: int, state: str = "up", boot_refusals: int = 2, hangs_after_boot: bool = False):
        self.target, self.state = target, state
        self.boot_refusals, self.hangs_after_boot = boot_refusals, hangs_after_boot
        self.refused = 0
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def power(self, on: bool) -> None:
        with self.lock:
            self.state = "booting" if on else "off"
            self.refused = 0
            dropped, self.open = self.open, []
        for c in dropped:
            c.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            with self.lock:
                if self.state == "booting" and self.refused >= self.boot_refusals:
                    self.state = "hung" if self.hangs_after_boot else "up"
                state = self.state
                if state in ("off", "booting"):
                    self.refused += 1
                else:
                    self.open.append(conn)
            if state in ("off", "booting"):
                conn.close()
            elif state == "up":
                upstream = socket.create_connection(("127.0.0.1", self.target))
                with self.lock:
                    self.open.append(upstream)
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def stop(self) -> None:
        self.listener.close()
        self.power(False)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def ssh_options(sshd_server, known_hosts: Path, python: str, workdir: Path, **over) -> dict:
    """The `ssh` block of a labgrid device whose place exports the test sshd (keys only, no agent)."""
    return {
        "user": sshd_server.user,
        "key_file": str(sshd_server.client_key),
        "known_hosts": str(known_hosts),
        "use_agent": False,
        "python": python,
        "workdir": str(workdir),
        "connect_timeout": 5,
        "retries": 1,
        "retry_backoff": 0.2,
        **over,
    }
