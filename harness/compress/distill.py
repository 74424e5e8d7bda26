"""Knowledge distillation: a student trained from one or more teachers' soft labels and features.

- *Logit distillation* (Hinton et al. 2015): the loss is
  `alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(y, p_student)` where `p^T` is the
  softmax of the logits divided by the temperature T. Ordinary classifier files end in a softmax: its
  input (the logits) is used while distilling (the last layer's softmax is switched off for the
  teacher's predictions and the student's training, and is back in the saved student), because
  probabilities of a confident teacher underflow and would erase the "dark knowledge" between the
  wrong classes.
- *Multi-teacher*: the teachers' tempered distributions are averaged with their weights.
- *Feature distillation* (FitNets, Romero et al. 2015): for each chosen (student layer, teacher layer)
  pair, an adapter (1x1 convolution for feature maps, a dense layer for vectors) maps the student's
  features to the teacher's width and a mean-squared error pulls them together; the adapters exist
  only during training and are not part of the saved student. `features: auto` pairs the layers
  itself: the last layer of each resolution stage (a run of layers with the same spatial size) of the
  teacher with the student's stage of the same size, each pair weighing 1 / pairs (stages.py).

- *Reconstruction* (an autoencoder trained without labels, recon.py): the loss is
  `alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, x)` with the teachers' outputs averaged
  with their weights; there is no temperature (the outputs are values, not a distribution), so
  `temperature` is ignored. Feature pairs work as for classifiers.

Teacher outputs are computed once before training (the teachers are frozen and the data is not
augmented), so training is an ordinary seeded `fit` of the student.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.compress.recipes import DistillStep
from harness.compress.train import (
    compile_classifier,
    fit,
    io_shapes,
    keras_module,
    load_model,
    outputs_probabilities,
)
from harness.errors import ConfigError
from harness.models import tf_quiet


def check_student(student, teacher, where: str) -> None:
    """The student must take the teacher's input and give its output (the same task)."""
    s_in, s_out = io_shapes(student)
    t_in, t_out = io_shapes(teacher)
    if s_in[1:] != t_in[1:]:
        raise ConfigError(f"{where}: the student takes inputs of shape {list(s_in[1:])}, the teacher {list(t_in[1:])}")
    if s_out[1:] != t_out[1:]:
        raise ConfigError(
            f"{where}: the student gives outputs of shape {list(s_out[1:])}, the teacher {list(t_out[1:])}"
        )


def log_probs(pred: np.ndarray, probabilities: bool) -> np.ndarray:
    pred = pred.reshape(len(pred), -1).astype(np.float64)
    if probabilities:
        return np.log(np.clip(pred, 1e-7, 1.0))
    pred = pred - pred.max(axis=1, keepdims=True)
    return pred - np.log(np.exp(pred).sum(axis=1, keepdims=True))


@contextmanager
def as_logits(model) -> Iterator[Any]:
    """The model with its final softmax switched off (a softmax activation of the last layer, or a
    trailing Softmax layer left out); the model as it is when it ends in logits already."""
    keras = keras_module()
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if act is not None and getattr(act, "__name__", "") == "softmax":
        last.activation = keras.activations.linear
        try:
            yield model
        finally:
            last.activation = act
    elif type(last).__name__ == "Softmax":
        yield keras.Model(model.inputs, last.input)
    else:
        yield model


def soft_targets(teachers: list, weights: list[float], x: np.ndarray, temperature: float) -> np.ndarray:
    """The weighted mean of the teachers' softmax(logits / T)."""
    total = None
    for teacher, w in zip(teachers, weights):
        with as_logits(teacher) as logits_model:
            with tf_quiet.captured("teacher predictions"):
                lp = log_probs(np.asarray(logits_model.predict(x, verbose=0, batch_size=256)), False)
        z = lp / temperature
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        total = p * w if total is None else total + p * w
    assert total is not None
    return (total / sum(weights)).astype(np.float32)


def mean_outputs(teachers: list, weights: list[float], x: np.ndarray) -> np.ndarray:
    """The weighted mean of the teachers' outputs (flattened per sample): a reconstruction's target."""
    total = None
    for teacher, w in zip(teachers, weights):
        with tf_quiet.captured("teacher predictions"):
            out = np.asarray(teacher.predict(x, verbose=0, batch_size=256), dtype=np.float64).reshape(len(x), -1)
        total = out * w if total is None else total + out * w
    assert total is not None
    return total / sum(weights)


@contextmanager
def _as_is(model) -> Iterator[Any]:
    yield model


def kd_loss(classes: int, temperature: float, alpha: float, student_probabilities: bool):
    """Loss on y_true = [one-hot labels | teacher soft labels] (2 x classes columns)."""
    keras = keras_module()
    ops = keras.ops
    t = float(temperature)

    def loss(y_true, y_pred):
        hard, soft = y_true[:, :classes], y_true[:, classes:]
        y_pred = ops.reshape(y_pred, (-1, classes))
        logits = ops.log(ops.clip(y_pred, 1e-7, 1.0)) if student_probabilities else y_pred
        log_p = ops.log_softmax(logits, axis=-1)
        log_p_t = ops.log_softmax(logits / t, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-7, 1.0)) - log_p_t), axis=-1) * (t * t)
        ce = -ops.sum(hard * log_p, axis=-1)
        return alpha * kl + (1.0 - alpha) * ce

    return loss


def make_student(step: DistillStep, teacher, recipe_dir: Path, where: str):
    """The student with fresh weights: a .keras file's architecture, or the teacher made narrower."""
    keras = keras_module()
    if step.student is not None:
        path = Path(step.student)
        path = path if path.is_absolute() else recipe_dir / path
        if not path.is_file():
            raise ConfigError(f"{where}.student: {path}: student model file not found")
        loaded = load_model(path, f"{where}.student")
        student = keras.models.clone_model(loaded)  # same architecture, freshly initialised weights
    else:
        from harness.compress.depth import depth_multiplied
        from harness.compress.structured import width_multiplied

        student = teacher
        if step.depth is not None:
            student = depth_multiplied(student, step.depth, f"{where}.depth")
        if step.width is not None:
            student = width_multiplied(student, step.width, f"{where}.width")
        elif step.depth is None:  # pragma: no cover - the recipe validator requires one of them
            raise ConfigError(f"{where}: no student, width or depth")
    check_student(student, teacher, f"{where}.student")
    return student


def teacher_files(step: DistillStep, recipe_dir: Path, where: str) -> list[Path | None]:
    """Each teacher's file (None: the parent model)."""
    out: list[Path | None] = []
    for i, t in enumerate(step.teachers):
        if t.model == "parent":
            out.append(None)
            continue
        p = Path(t.model)
        p = p if p.is_absolute() else recipe_dir / p
        if not p.is_file():
            raise ConfigError(f"{where}.teachers[{i}].model: {p}: teacher model file not found")
        out.append(p)
    return out


def distill(
    parent,
    step: DistillStep,
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    recipe_dir: Path,
    where: str,
    label: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
):
    """Train and return the student (see the module doc); `y` None: a reconstruction task."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)  # the student's initial weights
    teachers = []
    for i, f in enumerate(teacher_files(step, recipe_dir, where)):
        t = parent if f is None else load_model(f, f"{where}.teachers[{i}].model")
        check_student(t, parent, f"{where}.teachers[{i}].model")
        teachers.append(t)
    student = make_student(step, parent, recipe_dir, where)
    classes = int(np.prod(io_shapes(student)[1][1:]))
    weights = [t.weight for t in step.teachers]
    if y is None:
        target = np.concatenate([mean_outputs(teachers, weights, x), x.reshape(len(x), -1)], axis=1)
        target = target.astype(np.float32)
    else:
        soft = soft_targets(teachers, weights, x, step.temperature)
        hard = np.eye(classes, dtype=np.float32)[y]
        target = np.concatenate([hard, soft], axis=1)
    with as_logits(student) if y is not None else _as_is(student) as logits_student:
        if y is None:
            from harness.compress.recon import distill_loss

            loss = distill_loss(classes, step.alpha)
        else:
            probabilities = outputs_probabilities(logits_student)  # False unless the softmax could not be found
            loss = kd_loss(classes, step.temperature, step.alpha, probabilities)
        if not step.features:
            compile_classifier(logits_student, learning_rate, loss=loss, metrics=[])
            logs = fit(logits_student, x, target, label=label, epochs=epochs, batch_size=batch_size, seed=seed)
            return student, logs
        logs = _fit_features(
            logits_student,
            teachers[0],
            step,
            x,
            target,
            loss,
            where=where,
            label=label,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
        )
    return student, logs


def _fit_features(
    student,
    teacher,
    step: DistillStep,
    x: np.ndarray,
    target: np.ndarray,
    loss,
    *,
    where: str,
    label: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> dict:
    keras = keras_module()
    train_model, feature_targets, weights = _feature_model(student, teacher, step, x, where)
    losses = [loss] + ["mse"] * len(feature_targets)
    train_model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=[1.0, *weights])
    return fit(train_model, x, [target, *feature_targets], label=label, epochs=epochs, batch_size=batch_size, seed=seed)


def _feature_model(student, teacher, step: DistillStep, x: np.ndarray, where: str):
    keras = keras_module()
    outs, targets, weights = [student.outputs[0]], [], []
    if step.features == "auto":
        from harness.compress.stages import auto_pairs

        pairs = auto_pairs(student, teacher, f"{where}.features")
    else:
        pairs = list(step.features)
    chosen = []
    for i, pair in enumerate(pairs):
        field = f"{where}.features[{i}]"
        try:
            s_out = student.get_layer(pair.student).output
        except ValueError:
            names = ", ".join(layer.name for layer in student.layers)
            raise ConfigError(f"{field}.student: no layer '{pair.student}' in the student (has: {names})") from None
        try:
            t_layer = teacher.get_layer(pair.teacher)
        except ValueError:
            names = ", ".join(layer.name for layer in teacher.layers)
            raise ConfigError(f"{field}.teacher: no layer '{pair.teacher}' in the teacher (has: {names})") from None
        chosen.append((s_out, t_layer.output))
    # every teacher feature in one pass (one traced predict function, not one per layer)
    t_model = keras.Model(teacher.inputs, [t for _, t in chosen])
    with tf_quiet.captured("teacher features"):
        t_feats = t_model.predict(x, verbose=0, batch_size=256)
    t_feats = t_feats if isinstance(t_feats, list | tuple) else [t_feats]
    for i, (pair, (s_feat, _), t_feat) in enumerate(zip(pairs, chosen, t_feats)):
        field = f"{where}.features[{i}]"
        t_feat = np.asarray(t_feat)
        s_shape, t_shape = tuple(s_feat.shape[1:]), tuple(t_feat.shape[1:])
        if s_shape[:-1] != t_shape[:-1]:
            raise ConfigError(
                f"{field}: student layer '{pair.student}' gives {list(s_shape)}, teacher layer "
                f"'{pair.teacher}' {list(t_shape)}: only the last (channel) dimension may differ"
            )
        if s_shape[-1] != t_shape[-1]:
            adapter = (
                keras.layers.Conv2D(t_shape[-1], 1, name=f"adapter_{i}")
                if len(s_shape) == 3
                else keras.layers.Dense(t_shape[-1], name=f"adapter_{i}")
            )
            s_feat = adapter(s_feat)
        outs.append(s_feat)
        targets.append(t_feat.astype(np.float32))
        weights.append(pair.weight)
    return keras.Model(student.inputs, outs), targets, weights
