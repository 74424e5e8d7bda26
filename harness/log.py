"""Logging set-up for the `hil` CLI: progress goes to stderr through `logging`, so stdout carries only
what a script captures (a run id, a report, a table).

Library code logs through its module's logger and never configures handlers; the CLI installs one
stderr handler on the `harness` logger: INFO by default, DEBUG with `--verbose`, WARNING with `--quiet`.
"""

from __future__ import annotations

import logging
import sys

ROOT = "harness"


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* sys.stderr (tests and --debug runs may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup(verbose: bool = False, quiet: bool = False) -> None:
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
