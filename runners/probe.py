#!/usr/bin/env python3
"""hilbench device probe (schema ``hilbench.probe/1``): can this Python run linux_runner.py here?

Standalone and stdlib-only (deliberately written for old Pythons too, so that a too-old interpreter is
reported rather than crashing). Used by ``hil devices check`` for every Linux device: run as a file
locally, or fed on stdin over SSH (``python - --workdir DIR``). Prints one JSON document on stdout:
python version, TFLite runtime and numpy (name/version or the import error), free disk in the work
dir, free RAM, CPU governor, temperature and the Raspberry Pi throttle state.
"""
import json
import os
import platform
import subprocess
import sys

SCHEMA = "hilbench.probe/1"
THROTTLE_NOW = {0x1: "under_voltage", 0x2: "freq_capped", 0x4: "throttled", 0x8: "soft_temp_limit"}


def _one_line(exc):
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())[:300]


def _dist_version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return None


def numpy_info():
    try:
        import numpy
        return {"version": numpy.__version__, "error": None}
    except Exception as exc:
        return {"version": None, "error": "%s: %s" % (exc.__class__.__name__, _one_line(exc))}


def runtime_info():
    """Same preference order as linux_runner.py: ai_edge_litert, tflite_runtime, tensorflow.lite."""
    errors = []
    try:
        from ai_edge_litert import interpreter  # noqa: F401
        import ai_edge_litert
        version = getattr(ai_edge_litert, "__version__", None) or _dist_version("ai-edge-litert")
        return {"name": "ai_edge_litert", "version": str(version or "unknown"), "errors": errors}
    except Exception as exc:
        errors.append("ai_edge_litert: %s" % _one_line(exc))
    try:
        from tflite_runtime import interpreter  # noqa: F401,F811
        import tflite_runtime
        version = getattr(tflite_runtime, "__version__", None) or _dist_version("tflite-runtime")
        return {"name": "tflite_runtime", "version": str(version or "unknown"), "errors": errors}
    except Exception as exc:
        errors.append("tflite_runtime: %s" % _one_line(exc))
    try:
        import tensorflow as tf
        tf.lite.Interpreter  # noqa: B018
        return {"name": "tensorflow.lite", "version": str(tf.__version__), "errors": errors}
    except Exception as exc:
        errors.append("tensorflow: %s" % _one_line(exc))
    return {"name": None, "version": None, "errors": errors}


def disk_info(workdir):
    path = os.path.abspath(os.path.expanduser(workdir))
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe)
        return {"workdir": path, "checked": probe, "free_bytes": st.f_bavail * st.f_frsize,
                "exists": os.path.isdir(path), "writable": os.access(probe, os.W_OK)}
    except (OSError, AttributeError) as exc:
        return {"workdir": path, "checked": probe, "free_bytes": None, "error": _one_line(exc)}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, IOError):
        return None


def mem_info():
    out = {}
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            try:
                out[key] = int(rest.split()[0])
            except (ValueError, IndexError):
                pass
    return {"total_kb": out.get("MemTotal"), "available_kb": out.get("MemAvailable")}


def cpu_temp_c():
    zones = []
    base = "/sys/class/thermal"
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("thermal_zone"))
    except OSError:
        names = []
    for n in names:
        zones.append(((_read(os.path.join(base, n, "type")) or "").lower(), os.path.join(base, n, "temp")))
    prefs = ("cpu", "soc", "x86_pkg", "pkg", "core", "k10temp", "tctl", "")
    for pref in prefs:
        for kind, path in zones:
            if pref in kind:
                raw = _read(path)
                try:
                    v = int(raw)
                except (TypeError, ValueError):
                    continue
                return round(v / 1000.0, 1) if abs(v) > 1000 else float(v)
    return None


def throttle_info():
    exe = None
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) + ["/usr/bin", "/opt/vc/bin"]:
        cand = os.path.join(d, "vcgencmd")
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            exe = cand
            break
    if not exe:
        return {"available": False, "raw": None, "now": None, "since_boot": None}
    try:
        proc = subprocess.Popen([exe, "get_throttled"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, _ = proc.communicate()
        text = out.decode("ascii", "replace").strip()
        raw = text.split("=", 1)[1].strip() if "=" in text else None
        value = int(raw, 0) if raw else None
    except Exception:
        return {"available": True, "raw": None, "now": None, "since_boot": None}
    if value is None:
        return {"available": True, "raw": raw, "now": None, "since_boot": None}
    return {"available": True, "raw": raw,
            "now": [name for bit, name in sorted(THROTTLE_NOW.items()) if value & bit],
            "since_boot": [name for bit, name in sorted(THROTTLE_NOW.items()) if value & (bit << 16)]}


def main(argv):
    workdir = "."
    if "--workdir" in argv:
        i = argv.index("--workdir")
        if i + 1 < len(argv):
            workdir = argv[i + 1]
    u = platform.uname()
    doc = {
        "schema": SCHEMA,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "ok": tuple(sys.version_info[:2]) >= (3, 9)},
        "platform": {"machine": u[4], "system": u[0], "release": u[2], "node": u[1],
                     "cpu_count": os.cpu_count() if hasattr(os, "cpu_count") else None},
        "numpy": numpy_info(),
        "runtime": runtime_info(),
        "disk": disk_info(workdir),
        "memory": mem_info(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_temp_c": cpu_temp_c(),
        "throttle": throttle_info(),
    }
    sys.stdout.write(json.dumps(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
