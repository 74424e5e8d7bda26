"""Evaluation data for accuracy and fidelity, packaged for the device runner.

Agreement needs the float model's own predictions; they are computed once on the host with the fp32
artifact (cached by content hash) so the device never needs the float model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness.core.hashing import sha256_file
from harness.errors import ConfigError
from harness.models.convert import ModelVariant, load_array


def _interpreter(model_path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - host without LiteRT
        import tensorflow as tf  # the tensorflow.lite package does not export Interpreter; the tf.lite API does

        Interpreter = tf.lite.Interpreter
    interp = Interpreter(model_path=str(model_path))
    interp.allocate_tensors()
    return interp


def float_predictions(model_path: Path, x: np.ndarray) -> np.ndarray:
    """argmax of the float model for every sample (batch 1, as devices run it)."""
    interp = _interpreter(model_path)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = tuple(inp["shape"][1:])
    preds = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i].reshape((1, *shape)).astype(inp["dtype"]))
        interp.invoke()
        preds[i] = int(np.argmax(interp.get_tensor(out["index"])))
    return preds


def _check_shape(eval_path: Path, x: np.ndarray, model_path: Path) -> None:
    from harness.models.inspect.analysis import analyze

    inputs = analyze(model_path).inputs
    if len(inputs) != 1:
        raise ConfigError(f"{eval_path}: accuracy evaluation supports single-input models; the model "
                          f"has {len(inputs)} inputs")
    want = tuple(int(d) for d in inputs[0].shape[1:])
    got = tuple(x.shape[1:])
    if x.ndim == 0 or (got != want and int(np.prod(got)) != int(np.prod(want))):
        raise ConfigError(f"{eval_path}: x holds samples of shape {got}, the model's input needs {want}")


def prepare_eval(eval_path: Path, ref_variant: ModelVariant | None, cache_root: Path) -> Path:
    """npz with x, y (if given) and ref (float argmax) -> cached path handed to the runner."""
    h = hashlib.sha256(sha256_file(eval_path).encode())
    if ref_variant is not None:
        h.update(ref_variant.artifact_sha256.encode())
    out = cache_root / "eval" / f"{h.hexdigest()[:24]}.npz"
    if out.exists():
        return out
    x = load_array(eval_path, "x").astype(np.float32)
    if ref_variant is not None:
        _check_shape(eval_path, x, ref_variant.artifact)
    arrays: dict[str, np.ndarray] = {"x": x}
    loaded = np.load(eval_path, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile) and "y" in loaded.files:
        y = loaded["y"]
        if len(y) != len(x):
            raise ConfigError(f"{eval_path}: y has {len(y)} labels for {len(x)} samples in x")
        arrays["y"] = y.astype(np.int64)
    if ref_variant is not None:
        arrays["ref"] = float_predictions(ref_variant.artifact, x)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    # numeric arrays only (everything was loaded with allow_pickle=False); naming the flag also tells the
    # type checker that no key of `arrays` lands in it
    np.savez(tmp, allow_pickle=False, **arrays)
    tmp.replace(out)
    return out
