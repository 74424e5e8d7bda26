"""`hil run --resume` against the unfinished run it meant to resume.

A run is resumed when the new command plans the same jobs. A command whose options differ plans other
jobs, and silently starting a new full run would cost the whole measurement again; so when the plan
finds nothing to resume and the newest run of the same models is unfinished with other options, the
command is a one-line error naming them (both values). Options that do not change the plan
(`--label`, `--report`, `--no-wait`, logging, `--db`, `--cache`) are not compared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

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


LISTS = {"variants", "devices", "tags"}  # comma lists: the same set in another order plans the same jobs


def _value(ns: argparse.Namespace, key: str):
    value = getattr(ns, key, None)
    if key in LISTS and isinstance(value, str):
        return sorted(v.strip() for v in value.split(",") if v.strip())
    return value


def check_resume(store: ResultStore, argv: list[str]) -> tuple[str | None, str | None]:
    """(run, mismatch) for `hil run --resume`, before anything is converted.

    `run`: the newest unfinished run of the same models started with the same options (the "planned
    other jobs" hint when the plan still differs). `mismatch`: the error to give when the plan finds
    nothing to resume and the newest run of these models is unfinished with other options (naming
    them). The orchestrator decides once the plan is known, so a run whose plan matches is resumed
    whatever the spelling of its options; a finished newest run means nothing is left to resume.
    """
    now = _parse(argv)
    if now is None:
        return None, None
    keys = sorted(k for k in vars(now) if k not in NOT_PLANNED and k != "models")
    mismatch: str | None = None
    for run_id, status, old_argv in store.recent_runs():
        before = _parse(old_argv)
        if before is None or _models(before) != _models(now):
            continue
        if status == "complete":
            break  # the newest run of these models finished: nothing older is meant
        differ = [k for k in keys if _value(now, k) != _value(before, k)]
        if not differ:
            return run_id, None
        if mismatch is None:
            flags = _flags()
            then = ", ".join(_shown(flags[k], getattr(before, k, None)) for k in differ if k in flags)
            here = ", ".join(_shown(flags[k], getattr(now, k, None)) for k in differ if k in flags)
            mismatch = (
                f"--resume: unfinished run {run_id} of {' '.join(now.models)} was started with {then}; this "
                f"command has {here}. Give the same options to resume it, or leave out --resume to start a new run"
            )
    return None, mismatch
