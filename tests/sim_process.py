"""`hil mcu-sim` and `hil meter-sim` as child processes for tests: started, waited for by their
"serving on" line (no sleeps), and always terminated."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.mcu.serial.link import SerialLink
from harness.mcu.serial.protocol import TIMER_WRAP, ProtocolClient


@contextmanager
def simulator(model: Path, *args: str, link: Path | None = None) -> Iterator[tuple[str, str]]:
    """Yields (the pty path the simulator serves on, its output so far)."""
    with serving("mcu-sim", str(model), *args, link=link) as got:
        yield got


@contextmanager
def meter(kind: str, wire: Path, *args: str, link: Path | None = None) -> Iterator[tuple[str, str]]:
    """`hil meter-sim KIND --wire WIRE`: yields (its pty path, its output so far)."""
    with serving("meter-sim", kind, "--wire", str(wire), *args, link=link) as got:
        yield got


@contextmanager
def serving(*args: str, link: Path | None = None) -> Iterator[tuple[str, str]]:
    cmd = [sys.executable, "-m", "harness", *args] + (["--link", str(link)] if link else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the simulator says where it serves once it is ready
            out.append(line)
            if line.startswith("serving on "):
                break
        else:
            raise AssertionError(f"{args[0]} exited early: {''.join(out)}")
        yield line.split()[2], "".join(out)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def client_on(port: str, *, infer_timeout: float, timer_wrap_us: int = TIMER_WRAP) -> Iterator[ProtocolClient]:
    """A protocol client on the simulator's pty, resynced and identified; its log lines are kept in
    `client.log_lines`."""
    log: list[str] = []
    link = SerialLink(port, 115200, "sim")
    link.open()
    client = ProtocolClient(
        link, "sim", timeout=2.0, infer_timeout=infer_timeout, timer_wrap_us=timer_wrap_us, log=log.append
    )
    client.log_lines = log  # type: ignore[attr-defined]
    try:
        client.resync()
        client.identify()
        yield client
    finally:
        link.close()
