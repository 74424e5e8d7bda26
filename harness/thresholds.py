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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class MetricRule:
    """How one metric is compared with its baseline."""

    name: str
    kind: str                   # sampled | deterministic | scalar | accuracy
    higher_is_worse: bool = True
    quantile: Optional[float] = None  # for sampled metrics: which quantile of the raw samples
    label: str = ""


RULES: dict[str, MetricRule] = {r.name: r for r in [
    MetricRule("latency_p50_us", "sampled", quantile=0.5, label="latency p50"),
    MetricRule("latency_p90_us", "sampled", quantile=0.9, label="latency p90"),
    MetricRule("peak_rss_kb", "scalar", label="peak RSS"),
    MetricRule("energy_per_inference_uj", "scalar", label="energy / inference"),
    MetricRule("model_size_bytes", "deterministic", label="model size"),
    MetricRule("arena_bytes", "deterministic", label="tensor arena"),
    MetricRule("flash_bytes", "deterministic", label="flash"),
    MetricRule("accuracy_top1", "accuracy", higher_is_worse=False, label="top-1 accuracy"),
    MetricRule("agreement", "accuracy", higher_is_worse=False, label="agreement with float"),
]}
GATED_METRICS = list(RULES)

# Used when neither the profile nor a thresholds file names the metric. Latency 3 %: the run-to-run
# spread of the robust latency level is ~0.2 % on a quiet host (harness/stats.py), and a threshold
# must sit clearly below the smallest regression worth catching (5 %) to catch it reliably.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "latency_p50_us": 0.03,
    "latency_p90_us": 0.10,
    "peak_rss_kb": 0.05,
    "energy_per_inference_uj": 0.10,
    "model_size_bytes": 0.0,
    "arena_bytes": 0.0,
    "flash_bytes": 0.0,
    "accuracy_top1": 0.01,
    "agreement": 0.01,
    "latency_min_change_us": 0.5,
}
SETTINGS = {"latency_min_change_us"}  # threshold keys that are not metrics


def _check_metrics(mapping: Mapping, where: str) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: must be a mapping of metric -> threshold")
    out = {}
    for metric, value in mapping.items():
        if metric not in RULES and metric not in SETTINGS:
            raise ConfigError(f"{where}.{metric}: unknown metric (gated metrics: {', '.join(GATED_METRICS)}; "
                              f"settings: {', '.join(sorted(SETTINGS))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{metric}: threshold must be a number >= 0, got {value!r}")
        out[str(metric)] = float(value)
    return out


def load_threshold_file(path: Optional[str | Path]) -> dict[str, dict[str, float]]:
    """Parse and validate a model -> metric -> threshold YAML file."""
    if not path:
        return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: thresholds file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: must be a mapping of model -> metric -> threshold")
    return {str(model): _check_metrics(metrics, f"{path}: {model}") for model, metrics in data.items()}


def resolve(metric: str, model: str, profile: Optional[Mapping[str, float]],
            overrides: Mapping[str, Mapping[str, float]]) -> float:
    value = DEFAULT_THRESHOLDS.get(metric, 0.0)
    if profile and metric in profile:
        value = float(profile[metric])
    for scope in ("*", model):
        if metric in overrides.get(scope, {}):
            value = overrides[scope][metric]
    return value
