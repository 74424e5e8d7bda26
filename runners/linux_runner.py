#!/usr/bin/env python3
"""hilbench Linux device runner (schema ``hilbench.runner/1``).

One standalone file: stdlib + numpy + a TFLite runtime (``ai_edge_litert``, else
``tflite_runtime``, else ``tensorflow.lite``). Runs on Python 3.9+.

It loads a .tflite model, measures init / first inference / warmup / steady-state latency
(only ``invoke()`` is timed, inputs are set once with random data, like TFLite's
``benchmark_model``), memory, telemetry, optional RAPL energy and optional accuracy on an
``.npz`` eval file, and prints exactly one JSON document on stdout. Progress goes to stderr.
``--profile-runs N`` adds, in a pass of its own after all that, per-operator times from LiteRT's
profiler (``op_profile``; ai_edge_litert only, anything else gets a warning instead).

On any error it prints ``{"schema": "hilbench.runner/1", "status": "error", "error": "..."}``
(plus ``error_kind``) on stdout and exits with code 2.

``--probe [--workdir DIR]`` answers ``hil devices check`` instead (schema ``hilbench.probe/1``):
can this Python run the runner here (runtime, numpy, disk, RAM, governor, temperature, throttling)?
It lives in this file so that the board reads its sensors with exactly the code that measures.
"""

from __future__ import annotations

import argparse
import array
import gc
import glob
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import List, Optional

SCHEMA = "hilbench.runner/1"
PROBE_SCHEMA = "hilbench.probe/1"
EXIT_ERROR = 2
# The steady state keeps every sample; warmup reports its count and total but keeps only the
# first MAX_WARMUP_SAMPLES samples (a µs-scale model runs ~10^5 warmup invocations in 0.5 s).
MAX_WARMUP_SAMPLES = 10000
# HILBENCH_SYSFS_ROOT lets tests feed their own sysfs files; on a board it is unset.
SYSFS = os.environ.get("HILBENCH_SYSFS_ROOT", "")
RAPL_ENERGY = SYSFS + "/sys/class/powercap/intel-rapl:0/energy_uj"
RAPL_RANGE = SYSFS + "/sys/class/powercap/intel-rapl:0/max_energy_range_uj"
CPU_FREQ = SYSFS + "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
CPU_GOVERNOR = SYSFS + "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
TIME_IN_STATE = SYSFS + "/sys/devices/system/cpu/cpu0/cpufreq/stats/time_in_state"
HWMON_DIR = "/sys/class/hwmon"
# a window spent more than this share of its time away from its main frequency is disturbed
FREQ_SHARE_LIMIT = 0.02
# vcgencmd get_throttled: bits 0-3 are the *current* state.
THROTTLE_BITS = {0x1: "under_voltage", 0x2: "freq_capped", 0x4: "throttled", 0x8: "soft_temp_limit"}


class RunnerError(Exception):
    """A clean, one-line failure reported as error JSON (exit 2)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def log(msg: str) -> None:
    sys.stderr.write("[linux_runner] %s\n" % msg)
    sys.stderr.flush()


# how the steady window ended, in words for the log (the JSON keeps the short code)
STOP_REASONS = {"min_reached": "stopped after the minimum runs and time", "max_seconds": "stopped at --max-seconds"}


def accuracy_line(acc):
    """`accuracy on 70 samples: top-1 21.43 %, agreement 98.57 %` ('-' for what was not measured)."""

    def pct(v):
        return "-" if v is None else "%.2f %%" % (100.0 * v)

    return "accuracy on %d samples: top-1 %s, agreement %s" % (
        acc["n"],
        pct(acc.get("top1")),
        pct(acc.get("agreement")),
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines)[:500]


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RunnerError("usage: %s" % message, "usage")


def parse_args(argv):
    cpus = _cpu_count()
    p = _Parser(prog="linux_runner.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="path to a .tflite model")
    p.add_argument(
        "--num-threads",
        type=int,
        default=1,
        help="interpreter threads (default 1, like benchmark_model: on a shared board more "
        "threads are slower and noisier; %d cores usable here)" % cpus,
    )
    p.add_argument(
        "--cpus", default=None, metavar="LIST", help="pin the runner to these CPUs (e.g. 2,3) with sched_setaffinity"
    )
    p.add_argument(
        "--no-xnnpack", action="store_true", help="builtin op resolver without default delegates (no XNNPACK)"
    )
    p.add_argument("--min-runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=150.0)
    p.add_argument("--warmup-runs", type=int, default=1)
    p.add_argument("--warmup-seconds", type=float, default=0.5)
    p.add_argument(
        "--eval", default=None, metavar="FILE.npz", help="npz with x (float inputs), optional y (labels), optional ref"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random input data")
    p.add_argument(
        "--paired-model",
        default=None,
        metavar="PATH",
        help="also load this model and time both interleaved in short blocks (A B B A ...) in "
        "this one process: the gate's confirmation compares them under the same conditions",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        default=None,
        metavar="NAME:D1,D2,...",
        help="shape of a dynamic input, applied with resize_tensor_input before "
        "allocate_tensors (repeatable, or comma-separated NAME:dims entries; "
        "without NAME for a single-input model)",
    )
    p.add_argument(
        "--power-file",
        default=None,
        metavar="PATH",
        help="power reading in microwatts (hwmon INA2xx power1_input) sampled during "
        "the steady window by a separate process",
    )
    p.add_argument(
        "--power-pmic",
        action="store_true",
        help="sample the board's power from its PMIC (Raspberry Pi 5: `vcgencmd pmic_read_adc`, the sum of "
        "voltage x current over its rails) during the steady window, by a separate process",
    )
    p.add_argument("--power-rate", type=float, default=1000.0, help="power samples per second")
    p.add_argument(
        "--idle-power-mw", type=float, default=None, help="board idle power, subtracted from the window's mean power"
    )
    p.add_argument(
        "--profile-runs",
        type=int,
        default=None,
        metavar="N",
        help="after the timed windows, a separate pass of N invocations with LiteRT's profiler on: "
        "per-operator times under op_profile (ai_edge_litert only; never mixed into the latency)",
    )
    a = p.parse_args(argv)
    if a.cpus is not None:
        try:
            a.cpus = sorted({int(c) for c in a.cpus.split(",") if c.strip()})
        except ValueError:
            raise RunnerError("usage: --cpus must be a comma list of CPU numbers (got %r)" % a.cpus, "usage")
        if not a.cpus or min(a.cpus) < 0:
            raise RunnerError("usage: --cpus needs at least one CPU number >= 0", "usage")
    if a.num_threads < 1:
        raise RunnerError("usage: --num-threads must be >= 1 (got %d)" % a.num_threads, "usage")
    if a.min_runs < 1:
        raise RunnerError("usage: --min-runs must be >= 1 (got %d)" % a.min_runs, "usage")
    if a.warmup_runs < 0:
        raise RunnerError("usage: --warmup-runs must be >= 0", "usage")
    if a.profile_runs is not None and a.profile_runs < 1:
        raise RunnerError("usage: --profile-runs must be >= 1 (got %d)" % a.profile_runs, "usage")
    for name in ("min_seconds", "warmup_seconds"):
        v = getattr(a, name)
        if not (v >= 0 and math.isfinite(v)):
            raise RunnerError("usage: --%s must be >= 0 (got %r)" % (name.replace("_", "-"), v), "usage")
    if not (a.max_seconds > 0 and math.isfinite(a.max_seconds)):
        raise RunnerError("usage: --max-seconds must be > 0 (got %r)" % a.max_seconds, "usage")
    a.input_shape = parse_input_shapes(a.input_shape)
    return a


def parse_input_shapes(values):
    """--input-shape values -> [(name or "", [dims])]; a new entry starts at each element holding ':'
    (names may contain ':' themselves, e.g. 'serving_default_x:0': the dims follow the last one)."""
    out = []
    for value in values or []:
        tokens = [t.strip() for t in value.split(",")]
        if not any(":" in t for t in tokens):
            out.append(["", tokens])
            continue
        if ":" not in tokens[0]:
            raise RunnerError("usage: --input-shape %r: expected NAME:D1,D2,..." % value, "usage")
        for token in tokens:
            if ":" in token:
                name, _, first = token.rpartition(":")
                out.append([name.strip(), [first]])
            else:
                out[-1][1].append(token)
    shapes = []
    for name, dims in out:
        try:
            parsed = [int(d) for d in dims]
        except ValueError:
            parsed = []
        if not parsed or min(parsed) < 1 or (name == "" and len(out) > 1):
            raise RunnerError(
                "usage: --input-shape %s%s: expected NAME:D1,D2,... with every dimension "
                ">= 1 (the name may be left out for a single input only)"
                % (name + ":" if name else "", ",".join(dims)),
                "usage",
            )
        if name in [n for n, _ in shapes]:
            raise RunnerError("usage: --input-shape gives input %r more than once" % name, "usage")
        shapes.append((name, parsed))
    return shapes


def _dims(xs):
    return "[" + ",".join(str(int(x)) for x in xs) + "]"


def apply_input_shapes(interp, given, model_path):
    """Resize inputs before allocate_tensors: the shapes given with --input-shape (checked against
    each input's shape signature); an unknown batch dimension alone is measured at 1; any other
    unknown dimension without a given shape is refused (the stored placeholder is not the network
    the user means). Returns {input name: dims} of the inputs resized."""
    details = interp.get_input_details()
    names = ", ".join(repr(str(d["name"])) for d in details)
    chosen = {}
    for name, dims in given:
        if name == "":
            if len(details) != 1:
                raise RunnerError(
                    "usage: --input-shape %s has no input name, but model %s has %d "
                    "inputs (%s)" % (",".join(map(str, dims)), model_path, len(details), names),
                    "usage",
                )
            d = details[0]
        else:
            match = [d for d in details if d["name"] == name]
            if not match:
                raise RunnerError(
                    "usage: --input-shape names input %r, but the inputs of model %s are "
                    "%s" % (name, model_path, names),
                    "usage",
                )
            d = match[0]
        chosen[int(d["index"])] = dims
    resized = {}
    for d in details:
        sig = [int(s) for s in d.get("shape_signature", d["shape"])]
        name = str(d["name"])
        if int(d["index"]) in chosen:
            dims = chosen[int(d["index"])]
            if len(dims) != len(sig) or any(w >= 0 and w != g for w, g in zip(sig, dims)):
                raise RunnerError(
                    "usage: --input-shape %s:%s does not fit input %r of model %s (shape "
                    "signature %s, -1 = any size)" % (name, ",".join(map(str, dims)), name, model_path, _dims(sig)),
                    "usage",
                )
            interp.resize_tensor_input(d["index"], dims)
            resized[name] = dims
        elif any(s < 0 for s in sig[1:]):
            hint = ",".join("1" if (i == 0 and s < 0) else ("?" if s < 0 else str(s)) for i, s in enumerate(sig))
            raise RunnerError(
                "model %s: input %r has unknown dimensions (shape signature %s); give the "
                "shape to measure with --input-shape %s:%s (each ? a size)"
                % (model_path, name, _dims(sig), name, hint),
                "usage",
            )
        elif any(int(s) <= 0 for s in d["shape"]):
            dims = [max(1, int(s)) for s in d["shape"]]
            interp.resize_tensor_input(d["index"], dims)
            resized[name] = dims
    return resized


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------- runtime


def load_runtime():
    """Return (interpreter_module_like, name, version). Tries litert, tflite_runtime, TF."""
    errors = []
    try:
        from ai_edge_litert import interpreter as mod

        version = None
        try:
            import ai_edge_litert

            version = getattr(ai_edge_litert, "__version__", None)
        except Exception:  # pragma: no cover
            pass
        if not version:
            version = _dist_version("ai-edge-litert")
        return mod, "ai_edge_litert", str(version or "unknown")
    except Exception as exc:
        errors.append("ai_edge_litert: %s" % _one_line(exc))
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as mod

        version = getattr(tflite_runtime, "__version__", None) or _dist_version("tflite-runtime")
        return mod, "tflite_runtime", str(version or "unknown")
    except Exception as exc:
        errors.append("tflite_runtime: %s" % _one_line(exc))
    try:
        import tensorflow as tf

        class _TFMod(object):
            Interpreter = tf.lite.Interpreter
            OpResolverType = getattr(getattr(tf.lite, "experimental", None), "OpResolverType", None)

        return _TFMod, "tensorflow.lite", str(tf.__version__)
    except Exception as exc:
        errors.append("tensorflow: %s" % _one_line(exc))
    raise RunnerError("no TFLite runtime importable by %s (%s)" % (sys.executable, "; ".join(errors)), "runtime")


def _dist_version(dist: str):
    try:
        from importlib import metadata  # Python 3.8+

        return metadata.version(dist)
    except Exception:
        return None


# ------------------------------------------------------------------------ memory


def _proc_status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_kb():
    try:
        import resource

        v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":  # bytes there, KiB on Linux
            v //= 1024
        return int(v)
    except Exception:
        return None


def rss_kb():
    v = _proc_status_kb("VmRSS")
    return v if v is not None else _maxrss_kb()


def peak_rss_kb():
    v = _proc_status_kb("VmHWM")
    return v if v is not None else _maxrss_kb()


# --------------------------------------------------------------------- telemetry


def _read_text(path: str):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


_ZONE_CACHE: List[Optional[str]] = []  # the chosen zone's temp file (None: no zone), once known


def _cpu_temp_zone():
    if _ZONE_CACHE:
        return _ZONE_CACHE[0]
    chosen = None
    prefs = ("cpu", "soc", "x86_pkg", "pkg", "core", "k10temp", "tctl")
    zones = sorted(glob.glob(SYSFS + "/sys/class/thermal/thermal_zone*"))
    typed = [(z, (_read_text(os.path.join(z, "type")) or "").lower()) for z in zones]
    for pref in prefs:
        for z, t in typed:
            if pref in t and _read_text(os.path.join(z, "temp")) is not None:
                chosen = os.path.join(z, "temp")
                break
        if chosen:
            break
    _ZONE_CACHE.append(chosen)
    return chosen


def _cpu_temp_c():
    path = _cpu_temp_zone()
    if not path:
        return None
    raw = _read_text(path)
    try:
        v = int(raw)
    except (TypeError, ValueError):
        return None
    return round(v / 1000.0, 3) if abs(v) > 1000 else float(v)


def _cpu_freq_khz():
    raw = _read_text(CPU_FREQ)
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _throttled_raw():
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "get_throttled"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=3, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.decode("ascii", "replace").strip()
    if out.returncode != 0 or "=" not in text:
        return None
    return text.split("=", 1)[1].strip()


def decode_throttled(raw):
    """True if any of the current bits 0-3 is set, None if unknown."""
    if raw is None:
        return None
    try:
        return bool(int(raw, 0) & 0xF)
    except ValueError:
        return None


def telemetry_snapshot():
    try:
        load = [round(x, 3) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    raw = _throttled_raw()
    flags = None
    if raw is not None:
        try:
            v = int(raw, 0)
            flags = [name for bit, name in sorted(THROTTLE_BITS.items()) if v & bit]
        except ValueError:
            flags = None
    return {
        "cpu_temp_c": _cpu_temp_c(),
        "cpu_freq_khz": _cpu_freq_khz(),
        "governor": _read_text(CPU_GOVERNOR),
        "time_in_state": _time_in_state(),
        "throttled_raw": raw,
        "throttled_flags": flags,
        "loadavg": load,
        "time_unix": round(time.time(), 3),
    }


def _time_in_state():
    """cpufreq stats: {frequency kHz: time in 10 ms units}; None where the kernel has no stats."""
    text = _read_text(TIME_IN_STATE)
    if not text:
        return None
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[str(int(parts[0]))] = int(parts[1])
            except ValueError:
                return None
    return out or None


def window_disturbed(before, after):
    """Reasons why a measurement window cannot be trusted (empty list: undisturbed).

    The frequency a window ran at is what its latency depends on. A changed governor or current
    frequency, new throttling bits (Raspberry Pi `get_throttled`: under-voltage, capping,
    throttling now or since boot), or time spent at more than one frequency during the window
    (cpufreq `time_in_state` deltas) all mean the window measured the board's state, not the model.
    """
    reasons = []
    if before.get("governor") != after.get("governor"):
        reasons.append("governor changed (%s -> %s)" % (before.get("governor"), after.get("governor")))
    fb, fa = before.get("cpu_freq_khz"), after.get("cpu_freq_khz")
    if fb is not None and fa is not None and fb != fa:
        reasons.append("cpu frequency changed (%d -> %d kHz)" % (fb, fa))
    rb, ra = before.get("throttled_raw"), after.get("throttled_raw")
    if ra is not None and (rb != ra or decode_throttled(ra)):
        reasons.append("throttling flags %s -> %s" % (rb, ra))
    tb, ta = before.get("time_in_state"), after.get("time_in_state")
    if tb and ta:
        delta = {f: ta.get(f, 0) - tb.get(f, 0) for f in ta}
        total = sum(v for v in delta.values() if v > 0)
        if total > 0:
            main = max(delta, key=lambda f: delta[f])
            away = (total - max(delta[main], 0)) / float(total)
            if away > FREQ_SHARE_LIMIT:
                reasons.append("%.0f%% of the window away from %s kHz (time_in_state)" % (100 * away, main))
    return reasons


def combine_throttled(before, after):
    vals = [decode_throttled(before.get("throttled_raw")), decode_throttled(after.get("throttled_raw"))]
    known = [v for v in vals if v is not None]
    if not known:
        return None
    return any(known)


# ------------------------------------------------------------------------ energy


def rapl_read():
    raw = _read_text(RAPL_ENERGY)
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def rapl_energy(before_uj, after_uj, count, window_s):
    if before_uj is None or after_uj is None or count <= 0:
        return None
    delta = after_uj - before_uj
    if delta < 0:  # counter wrapped
        try:
            delta += int(_read_text(RAPL_RANGE))
        except (TypeError, ValueError):
            return None
    return {
        "meter": "rapl",
        "domain": "package-0",
        "sample_rate_hz": None,
        "energy_per_inference_uj": delta / float(count),
        "estimate": False,
        "includes_idle": True,
        "window_energy_uj": delta,
        "window_s": window_s,
        "mean_power_w": (delta / 1e6 / window_s) if window_s > 0 else None,
        "note": "package energy over the steady window / count; includes idle and "
        "other processes' power, not idle-subtracted",
    }


def apportion_paired(energy, samples_a, samples_b):
    """With --paired-model the package energy of the window was spent on both models: give this
    model its share of the busy time (the power of the two is taken as equal, which is what a
    package counter can tell)."""
    busy_a, busy_b = float(sum(samples_a)), float(sum(samples_b))
    share = busy_a / (busy_a + busy_b) if busy_a + busy_b > 0 else 0.5
    energy["energy_per_inference_uj"] *= share
    energy["paired_share"] = share
    energy["note"] += "; paired run: apportioned to this model by its share of the busy time"


# -------------------------------------------------------------------- statistics


# A separate process polls the power file so the sampling never competes with invoke() for the
# GIL; it stops when its stdin closes and prints "<count> <sum_uw> <elapsed_s>".
_SAMPLER = (
    "import sys, time, select\n"
    "path, period = sys.argv[1], 1.0 / float(sys.argv[2])\n"
    "f = open(path, 'rb', buffering=0)\n"
    "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "n = 0; total = 0; t0 = time.monotonic(); nxt = t0\n"
    "while True:\n"
    "    f.seek(0); total += int(f.read().split()[0]); n += 1\n"
    "    nxt += period\n"
    "    r, _, _ = select.select([sys.stdin], [], [], max(0.0, nxt - time.monotonic()))\n"
    "    if r:\n"
    "        break\n"
    "print(n, total, time.monotonic() - t0)\n"
)


def sysfs_path(path):
    """A device path as this runner reads it (under HILBENCH_SYSFS_ROOT when tests set one)."""
    return SYSFS + path if SYSFS and path.startswith("/sys/") else path


def read_power_uw(path):
    """One reading of a power file in microwatts; RunnerError (kind "meter") naming the problem."""
    real = sysfs_path(path)
    if not os.path.exists(real):
        raise RunnerError("power file %s does not exist" % path, "meter")
    try:
        with open(real, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise RunnerError("power file %s cannot be read: %s" % (path, exc.strerror or _one_line(exc)), "meter")
    try:
        return int(raw.split()[0])
    except (ValueError, IndexError):
        raise RunnerError("power file %s does not hold a number of microwatts" % path, "meter")


class PowerSampler(object):
    """Mean power over a window from a sysfs power file (hwmon INA2xx: microwatts)."""

    meter = "hwmon"

    def __init__(self, path, rate_hz):
        read_power_uw(path)  # fails here, before the window, if the meter is missing
        self.path = path
        self.rate = rate_hz
        self.proc = None

    def command(self):
        return [sys.executable, "-c", _SAMPLER, sysfs_path(self.path), str(self.rate)]

    def start(self):
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
        )
        # the window starts only once the sampler runs (its interpreter start-up would eat the window)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RunnerError(
                "power sampler on %s failed: %s" % (self.path, (err.strip().splitlines() or ["no output"])[-1]), "meter"
            )
        return self

    def stop(self):
        try:
            out, err = self.proc.communicate(input="stop\n", timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise RunnerError("power sampler on %s did not stop" % self.path, "meter")
        if self.proc.returncode != 0 or not out.strip():
            raise RunnerError(
                "power sampler on %s failed: %s" % (self.path, (err.strip().splitlines() or ["no output"])[-1]), "meter"
            )
        n, total, elapsed = out.split()
        return int(n), int(total), float(elapsed)


PMIC_SOURCE = "vcgencmd pmic_read_adc"
# `   VDD_CORE_A current(7)=0.71880000A` / `VDD_CORE_V volt(15)=0.72030500V`
_PMIC_LINE = re.compile(r"^(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)([AV])$")


def parse_pmic_adc(text):
    """`vcgencmd pmic_read_adc` of a Raspberry Pi 5 -> {rail: {"A": amps, "V": volts}} (a rail's
    current line is NAME_A, its voltage line NAME_V; some rails report only one of them)."""
    rails = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line.strip())
        if m is None or m.group(2) != m.group(4):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        rails.setdefault(m.group(1), {})[m.group(2)] = value
    return rails


def pmic_power_uw(text):
    """Sum over the rails that report both of voltage x current, in microwatts."""
    rails = parse_pmic_adc(text)
    both = [r["V"] * r["A"] for r in rails.values() if "V" in r and "A" in r]
    if not both:
        raise RunnerError("%s reported no rail with both a voltage and a current" % PMIC_SOURCE, "meter")
    return int(round(sum(both) * 1e6))


def read_pmic_uw():
    """One PMIC reading in microwatts; RunnerError (kind "meter") when this board has no such PMIC."""
    exe = shutil.which("vcgencmd")
    if not exe:
        raise RunnerError("vcgencmd not found: the pmic meter needs a Raspberry Pi 5 (Raspberry Pi OS)", "meter")
    try:
        out = subprocess.run(
            [exe, "pmic_read_adc"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunnerError("%s failed: %s" % (PMIC_SOURCE, _one_line(exc)), "meter")
    text = out.stdout.decode("utf-8", "replace")
    if out.returncode != 0:
        said = (out.stderr.decode("utf-8", "replace") + text).strip().splitlines() or ["no output"]
        raise RunnerError("%s failed (exit %d): %s" % (PMIC_SOURCE, out.returncode, said[-1]), "meter")
    return pmic_power_uw(text)


class PmicSampler(PowerSampler):
    """Mean power over a window from the PMIC's rails, read by `vcgencmd` in a separate process (this
    runner file run with --pmic-sampler), which paces itself like the hwmon sampler."""

    meter = "pmic"

    def __init__(self, rate_hz):
        read_pmic_uw()  # fails here, before the window, if the board has no such PMIC
        self.path = PMIC_SOURCE
        self.rate = rate_hz
        self.proc = None

    def command(self):
        return [sys.executable, os.path.abspath(__file__), "--pmic-sampler", str(self.rate)]


def pmic_sampler_main(rate):
    """The sampler process of PmicSampler: `ready`, then readings until a line on stdin, then
    `N TOTAL_UW ELAPSED_S` (the hwmon sampler's protocol)."""
    import select

    period = 1.0 / rate
    print("ready", flush=True)
    n, total, t0 = 0, 0, time.monotonic()
    nxt = t0
    while True:
        try:
            total += read_pmic_uw()
        except RunnerError as exc:
            sys.stderr.write("%s\n" % exc)
            return 1
        n += 1
        nxt += period
        ready, _, _ = select.select([sys.stdin], [], [], max(0.0, nxt - time.monotonic()))
        if ready:
            break
    print(n, total, time.monotonic() - t0, flush=True)
    return 0


def sampled_energy(path, n, total_uw, elapsed_s, idle_mw, mean_latency_us, meter="hwmon"):
    mean_mw = total_uw / 1000.0 / max(1, n)
    active_mw = mean_mw - (idle_mw or 0.0)
    return {
        "meter": meter,
        "path": path,
        "sample_rate_hz": n / elapsed_s if elapsed_s else None,
        "samples": n,
        "mean_power_mw": mean_mw,
        "idle_power_mw": idle_mw,
        "energy_per_inference_uj": active_mw * mean_latency_us / 1000.0,
        "estimate": False,
        "includes_idle": idle_mw is None,
        "note": "(mean power during the steady window - idle power) x mean latency",
    }


def percentile(sorted_xs, q):
    """Linear interpolation between order statistics (numpy's default method)."""
    n = len(sorted_xs)
    if n == 0:
        return None
    h = (n - 1) * q
    lo = int(math.floor(h))
    hi = min(lo + 1, n - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def _binom_half_cdf_table(n, kmax):
    """P(X <= k) for X ~ Binomial(n, 1/2), k = 0..kmax (list), stdlib only.

    Terms below n/2 - 6*sqrt(n) are < 1e-15 (Hoeffding), so the sum starts there; the first
    pmf comes from lgamma, later ones from the ratio pmf(k+1) = pmf(k) * (n-k) / (k+1).
    """
    start = max(0, int(n / 2.0 - 6.0 * math.sqrt(n)) - 1)
    start = min(start, kmax)
    ln2n = n * math.log(2.0)
    logpmf = math.lgamma(n + 1) - math.lgamma(start + 1) - math.lgamma(n - start + 1) - ln2n
    pmf = math.exp(logpmf)
    cdf = {}
    acc = 0.0
    for k in range(start, kmax + 1):
        acc += pmf
        cdf[k] = acc
        pmf = pmf * (n - k) / (k + 1.0)
    return cdf, start


def median_ci(sorted_xs, level=0.95):
    """Distribution-free CI of the median from order statistics (binomial method).

    Returns (low, high, achieved_coverage). With X ~ Bin(n, 1/2), the interval
    [x_(l), x_(n-l+1)] (1-based) covers the median with probability 1 - 2 P(X <= l-1);
    l is the largest index keeping that >= level. For n < 6 no such l exists at 95 %: the
    interval is then [min, max] and the achieved coverage is reported.
    """
    n = len(sorted_xs)
    if n == 0:
        return None, None, None
    alpha = (1.0 - level) / 2.0
    kmax = n // 2
    cdf, start = _binom_half_cdf_table(n, kmax)
    best = None  # largest k with P(X <= k) <= alpha; then l = k + 1
    for k in range(start, kmax + 1):
        if cdf[k] <= alpha:
            best = k
        else:
            break
    if best is None:
        l = 1
        cov = 1.0 - 2.0 * (0.5**n)
    else:
        l = best + 1
        cov = 1.0 - 2.0 * cdf[best]
    lo_i = l - 1
    hi_i = n - l
    if hi_i < lo_i:  # pragma: no cover - cannot happen for l <= n/2 + 1
        lo_i, hi_i = 0, n - 1
    return sorted_xs[lo_i], sorted_xs[hi_i], max(0.0, min(1.0, cov))


def summarize(samples_us, level=0.95):
    n = len(samples_us)
    xs = sorted(samples_us)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    lo, hi, cov = median_ci(xs, level)
    return {
        "count": n,
        "min": xs[0],
        "max": xs[-1],
        "mean": mean,
        "std": std,
        "p50": percentile(xs, 0.50),
        "p90": percentile(xs, 0.90),
        "p95": percentile(xs, 0.95),
        "p99": percentile(xs, 0.99),
        "median_ci_low": lo,
        "median_ci_high": hi,
        "ci_level": level,
        "ci_coverage": cov,
        "ci_method": "binomial order statistics",
        "std_ddof": 1,
        "percentile_method": "linear",
        "samples": list(samples_us),
    }


# --------------------------------------------------------------------- model io


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model_file(path):
    if not os.path.exists(path):
        raise RunnerError("model file not found: %s" % path, "model")
    if not os.path.isfile(path):
        raise RunnerError("model path is not a regular file: %s" % path, "model")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise RunnerError("cannot read model file %s: %s" % (path, _one_line(exc)), "model")
    if size == 0:
        raise RunnerError("model file %s is empty" % path, "model")
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise RunnerError("model file %s is not a TFLite flatbuffer (missing 'TFL3' identifier)" % path, "model")
    return size


def make_interpreter(rt, model_path, num_threads, xnnpack):
    kwargs = {"model_path": model_path, "num_threads": num_threads}
    if not xnnpack:
        ort = getattr(rt, "OpResolverType", None)
        if ort is None:
            raise RunnerError("runtime does not support --no-xnnpack (no OpResolverType)", "runtime")
        kwargs["experimental_op_resolver_type"] = ort.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return rt.Interpreter(**kwargs)


def random_input(np, rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dt, np.floating):
        return rng.uniform(-0.5, 0.5, size=shape).astype(dt)
    if np.issubdtype(dt, np.integer):
        if dt == np.int8:
            lo, hi = -127, 127
        elif dt == np.uint8:
            lo, hi = 0, 254
        elif dt == np.int16:
            lo, hi = -32767, 32767
        else:  # int32/int64 indices etc.: small non-negative values, like benchmark_model
            lo, hi = 0, 99
        return rng.integers(lo, hi + 1, size=shape).astype(dt)
    if np.issubdtype(dt, np.complexfloating):
        return (rng.uniform(-0.5, 0.5, size=shape) + 1j * rng.uniform(-0.5, 0.5, size=shape)).astype(dt)
    raise RunnerError("unsupported input dtype %s" % dt, "model")


def tensor_info(d):
    q = d.get("quantization") or (0.0, 0)
    return {
        "name": d.get("name"),
        "index": int(d["index"]),
        "shape": [int(s) for s in d["shape"]],
        "shape_signature": [int(s) for s in d.get("shape_signature", d["shape"])],
        "dtype": str(getattr(d["dtype"], "__name__", d["dtype"])),
        "quantization": {"scale": float(q[0]), "zero_point": int(q[1])},
    }


# -------------------------------------------------------------------------- eval


def _npz_member_header(np, npz, key):
    """(shape, dtype) of an npz member without loading it."""
    fmt = np.lib.format
    with npz.zip.open(key + ".npy") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, _fortran, dtype = fmt.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def check_eval_file(np, path, input_details):
    """Validate the eval npz up front (headers only, nothing loaded). Returns a plan dict."""
    if not os.path.isfile(path):
        raise RunnerError("eval file not found: %s" % path, "eval")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise RunnerError("eval file %s is not a readable .npz: %s" % (path, _one_line(exc)), "eval")
    try:
        if not hasattr(npz, "files"):
            raise RunnerError("eval file %s is a single .npy array, expected an .npz with key 'x'" % path, "eval")
        files = set(npz.files)
        if "x" not in files:
            raise RunnerError(
                "eval file %s has no array 'x' (keys: %s)" % (path, ", ".join(sorted(files)) or "none"), "eval"
            )
        if len(input_details) != 1:
            raise RunnerError(
                "eval file %s: --eval supports single-input models only (model has "
                "%d inputs)" % (path, len(input_details)),
                "eval",
            )
        # perturbed copies of the samples (host: harness/models/perturb.py): x@NAME, ref@NAME
        perturbed = sorted(k[2:] for k in files if k.startswith("x@"))
        keys = ["x", "y", "ref"] + ["x@" + p for p in perturbed] + ["ref@" + p for p in perturbed]
        try:
            headers = dict((k, _npz_member_header(np, npz, k)) for k in keys if k in files)
        except Exception as exc:
            raise RunnerError("eval file %s: cannot read array headers: %s" % (path, _one_line(exc)), "eval")
        xs, xdt = headers["x"]
        if xdt.kind not in "fiub":
            raise RunnerError("eval file %s: 'x' has non-numeric dtype %s" % (path, xdt), "eval")
        if len(xs) < 1 or xs[0] < 1:
            raise RunnerError("eval file %s: 'x' has no samples (shape %s)" % (path, list(xs)), "eval")
        n = xs[0]
        in_shape = tuple(int(s) for s in input_details[0]["shape"])
        if tuple(xs[1:]) == in_shape:
            add_batch = False
        elif in_shape and in_shape[0] == 1 and tuple(xs[1:]) == in_shape[1:]:
            add_batch = True
        else:
            raise RunnerError(
                "eval file %s: 'x' shape %s does not match model input shape %s "
                "(expected (N,%s))" % (path, list(xs), list(in_shape), ",".join(str(s) for s in in_shape[1:])),
                "eval",
            )
        for p in perturbed:
            if headers["x@" + p][0] != xs:
                raise RunnerError(
                    "eval file %s: 'x@%s' shape %s differs from 'x' %s"
                    % (path, p, list(headers["x@" + p][0]), list(xs)),
                    "eval",
                )
        for k in ["y", "ref"] + ["ref@" + p for p in perturbed]:
            if k in headers:
                ks, kdt = headers[k]
                if kdt.kind not in "iuf" or len(ks) != 1 or ks[0] != n:
                    raise RunnerError(
                        "eval file %s: '%s' must be a 1-D integer array of length "
                        "%d (got shape %s, dtype %s)" % (path, k, n, list(ks), kdt),
                        "eval",
                    )
        return {
            "n": n,
            "add_batch": add_batch,
            "has_y": "y" in files,
            "has_ref": "ref" in files,
            "perturbed": [(p, "ref@" + p in files) for p in perturbed],
        }
    finally:
        close = getattr(npz, "close", None)
        if close:
            close()


def quantize_input(np, x, d):
    dt = np.dtype(d["dtype"])
    scale, zp = d.get("quantization") or (0.0, 0)
    if dt in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)):
        info = np.iinfo(dt)
        if scale and scale > 0:
            q = np.round(np.asarray(x, dtype=np.float64) / scale + zp)
        else:
            q = np.round(np.asarray(x, dtype=np.float64))
        return np.clip(q, info.min, info.max).astype(dt)
    return np.asarray(x).astype(dt)


def dequantize_output(np, y, d):
    scale, zp = d.get("quantization") or (0.0, 0)
    if np.issubdtype(np.dtype(d["dtype"]), np.integer) and scale and scale > 0:
        return (y.astype(np.float64) - zp) * scale
    return y.astype(np.float64)


def _predictions(np, interp, x, add_batch):
    ind = interp.get_input_details()[0]
    outd = interp.get_output_details()[0]
    preds = np.empty(int(x.shape[0]), dtype=np.int64)
    for i in range(len(preds)):
        xi = x[i][None, ...] if add_batch else x[i]
        interp.set_tensor(ind["index"], quantize_input(np, xi, ind))
        interp.invoke()
        out = dequantize_output(np, interp.get_tensor(outd["index"]), outd)
        preds[i] = int(np.argmax(out.reshape(-1)))
    return preds


def _scores(np, preds, y, ref):
    return {
        "n": int(len(preds)),
        "top1": float(np.mean(preds == y)) if y is not None else None,
        "agreement": float(np.mean(preds == ref)) if ref is not None else None,
        "correct": int(np.sum(preds == y)) if y is not None else None,
        "agree": int(np.sum(preds == ref)) if ref is not None else None,
    }


def run_eval(np, interp, path, plan):
    try:
        with np.load(path, allow_pickle=False) as npz:
            x = npz["x"]
            y = np.asarray(npz["y"]).astype(np.int64) if plan["has_y"] else None
            ref = np.asarray(npz["ref"]).astype(np.int64) if plan["has_ref"] else None
            perturbed = [
                (p, npz["x@" + p], np.asarray(npz["ref@" + p]).astype(np.int64) if has_ref else None)
                for p, has_ref in plan.get("perturbed") or []
            ]
    except Exception as exc:
        raise RunnerError("eval file %s: cannot load arrays: %s" % (path, _one_line(exc)), "eval")
    t0 = time.perf_counter()
    res = _scores(np, _predictions(np, interp, x, plan["add_batch"]), y, ref)
    res["path"] = path
    res["seconds"] = time.perf_counter() - t0
    if perturbed:
        # the same labels, the float model's answers on the same perturbed inputs
        res["perturbed"] = dict(
            (p, _scores(np, _predictions(np, interp, xp, plan["add_batch"]), y, rp)) for p, xp, rp in perturbed
        )
    return res


# -------------------------------------------------------------------- benchmark


def timed_loop(invoke, min_runs, min_ns, max_ns, pc):
    """Invoke until both min_runs and min_ns are reached, or max_ns elapsed.

    Only invoke() is inside the timestamps. Returns (samples_ns, elapsed_ns, stop_reason).
    """
    samples = array.array("q")
    append = samples.append
    n = 0
    start = pc()
    while True:
        t0 = pc()
        invoke()
        t1 = pc()
        append(t1 - t0)
        n += 1
        elapsed = t1 - start
        if elapsed >= max_ns:
            return samples, elapsed, "max_seconds"
        if n >= min_runs and elapsed >= min_ns:
            return samples, elapsed, "min_reached"


PAIRED_BLOCK_NS = 5 * 1000 * 1000  # one block of invocations of one model lasts about this long


def paired_loop(invoke_a, invoke_b, block, min_runs, min_ns, max_ns, pc):
    """Blocks of `block` invocations of A and B in the order A B B A (repeated) until both have
    min_runs samples and min_ns elapsed, or max_ns. Why blocks of a few milliseconds: the speed of a
    shared or virtual CPU drifts over tens of milliseconds and more (the same model's floor differs
    by up to 10 % between two processes started back to back), so two models timed within
    milliseconds of each other see the same machine, while whole blocks keep each model's caches
    warm. Returns (samples_a, samples_b, elapsed_ns, stop_reason)."""
    sa, sb = array.array("q"), array.array("q")
    order = ((invoke_a, sa), (invoke_b, sb), (invoke_b, sb), (invoke_a, sa))
    k = 0
    start = pc()
    while True:
        invoke, samples = order[k % 4]
        k += 1
        append = samples.append
        for _ in range(block):
            t0 = pc()
            invoke()
            t1 = pc()
            append(t1 - t0)
        elapsed = t1 - start
        if elapsed >= max_ns:
            return sa, sb, elapsed, "max_seconds"
        if k % 4 == 0 and min(len(sa), len(sb)) >= min_runs and elapsed >= min_ns:
            return sa, sb, elapsed, "min_reached"


def load_paired(rt, np, args, pc):
    """The --paired-model interpreter, inputs set like the main model's, warmed up like it."""
    path = os.path.abspath(args.paired_model)
    size = check_model_file(path)
    try:
        interp = make_interpreter(rt, path, args.num_threads, not args.no_xnnpack)
        apply_input_shapes(interp, args.input_shape, path)
        interp.allocate_tensors()
        rng = np.random.default_rng(args.seed)
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], random_input(np, rng, tuple(d["shape"]), d["dtype"]))
        t0 = pc()
        interp.invoke()
        first_ns = pc() - t0
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError("cannot run paired model %s: %s" % (path, _one_line(exc)), "model")
    warmup_loop(
        interp.invoke,
        max(1, args.warmup_runs),
        int(args.warmup_seconds * 1e9),
        int(args.max_seconds * 1e9),
        pc,
        array.array("q", bytes(8)),
    )
    return interp, {
        "path": path,
        "size_bytes": size,
        "sha256": sha256_file(path),
        "first_inference_us": first_ns / 1000.0,
    }


def warmup_loop(invoke, min_runs, min_ns, max_ns, pc, kept):
    """Like `timed_loop`, but keeps only the first len(kept) samples in a buffer allocated before the
    model was loaded, so that warmup never grows the process after the model-memory reading.
    Returns (count, total_ns)."""
    cap = len(kept)
    n = 0
    total = 0
    start = pc()
    while True:
        t0 = pc()
        invoke()
        t1 = pc()
        d = t1 - t0
        if n < cap:
            kept[n] = d
        total += d
        n += 1
        elapsed = t1 - start
        if elapsed >= max_ns or (n >= min_runs and elapsed >= min_ns):
            return n, total


# ------------------------------------------------------------ per-operator profile
#
# The Interpreter API that measures latency has no profiler hook, so the profile pass drives the same
# libLiteRt.so through its C API (CompiledModel + Profiler) with ctypes: a second instance of the
# model, compiled with `enable_profiling`, run N times after everything else is measured. With
# XNNPACK the delegated model ops are not reported as model ops: XNNPACK reports its own (fused)
# operators instead, so with XNNPACK on the built-in kernels are profiled as well (`*_builtin`).

# LiteRtProfilerEventType (litert/c/litert_profiler_event.h)
EVENT_DEFAULT = 1
EVENT_OPERATOR = 2
EVENT_DELEGATE_OPERATOR = 4
EVENT_DELEGATE_PROFILED_OPERATOR = 8
HW_ACCELERATOR_CPU = 1
LOCK_WRITE = 1
MAX_RANK = 8
# the ctypes binding, bound on the first profile pass only: a run without --profile-runs never
# loads it (tests check that it stays empty)
_LITERT_C: List[dict] = []


class ProfileUnavailable(Exception):
    """The runtime here cannot profile per operator: a warning, never a failed measurement."""


# The C API as called here (LiteRtCreateModelFromFile taking the environment, TOML runtime options,
# ProfiledEventData without TFLite types) is that of LiteRT 2.2 on; older releases differ in ways a
# symbol check cannot see, and a wrong ctypes signature would crash the process, not raise.
MIN_PROFILER_VERSION = (2, 2)


def _version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:2])


def litert_c_api(rt_name, rt_version=None):
    """ctypes binding of ai_edge_litert's libLiteRt.so with the symbols the profile pass calls."""
    if _LITERT_C:
        return _LITERT_C[0]
    if rt_name != "ai_edge_litert":
        raise ProfileUnavailable("the %s runtime has no per-operator profiler (install ai-edge-litert)" % rt_name)
    if rt_version is not None and _version_tuple(rt_version) < MIN_PROFILER_VERSION:
        raise ProfileUnavailable(
            "ai_edge_litert %s is older than %d.%d, whose profiler C API this runner calls"
            % ((rt_version,) + MIN_PROFILER_VERSION)
        )
    import ctypes

    import ai_edge_litert

    path = os.path.join(os.path.dirname(os.path.abspath(ai_edge_litert.__file__)), "libLiteRt.so")
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise ProfileUnavailable("cannot load %s: %s" % (path, _one_line(exc)))
    needed = (
        "LiteRtCreateEnvironment LiteRtCreateModelFromFile LiteRtCreateOptions LiteRtSetOptionsHardwareAccelerators "
        "LiteRtCreateOpaqueOptions LiteRtAddOpaqueOptions LiteRtCreateCompiledModel LiteRtCompiledModelGetProfiler "
        "LiteRtStartProfiler LiteRtStopProfiler LiteRtResetProfiler LiteRtGetNumProfilerEvents "
        "LiteRtGetProfilerEvents LiteRtGetModelSignature LiteRtGetNumSignatureInputs LiteRtGetNumSignatureOutputs "
        "LiteRtGetSignatureInputTensorByIndex LiteRtGetSignatureOutputTensorByIndex LiteRtGetRankedTensorType "
        "LiteRtGetTensorName LiteRtCompiledModelResizeInputTensorNonStrict LiteRtGetCompiledModelOutputTensorLayouts "
        "LiteRtGetCompiledModelInputBufferRequirements LiteRtGetCompiledModelOutputBufferRequirements "
        "LiteRtCreateManagedTensorBufferFromRequirements LiteRtGetTensorBufferPackedSize LiteRtLockTensorBuffer "
        "LiteRtUnlockTensorBuffer LiteRtRunCompiledModel LiteRtGetModelSubgraph LiteRtGetNumSubgraphOps "
        "LiteRtDestroyTensorBuffer LiteRtDestroyCompiledModel LiteRtDestroyModel"
    ).split()
    missing = [name for name in needed if not hasattr(lib, name)]
    if missing:
        raise ProfileUnavailable(
            "ai_edge_litert %s lacks the LiteRT profiler C API (%s)" % (_dist_version("ai-edge-litert"), missing[0])
        )
    P, S = ctypes.c_void_p, ctypes.c_size_t

    class MemoryUsage(ctypes.Structure):
        _fields_ = [("total", S), ("in_use", S), ("private", S)]

    class Event(ctypes.Structure):  # ProfiledEventData
        _fields_ = [
            ("tag", ctypes.c_char_p),
            ("event_type", ctypes.c_int),
            ("start_us", ctypes.c_uint64),
            ("elapsed_us", ctypes.c_uint64),
            ("begin_mem", MemoryUsage),
            ("end_mem", MemoryUsage),
            ("metadata1", ctypes.c_uint64),
            ("metadata2", ctypes.c_uint64),
            ("source", ctypes.c_int),
        ]

    for name in needed:
        getattr(lib, name).restype = None if name.startswith("LiteRtDestroy") else ctypes.c_int
    api = {
        "ctypes": ctypes,
        "lib": lib,
        "Event": Event,
        "P": P,
        "S": S,
        # opaque-option payloads and their (no-op) destructor live as long as the process
        "keep": [],
        "deleter": ctypes.CFUNCTYPE(None, P)(lambda _payload: None),
    }
    _LITERT_C.append(api)
    return api


class LiteRtProfiledModel(object):
    """One model compiled by LiteRT with its profiler enabled, inputs set once like the timed model's."""

    def __init__(self, api, model_path, num_threads, xnnpack, inputs):
        """`inputs`: [(tensor name, numpy array)] in the interpreter's input order (matched by name)."""
        self.api, self.path = api, model_path
        c, lib, P, S = api["ctypes"], api["lib"], api["P"], api["S"]
        self._c, self._lib, self._P, self._S = c, lib, P, S
        self.model, opts, self.cm = P(), P(), P()
        self.buffers: list = []
        if "env" not in api:  # one environment for every model profiled in this process
            env = P()
            self._ok(lib.LiteRtCreateEnvironment(0, None, c.byref(env)), "create a LiteRT environment for")
            api["env"] = env
        self.env = api["env"]
        self._ok(lib.LiteRtCreateModelFromFile(self.env, model_path.encode(), c.byref(self.model)), "load the model")
        self._ok(lib.LiteRtCreateOptions(c.byref(opts)), "create compilation options")
        self._ok(lib.LiteRtSetOptionsHardwareAccelerators(opts, HW_ACCELERATOR_CPU), "select the CPU")
        self._opaque(opts, "runtime_options_string", "enable_profiling = true\n")
        mode = "xnnpack" if xnnpack else "builtin"
        self._opaque(opts, "xnnpack", 'kernel_mode = "%s"\nnum_threads = %d\n' % (mode, num_threads))
        self._ok(lib.LiteRtCreateCompiledModel(self.env, self.model, opts, c.byref(self.cm)), "compile the model")
        sg, n_ops = P(), S()
        self._ok(lib.LiteRtGetModelSubgraph(self.model, S(0), c.byref(sg)), "read subgraph 0")
        self._ok(lib.LiteRtGetNumSubgraphOps(sg, c.byref(n_ops)), "count the ops")
        self.model_ops = int(n_ops.value)
        self.signature = P()
        self._ok(lib.LiteRtGetModelSignature(self.model, S(0), c.byref(self.signature)), "read signature 0")
        self.inputs = self._buffers("Input", inputs)
        self.outputs = self._buffers("Output", None)
        self._in = (P * len(self.inputs))(*self.inputs)
        self._out = (P * len(self.outputs))(*self.outputs)
        self.profiler = P()
        self._ok(lib.LiteRtCompiledModelGetProfiler(self.cm, c.byref(self.profiler)), "get the profiler")
        if not self.profiler.value:
            raise ProfileUnavailable("LiteRT compiled %s without a profiler" % model_path)

    def _ok(self, status, what):
        if status != 0:
            raise RunnerError("LiteRT profiler: cannot %s %s (LiteRtStatus %d)" % (what, self.path, status), "profile")

    def _opaque(self, opts, identifier, toml):
        c = self._c
        payload = c.create_string_buffer(toml.encode())
        handle = self._P()
        self.api["keep"].append(payload)
        self._ok(
            self._lib.LiteRtCreateOpaqueOptions(
                identifier.encode(), c.cast(payload, self._P), self.api["deleter"], c.byref(handle)
            ),
            "create %s options for" % identifier,
        )
        self._ok(self._lib.LiteRtAddOpaqueOptions(opts, handle), "add %s options for" % identifier)

    def _buffers(self, kind, inputs):
        c, lib, P, S = self._c, self._lib, self._P, self._S
        count = S()
        self._ok(getattr(lib, "LiteRtGetNumSignature%ss" % kind)(self.signature, c.byref(count)), "count tensors of")
        types = []
        for i in range(count.value):
            tensor, name = P(), c.c_char_p()
            by_index = getattr(lib, "LiteRtGetSignature%sTensorByIndex" % kind)
            self._ok(by_index(self.signature, S(i), c.byref(tensor)), "read a tensor of")
            # LiteRtRankedTensorType: element type (int32), then LiteRtLayout (rank bits, int32 dims[8], ...)
            ranked = c.create_string_buffer(256)
            self._ok(lib.LiteRtGetRankedTensorType(tensor, ranked), "read the tensor type of")
            types.append(ranked)
            if kind == "Input":
                self._ok(lib.LiteRtGetTensorName(tensor, c.byref(name)), "read a tensor name of")
                given = dict(inputs)
                data = given.get((name.value or b"").decode(), inputs[i][1] if i < len(inputs) else None)
                if data is None:
                    raise RunnerError("LiteRT profiler: input %d of %s has no data" % (i, self.path), "profile")
                dims = (c.c_int32 * MAX_RANK).from_buffer(ranked, 8)
                rank = c.c_uint32.from_buffer(ranked, 4).value & 0x7F
                if [int(d) for d in dims[:rank]] != [int(d) for d in data.shape]:
                    shape = (c.c_int * len(data.shape))(*data.shape)
                    resize = lib.LiteRtCompiledModelResizeInputTensorNonStrict
                    self._ok(resize(self.cm, S(0), S(i), shape, S(len(data.shape))), "resize an input of")
                    for k, d in enumerate(data.shape):
                        dims[k] = int(d)
                types[-1] = (ranked, data)
        if kind == "Output":
            layouts = c.create_string_buffer(68 * max(1, len(types)))
            self._ok(
                lib.LiteRtGetCompiledModelOutputTensorLayouts(self.cm, S(0), S(len(types)), layouts, c.c_bool(True)),
                "read the output shapes of",
            )
            for i, ranked in enumerate(types):
                c.memmove(c.addressof(ranked) + 4, c.addressof(layouts) + 68 * i, 68)
            types = [(ranked, None) for ranked in types]
        buffers = []
        for i, (ranked, data) in enumerate(types):
            req, buf, size = P(), P(), S()
            getter = getattr(lib, "LiteRtGetCompiledModel%sBufferRequirements" % kind)
            self._ok(getter(self.cm, S(0), S(i), c.byref(req)), "read buffer requirements of")
            create = lib.LiteRtCreateManagedTensorBufferFromRequirements
            self._ok(create(self.env, ranked, req, c.byref(buf)), "create a tensor buffer for")
            buffers.append(buf)
            self.buffers.append(buf)
            if data is None:
                continue
            self._ok(lib.LiteRtGetTensorBufferPackedSize(buf, c.byref(size)), "size an input of")
            raw = data.tobytes()
            if size.value != len(raw):
                raise RunnerError(
                    "LiteRT profiler: input %d of %s takes %d bytes, the data has %d"
                    % (i, self.path, size.value, len(raw)),
                    "profile",
                )
            addr = P()
            self._ok(lib.LiteRtLockTensorBuffer(buf, c.byref(addr), LOCK_WRITE), "write an input of")
            c.memmove(addr, raw, len(raw))
            self._ok(lib.LiteRtUnlockTensorBuffer(buf), "write an input of")
        return buffers

    def close(self):
        """Free the buffers, the compiled model and the model (the environment stays for the next)."""
        lib = self._lib
        for buf in self.buffers:
            lib.LiteRtDestroyTensorBuffer(buf)
        self.buffers = []
        if self.cm.value:
            lib.LiteRtDestroyCompiledModel(self.cm)
            self.cm = self._P()
        if self.model.value:
            lib.LiteRtDestroyModel(self.model)
            self.model = self._P()

    def run(self):
        S = self._S
        self._ok(
            self._lib.LiteRtRunCompiledModel(
                self.cm, S(0), S(len(self.inputs)), self._in, S(len(self.outputs)), self._out
            ),
            "run",
        )

    def profile(self, runs):
        """Events of each of `runs` invocations: [[(event type, tag, metadata1, metadata2, elapsed us)]].
        One invocation at a time (start, run, stop, read, reset) so no event buffer can overflow."""
        c, lib = self._c, self._lib
        self.run()  # the first run allocates; it is not profiled
        out = []
        for _ in range(runs):
            self._ok(lib.LiteRtResetProfiler(self.profiler), "reset the profiler of")
            self._ok(lib.LiteRtStartProfiler(self.profiler), "start the profiler of")
            self.run()
            self._ok(lib.LiteRtStopProfiler(self.profiler), "stop the profiler of")
            n = c.c_int()
            self._ok(lib.LiteRtGetNumProfilerEvents(self.profiler, c.byref(n)), "count the events of")
            events = (self.api["Event"] * max(1, n.value))()
            self._ok(lib.LiteRtGetProfilerEvents(self.profiler, n, events), "read the events of")
            out.append(
                [
                    (e.event_type, (e.tag or b"").decode("utf-8", "replace"), e.metadata1, e.metadata2, e.elapsed_us)
                    for e in events[: n.value]
                ]
            )
        return out


def op_profile_from_events(invocations, model_ops, xnnpack):
    """The profile document (harness/profile/document.py) from the events of each profiled invocation.

    Model ops run by the built-in kernels are OPERATOR events (metadata1 = node index, metadata2 =
    subgraph); a node index beyond the model's ops is a delegate node. XNNPACK reports its own
    operators instead of its node (DELEGATE_*OPERATOR events, metadata1 = its index within one
    delegated partition): each becomes a `delegated` op, numbered after the model's ops like TFLite
    numbers delegate nodes, since they are not model ops. An op run several times in one invocation
    (a loop body) counts its summed time."""
    keys, first = None, None
    invoke = []
    for n, events in enumerate(invocations):
        ops = {}
        order = []
        total = 0.0
        partition, last_delegate, position = -1, None, 0
        for etype, tag, md1, md2, elapsed in events:
            if etype == EVENT_DEFAULT and tag == "Invoke":
                total += float(elapsed)
                continue
            if etype == EVENT_OPERATOR:
                last_delegate = None
                key = ("op", int(md2), int(md1), tag)
                info = {"index": int(md1), "subgraph": int(md2), "type": tag, "name": None}
                info["delegated"] = int(md2) == 0 and int(md1) >= model_ops
            elif etype in (EVENT_DELEGATE_OPERATOR, EVENT_DELEGATE_PROFILED_OPERATOR):
                if last_delegate is None or int(md1) <= last_delegate:
                    partition += 1
                last_delegate = int(md1)
                key = ("delegate", partition, int(md1), tag)
                info = {
                    "index": model_ops + position,
                    "subgraph": 0,
                    "type": tag,
                    "name": "XNNPACK partition %d op %d" % (partition, int(md1)),
                    "delegated": True,
                }
                position += 1
            else:
                continue
            if key not in ops:
                ops[key] = dict(info, time=0.0)
                order.append(key)
            ops[key]["time"] += float(elapsed)
        invoke.append(total)
        if keys is None:
            keys, first = order, [dict(ops[k], times=[]) for k in order]
        elif order != keys:
            raise RunnerError("LiteRT profiler: invocation %d ran other ops than the first" % (n + 1), "profile")
        for slot, k in zip(first, order):
            slot["times"].append(ops[k]["time"])
    return {
        "source": "litert-xnnpack" if xnnpack else "litert-builtin",
        "unit": "us",
        "ticks_per_us": None,
        "cycles": False,
        "invocations": len(invocations),
        "invoke": invoke,
        "ops": [{k: op[k] for k in ("index", "subgraph", "type", "name", "delegated", "times")} for op in first or []],
    }


def seeded_inputs(np, details, seed):
    """The random inputs the timed model got (same seed, same order): [(tensor name, array)]."""
    rng = np.random.default_rng(seed)
    return [(str(d["name"]), random_input(np, rng, tuple(d["shape"]), d["dtype"])) for d in details]


def profile_model(api, np, model_path, details, args, xnnpack):
    model = LiteRtProfiledModel(api, model_path, args.num_threads, xnnpack, seeded_inputs(np, details, args.seed))
    try:
        return op_profile_from_events(model.profile(args.profile_runs), model.model_ops, xnnpack)
    finally:
        model.close()


def profile_pass(result, rt_name, np, args, targets, rt_version=None):
    """`targets`: [(document key, model path, input details)]. Adds each key's profile (and, with XNNPACK,
    its `*_builtin` twin, since XNNPACK's ops are not the model's); a runtime or model that cannot be
    profiled costs the profile only: a warning, the measurement stands."""
    xnnpack = not args.no_xnnpack
    log(
        "per-operator profile: %d invocation%s with LiteRT's profiler (XNNPACK %s%s)"
        % (
            args.profile_runs,
            "" if args.profile_runs == 1 else "s",
            "on" if xnnpack else "off",
            ", then the built-in kernels" if xnnpack else "",
        )
    )
    try:
        api = litert_c_api(rt_name, rt_version)
        for key, path, details in targets:
            doc = profile_model(api, np, path, details, args, xnnpack)
            result[key] = doc
            if xnnpack and any(op["delegated"] for op in doc["ops"]):
                result[key + "_builtin"] = profile_model(api, np, path, details, args, False)
    except Exception as exc:  # whatever the profile pass hits, what was measured before it stands
        for key, _, _ in targets:
            result.pop(key, None)
            result.pop(key + "_builtin", None)
        why = (
            _one_line(exc)
            if isinstance(exc, (ProfileUnavailable, RunnerError))
            else "%s: %s"
            % (
                exc.__class__.__name__,
                _one_line(exc),
            )
        )
        warning = "per-operator profile: %s; this result has no op_profile" % why
        result["warnings"].append(warning)
        log("warning: " + warning)
        return
    for key in [k + tail for k, _, _ in targets for tail in ("", "_builtin") if k + tail in result]:
        prof = result[key]
        top = sorted(prof["ops"], key=lambda o: -sum(o["times"]))[:3]
        total = sum(sum(o["times"]) for o in prof["ops"]) or 1.0
        shares = ", ".join("%s %.0f %%" % (o["type"], 100.0 * sum(o["times"]) / total) for o in top)
        log("%s: %d ops, top %s" % (key, len(prof["ops"]), shares))


def run(args):
    # warnings: the result is usable but incomplete (e.g. the energy meter is missing: no energy)
    result = {"schema": SCHEMA, "status": "ok", "warnings": []}
    model_path = os.path.abspath(args.model)
    size = check_model_file(model_path)
    if args.eval and not os.path.isfile(args.eval):
        raise RunnerError("eval file not found: %s" % args.eval, "eval")

    rt, rt_name, rt_version = load_runtime()
    import numpy as np  # after the runtime so a missing runtime is reported first

    log("runtime %s %s, python %s" % (rt_name, rt_version, platform.python_version()))
    result["runtime"] = {"name": rt_name, "version": rt_version, "numpy": np.__version__}
    result["python"] = platform.python_version()
    u = platform.uname()
    result["platform"] = {
        "machine": u.machine,
        "system": u.system,
        "release": u.release,
        "node": u.node,
        "cpu_count": os.cpu_count(),
        "usable_cpus": _cpu_count(),
    }
    result["model"] = {"path": model_path, "size_bytes": size, "sha256": sha256_file(model_path)}
    result["config"] = {
        "num_threads": args.num_threads,
        "xnnpack": not args.no_xnnpack,
        "min_runs": args.min_runs,
        "min_seconds": args.min_seconds,
        "max_seconds": args.max_seconds,
        "warmup_runs": args.warmup_runs,
        "warmup_seconds": args.warmup_seconds,
        "seed": args.seed,
        "eval": os.path.abspath(args.eval) if args.eval else None,
        "profile_runs": args.profile_runs,
    }

    if args.cpus is not None:
        try:
            os.sched_setaffinity(0, args.cpus)
        except (AttributeError, OSError) as exc:
            raise RunnerError("cannot pin to CPUs %s: %s" % (args.cpus, _one_line(exc)), "usage")
    result["config"]["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    pc = time.perf_counter_ns
    # the runner's own buffers exist before the "before load" reading, so that the model's memory
    # (the high-water mark after warmup minus this reading) does not include them
    warm_kept = array.array("q", bytes(8 * MAX_WARMUP_SAMPLES))
    gc.collect()
    rss_before = rss_kb()

    # ---- init: load + resize dynamic inputs (--input-shape) + allocate
    log(
        "loading %s (%d bytes, %d thread%s, XNNPACK %s)"
        % (model_path, size, args.num_threads, "" if args.num_threads == 1 else "s", "off" if args.no_xnnpack else "on")
    )
    t0 = pc()
    try:
        interp = make_interpreter(rt, model_path, args.num_threads, not args.no_xnnpack)
        resized = apply_input_shapes(interp, args.input_shape, model_path)
        interp.allocate_tensors()
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError("cannot load model %s: %s" % (model_path, _one_line(exc)), "model")
    init_ns = pc() - t0
    rss_after = rss_kb()
    result["init_us"] = init_ns / 1000.0

    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    result["inputs"] = [tensor_info(d) for d in in_details]
    result["outputs"] = [tensor_info(d) for d in out_details]
    result["dynamic_shapes_resized"] = bool(resized)
    result["config"]["input_shapes"] = resized or None

    eval_plan = check_eval_file(np, args.eval, in_details) if args.eval else None

    # ---- inputs: random data in the input dtype/range, set once (like benchmark_model)
    rng = np.random.default_rng(args.seed)
    try:
        for d in in_details:
            interp.set_tensor(d["index"], random_input(np, rng, tuple(d["shape"]), d["dtype"]))
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError("cannot set inputs of model %s: %s" % (model_path, _one_line(exc)), "model")

    invoke = interp.invoke
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # ---- first inference
        try:
            t0 = pc()
            invoke()
            first_ns = pc() - t0
        except Exception as exc:
            raise RunnerError("invoke failed for model %s: %s" % (model_path, _one_line(exc)), "model")
        result["first_inference_us"] = first_ns / 1000.0

        # ---- warmup (until both warmup_runs and warmup_seconds; capped by max_seconds)
        max_ns = int(args.max_seconds * 1e9)
        if args.warmup_runs > 0 or args.warmup_seconds > 0:
            wcount, wtotal = warmup_loop(
                invoke, max(1, args.warmup_runs), int(args.warmup_seconds * 1e9), max_ns, pc, warm_kept
            )
        else:
            wcount, wtotal = 0, 0
        model_peak = peak_rss_kb()  # before the steady window's sample buffer grows
        result["warmup"] = {
            "count": wcount,
            "samples_us": [s / 1000.0 for s in warm_kept[: min(wcount, MAX_WARMUP_SAMPLES)]],
            "samples_truncated": wcount > MAX_WARMUP_SAMPLES,
            "total_us": wtotal / 1000.0,
        }
        log("init %.1f ms, first inference %.3f ms, warmup %d runs" % (init_ns / 1e6, first_ns / 1e6, wcount))
        paired = load_paired(rt, np, args, pc) if args.paired_model else None

        # ---- steady state
        tel_before = telemetry_snapshot()
        sampler, meter_problem = None, None
        if args.power_file or args.power_pmic:  # a missing meter costs the energy figure, never the measurement
            try:
                if args.power_pmic:
                    sampler = PmicSampler(args.power_rate).start()
                else:
                    sampler = PowerSampler(args.power_file, args.power_rate).start()
            except (RunnerError, OSError) as exc:
                meter_problem = _one_line(exc)
        e0 = rapl_read()
        if paired is not None:
            mean_ns = max(1.0, wtotal / wcount if wcount else first_ns)
            block = max(1, int(round(PAIRED_BLOCK_NS / mean_ns)))
            samples, samples_b, elapsed_ns, reason = paired_loop(
                invoke, paired[0].invoke, block, args.min_runs, int(args.min_seconds * 1e9), max_ns, pc
            )
            paired[1]["block"] = block
        else:
            samples, elapsed_ns, reason = timed_loop(invoke, args.min_runs, int(args.min_seconds * 1e9), max_ns, pc)
        e1 = rapl_read()
        power = None
        if sampler is not None:
            try:
                power = sampler.stop()
            except RunnerError as exc:
                meter_problem = _one_line(exc)
        peak = peak_rss_kb()  # before the samples are converted for the report
        tel_after = telemetry_snapshot()
    finally:
        if gc_was_enabled:
            gc.enable()

    samples_us = [s / 1000.0 for s in samples]
    lat = summarize(samples_us)
    lat["window_s"] = elapsed_ns / 1e9
    lat["stop_reason"] = reason
    result["latency_us"] = lat
    log(
        "steady %d runs in %.2f s (%s): p50 %.1f us [%.1f, %.1f], p99 %.1f us"
        % (
            lat["count"],
            lat["window_s"],
            STOP_REASONS.get(reason, reason),
            lat["p50"],
            lat["median_ci_low"],
            lat["median_ci_high"],
            lat["p99"],
        )
    )
    if paired is not None:
        lat_b = summarize([s / 1000.0 for s in samples_b])
        result["paired"] = dict(paired[1], latency_us=lat_b, order="ABBA")
        log(
            "paired model: p50 %.1f us (%d runs, blocks of %d), %.4f x this model's p50"
            % (lat_b["p50"], lat_b["count"], paired[1]["block"], lat_b["p50"] / lat["p50"])
        )

    result["memory"] = {
        "rss_before_load_kb": rss_before,
        "rss_after_load_kb": rss_after,
        "peak_rss_kb": peak,
        "model_memory_kb": (model_peak - rss_before) if (model_peak is not None and rss_before is not None) else None,
        "peak_rss_delta_kb": (peak - rss_before) if (peak is not None and rss_before is not None) else None,
        "source": "proc_status" if _proc_status_kb("VmHWM") is not None else "getrusage",
        "measured": "right after the steady window, before eval",
    }
    disturbed = window_disturbed(tel_before, tel_after)
    result["telemetry"] = {
        "before": tel_before,
        "after": tel_after,
        "throttled": combine_throttled(tel_before, tel_after),
        "governor": tel_after.get("governor"),
        "disturbed": bool(disturbed),
        "disturbed_reasons": disturbed,
    }
    if disturbed:
        log("window disturbed: %s" % "; ".join(disturbed))
    if power is not None:
        assert sampler is not None
        result["energy"] = sampled_energy(
            sampler.path, power[0], power[1], power[2], args.idle_power_mw, lat["mean"], sampler.meter
        )
        if args.power_pmic:
            result["energy"]["note"] = (
                "(mean power of the PMIC's rails during the steady window - idle power) x mean latency; the "
                "rails feed the SoC, memory and I/O: the 5 V input's conversion losses and USB devices are not in it"
            )
    elif args.power_file or args.power_pmic:  # the profile's meter, or none: never another meter's figure
        result["energy"] = None
        warning = "energy meter: %s; this result has no energy" % (meter_problem or "no power samples")
        result["warnings"].append(warning)
        log("warning: " + warning)
    else:
        result["energy"] = rapl_energy(e0, e1, len(samples), elapsed_ns / 1e9)
        if result["energy"] is not None and paired is not None:
            apportion_paired(result["energy"], samples, samples_b)

    # ---- accuracy
    if eval_plan is not None:
        log("evaluating %d samples from %s" % (eval_plan["n"], args.eval))
        try:
            acc = run_eval(np, interp, os.path.abspath(args.eval), eval_plan)
        except RunnerError:
            raise
        except Exception as exc:
            raise RunnerError("eval with %s failed: %s" % (args.eval, _one_line(exc)), "eval")
        log(accuracy_line(acc))
        result["accuracy"] = acc
    else:
        result["accuracy"] = None

    # ---- per-operator profile: its own pass, after everything measured
    if args.profile_runs:
        targets = [("op_profile", model_path, in_details)]
        if paired is not None:
            targets.append(("paired_op_profile", paired[1]["path"], paired[0].get_input_details()))
        profile_pass(result, rt_name, np, args, targets, rt_version)
    return result


def _emit(out_fd, doc):
    data = (json.dumps(doc, allow_nan=False, default=str) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        n = os.write(out_fd, view)
        view = view[n:]


# ------------------------------------------------------------------------ probe


def _numpy_info():
    try:
        import numpy

        return {"version": numpy.__version__, "error": None}
    except Exception as exc:
        return {"version": None, "error": "%s: %s" % (exc.__class__.__name__, _one_line(exc))}


def _runtime_info():
    """The runtime `load_runtime` would pick, or why none can be imported."""
    try:
        _, name, version = load_runtime()
        return {"name": name, "version": version, "errors": []}
    except RunnerError as exc:
        detail = str(exc).split(" (", 1)[-1].rstrip(")")
        return {"name": None, "version": None, "errors": detail.split("; ")}


def _disk_info(workdir):
    path = os.path.abspath(os.path.expanduser(workdir))
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe)
        return {
            "workdir": path,
            "checked": probe,
            "free_bytes": st.f_bavail * st.f_frsize,
            "exists": os.path.isdir(path),
            "writable": os.access(probe, os.W_OK),
        }
    except (OSError, AttributeError) as exc:
        return {"workdir": path, "checked": probe, "free_bytes": None, "error": _one_line(exc)}


def _mem_info():
    out = {}
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            try:
                out[key] = int(rest.split()[0])
            except (ValueError, IndexError):
                pass
    return {"total_kb": out.get("MemTotal"), "available_kb": out.get("MemAvailable")}


def _throttle_info():
    """Current and since-boot throttle bits (`vcgencmd get_throttled`: bits 0-3 now, 16-19 since boot)."""
    available = shutil.which("vcgencmd") is not None
    raw = _throttled_raw() if available else None
    try:
        value = int(raw, 0) if raw else None
    except ValueError:
        value = None
    if value is None:
        return {"available": available, "raw": raw, "now": None, "since_boot": None}
    return {
        "available": True,
        "raw": raw,
        "now": [name for bit, name in sorted(THROTTLE_BITS.items()) if value & bit],
        "since_boot": [name for bit, name in sorted(THROTTLE_BITS.items()) if value & (bit << 16)],
    }


def _energy_info():
    """RAPL readability and every hwmon sensor with its power inputs (paths as the profile names them)."""
    rapl = _read_text(RAPL_ENERGY)
    sensors = []
    for d in sorted(glob.glob(SYSFS + HWMON_DIR + "/hwmon*")):
        power = {}
        for f in sorted(glob.glob(os.path.join(d, "power*_input"))):
            try:
                read_power_uw(f[len(SYSFS) :])
                power[os.path.basename(f)] = None
            except RunnerError as exc:
                power[os.path.basename(f)] = str(exc)
        real = os.path.realpath(d)
        sensors.append(
            {
                "path": d[len(SYSFS) :],
                "real_path": real[len(SYSFS) :] if real.startswith(SYSFS) else real,
                "name": _read_text(os.path.join(d, "name")),
                "power": power,
            }
        )
    return {
        "rapl": {"path": RAPL_ENERGY[len(SYSFS) :], "readable": rapl is not None and rapl.isdigit()},
        "hwmon": sensors,
        "pmic": _pmic_info(),
    }


def _pmic_info():
    """Whether `vcgencmd pmic_read_adc` reads power here (a Raspberry Pi 5), with one reading."""
    try:
        return {"source": PMIC_SOURCE, "power_mw": read_pmic_uw() / 1000.0, "error": None}
    except RunnerError as exc:
        return {"source": PMIC_SOURCE, "power_mw": None, "error": str(exc)}


def probe_document(workdir):
    u = platform.uname()
    return {
        "schema": PROBE_SCHEMA,
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "ok": tuple(sys.version_info[:2]) >= (3, 9),
        },
        "platform": {"machine": u[4], "system": u[0], "release": u[2], "node": u[1], "cpu_count": os.cpu_count()},
        "numpy": _numpy_info(),
        "runtime": _runtime_info(),
        "disk": _disk_info(workdir),
        "memory": _mem_info(),
        "governor": _read_text(CPU_GOVERNOR),
        "cpu_temp_c": _cpu_temp_c(),
        "throttle": _throttle_info(),
        "energy": _energy_info(),
    }


def _probe_workdir(argv):
    if "--workdir" in argv:
        i = argv.index("--workdir")
        if i + 1 < len(argv):
            return argv[i + 1]
    return "."


def main(argv=None):
    # Keep stdout clean for the one JSON document: anything a native library prints to
    # fd 1 goes to stderr instead.
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pmic-sampler"]:  # PmicSampler's process: its own stdout protocol, no JSON
        os.dup2(out_fd, 1)
        os.close(out_fd)
        sys.stdout = sys.__stdout__
        return pmic_sampler_main(float(argv[1]))
    try:
        if "--probe" in argv:
            doc = probe_document(_probe_workdir(argv))
        else:
            doc = run(parse_args(argv))
        code = 0
    except RunnerError as exc:
        doc = {"schema": SCHEMA, "status": "error", "error": _one_line(exc), "error_kind": exc.kind}
        log("error: %s" % doc["error"])
        code = EXIT_ERROR
    except KeyboardInterrupt:
        doc = {"schema": SCHEMA, "status": "error", "error": "interrupted", "error_kind": "interrupted"}
        code = EXIT_ERROR
    except Exception as exc:  # unexpected: still one clean JSON line
        doc = {
            "schema": SCHEMA,
            "status": "error",
            "error": "runner crashed: %s: %s" % (exc.__class__.__name__, _one_line(exc)),
            "error_kind": "crash",
        }
        import traceback

        traceback.print_exc()
        code = EXIT_ERROR
    try:
        _emit(out_fd, doc)
    finally:
        os.close(out_fd)
    return code


if __name__ == "__main__":
    sys.exit(main())
