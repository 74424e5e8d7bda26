"""Numpy data given by the user (calibration and evaluation files): loaded without pickle, checked
once, and every problem reported on one line that names the file and the array.

Labels (`y`) follow one rule, documented in docs/ARCHITECTURE.md: integer class indices (a 1-D
array, or an (N, 1) column); floats only when every value is a whole number; one-hot rows (N, C)
with exactly one 1 and zeros elsewhere become their argmax. Anything else (soft or multi-label
rows, fractional labels, booleans, strings) is refused rather than guessed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from harness.errors import ConfigError

_log = logging.getLogger(__name__)


def _member(path: Path, loaded, key: str) -> np.ndarray:
    try:
        return loaded[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ConfigError(
                f"{path}: array '{key}' holds Python objects (dtype object), which hilbench "
                "does not load (that would need pickle); save numeric arrays"
            ) from None
        raise ConfigError(f"{path}: array '{key}' cannot be read ({exc})") from None
    except Exception as exc:  # zlib/zip errors of a damaged member
        raise ConfigError(f"{path}: array '{key}' cannot be read ({exc.__class__.__name__}: {exc})") from None


# How numpy's own files begin: an .npz is a zip archive (an empty one starts with its end record)
_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")


def check_format(path: Path) -> None:
    """ConfigError unless `path` starts like an .npy or .npz: numpy tries anything else as a pickle and
    refuses it with allow_pickle=False, which would read as "holds Python objects" for a text file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read numpy data ({exc.strerror or exc})") from None
    if head.startswith(_MAGIC):
        return
    what = "a Python pickle" if head[:1] == b"\x80" else ("empty" if not head else f"starts with {head!r}")
    raise ConfigError(f"{path}: not an .npz or .npy file ({what}); save the arrays with numpy.savez or numpy.save")


def load_array(path: Path, key: str) -> np.ndarray:
    """Array `key` of an .npz (its only array when it has one), or the array of an .npy."""
    check_format(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ConfigError(
                f"{path}: the array holds Python objects (dtype object), which hilbench does "
                "not load (that would need pickle); save numeric arrays"
            ) from None
        raise ConfigError(f"{path}: cannot read numpy data (ValueError: {exc})") from None
    except Exception as exc:  # numpy raises several types for corrupt files
        raise ConfigError(f"{path}: cannot read numpy data ({exc.__class__.__name__}: {exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if key not in loaded.files:
                if len(loaded.files) != 1:
                    raise ConfigError(f"{path}: no array '{key}' (has: {', '.join(loaded.files) or 'nothing'})")
                key = loaded.files[0]
            return _member(path, loaded, key)
    return loaded


def optional_array(path: Path, key: str) -> np.ndarray | None:
    """Array `key` of an .npz, None when the file (or an .npy) has no such array."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception:
        return None  # load_array of `x` has already reported an unreadable file
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return None
    with loaded:
        return _member(path, loaded, key) if key in loaded.files else None


def input_samples(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    """Model inputs: numeric, at least one sample, every value finite -> float32."""
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{path}: array '{key}' has dtype {arr.dtype}; model inputs must be numbers")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ConfigError(f"{path}: array '{key}' is empty (shape {arr.shape}); it needs at least one sample")
    x = arr.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(x.shape[0], -1).any(axis=1))[0][0])
        raise ConfigError(
            f"{path}: array '{key}' holds {int(bad.sum())} NaN/inf value(s) (first in sample "
            f"{first}); inputs must be finite numbers"
        )
    return x


def class_labels(path: Path, key: str, arr: np.ndarray, n: int, classes: int | None) -> np.ndarray:
    """Class indices (int64, length n) from `arr` by the rule in the module docstring; `classes` is the
    number of the model's output classes (None: unknown, not checked)."""
    where = f"{path}: array '{key}'"
    if arr.dtype.kind == "b":
        raise ConfigError(f"{where} is boolean; labels must be integer class indices")
    if arr.dtype.kind not in "iuf":
        raise ConfigError(f"{where} has dtype {arr.dtype}; labels must be integer class indices")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        onehot = arr.shape[0] > 0 and bool(np.isin(arr, (0, 1)).all()) and bool((arr.sum(axis=1) == 1).all())
        if not onehot:
            raise ConfigError(
                f"{where} has shape {arr.shape} but its rows are not one-hot (exactly one 1, "
                "zeros elsewhere); soft or multi-label targets are ambiguous: store class "
                "indices (N,) instead"
            )
        if classes is not None and arr.shape[1] != classes:
            raise ConfigError(
                f"{where} is one-hot with {arr.shape[1]} columns, but the model has {classes} output classes"
            )
        _log.info(f"{path}: '{key}' is one-hot; its argmax is used as the class index")
        arr = np.argmax(arr, axis=1)
    if arr.ndim != 1:
        raise ConfigError(f"{where} has shape {arr.shape}; labels must be 1-D class indices (or one-hot rows)")
    if len(arr) != n:
        raise ConfigError(f"{where} has {len(arr)} labels for {n} samples in x")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise ConfigError(
                f"{where} holds non-integer labels (first at index {i}: {float(arr[i]):g}); labels "
                "must be class indices"
            )
    outside = arr < 0
    if classes is not None:
        outside |= arr >= classes
    if outside.any():
        i = int(np.argmax(outside))
        span = f"the model's {classes} classes (0..{classes - 1})" if classes is not None else "class indices (>= 0)"
        raise ConfigError(f"{where}: label {arr[i]:g} at index {i} is outside {span}")
    return arr.astype(np.int64)
