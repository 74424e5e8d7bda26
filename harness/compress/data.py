"""Training data for compression steps: an `.npz` (x, y, optional x_val/y_val) or a Python entry point.

`--data FILE.npz` holds `x` (inputs) and `y` (class labels, the rules of harness/models/arrays.py) and
optionally `x_val`/`y_val`; without them a recipe's `train.validation_split` takes the last fraction
of the (seeded) shuffled samples. `--data package.module:function` calls the function with no
arguments; it returns `(x, y)`, `(x, y, x_val, y_val)`, a dict with those keys, or a `tf.data.Dataset`
of `(x, y)` batches or samples (read once into arrays: the models are small). The data's hash
(`sha256` of its arrays, so the same data from another file or function hashes the same) is part of
every trained model's lineage ID.

Without `y` (an .npz with `x` only, a function returning `x`, `(x, None)` or a dict without `y`) the
data serves a reconstruction task (recon.py): the pipeline accepts it only for a model whose output
has its input's shape, and refuses it for any other model with the message labels always had
(`missing_labels`).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.models.arrays import class_labels, input_samples, load_array, optional_array


@dataclass
class TrainingData:
    source: str  # file path or module:function, for messages
    x: np.ndarray
    y: np.ndarray | None  # None: unlabelled (a reconstruction task)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for arr in (self.x, self.y, self.x_val, self.y_val):
            if arr is None:
                h.update(b"none")
                continue
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def fit_to(self, input_shape: tuple, classes: int, where: str) -> TrainingData:
        """Samples shaped like the model's input (flattened samples of the same size are reshaped);
        labels within the model's classes. `where` names the recipe file and field for messages."""
        want = tuple(d for d in input_shape[1:])
        if any(d is None for d in want):
            return self
        out: list[np.ndarray | None] = []
        for name, arr in (("x", self.x), ("x_val", self.x_val)):
            if arr is None:
                out.append(None)
                continue
            if tuple(arr.shape[1:]) != want:
                if int(np.prod(arr.shape[1:])) != int(np.prod(want)):
                    raise ConfigError(
                        f"{where}: training data {self.source} array '{name}' has samples of shape "
                        f"{tuple(arr.shape[1:])}, the model's input needs {want}"
                    )
                arr = arr.reshape((arr.shape[0], *want))
            out.append(arr)
        for name, arr in (("y", self.y), ("y_val", self.y_val)):
            if arr is not None and arr.size and (arr.min() < 0 or arr.max() >= classes):
                raise ConfigError(
                    f"{where}: training data {self.source} array '{name}' has labels "
                    f"{int(arr.min())}..{int(arr.max())}, the model has {classes} classes"
                )
        assert out[0] is not None
        return TrainingData(self.source, out[0], self.y, out[1], self.y_val)

    def missing_labels(self) -> ConfigError:
        """The error for unlabelled data given to a model that cannot reconstruct its input."""
        if Path(self.source).suffix == ".npz":
            return ConfigError(f"{self.source}: training data needs labels: an array 'y' beside 'x'")
        return ConfigError(f"{self.source}: the training data function returned no x or no y")

    def split(self, validation_split: float, seed: int) -> tuple[tuple, tuple | None]:
        """((x, y), (x_val, y_val) | None): the file's own validation arrays, else a seeded split. Without
        labels, y is the input (what a reconstruction is trained towards)."""
        y, y_val = (self.x, self.x_val) if self.y is None else (self.y, self.y_val)
        if self.x_val is not None and y_val is not None:
            return (self.x, y), (self.x_val, y_val)
        if validation_split <= 0 or len(self.x) < 10:
            return (self.x, y), None
        order = np.random.default_rng(seed).permutation(len(self.x))
        n_val = max(1, int(round(len(self.x) * validation_split)))
        val, tr = order[:n_val], order[n_val:]
        return (self.x[tr], y[tr]), (self.x[val], y[val])


def load(ref: str) -> TrainingData:
    """`FILE.npz` or `module:function` (see the module docstring)."""
    p = Path(ref)
    if p.suffix == ".npz" or p.exists():
        return _from_npz(p)
    if ":" in ref:
        return _from_entry_point(ref)
    raise ConfigError(f"{ref}: training data not found (expected an .npz file or module:function)")


def _from_npz(p: Path) -> TrainingData:
    if not p.is_file():
        raise ConfigError(f"{p}: training data file not found")
    x = input_samples(p, "x", load_array(p, "x"))
    y_raw = optional_array(p, "y")
    y = class_labels(p, "y", y_raw, len(x), None) if y_raw is not None else None
    xv_raw, yv_raw = optional_array(p, "x_val"), optional_array(p, "y_val")
    if y is None and yv_raw is not None:
        raise ConfigError(f"{p}: 'y_val' without 'y': give labels for both or neither")
    if y is not None and (xv_raw is None) != (yv_raw is None):
        raise ConfigError(f"{p}: give both 'x_val' and 'y_val' or neither")
    x_val = input_samples(p, "x_val", xv_raw) if xv_raw is not None else None
    y_val = class_labels(p, "y_val", yv_raw, len(x_val), None) if yv_raw is not None and x_val is not None else None
    return TrainingData(str(p), x, y, x_val, y_val)


def _from_entry_point(ref: str) -> TrainingData:
    module, _, func = ref.partition(":")
    if "" not in sys.path and Path.cwd().as_posix() not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory's modules are found
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{ref}: cannot load the training data function ({exc.__class__.__name__}: {exc})") from None
    try:
        got = fn()
    except Exception as exc:
        raise ConfigError(f"{ref}: the training data function failed ({exc.__class__.__name__}: {exc})") from None
    return _from_value(ref, got)


def _from_value(ref: str, got: Any) -> TrainingData:
    src = Path(ref)
    if isinstance(got, dict):
        got = tuple(got.get(k) for k in ("x", "y", "x_val", "y_val"))
    elif type(got).__module__.startswith("tensorflow") and hasattr(got, "as_numpy_iterator"):
        got = _dataset_arrays(ref, got)
    elif isinstance(got, np.ndarray):
        got = (got, None)  # inputs alone: a reconstruction task
    if not isinstance(got, tuple | list) or len(got) not in (2, 4):
        raise ConfigError(
            f"{ref}: the training data function must return (x, y), (x, y, x_val, y_val), x alone, a "
            "dict of those, or a tf.data.Dataset of (x, y)"
        )
    arrays = [None if a is None else np.asarray(a) for a in got]
    if arrays[0] is None:
        raise ConfigError(f"{ref}: the training data function returned no x or no y")
    x = input_samples(src, "x", arrays[0])
    y = class_labels(src, "y", arrays[1], len(x), None) if arrays[1] is not None else None
    x_val = y_val = None
    if len(arrays) == 4 and arrays[2] is not None and (arrays[3] is not None or y is None):
        x_val = input_samples(src, "x_val", arrays[2])
        if y is not None and arrays[3] is not None:
            y_val = class_labels(src, "y_val", arrays[3], len(x_val), None)
    return TrainingData(ref, x, y, x_val, y_val)


def _dataset_arrays(ref: str, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for item in ds.as_numpy_iterator():
        if not isinstance(item, tuple) or len(item) != 2:
            raise ConfigError(f"{ref}: the tf.data.Dataset must yield (x, y) pairs")
        xs.append(np.asarray(item[0]))
        ys.append(np.asarray(item[1]))
    if not xs:
        raise ConfigError(f"{ref}: the tf.data.Dataset is empty")
    batched = xs[0].ndim > 0 and ys[0].ndim >= 1 and ys[0].shape[0] == xs[0].shape[0] and len(ys[0].shape) == 1
    if batched:
        return np.concatenate(xs), np.concatenate(ys)
    return np.stack(xs), np.stack(ys)
