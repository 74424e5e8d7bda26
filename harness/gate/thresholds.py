"""Which metrics the gate checks, how, and with which per-metric thresholds.

Resolution order (later wins): built-in defaults < the device profile's ``thresholds`` <
``--thresholds FILE.yaml`` entry ``"*"`` < the file's entry for the model. The file maps
model -> metric -> threshold::

    "*":            {latency_p50_us: 0.04}
    mobilenet_v2:   {latency_p50_us: 0.08, accuracy_top1: 0.005}

Thresholds are relative (0.05 = 5 %) except for accuracy metrics, where they are absolute points
of the fraction (0.01 = one percentage point), and ``latency_min_change_us``: an absolute floor in
microseconds below which a latency change is never a regression. Microsecond-scale models on a busy
Linux host shift by a few percent between runs (cache and scheduler state, timer granularity) while
the absolute change stays far below anything that matters to an application; the floor keeps such
models from flapping without loosening the relative threshold for everything else.

``latency_paired_threshold`` (default 2 %) caps the relative threshold of a latency metric that is
judged on in-process ratios (the candidate and the series' reference artifact timed in the same runner
processes, harness.gate.paired). A nightly level threshold of 3 % has to absorb what moves between
nights without the model changing (frequency, heat, neighbours, memory layout); an in-process ratio
has none of that left, so its threshold only needs to say which change of the model's own cost is
worth a red night, and a 3 % slower model is one (the gate benchmark's 3 % twin was caught 3 of 8
nights against the 3 % p50 threshold: a true 3 % change sits *at* a 3 % threshold, caught half the
time at best). It never raises a threshold: ``min(metric threshold, latency_paired_threshold)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.core.metrics import (  # noqa: F401
    DEFAULT_THRESHOLDS,
    GATED_METRICS,
    RULES,
    SETTINGS,
    MetricRule,
    base_metric,
)
from harness.errors import ConfigError
from harness.lab.yaml_load import read_yaml


def _check_metrics(mapping: Mapping, where: str) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: must be a mapping of metric -> threshold")
    out = {}
    for metric, value in mapping.items():
        if metric not in RULES and metric not in SETTINGS:
            raise ConfigError(
                f"{where}.{metric}: unknown metric (gated metrics: {', '.join(GATED_METRICS)}; "
                f"settings: {', '.join(sorted(SETTINGS))})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{metric}: threshold must be a number >= 0, got {value!r}")
        out[str(metric)] = float(value)
    return out


def load_threshold_file(path: str | Path | None) -> dict[str, dict[str, float]]:
    """Parse and validate a model -> metric -> threshold YAML file."""
    if not path:
        return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: thresholds file not found")
    data = read_yaml(path, "thresholds file").data  # duplicate keys, encoding: as strict as the lab files
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: must be a mapping of model -> metric -> threshold")
    return {str(model): _check_metrics(metrics, f"{path}: {model}") for model, metrics in data.items()}


def resolve(
    metric: str, model: str, profile: Mapping[str, float] | None, overrides: Mapping[str, Mapping[str, float]]
) -> float:
    """A perturbed accuracy metric takes its base metric's threshold unless one is set for its own name."""
    names = [base_metric(metric), metric] if base_metric(metric) != metric else [metric]
    value = DEFAULT_THRESHOLDS.get(names[0], 0.0)
    for name in names:
        if profile and name in profile:
            value = float(profile[name])
        for scope in ("*", model):
            if name in overrides.get(scope, {}):
                value = overrides[scope][name]
    return value
