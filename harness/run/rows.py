"""Flattening of a runner document into named long-format metrics.

One naming scheme for every transport (local, ssh, serial) is what lets reports and gates compare
a Raspberry Pi with an MCU without special cases.
"""

from __future__ import annotations

import functools
import os
from typing import Any

LATENCY_STATS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")
PAIRED_STATS = ("p50", "p90", "min")  # the gated latency levels

UNITS = {
    "latency_count": "count",
    "init_us": "us",
    "first_inference_us": "us",
    "peak_rss_kb": "kB",
    "peak_rss_delta_kb": "kB",
    "model_memory_kb": "kB",
    "disturbed": "bool",
    "rss_before_load_kb": "kB",
    "model_size_bytes": "B",
    "model_macs": "MAC",
    "model_params": "count",
    "accuracy_top1": "fraction",
    "agreement": "fraction",
    "accuracy_n": "count",
    "energy_per_inference_uj": "uJ",
    "arena_bytes": "B",
    "flash_bytes": "B",
    "ram_bytes": "B",
    "cpu_temp_c": "C",
    "accuracy_auc": "fraction",
    "throttled": "bool",
    "power_cycles": "count",
    "latency_median_ci_low_us": "us",
    "latency_median_ci_high_us": "us",
}


def _get(doc: dict, *path: str) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def flatten(doc: dict[str, Any]) -> tuple[list[tuple[str, float | None, str]], dict[str, list[float]]]:
    """Return (measurements, samples-by-phase) for the store."""
    out: list[tuple[str, float | None, str]] = []

    def add(name: str, value: Any, unit: str | None = None) -> None:
        if value is None or isinstance(value, (list, dict, str)):
            return
        out.append((name, float(value), unit or UNITS.get(name, "")))

    lat = doc.get("latency_us") or {}
    for stat in LATENCY_STATS:
        add(f"latency_{stat}_us", lat.get(stat), "us")
    add("latency_count", lat.get("count"))
    # the series' reference artifact timed in the same process (harness.run.reference)
    paired = _get(doc, "paired", "latency_us") or {}
    for stat in PAIRED_STATS:
        add(f"paired_latency_{stat}_us", paired.get(stat), "us")
    windows = [w for w in doc.get("windows") or [] if isinstance(w, dict) and w.get("n")]
    # inferences timed: on MCUs a latency sample is a whole window of n inferences
    add("inferences", sum(int(w["n"]) for w in windows) if windows else lat.get("count"), "count")
    add("latency_median_ci_low_us", lat.get("median_ci_low"))
    add("latency_median_ci_high_us", lat.get("median_ci_high"))
    add("init_us", doc.get("init_us"))
    add("first_inference_us", doc.get("first_inference_us"))
    mem = doc.get("memory") or {}
    add("peak_rss_kb", mem.get("peak_rss_kb"))
    add("peak_rss_delta_kb", mem.get("peak_rss_delta_kb"))
    add("model_memory_kb", mem.get("model_memory_kb"))
    add("rss_before_load_kb", mem.get("rss_before_load_kb"))
    add("arena_bytes", mem.get("arena_bytes"))
    add("flash_bytes", mem.get("flash_bytes"))
    add("ram_bytes", mem.get("ram_bytes"))  # MCU: static RAM (data + bss) measured from the firmware ELF
    add("model_size_bytes", _get(doc, "model", "size_bytes"))
    acc = doc.get("accuracy") or {}
    add("accuracy_top1", acc.get("top1"))
    add("agreement", acc.get("agreement"))
    add("accuracy_auc", acc.get("auc"))  # anomaly detection (MLPerf Tiny ad01): area under the ROC curve
    add("accuracy_n", acc.get("n"))
    # robustness (harness/models/perturb.py): the eval set under each declared perturbation
    for name, scores in sorted((acc.get("perturbed") or {}).items()):
        if isinstance(scores, dict):
            add(f"accuracy_top1@{name}", scores.get("top1"), "fraction")
            add(f"agreement@{name}", scores.get("agreement"), "fraction")
    energy = doc.get("energy") or {}
    if energy.get("estimate"):  # never stored as if a meter had measured it
        add("energy_estimate_per_inference_uj", energy.get("energy_per_inference_uj"), "uJ")
    else:
        add("energy_per_inference_uj", energy.get("energy_per_inference_uj"))
        add("mean_power_mw", energy.get("mean_power_mw"), "mW")  # external meters: during the windows
        add("idle_power_mw", energy.get("idle_power_mw"), "mW")  # ... and in the separate idle window
    add("cpu_temp_c", _get(doc, "telemetry", "after", "cpu_temp_c"))
    disturbed = _get(doc, "telemetry", "disturbed")
    if disturbed is not None:
        add("disturbed", 1.0 if disturbed else 0.0)
    throttled = _get(doc, "telemetry", "throttled")
    if throttled is not None:
        add("throttled", 1.0 if throttled else 0.0)
    if _get(doc, "labgrid", "power_cycled"):  # the board hung and was measured after a power cycle
        add("power_cycles", 1)

    samples: dict[str, list[float]] = {}
    if lat.get("samples"):
        samples["steady"] = [float(v) for v in lat["samples"]]
    if paired.get("samples"):
        samples["paired"] = [float(v) for v in paired["samples"]]
    warm = _get(doc, "warmup", "samples_us")
    if warm:
        samples["warmup"] = [float(v) for v in warm]
    for window in doc.get("windows") or []:
        if isinstance(window, dict) and window.get("latency_us") is not None:
            samples.setdefault("windows", []).append(float(window["latency_us"]))
    return out, samples


@functools.lru_cache(maxsize=64)
def _static(artifact: str, mtime_ns: int) -> tuple[tuple[str, float, str], ...]:
    from harness.models.inspect.analysis import analyze

    try:
        a = analyze(artifact)
    except Exception:  # an artifact the analyser cannot read still has its measurements
        return ()
    return (("model_macs", float(a.total_macs), "MAC"), ("model_params", float(a.param_count), "count"))


def model_rows(artifact) -> list[tuple[str, float | None, str]]:
    """What the model file itself says (reports show them beside the measurements): multiply-accumulates
    per inference and parameter count, from the flatbuffer (no TensorFlow). Empty when unreadable."""
    try:
        mtime = os.stat(artifact).st_mtime_ns
    except OSError:
        return []
    return list(_static(str(artifact), mtime))
