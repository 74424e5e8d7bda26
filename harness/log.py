"""Logging set-up for the `hil` CLI: progress goes to stderr through `logging`, so stdout carries only
what a script captures (a run id, a report, a table).

Library code logs through its module's logger and never configures handlers; the CLI installs one
stderr handler on the `harness` logger. Three levels of chatter:

- default (INFO): what a person reading a CI log needs: one line per job (`done ...` / `FAILED ...`),
  summaries, warnings. A nightly of 2 variants x 3 repeats is 7 lines, not 50;
- `-v` (DETAIL): each stage's own steps: conversions and cache hits, `measuring ...`, the device
  runner's lines (runtime, model path, phases, accuracy), files deployed, each confirmation process;
- `-vv` (DEBUG): also what hilbench normally keeps off the console: TensorFlow's and the TFLite
  runtime's own output (`harness.models.tf_quiet` stops capturing), tracebacks of runner crashes.

`--quiet` (WARNING) keeps only warnings and errors.
"""

from __future__ import annotations

import logging
import sys

ROOT = "harness"
DETAIL = 15  # between DEBUG and INFO: shown with -v
logging.addLevelName(DETAIL, "DETAIL")


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* sys.stderr (tests and --debug runs may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def level_for(verbose: int = 0, quiet: bool = False) -> int:
    if quiet:
        return logging.WARNING
    return logging.INFO if verbose <= 0 else DETAIL if verbose == 1 else logging.DEBUG


def setup(verbose: int = 0, quiet: bool = False) -> None:
    """`verbose`: how many -v (True counts as one)."""
    level = level_for(int(verbose), quiet)
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s" if level == logging.DEBUG else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
