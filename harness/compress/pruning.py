"""Magnitude pruning with a gradual schedule, on plain Keras 3 weights (no wrapper layers).

A Keras callback holds one 0/1 mask per prunable kernel (Conv2D, DepthwiseConv2D, Dense; biases and
the rest stay dense). Every `frequency` optimiser steps between `begin` and `end` (fractions of the
fine-tuning steps) it recomputes each mask to zero the smallest-magnitude weights of that kernel up to
the schedule's current sparsity (polynomial: s_t = s * (1 - (1 - t)^power), the schedule of Zhu &
Gupta 2017; constant: the target at once), and after every step it multiplies the kernels by their
masks, so weights the optimiser moves stay pruned. The fine-tuned model is saved as an ordinary
`.keras` file whose kernels hold the zeros: TFLite stores it densely (the same size and speed unless a
runtime exploits sparsity), which is why structured pruning (structured.py) exists beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.compress.recipes import PruneStep
from harness.compress.train import keras_module

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense", "Conv1D", "SeparableConv2D")


def prunable_kernels(model) -> list:
    """(layer, kernel variable) of every prunable layer."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ in PRUNABLE:
            for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                var = getattr(layer, attr, None)
                if var is not None and len(var.shape) > 1:
                    out.append((layer, var))
    return out


def sparsity_of(model) -> float:
    """Fraction of zeros over all prunable kernels."""
    zeros = total = 0
    for _, var in prunable_kernels(model):
        w = np.asarray(var.numpy())
        zeros += int((w == 0).sum())
        total += w.size
    return zeros / total if total else 0.0


def schedule_value(params: PruneStep, step: int, total_steps: int) -> float:
    """Target sparsity after `step` of `total_steps` optimiser steps."""
    if params.schedule == "constant":
        return params.sparsity
    begin, end = params.begin * total_steps, params.end * total_steps
    if step < begin:
        return 0.0
    if step >= end or end <= begin:
        return params.sparsity
    t = (step - begin) / (end - begin)
    return params.sparsity * (1.0 - (1.0 - t) ** params.power)


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(math.floor(w.size * sparsity))
    if k <= 0:
        return np.ones_like(w, dtype=w.dtype)
    flat = np.abs(w).reshape(-1)
    order = np.argsort(flat, kind="stable")
    mask = np.ones(w.size, dtype=w.dtype)
    mask[order[:k]] = 0
    return mask.reshape(w.shape)


def pruning_callback(model, params: PruneStep, total_steps: int):
    """The callback that keeps `model`'s kernels on the schedule (see the module doc)."""
    keras = keras_module()
    kernels = prunable_kernels(model)

    base: Any = keras.callbacks.Callback

    class Pruning(base):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.masks = [np.ones(v.shape, dtype=np.float32) for _, v in kernels]
            self.current = 0.0

        def _update_masks(self) -> None:
            target = schedule_value(params, self.step, total_steps)
            if target <= self.current and self.step > 0 and target < params.sparsity:
                return
            self.current = target
            self.masks = [magnitude_mask(np.asarray(v.numpy()), target) for _, v in kernels]

        def _apply(self) -> None:
            for (_, var), mask in zip(kernels, self.masks):
                var.assign(keras.ops.multiply(var.value, mask))

        def on_train_begin(self, logs=None) -> None:
            self._update_masks()
            self._apply()

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.step += 1
            due = self.step % params.frequency == 0 or self.step >= params.end * total_steps
            if due and self.current < params.sparsity:
                self._update_masks()
            self._apply()

        def on_train_end(self, logs=None) -> None:
            self.step = total_steps
            self._update_masks()  # the target exactly, whatever the schedule reached
            self._apply()

    return Pruning()


def prune(
    model,
    params: PruneStep,
    x,
    y,
    *,
    label: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    validation=None,
    loss: Any = None,
) -> dict:
    """Fine-tune `model` in place to the target sparsity; returns the last epoch's logs + sparsity.
    `loss` defaults to classification ("mse" for a reconstruction task, recon.py)."""
    from harness.compress.train import compile_classifier, fit

    steps_per_epoch = math.ceil(len(x) / batch_size)
    cb = pruning_callback(model, params, steps_per_epoch * epochs)
    compile_classifier(model, learning_rate, loss=loss, metrics=None if loss is None else [])
    logs = fit(
        model, x, y, label=label, epochs=epochs, batch_size=batch_size, seed=seed, validation=validation, callbacks=[cb]
    )
    logs["sparsity"] = sparsity_of(model)
    return logs
