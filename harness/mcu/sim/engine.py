"""The model side of the simulated device: the real TFLite Micro interpreter (``tflite_micro``).

Arena usage comes from TFLM's own RecordingMicroAllocator, measured like `hil build` measures it
(``harness/mcu/arena.py``: the report, and the smallest arena that really works, probed in child
processes because a too-small arena can crash the TFLM Python wrapper). The arena the simulator then
runs with is sized like generated firmware sizes it: measured usage plus a margin, aligned.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness.errors import ConfigError, ModelError
from harness.mcu.arena import measure_arena


@contextmanager
def _capture_fd2() -> Iterator[list]:
    """Collect what C code writes to fd 2 while the block runs (text appended to the yielded list)."""
    out: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


def tflm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


class TflmModel:
    """One .tflite loaded into TFLM with a fixed arena, input buffer semantics of the firmware."""

    def __init__(
        self, path: str | os.PathLike, arena_size: int | None = None, arena_margin: float = 0.10, arena_align: int = 16
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: model file not found")
        self.data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.size_bytes = len(self.data)
        # Prepare() also needs temporary arena space that the recording allocator does not count:
        # the smallest arena that really works, plus the margin generated firmware adds.
        report = measure_arena(self.path, 1, arena_margin, arena_align, model_size=self.size_bytes)
        self.arena_used = report.reported_used_bytes
        self.arena_min = report.min_working_bytes
        if arena_size is None:
            arena_size = report.size_bytes
        if arena_size < self.arena_min:
            raise ConfigError(
                f"{self.path}: --arena-size {arena_size} is smaller than the "
                f"{self.arena_min} bytes TFLM needs for this model"
            )
        self.arena_size = arena_size
        self.interp = self._make(arena_size)
        self.in_details = self.interp.get_input_details(0)
        self.out_details = self.interp.get_output_details(0)
        self.in_dtype = np.dtype(self.in_details["dtype"])
        self.in_shape = tuple(int(s) for s in self.in_details["shape"])
        self.input_bytes = int(np.prod(self.in_shape)) * self.in_dtype.itemsize
        self.out_scale, self.out_zero_point = self._quant(self.out_details)
        self.set_input(bytes(self.input_bytes))
        self.invoke()

    # ------------------------------------------------------------------ setup

    def _make(self, arena_size: int):
        from tflite_micro import runtime

        with _capture_fd2() as err:
            try:
                return runtime.Interpreter.from_bytes(self.data, arena_size=arena_size)
            except (RuntimeError, ValueError) as exc:
                failure = exc
        detail = " ".join(line.strip() for line in "".join(err).splitlines() if line.strip())
        raise ModelError(
            f"{self.path}: TFLM cannot run this model: {failure}" + (f" ({detail[:300]})" if detail else "")
        )

    @staticmethod
    def _quant(details: dict) -> tuple[float, int]:
        q = details.get("quantization_parameters") or {}
        scales = list(q.get("scales", []))
        zps = list(q.get("zero_points", []))
        return (float(scales[0]) if scales else 0.0, int(zps[0]) if zps else 0)

    # ------------------------------------------------------------------ firmware hooks

    def set_input(self, raw: bytes) -> None:
        """th_load_tensor: copy the db buffer into the input tensor (sizes already checked)."""
        arr = np.frombuffer(raw, dtype=self.in_dtype).reshape(self.in_shape)
        self.interp.set_input(arr, 0)

    def invoke(self) -> None:
        self.interp.invoke()

    def results(self) -> list[float]:
        """th_results: output 0 dequantised to float, as the reference firmware prints it."""
        y = np.asarray(self.interp.get_output(0)).reshape(-1)
        if np.issubdtype(y.dtype, np.integer) and self.out_scale > 0:
            return [float(v) for v in (y.astype(np.float64) - self.out_zero_point) * self.out_scale]
        return [float(v) for v in y.astype(np.float64)]
