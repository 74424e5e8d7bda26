"""`hil` entry point: one-line errors with meaningful exit codes; tracebacks only with --debug."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any, NoReturn, TextIO, cast

from harness import __version__, log
from harness.errors import EXIT_USAGE, HilError

DEFAULT_DB = "reports/results.sqlite"  # harness.store.results.DEFAULT_DB, without importing the store here

# Each module in harness/commands registers its own sub-command(s) with `register(subparsers)`.
COMMAND_MODULES = [
    "run",
    "profile",
    "convert",
    "analyze",
    "results",
    "report",
    "devices",
    "demo",
    "mcu_sim",
    "meter_sim",
    "build",
    "deploy",
    "gate",
    "bisect",
    "baseline",
    "compare",
    "calibrate",
    "sweep",
    "lineage",
    "db",
    "publish",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2; usage errors are 3 here
        self.print_usage(sys.stderr)
        print(f"hil: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hil", description="hilbench: hardware-in-the-loop benchmarks for compressed ML models")
    parser.add_argument("--version", action="version", version=f"hilbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="each stage's detail on stderr (conversions, the device runner's lines); -vv: also the output "
        "of TensorFlow and of the TFLite runtime",
    )
    parser.add_argument(
        "-q", "--quiet", dest="log_quiet", action="store_true", help="only warnings and errors on stderr"
    )
    parser.add_argument("--inventory", default="inventory.yaml", help="lab inventory (default: %(default)s)")
    parser.add_argument("--profiles", default=None, help="device profile directory (default: next to the inventory)")
    parser.add_argument(
        "--db",
        default=None,
        help="results database: a file, or postgresql://user@host:port/dbname shared by several controllers "
        f"(default: $HILBENCH_DB, else {DEFAULT_DB})",
    )
    parser.add_argument(
        "--cache", default=None, help="artifact cache directory (default: $HILBENCH_CACHE or ~/.cache/hilbench)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


class _ReaderMayLeave:
    """sys.stdout while a command runs. When the reader of the pipe leaves (`hil gate | head -1`), the
    rest of the output goes to /dev/null and the command runs on to its own exit code: aborting it at
    the first print would turn a regression (1) into whatever the abort returns, and a nightly job
    that pipes the summary still branches on the code."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()

    def _reader_left(self) -> None:
        # the buffer keeps what the pipe refused; flushed to /dev/null it can no longer fail, neither
        # here nor in the interpreter's final flush of sys.stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, a service being stopped) unwinds like Ctrl-C: links are closed,
    labgrid places released and remote temporaries removed by the code that holds them, and the
    results measured so far are kept. Python's default for SIGTERM is to die on the spot."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return _main(argv)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # as given (stored with a run)
    args.db = args.db or os.environ.get("HILBENCH_DB") or DEFAULT_DB
    log.setup(verbose=args.verbose, quiet=args.log_quiet)
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _ReaderMayLeave(stdout))
    try:
        code = args.func(args)
    except HilError as exc:
        if args.debug:
            raise
        print(f"hil: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        why = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"hil: {why}; results measured so far are saved (use `hil run --resume`)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
