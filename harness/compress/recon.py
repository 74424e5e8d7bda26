"""Reconstruction tasks (an anomaly-detection autoencoder such as MLPerf Tiny's FC AE): the model's output
has the shape of its input and the data has no labels, so training pulls the output towards the input.

Which task a step trains is decided by the model and the data together, never by one of them: an
autoencoder given labelled data still trains as a classifier (the user asked for that), and a model
whose output differs from its input has nothing to reconstruct, so unlabelled data for it is an error.
Fine-tuning (magnitude and structured pruning, QAT) minimises the mean squared error to the input;
distillation minimises `alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, x)` (no temperature:
the outputs are values, not a distribution to soften). The host scores a candidate by the mean squared
error of its `.tflite` against the evaluation inputs (`host_mse`), as an anomaly detector's score is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.models import tf_quiet


def same_io(input_shape: tuple, output_shape: tuple) -> bool:
    """Whether an output of this shape can reconstruct inputs of that shape (batch excluded)."""
    i, o = tuple(input_shape[1:]), tuple(output_shape[1:])
    return None not in i and i == o


def is_autoencoder(model) -> bool:
    from harness.compress.train import io_shapes

    return same_io(*io_shapes(model))


def artifact_is_autoencoder(artifact: Path) -> bool:
    from harness.models.inspect.analysis import analyze

    a = analyze(artifact)
    if len(a.inputs) != 1 or len(a.outputs) != 1:
        return False
    return same_io(tuple(a.inputs[0].shape), tuple(a.outputs[0].shape))


def distill_loss(features: int, alpha: float):
    """Loss on y_true = [teacher outputs | inputs] (2 x features columns), see the module doc."""
    from harness.compress.train import keras_module

    ops = keras_module().ops
    a = float(alpha)

    n = int(features)

    def loss(y_true, y_pred):
        teacher, x = y_true[:, :n], y_true[:, n:]
        y_pred = ops.reshape(y_pred, (-1, n))
        return a * ops.mean(ops.square(y_pred - teacher), axis=-1) + (1.0 - a) * ops.mean(
            ops.square(y_pred - x), axis=-1
        )

    return loss


def keras_mse(model, x: np.ndarray) -> float:
    with tf_quiet.captured(f"predictions of {model.name}"):
        pred = np.asarray(model.predict(x, verbose=0, batch_size=256))
    return float(np.mean((pred.reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2))


def tflite_mse(model: Path | bytes, x: np.ndarray) -> float:
    """Mean squared reconstruction error of a .tflite on the host's LiteRT interpreter, integer inputs
    quantised and outputs dequantised with their scales (as ptq.tflite_correct does)."""
    from harness.compress.ptq import tflite_outputs

    with tf_quiet.captured("host reconstruction error of a .tflite model"):
        total = 0.0
        for o, xi in zip(tflite_outputs(model, x), x):
            total += float(np.mean((o - xi.reshape(-1).astype(np.float32)) ** 2))
    return total / len(x) if len(x) else float("nan")
