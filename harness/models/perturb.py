"""Declared perturbations of the eval set: how a compressed model keeps its decisions off the clean data.

A compressed model can match the float model on the clean eval set and still fall apart on inputs a
little noisier, darker or shifted than the ones it was calibrated on. The perturbed copies of the eval
set are made once on the host, seeded from the perturbation's own name, so every device, every night
and every variant sees the same inputs (the gate compares nights; a sweep compares candidates) and a
device never needs anything but its usual eval loop.

Names are their own spec (the metric suffix: `accuracy_top1@noise_snr20db`):

- ``clean``: the eval set as it is (agreement@clean equals agreement: a check of the machinery).
- ``noise_snr<S>db``: additive Gaussian noise at S dB signal-to-noise ratio, per sample (signal power
  = the sample's mean square). Any tensor input.
- ``gain<F>``: the input scaled by F. ``brightness<D>``: D times the eval set's value range added
  (D may be negative). ``contrast<F>``: each sample's deviation from its own mean scaled by F. These
  three saturate at the clean set's minimum and maximum, as a sensor does. Any tensor input.
- ``bits<N>``: the input quantised to N bits over the clean set's range (a cheaper ADC). Any input.
- ``shift<N>``: a time shift of N steps (zero-filled) of a 1-D input, samples of shape (T,) or (T, C).
- ``translate<DY>x<DX>``: images, samples (H, W) or (H, W, C), moved DY rows and DX columns, zero-filled.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError

_NUM = r"([+-]?\d+(?:\.\d+)?)"
_INT = r"([+-]?\d+)"


@dataclass(frozen=True)
class Perturbation:
    name: str
    kind: str
    args: tuple[float, ...] = ()

    def apply(self, x: np.ndarray, seed: int = 0, where: str = "eval data") -> np.ndarray:
        """The perturbed copy of samples `x` (first axis = samples), float32."""
        x = np.asarray(x, dtype=np.float64)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        sample = x.shape[1:]
        if self.kind == "clean":
            out = x
        elif self.kind == "noise":
            rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])
            power = np.mean(x.reshape(len(x), -1) ** 2, axis=1) if len(x) else np.zeros(0)
            sigma = np.sqrt(power / (10.0 ** (self.args[0] / 10.0)))
            out = x + rng.standard_normal(x.shape) * sigma.reshape((-1,) + (1,) * len(sample))
        elif self.kind == "gain":
            out = np.clip(x * self.args[0], lo, hi)
        elif self.kind == "brightness":
            out = np.clip(x + self.args[0] * (hi - lo), lo, hi)
        elif self.kind == "contrast":
            mean = x.reshape(len(x), -1).mean(axis=1).reshape((-1,) + (1,) * len(sample)) if len(x) else 0.0
            out = np.clip(mean + (x - mean) * self.args[0], lo, hi)
        elif self.kind == "bits":
            levels = 2 ** int(self.args[0]) - 1
            out = lo + np.round((x - lo) / (hi - lo) * levels) / levels * (hi - lo) if hi > lo else x
        elif self.kind == "shift":
            if len(sample) not in (1, 2):
                raise ConfigError(
                    f"{where}: {self.name}: a time shift needs 1-D samples, (T,) or (T, C); "
                    f"these samples have shape {list(sample)}"
                )
            out = _moved(x, {1: int(self.args[0])})
        elif self.kind == "translate":
            if len(sample) not in (2, 3):
                raise ConfigError(
                    f"{where}: {self.name}: a translation needs image samples, (H, W) or (H, W, C); "
                    f"these samples have shape {list(sample)}"
                )
            out = _moved(x, {1: int(self.args[0]), 2: int(self.args[1])})
        else:  # pragma: no cover - parse() builds only the kinds above
            raise AssertionError(self.kind)
        return out.astype(np.float32)


def _moved(x: np.ndarray, by: dict[int, int]) -> np.ndarray:
    """x moved by `by[axis]` steps along each axis, the uncovered part zero (np.roll would wrap around)."""
    out = np.zeros_like(x)
    src: list[slice] = [slice(None)] * x.ndim
    dst: list[slice] = [slice(None)] * x.ndim
    for axis, n in by.items():
        size = x.shape[axis]
        if abs(n) >= size:
            return out
        src[axis] = slice(0, size - n) if n >= 0 else slice(-n, size)
        dst[axis] = slice(n, size) if n >= 0 else slice(0, size + n)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _fmt(v: float) -> str:
    return f"{v:g}"


_FORMS: list[tuple[str, str, Callable[[tuple[float, ...]], str | None]]] = [
    (r"clean", "clean", lambda a: None),
    (rf"noise_snr{_NUM}db", "noise", lambda a: None),
    (rf"gain{_NUM}", "gain", lambda a: None if a[0] >= 0 else "the gain must be >= 0"),
    (rf"brightness{_NUM}", "brightness", lambda a: None if -1 <= a[0] <= 1 else "the shift must be in [-1, 1]"),
    (rf"contrast{_NUM}", "contrast", lambda a: None if a[0] >= 0 else "the contrast factor must be >= 0"),
    (r"bits(\d+)", "bits", lambda a: None if 1 <= a[0] <= 16 else "bits must be 1 to 16"),
    (rf"shift{_INT}", "shift", lambda a: None),
    (rf"translate{_INT}x{_INT}", "translate", lambda a: None),
]

FORMS_HELP = "clean, noise_snr<S>db, gain<F>, brightness<D>, contrast<F>, bits<N>, shift<N>, translate<DY>x<DX>"


def parse(spec: str, where: str = "--robustness") -> Perturbation:
    """One perturbation name; a ConfigError naming `where` and the accepted forms otherwise."""
    name = spec.strip()
    for pattern, kind, check in _FORMS:
        m = re.fullmatch(pattern, name)
        if m:
            args = tuple(float(g) for g in m.groups())
            problem = check(args)
            if problem:
                raise ConfigError(f"{where}: {name}: {problem}")
            return Perturbation(name, kind, args)
    raise ConfigError(f"{where}: {name!r} is not a perturbation ({FORMS_HELP})")


def parse_list(specs: Iterable[str] | None, where: str = "--robustness") -> tuple[Perturbation, ...]:
    """Comma-separated or repeated names, each once, in the order given."""
    seen: dict[str, Perturbation] = {}
    for chunk in specs or ():
        for part in str(chunk).split(","):
            if part.strip():
                p = parse(part, where)
                seen.setdefault(p.name, p)
    return tuple(seen.values())


def metric_suffix(metric: str) -> tuple[str, str | None]:
    """`accuracy_top1@noise_snr20db` -> (`accuracy_top1`, `noise_snr20db`); other names -> (name, None)."""
    base, sep, pert = metric.partition("@")
    return (base, pert) if sep else (metric, None)
