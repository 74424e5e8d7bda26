"""`hil run --resume` against the unfinished run it meant to resume.

A run is resumed when the new command plans the same jobs. A command whose options differ plans other
jobs, and silently starting a new full run would cost the whole measurement again; so the newest
unfinished run of the same models is compared with this command before anything is converted, and a
differing option is a one-line error naming it (both values). Options that do not change the plan
(`--label`, `--report`, `--no-wait`, logging, `--db`, `--cache`) are not compared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

from harness.errors import ConfigError
from harness.store.results import ResultStore

NOT_PLANNED = {"resume", "label", "report", "wait", "debug", "verbose", "log_quiet", "func", "command", "db", "cache"}


def _parse(argv: list[str]) -> argparse.Namespace | None:
    """`argv` as `hil` reads it; None for what is not a `hil run` command line (an in-process call
    stores its host's argv, an older hilbench may have had other options)."""
    from harness.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns = build_parser().parse_args(argv)
    except SystemExit:
        return None
    return ns if getattr(ns, "command", None) == "run" else None


def _flags() -> dict[str, argparse.Action]:
    """dest -> its option (the long spelling) of `hil` and `hil run`."""
    from harness.cli import build_parser

    parser = build_parser()
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            actions += action.choices["run"]._actions
    return {a.dest: a for a in actions if a.option_strings}


def _shown(action: argparse.Action, value) -> str:
    flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
    if isinstance(value, bool) or value is None:
        given = value is not None and value != action.default
        return flag if given else f"no {flag}"
    if isinstance(value, list):
        return " ".join(f"{flag} {v}" for v in value)
    return f"{flag} {value}"


def _models(ns: argparse.Namespace) -> list[str]:
    return [os.path.normpath(m) for m in ns.models]


def check_resume(store: ResultStore, argv: list[str]) -> str | None:
    """The newest unfinished run of the same models started with the same options (its id), None
    when no unfinished run has these models; ConfigError naming the options that differ from the
    newest such run when none was started with this command's options."""
    now = _parse(argv)
    if now is None:
        return None
    keys = sorted(k for k in vars(now) if k not in NOT_PLANNED and k != "models")
    newest: tuple[str, argparse.Namespace, list[str]] | None = None
    for run_id, old_argv in store.unfinished_runs():
        before = _parse(old_argv)
        if before is None or _models(before) != _models(now):
            continue
        differ = [k for k in keys if getattr(now, k, None) != getattr(before, k, None)]
        if not differ:
            return run_id
        newest = newest or (run_id, before, differ)
    if newest is None:
        return None
    run_id, before, differ = newest
    flags = _flags()
    then = ", ".join(_shown(flags[k], getattr(before, k, None)) for k in differ if k in flags)
    here = ", ".join(_shown(flags[k], getattr(now, k, None)) for k in differ if k in flags)
    raise ConfigError(
        f"--resume: unfinished run {run_id} of {' '.join(now.models)} was started with {then}; this "
        f"command has {here}. Give the same options to resume it, or leave out --resume to start a new run"
    )
