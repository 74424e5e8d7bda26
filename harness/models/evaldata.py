"""Evaluation data for accuracy and fidelity, checked on the host and packaged for the device runner.

The user's `.npz` is validated when it is loaded, before any run exists, and every problem names
that file and the array (rules for `x` and `y` in `harness.models.arrays` and
docs/ARCHITECTURE.md). Agreement needs the float model's own predictions; they are computed once
on the host with the fp32 artifact (cached by content hash) so the device never needs the float
model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from harness.core.hashing import sha256_file
from harness.errors import ConfigError
from harness.models.arrays import class_labels, input_samples, load_array, optional_array
from harness.models.perturb import Perturbation

EVAL_FORMAT = "2"  # bump when the prepared file's contents change for the same inputs


def _interpreter(model_path: Path, input_shape: tuple[int, ...] | None = None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - host without LiteRT
        import tensorflow as tf  # the tensorflow.lite package does not export Interpreter; the tf.lite API does

        Interpreter = tf.lite.Interpreter
    interp = Interpreter(model_path=str(model_path))
    if input_shape is not None:
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], list(input_shape))
    interp.allocate_tensors()
    return interp


def float_predictions(model_path: Path, x: np.ndarray, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """argmax of the float model for every sample (batch 1, as devices run it)."""
    from harness.models import tf_quiet

    with tf_quiet.captured("float reference predictions"):  # LiteRT's INFO lines go to fd 2
        interp = _interpreter(model_path, input_shape)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = tuple(inp["shape"][1:])
    preds = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i].reshape((1, *shape)).astype(inp["dtype"]))
        interp.invoke()
        preds[i] = int(np.argmax(interp.get_tensor(out["index"])))
    return preds


def _model_io(eval_path: Path, model_path: Path, input_shape: tuple[int, ...] | None):
    """(sample shape the model is measured with, number of output classes or None, model sha256)."""
    from harness.models.inspect.analysis import analyze

    a = analyze(model_path)
    if len(a.inputs) != 1:
        raise ConfigError(
            f"{eval_path}: accuracy evaluation supports single-input models; the model has {len(a.inputs)} inputs"
        )
    shape = tuple(int(d) for d in (input_shape or [max(1, d) for d in a.inputs[0].shape]))
    if shape and shape[0] != 1:
        raise ConfigError(
            f"{eval_path}: accuracy evaluation runs one sample at a time, but the input shape "
            f"{list(shape)} has batch {shape[0]}"
        )
    out = a.outputs[0] if a.outputs else None
    classes = None
    if out is not None and not any(d < 0 for d in (out.shape_signature or [])[1:]):
        classes = 1
        for d in out.shape:
            classes *= max(1, int(d))
    return shape[1:], classes, a.sha256


def check_eval_file(eval_path: Path) -> None:
    """What can be checked without the model, at once (before any conversion): a readable .npz with
    finite numeric `x` samples and `y`/`ref` labels that are class indices, one per sample, or a
    complete MLPerf Tiny dataset directory. The shape and the class count are checked against the
    model later (`prepare_eval`)."""
    if Path(eval_path).is_dir():
        from harness.models.mlperf import read_dataset

        read_dataset(eval_path)
        return
    x = input_samples(eval_path, "x", load_array(eval_path, "x"))
    for key in ("y", "ref"):
        arr = optional_array(eval_path, key)
        if arr is not None:
            class_labels(eval_path, key, arr, len(x), None)


def load_eval(eval_path: Path, sample_shape: tuple[int, ...], classes: int | None) -> dict[str, np.ndarray]:
    """`x` as float32 samples of `sample_shape`, `y` (and a given `ref`) as class indices; ConfigError
    naming `eval_path` for anything that cannot be measured as meant."""
    x = input_samples(eval_path, "x", load_array(eval_path, "x"))
    got = tuple(x.shape[1:])
    if got != sample_shape:
        if int(np.prod(got)) != int(np.prod(sample_shape)):
            raise ConfigError(f"{eval_path}: x holds samples of shape {got}, the model's input needs {sample_shape}")
        x = x.reshape((x.shape[0], *sample_shape))  # flattened samples, same element count
    arrays = {"x": x}
    for key in ("y", "ref"):
        arr = optional_array(eval_path, key)
        if arr is not None:
            arrays[key] = class_labels(eval_path, key, arr, len(x), classes)
    return arrays


def prepare_eval(
    eval_path: Path,
    model_path: Path,
    cache_root: Path,
    *,
    reference: bool,
    input_shape: tuple[int, ...] | None = None,
    robustness: tuple[Perturbation, ...] = (),
    seed: int = 0,
) -> Path:
    """Validated npz (x, y if given, ref) -> cached path handed to the runner.

    `model_path` is the .tflite the data is checked against (input shape, output classes); with
    `reference` it is the float model whose argmax becomes `ref` (agreement). An MLPerf Tiny dataset
    directory (y_labels.csv + .bin files, harness/models/mlperf.py) is checked and handed on as it is:
    its files are the device's wire bytes, for serial (MCU) devices.

    `robustness` adds a perturbed copy of the samples per perturbation (`x@NAME`, and `ref@NAME`, the
    float model's answers on those same inputs) to the same file: one file travels to every device
    kind as today, and a runner that reads only x/y/ref still works."""
    if Path(eval_path).is_dir():
        from harness.models.mlperf import read_dataset

        if robustness:
            raise ConfigError(
                f"{eval_path}: robustness perturbations need an .npz eval set (an MLPerf Tiny dataset "
                "directory is sent to the device as recorded wire bytes)"
            )
        read_dataset(eval_path)
        return Path(eval_path)
    sample_shape, classes, model_sha = _model_io(eval_path, model_path, input_shape)
    arrays = load_eval(eval_path, sample_shape, classes)
    ident: list = [EVAL_FORMAT, sha256_file(eval_path), model_sha, reference, list(input_shape or [])]
    if robustness:  # files without perturbations keep the identity (and cache entry) they had before
        ident += [[p.name for p in robustness], seed]
    out = cache_root / "eval" / f"{hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]}.npz"
    if out.exists():
        return out
    if reference:
        arrays["ref"] = float_predictions(model_path, arrays["x"], input_shape)
    for p in robustness:
        xp = p.apply(arrays["x"], seed, where=str(eval_path))
        arrays[f"x@{p.name}"] = xp
        if reference:
            arrays[f"ref@{p.name}"] = float_predictions(model_path, xp, input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    # numeric arrays only (everything was loaded with allow_pickle=False); naming the flag also tells the
    # type checker that no key of `arrays` lands in it
    np.savez(tmp, allow_pickle=False, **arrays)
    tmp.replace(out)
    return out
