"""Shared plumbing for sub-commands: loading the lab, the store and the converter from global flags."""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from harness.core.jobs import RunOptions
from harness.errors import ConfigError
from harness.lab.config import Inventory, load_default_inventory, load_inventory
from harness.log import DETAIL
from harness.models.convert import Converter, default_cache_dir
from harness.store.results import ResultStore

DEFAULT_INVENTORY_PATH = "inventory.yaml"

# what "latest" means to every command (ResultStore.latest_run_id)
LATEST = "the newest run started by `hil run` or `hil sweep`, never a gate confirmation or `hil calibrate` run"


_log = logging.getLogger("harness.commands")


def log(msg: str) -> None:
    """Progress for the user (stderr, through logging): commands hand this to the stages they drive."""
    _log.info(msg)


def detail(msg: str) -> None:
    """A step of the command that only `hil -v` shows (harness.log)."""
    _log.log(DETAIL, msg)


def inventory(args) -> Inventory:
    """The lab's inventory; without one (the default path missing) this machine is the only device."""
    if args.inventory == DEFAULT_INVENTORY_PATH and not Path(args.inventory).exists() and not args.profiles:
        return load_default_inventory()
    return load_inventory(Path(args.inventory), Path(args.profiles) if args.profiles else None)


def store(args, create: bool = True, read_only: bool = False, replay: bool = True) -> ResultStore:
    """The results database; commands that need an existing one pass create=False so a typo in --db is
    an error, commands that only read pass read_only=True (they never write). `--db` is a file path or
    a PostgreSQL URL. A writable open first stores the results an earlier `hil run` had to spool
    because this database could not take them (harness/store/spool.py)."""
    opened = ResultStore(args.db, create=create, read_only=read_only)
    if not read_only and replay:
        from harness.store.spool import Spool, spool_dir

        spool = Spool(spool_dir(cache_root(args)), opened.location)
        if spool.pending():
            done = spool.replay(opened)
            if done.stored or done.finished:
                log(f"recovered {done.stored} spooled result(s) from {spool.directory} into {opened.path}")
            if done.left:
                log(f"{done.left} spooled result(s) not stored yet: {done.problems[0]} (`hil db recover` retries)")
    return opened


def cache_root(args) -> Path:
    """`--cache`, else $HILBENCH_CACHE, else ~/.cache/hilbench: artifacts, bundles, locks, spool."""
    return Path(args.cache).expanduser().resolve() if args.cache else default_cache_dir().parent.resolve()


def converter(args) -> Converter:
    """The artifact cache under `cache_root`: the spool beside it is where `hil db recover` looks."""
    return Converter(cache_root(args) / "artifacts", log=log)


def work_dirs(args) -> None:
    """The folders a measuring command writes besides the database (the artifact cache with its spool,
    the device locks), checked before a run is created: a setting that points at a file or at a folder
    this user cannot write is one line now, not a traceback or an `interrupted` run later."""
    from harness.run.device_lock import LOCK_DIR_ENV, lock_dir

    cache_setting = "--cache" if args.cache else "HILBENCH_CACHE"
    lock_setting = LOCK_DIR_ENV if os.environ.get(LOCK_DIR_ENV) else cache_setting
    for folder, what, setting in (
        (cache_root(args), "artifact cache", cache_setting),
        (lock_dir(), "device lock directory", lock_setting),
    ):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder}: the {what} is a file, not a folder; point {setting} at a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{folder}: cannot create the {what} ({exc.strerror}); set {setting}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{folder}: cannot write in the {what} (permission denied); set {setting}")


def output_file(path: str, what: str) -> Path:
    """An output path given on the command line, checked when the command starts: a directory, a
    file standing where a folder should be, or a folder this user may not write into is a one-line
    error now rather than a traceback after the work (a gate may re-measure for minutes first)."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name for the {what}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # write_output creates the missing part
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{out}: cannot write the {what}: {folder} is not a directory")
    if not os.access(out if out.exists() else folder, os.W_OK):
        raise ConfigError(f"{out}: cannot write the {what}: permission denied")
    return out


def write_output(out: Path, what: str, write: Callable[[Path], object]) -> None:
    """`write(out)` after creating its folder; what output_file cannot foresee (a full disk, a folder
    removed meanwhile) is a one-line error naming the file too."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write(out)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the {what}: {exc.strerror or exc}") from None


def split_csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# ------------------------------------------------------------------ argparse types and shared options


def at_least(cast, minimum, noun: str, maximum=None):
    """argparse type: a finite `cast` number >= minimum (and <= maximum): nonsense never reaches the
    planner or the device runner (`inf` seconds, 10^20 repeats)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"{text.strip()} must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text.strip()} is more than {maximum:g}, the most allowed")
        return value

    return parse


def count(minimum: int, maximum: int | None = None):
    return at_least(int, minimum, "a whole number", maximum)


def seconds(minimum: float):
    return at_least(float, minimum, "a number of seconds")


# `--repeats`: fresh runner processes per job (pyperf runs 20; 1000 is hours per job on any device)
MAX_REPEATS = 1000


def add_measurement_options(p) -> None:
    """Flags that override a profile's `benchmark:` settings (run, demo)."""
    p.add_argument(
        "--min-runs",
        type=count(1),
        metavar="N",
        help="minimum timed inferences per runner process (default: the profile's benchmark.min_runs)",
    )
    p.add_argument(
        "--min-seconds",
        type=seconds(0.0),
        metavar="S",
        help="minimum length of each process's timed window (MCU: the total over its windows)",
    )
    p.add_argument(
        "--max-seconds",
        type=seconds(0.001),
        metavar="S",
        help="stop a process's timed window after S seconds even below --min-runs",
    )
    p.add_argument("--warmup-runs", type=count(0), metavar="N", help="untimed inferences before timing")
    p.add_argument("--warmup-seconds", type=seconds(0.0), metavar="S", help="untimed warmup of at least S seconds")
    p.add_argument(
        "--num-threads",
        type=count(1),
        metavar="N",
        help="interpreter threads (default: the profile's num_threads, usually 1)",
    )
    p.add_argument(
        "--no-xnnpack",
        dest="xnnpack",
        action="store_false",
        default=None,
        help="run without the XNNPACK delegate (the built-in CPU kernels)",
    )
    p.add_argument(
        "--repeats",
        type=count(1, MAX_REPEATS),
        help="fresh runner processes per job, round-robin across jobs (default: the profile's)",
    )


# `--profile` without a count: profiled invocations per process (benchmark_model profiles its whole
# timed loop; a pass of its own keeps the profiler's overhead out of the gated latency)
DEFAULT_PROFILE_RUNS = 20


def add_profile_option(p) -> None:
    """Per-operator profile in its own pass after the timed windows (harness.profile)."""
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile each operator after the timed windows (never part of the latency the gate uses)",
    )
    p.add_argument(
        "--profile-runs",
        type=count(1, MAX_REPEATS),
        metavar="N",
        help=f"profiled invocations per process with --profile (default {DEFAULT_PROFILE_RUNS})",
    )


def profile_runs_from(args) -> int | None:
    if getattr(args, "profile_runs", None) and not getattr(args, "profile", False):
        raise ConfigError("--profile-runs: needs --profile")
    if not getattr(args, "profile", False):
        return None
    return args.profile_runs or DEFAULT_PROFILE_RUNS


def add_robustness_options(p) -> None:
    """Accuracy on perturbed copies of the eval set (harness/models/perturb.py)."""
    from harness.models.perturb import FORMS_HELP

    p.add_argument(
        "--robustness",
        action="append",
        metavar="SPEC",
        help=f"also score the eval set under these perturbations (comma-separated or repeated: {FORMS_HELP}); "
        "stored as accuracy_top1@SPEC and agreement@SPEC",
    )
    p.add_argument(
        "--robustness-seed",
        type=count(0),
        default=0,
        metavar="N",
        help="seed of the random perturbations (default 0; the same seed gives the same inputs every night)",
    )


def robustness_from(args, budgets: dict[str, float] | None = None):
    """--robustness, plus the perturbations that robustness budgets name (min_accuracy_top1@SPEC)."""
    from harness.models.perturb import parse_list

    specs = list(getattr(args, "robustness", None) or [])
    specs += [name.partition("@")[2] for name in budgets or {} if "@" in name]
    return parse_list(specs)


def add_lock_options(p) -> None:
    """Commands that measure hold each device's lock (harness/run/device_lock.py) while they use it."""
    p.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="when a device is in use by another hilbench process, fail at once (exit 2) instead of waiting for it",
    )


def options_from(args) -> RunOptions:
    return RunOptions(
        min_runs=args.min_runs,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        warmup_runs=args.warmup_runs,
        warmup_seconds=args.warmup_seconds,
        num_threads=args.num_threads,
        xnnpack=args.xnnpack,
        repeats=args.repeats,
        profile_runs=profile_runs_from(args),
    )
