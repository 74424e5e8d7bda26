"""Keep TensorFlow's console chatter off hil's stderr.

Converting one model prints hundreds of lines (`Captures: ... TensorSpec`, absl `W0000 ...` warnings,
`cuInit` CUDA errors, `fully_quantize: 0 ...`), most of them from C++ straight to file descriptor 2,
where `contextlib.redirect_stderr` cannot reach. `captured()` therefore points fds 1 and 2 (and
`sys.stdout`/`sys.stderr`) at a temporary file for the duration of a TensorFlow call:

- with `--verbose` (the `harness` logger at DEBUG) nothing is captured: the chatter flows as before;
- when the call succeeds the captured text is dropped;
- when it fails, the relevant tail (noise patterns removed, the last `TAIL_LINES` lines) is logged as a
  warning before the error travels on, so the one-line `hil: error:` has its context above it.

hil's own progress bars write to a duplicate of the original fd 2 (see `harness.progress`), so they keep
drawing while TensorFlow is muted. Captures nest (an inner one passes through) and are serialised by a
lock: the descriptors belong to the whole process.

During a capture `sys.stdout`/`sys.stderr` are two long-lived redirects, not the capture file itself:
libraries keep the stream they find. TensorFlow's logger binds its handler to whatever `sys.stderr` is
on its first use, often inside a capture (the first training step); when that was the capture's file,
every later TensorFlow warning hit a closed file and printed a "--- Logging error --- ValueError: I/O
operation on closed file" traceback (4 per sweep with distillation and QAT). A redirect writes into
the capture that is running, and outside one drops the text unless `-vv` (DEBUG): it is TensorFlow's
own output, which the console shows only there.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

_log = logging.getLogger(__name__)

# set before TensorFlow is imported (it reads them once): C++ INFO and WARNING stay quiet even where no
# capture is active; errors still reach the captured text for the failure tail
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR"}
TAIL_LINES = 25

# lines that never explain a failure: export listings, absl preamble, CUDA probing, quantiser settings
NOISE = re.compile(
    "|".join(
        [
            r"^\s*$",
            r"TensorSpec\(",
            r"^Captures:",
            r"^Output Type:",
            r"^\* Endpoint",
            r"^Saved artifact at",
            r"The following endpoints are available",
            r"All log messages before absl::InitializeLog",
            r"cuInit|cuda_(platform|diagnostics|executor)|CUDA",
            r"Ignored (output_format|drop_control_dependency)",
            r"MLIR V1 optimization pass is not enabled",
            r"^fully_quantize: ",
            r"oneDNN custom operations",
            r"Created TensorFlow Lite XNNPACK delegate",
            r"This TensorFlow binary is optimized",
            r"^\s*warnings\.warn\(",
            r"To enable the following instructions",
        ]
    )
)

_lock = threading.RLock()
_depth = 0
_active: io.TextIOWrapper | None = None  # the running capture's text stream


class _Redirect(io.TextIOBase):
    """`sys.stdout` or `sys.stderr` during a capture, and afterwards in the hands of whoever kept it
    (see the module doc)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<tf_quiet redirect of sys.{self._name}>"

    def _target(self):
        if _active is not None and not _active.closed:
            return _active
        if verbose():  # never stdout: it carries what a script captures (a run id)
            return sys.stderr if sys.stderr is not self else None
        return None

    def write(self, text: str) -> int:
        target = self._target()
        if target is not None:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        target = self._target()
        if target is not None:
            _flush(target)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        target = self._target()
        if target is None:
            raise io.UnsupportedOperation("fileno")
        return target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


_STDOUT, _STDERR = _Redirect("stdout"), _Redirect("stderr")


def prepare_env() -> None:
    """Quiet defaults for TensorFlow's own logging (a value the user set wins)."""
    for k, v in ENV.items():
        os.environ.setdefault(k, v)


def verbose() -> bool:
    return logging.getLogger("harness").isEnabledFor(logging.DEBUG)


def relevant_tail(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last `n` lines that are not known noise (none when all of them are: `--verbose` shows those)."""
    return [ln.rstrip() for ln in text.splitlines() if not NOISE.search(ln)][-n:]


class Captured:
    """What a capture collected (readable after the `with` block, too)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def captured(what: str) -> Iterator[Captured]:
    """Run the block with TensorFlow's output captured (see the module doc); `what` names the work in
    the failure message ("conversion of net to int8")."""
    global _depth, _active
    result = Captured()
    prepare_env()
    if verbose():
        yield result
        return
    with _lock:
        if _depth:  # an outer capture already holds the descriptors
            _depth += 1
            try:
                yield result
            finally:
                _depth -= 1
            return
        try:
            saved = (os.dup(1), os.dup(2))
        except OSError:  # no fd 1/2 to redirect (a daemon): nothing reaches a console anyway
            yield result
            return
        _depth = 1
        sys_out, sys_err = sys.stdout, sys.stderr
        for stream in (sys_out, sys_err):
            _flush(stream)
        with tempfile.TemporaryFile() as buf:
            os.dup2(buf.fileno(), 1)
            os.dup2(buf.fileno(), 2)
            text_out = io.TextIOWrapper(
                os.fdopen(os.dup(2), "wb"), encoding="utf-8", errors="replace", line_buffering=True
            )
            _active = text_out
            sys.stdout, sys.stderr = _STDOUT, _STDERR
            failed = True
            try:
                yield result
                failed = False
            finally:
                _flush(text_out)
                _active = None
                text_out.close()
                for stream in (sys_out, sys_err):
                    _flush(stream)  # Python-level buffers of the real streams were redirected too
                sys.stdout, sys.stderr = sys_out, sys_err
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                _depth = 0
                buf.seek(0)
                result.text = buf.read().decode("utf-8", "replace")
                if failed:
                    tail = relevant_tail(result.text)
                    if tail:
                        _log.warning(
                            "%s failed; TensorFlow said (last %d relevant lines, all with --verbose):\n%s",
                            what,
                            len(tail),
                            "\n".join("  | " + ln for ln in tail),
                        )


def _flush(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass
