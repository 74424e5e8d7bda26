"""Conversion-step speed-up from the content-hash cache (target: second run >= 10x faster).

Runs the conversion step of `hil run` (fp32 + int8 of the bundled digits model) twice in fresh
processes against an empty cache, as a user would run `hil run` twice, and prints both times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "digits" / "digits.keras"


def conversion_seconds(cache: str) -> tuple[float, str]:
    env = {**os.environ, "HILBENCH_CACHE": cache, "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = (
        "import time, sys; t0 = time.perf_counter();"
        "from harness.commands import common; from harness.run.orchestrate import ModelSpec;"
        "from harness.models.convert import Converter;"
        f"spec = ModelSpec.from_args({str(MODEL)!r}, None, None);"
        "conv = Converter(log=lambda m: None);"
        "[conv.convert(spec.source, v, spec.calibration) for v in ('fp32', 'int8')];"
        "print(f'{time.perf_counter() - t0:.6f} hits={conv.hits} misses={conv.misses}')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = out.stdout.strip().splitlines()[-1]
    secs = float(line.split()[0])
    return secs, line.split(" ", 1)[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold, c1 = conversion_seconds(cache)
        warm, c2 = conversion_seconds(cache)
    print(f"first run  (cold cache): {cold:8.3f} s  {c1}")
    print(f"second run (warm cache): {warm:8.3f} s  {c2}")
    print(f"speed-up: {cold / warm:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
