"""Tensor-arena size of a model, measured with the real TFLM interpreter (``tflite-micro`` package).

What the Python package exposes: ``Interpreter.print_allocations()`` makes its
``RecordingMicroAllocator`` print, on the process's stderr (C level, not ``sys.stderr``)::

    [RecordingMicroAllocator] Arena allocation total 2416 bytes
    [RecordingMicroAllocator] Arena allocation head 208 bytes
    [RecordingMicroAllocator] Arena allocation tail 2208 bytes
    [RecordingMicroAllocator] 'TfLiteEvalTensor data' used 360 bytes ... (requested 360 bytes for 15 allocations)
    ...

"total" is head (non-persistent, planned activations) + tail (persistent), i.e. what
``MicroInterpreter::arena_used_bytes()`` returns on a device. There is no ``arena_used_bytes()``
binding, so the text is parsed.

That figure is *not* the smallest arena that works: ``AllocateTensors()`` also needs temporary
memory (memory-planner scratch, temporary TfLiteTensors) above the head while it runs, and that peak
is not recorded (tflite-micro issues #890, #1104, #2738). An arena of exactly "total" bytes fails
(or, with the Python wrapper, can even crash the process). So the arena is measured twice:

- ``reported_used_bytes``: the interpreter's report (the number ``hb-arena`` shows on the device),
- ``min_working_bytes``: the smallest arena (multiple of ``align``) with which the interpreter
  allocates and runs an inference, found by bisection,

and ``measured_bytes = max(both)``. The bundle's arena is ``measured_bytes * (1 + margin)`` rounded
up to ``align``. Every probe runs in a child process: a too-small arena can segfault the TFLM Python
wrapper, and the allocator report goes to the C-level stderr.

The host build is 64-bit: pointer-holding structures (TfLiteEvalTensor, node and registration
structs) are larger than on a 32-bit MCU, so the host figure is usually an upper bound. Optimised
kernels (CMSIS-NN, ESP-NN) may request different scratch buffers than the reference kernels measured
here; the profile's ``mcu.arena_margin`` is meant to cover that.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from harness.errors import ConfigError, ModelError

# Runs in a child process. Each stdin line is an arena size to try: allocate, invoke once on zero
# inputs, answer one JSON line. With --report: one size from argv, then print_allocations().
_PROBE = r"""
import json, sys
import numpy as np
from tflite_micro import runtime
path, n_inputs = sys.argv[1], int(sys.argv[2])

def attempt(arena):
    try:
        ip = runtime.Interpreter.from_file(path, arena_size=arena)
        for i in range(n_inputs):
            d = ip.get_input_details(i)
            ip.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
        ip.invoke()
        return ip, {"ok": True}
    except Exception as exc:
        return None, {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}

if len(sys.argv) > 3:
    ip, res = attempt(int(sys.argv[3]))
    print(json.dumps(res), flush=True)
    if ip is not None:
        ip.print_allocations()
    sys.exit(0 if res["ok"] else 1)
for line in sys.stdin:
    ip, res = attempt(int(line))
    del ip
    print(json.dumps(res), flush=True)
"""

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_RECORD = re.compile(
    r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes "
    r"for (\d+) "
)

GENEROUS_MIN = 4 << 20  # first probe: at least 4 MiB ...
GENEROUS_FACTOR = 10  # ... or 10x the model size
GENEROUS_MAX = 1 << 30
PROBE_TIMEOUT = 300.0


@dataclass
class ArenaReport:
    reported_used_bytes: int  # the interpreter's arena_used_bytes() (head + tail)
    head_bytes: int
    tail_bytes: int
    min_working_bytes: int  # smallest aligned arena that allocated and ran
    measured_bytes: int  # max(reported_used_bytes, min_working_bytes)
    margin: float
    align: int
    size_bytes: int  # what the bundle uses: measured * (1 + margin), aligned up
    probes: int
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    tool: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def align_up(n: int, align: int) -> int:
    return -(-int(n) // align) * align if align > 1 else int(n)


def arena_with_margin(measured: int, margin: float, align: int) -> int:
    """ceil(measured * (1 + margin)) rounded up to a multiple of align (exact, no float error)."""
    return align_up(math.ceil(Fraction(int(measured)) * (1 + Fraction(str(margin)))), align)


def _tflm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tflite-micro {version('tflite-micro')} (host reference kernels)"
    except PackageNotFoundError:
        return "tflite-micro (unknown version)"


@dataclass
class _Probe:
    ok: bool
    stderr: str
    error: str = ""


def _check_import(stderr: str) -> None:
    if "No module named 'tflite_micro'" in stderr:
        raise ConfigError("measuring the tensor arena needs the tflite-micro package (pip install tflite-micro)")


def _report_probe(model: Path, arena: int, n_inputs: int) -> _Probe:
    """One interpreter at `arena` bytes in a fresh process, with the allocation report."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, str(model), str(n_inputs), str(arena)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return _Probe(False, "", f"TFLM interpreter did not finish in {PROBE_TIMEOUT:.0f} s")
    _check_import(proc.stderr)
    first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    try:
        doc = json.loads(first) if first else {}
    except ValueError:
        doc = {}
    if proc.returncode == 0 and doc.get("ok"):
        return _Probe(True, proc.stderr)
    if doc.get("error"):
        err = doc["error"]
    elif proc.returncode < 0:
        err = f"interpreter crashed (signal {-proc.returncode})"
    else:
        err = f"exit code {proc.returncode}"
    return _Probe(False, proc.stderr, err)


class _Worker:
    """A child process trying arena sizes one by one; restarted when an attempt crashes it."""

    def __init__(self, model: Path, n_inputs: int):
        self.args = [sys.executable, "-c", _PROBE, str(model), str(n_inputs)]
        self.proc: subprocess.Popen | None = None
        self.count = 0

    def fits(self, arena: int) -> bool:
        self.count += 1
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None  # both are PIPE
        try:
            proc.stdin.write(f"{arena}\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:  # crashed (a too-small arena can segfault the wrapper)
            self.close()
            return False
        try:
            return bool(json.loads(line).get("ok"))
        except ValueError:
            return False

    def close(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.stdin is not None:  # always: the worker is started with stdin=PIPE
                    self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _tflm_messages(stderr: str) -> str:
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("Traceback", "  ")) and "RecordingMicroAllocator" not in ln
    ]
    return "; ".join(lines[-4:])


def _smallest_working(fits, used: int, known_good: int, align: int) -> int:
    """Smallest multiple of align that fits, searching upwards from `used` (known_good fits)."""
    lo = align_up(used, align)
    if fits(lo):
        return lo
    step = max(align, align_up(used // 8, align))
    hi = min(lo + step, known_good)
    while hi < known_good and not fits(hi):  # invariant: lo fails
        lo, step = hi, step * 2
        hi = min(lo + step, known_good)
    while hi - lo > align:  # invariant: lo fails, hi fits
        mid = align_up((lo + hi) // 2, align)
        if mid >= hi:
            mid = hi - align
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def measure_arena(model: Path, n_inputs: int, margin: float, align: int, model_size: int | None = None) -> ArenaReport:
    """Run the model in the TFLM Python interpreter and size its arena (see module docstring)."""
    model = Path(model)
    align = max(int(align), 1)
    size = model_size if model_size is not None else model.stat().st_size
    probes = 0

    # 1. A generous arena: the allocator report.
    arena = align_up(max(GENEROUS_MIN, GENEROUS_FACTOR * size), align)
    while True:
        res = _report_probe(model, arena, n_inputs)
        probes += 1
        if res.ok:
            break
        if arena >= GENEROUS_MAX:
            detail = _tflm_messages(res.stderr)
            raise ModelError(
                f"{model}: the TFLM interpreter (tflite-micro) cannot run this model: "
                f"{res.error}" + (f" ({detail})" if detail else "")
            )
        arena = min(arena * 4, GENEROUS_MAX)
    m_total, m_head, m_tail = (_TOTAL.search(res.stderr), _HEAD.search(res.stderr), _TAIL.search(res.stderr))
    if not m_total:
        raise ModelError(
            f"{model}: TFLM print_allocations() gave no 'Arena allocation total' line "
            f"(tflite-micro output format changed?): {res.stderr.strip()[:300]!r}"
        )
    used = int(m_total.group(1))
    records = {
        m.group(1): {"used_bytes": int(m.group(2)), "requested_bytes": int(m.group(3)), "count": int(m.group(4))}
        for m in _RECORD.finditer(res.stderr)
    }

    # 2. The smallest arena that works: grow from the report until it fits, then bisect.
    worker = _Worker(model, n_inputs)
    try:
        min_working = _smallest_working(worker.fits, used, arena, align)
    finally:
        worker.close()
    probes += worker.count

    measured = max(used, min_working)
    return ArenaReport(
        reported_used_bytes=used,
        head_bytes=int(m_head.group(1)) if m_head else 0,
        tail_bytes=int(m_tail.group(1)) if m_tail else 0,
        min_working_bytes=min_working,
        measured_bytes=measured,
        margin=float(margin),
        align=align,
        size_bytes=arena_with_margin(measured, margin, align),
        probes=probes,
        records=records,
        tool=_tflm_version(),
    )
