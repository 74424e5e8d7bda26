"""`hil mcu-sim` as a child process for tests: started, waited for by its "serving on" line (no
sleeps), and always terminated."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def simulator(model: Path, *args: str, link: Path | None = None) -> Iterator[tuple[str, str]]:
    """Yields (the pty path the simulator serves on, its output so far)."""
    cmd = [sys.executable, "-m", "harness", "mcu-sim", str(model), *args] + (["--link", str(link)] if link else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the simulator says where it serves once it is ready
            out.append(line)
            if line.startswith("serving on "):
                break
        else:
            raise AssertionError(f"mcu-sim exited early: {''.join(out)}")
        yield line.split()[2], "".join(out)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
