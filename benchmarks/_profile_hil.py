#!/usr/bin/env python3
"""`hil` under cProfile, every thread included (controller_scale.py --profile).

Usage: python benchmarks/_profile_hil.py OUT.prof run MODEL ...  (the arguments of `hil`). Each thread
gets its own profiler; at exit their statistics are merged into OUT.prof (pstats format).
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading

out = sys.argv.pop(1)
profiles: list[cProfile.Profile] = []
_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    prof = cProfile.Profile()
    profiles.append(prof)
    prof.enable()
    try:
        _run(self)
    finally:
        prof.disable()


threading.Thread.run = _profiled_run  # type: ignore[method-assign]
main = cProfile.Profile()
profiles.append(main)
sys.argv[0] = "hil"
main.enable()
try:
    runpy.run_module("harness", run_name="__main__", alter_sys=True)
finally:
    main.disable()
    pstats.Stats(*profiles).dump_stats(out)
