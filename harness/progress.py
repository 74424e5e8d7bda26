"""Progress bars on stderr for long work: conversions, the jobs of a run, MCU windows, accuracy over serial.

Bars appear only when stderr is a terminal and the `harness` logger shows INFO (not with `--quiet`), so
pipes, CI logs and tests see exactly the log lines they saw before; the per-job summary lines ("done
...", "FAILED ...") are log lines and stay either way. All bars share one `rich` display (several lanes
measure at once); it starts with the first bar and is removed when the last one ends. While it runs,
`sys.stderr` is rich's proxy, so log lines print above the bars instead of through them.

The display writes to a duplicate of the original stderr descriptor, taken when it starts: while
`harness.models.tf_quiet` has fd 2 pointed at a capture file the bars keep drawing on the terminal.

Library code asks for a bar with `with progress.task("measuring", total) as bar: ... bar.advance()`; it
gets a no-op bar whenever bars are off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

MIN_TOTAL = 2  # one item is not "long work": its log lines say enough

_lock = threading.RLock()
_display: Any = None  # rich.progress.Progress while at least one bar is open
_stream: Any = None  # the display's own handle on the terminal
_open = 0


class Bar:
    """A handle on one bar (no-op when bars are off)."""

    def __init__(self, task_id: int | None = None):
        self._task = task_id

    def advance(self, n: float = 1) -> None:
        if self._task is not None and _display is not None:
            _display.advance(self._task, n)

    def describe(self, description: str) -> None:
        if self._task is not None and _display is not None:
            _display.update(self._task, description=description)


NO_BAR = Bar()


def enabled() -> bool:
    """Bars only for a person at a terminal: not with --quiet, not into a pipe or file."""
    if not logging.getLogger("harness").isEnabledFor(logging.INFO):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _start() -> None:
    global _display, _stream
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    _stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    console = Console(file=_stream, stderr=False)
    _display = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=True,
    )
    _display.start()


def _stop() -> None:
    global _display, _stream
    try:
        if _display is not None:
            _display.stop()
    finally:
        _display = None
        try:
            _stream.close()
        except OSError:
            pass
        _stream = None


@contextlib.contextmanager
def task(description: str, total: int | None) -> Iterator[Bar]:
    """A bar for `total` steps while the block runs (a no-op bar when bars are off or total < 2)."""
    global _open
    if total is None or total < MIN_TOTAL or not enabled():
        yield NO_BAR
        return
    task_id = None
    with _lock:
        try:
            if _display is None:
                _start()
            task_id = _display.add_task(description, total=total)
            _open += 1
        except Exception:  # a terminal rich cannot drive: carry on without bars
            if _display is not None and _open == 0:
                _stop()
    if task_id is None:
        yield NO_BAR
        return
    try:
        yield Bar(task_id)
    finally:
        with _lock:
            _open -= 1
            if _display is not None:
                _display.remove_task(task_id)
                if _open == 0:
                    _stop()
