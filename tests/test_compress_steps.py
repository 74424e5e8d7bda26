"""Compression steps with real Keras 3 training on the bundled digits data (small models, few epochs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="module")
def digits() -> dict:
    train = np.load(DIGITS / "digits.train.npz")
    ev = np.load(DIGITS / "digits.eval.npz")
    return {"x": train["x"], "y": train["y"], "xe": ev["x"], "ye": ev["y"], "path": DIGITS / "digits.keras"}


def load(path: Path):
    from harness.compress.train import load_model

    return load_model(path)


def to_tflite(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_polynomial_schedule_reaches_the_target_gradually():
    from harness.compress.pruning import schedule_value
    from harness.compress.recipes import PruneStep

    p = PruneStep(sparsity=0.8, begin=0.1, end=0.5)
    values = [schedule_value(p, s, 100) for s in range(0, 101, 5)]
    assert values[0] == values[1] == 0.0 and values[-1] == pytest.approx(0.8)
    assert all(b >= a for a, b in zip(values, values[1:]))  # never drops
    assert 0.0 < schedule_value(p, 20, 100) < schedule_value(p, 40, 100) < 0.8  # gradual, not a step
    assert schedule_value(PruneStep(sparsity=0.8, schedule="constant"), 0, 100) == 0.8


def test_80_percent_magnitude_sparsity_after_fine_tuning_stays_within_2_points(digits):
    from harness.compress.pruning import prunable_kernels, prune, sparsity_of
    from harness.compress.recipes import PruneStep
    from harness.compress.train import accuracy

    model = load(digits["path"])
    before = accuracy(model, digits["xe"], digits["ye"])
    logs = prune(
        model,
        PruneStep(sparsity=0.8, end=0.5, frequency=5),
        digits["x"],
        digits["y"],
        label="t",
        epochs=6,
        batch_size=32,
        learning_rate=1e-3,
        seed=0,
    )
    after = accuracy(model, digits["xe"], digits["ye"])
    assert logs["sparsity"] == pytest.approx(sparsity_of(model)) and sparsity_of(model) >= 0.799
    for _, var in prunable_kernels(model):  # every kernel on its own reached the target
        w = np.asarray(var.numpy())
        assert (w == 0).mean() >= 0.79, var.path
    assert after >= before - 0.02, (before, after)


def test_structured_pruning_removes_the_requested_share_of_macs_and_parameters(digits):
    from harness.compress.structured import prune_filters
    from harness.models.inspect.analysis import analyze

    model = load(digits["path"])
    base = analyze_blob(to_tflite(model), analyze)
    narrow, achieved = prune_filters(model, 0.5, "macs", "l1")
    a = analyze_blob(to_tflite(narrow), analyze)
    macs_cut = 1 - a.total_macs / base.total_macs
    assert 0.5 <= macs_cut < 0.6 and macs_cut == pytest.approx(achieved, abs=0.005), (macs_cut, achieved)
    assert a.param_count < base.param_count and a.size_bytes < base.size_bytes
    # the kept filters are the strongest ones, with their weights copied: L1 of the filter plus L1 of the
    # depthwise channel it feeds (coupled: pruned together), each layer's norms over their mean
    k0 = model.get_layer("conv2d").get_weights()[0]
    d0 = model.get_layer("depthwise_conv2d").get_weights()[0][..., 0]
    first = narrow.get_layer("conv2d")
    assert first.filters < 16
    l1 = [np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0) for k in (k0, d0)]
    score = sum(v / v.mean() for v in l1)
    kept = np.sort(np.argsort(-score, kind="stable")[: first.filters])
    np.testing.assert_array_equal(first.get_weights()[0], k0[..., kept])
    x = digits["xe"][:50]
    assert narrow.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape

    small, achieved = prune_filters(model, 0.4, "params", "l2")
    p = analyze_blob(to_tflite(small), analyze)
    assert 1 - p.param_count / base.param_count >= 0.4
    assert 1 - p.param_bytes / base.param_bytes >= 0.4
    assert 1 - p.size_bytes / base.size_bytes >= 0.35  # the file also holds the graph, names and metadata


def analyze_blob(blob: bytes, analyze):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name)


def test_a_distilled_student_beats_or_matches_the_same_student_trained_alone(digits):
    import keras

    from harness.compress.distill import distill
    from harness.compress.recipes import DistillStep
    from harness.compress.structured import width_multiplied
    from harness.compress.train import accuracy, compile_classifier, fit

    teacher = load(digits["path"])
    x, y = digits["x"][:600], digits["y"][:600]  # half the data: where a teacher's soft labels help
    budget = {"epochs": 20, "batch_size": 32}
    student, _ = distill(
        teacher,
        DistillStep(width=0.25, temperature=4.0, alpha=0.7),
        x,
        y,
        recipe_dir=DIGITS,
        where="t",
        label="distilled",
        learning_rate=3e-3,
        seed=0,
        **budget,
    )
    keras.utils.set_random_seed(0)
    alone = width_multiplied(teacher, 0.25, "t")
    compile_classifier(alone, 3e-3)
    fit(alone, x, y, label="alone", seed=0, **budget)
    assert [w.shape for w in alone.get_weights()] == [w.shape for w in student.get_weights()]  # the same student
    acc_d, acc_a = accuracy(student, digits["xe"], digits["ye"]), accuracy(alone, digits["xe"], digits["ye"])
    assert acc_d >= acc_a - 0.005, (acc_d, acc_a)


def test_feature_and_multi_teacher_distillation(digits, tmp_path):
    import keras

    from harness.compress.distill import distill, soft_targets
    from harness.compress.recipes import DistillStep
    from harness.compress.train import accuracy
    from harness.errors import ConfigError

    teacher = load(digits["path"])
    keras.utils.set_random_seed(3)
    other = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    other.compile("adam", "sparse_categorical_crossentropy")
    other.fit(digits["x"], digits["y"], epochs=3, verbose=0)
    other.save(tmp_path / "other.keras")
    x = digits["x"][:400]
    # weighted soft labels: the weighted mean of each teacher's tempered distribution
    t = 3.0
    mixed = soft_targets([teacher, other], [2.0, 1.0], x[:20], t)
    one = [soft_targets([m], [1.0], x[:20], t) for m in (teacher, other)]
    np.testing.assert_allclose(mixed, (2 * one[0] + one[1]) / 3, rtol=1e-5, atol=1e-6)
    assert np.allclose(mixed.sum(axis=1), 1.0)

    step = DistillStep(
        width=0.5,
        teachers=[{"model": "parent", "weight": 2.0}, {"model": "other.keras"}],
        features=[{"student": "conv2d_1", "teacher": "conv2d_1", "weight": 0.5}],
    )
    student, logs = distill(
        teacher,
        step,
        x,
        digits["y"][:400],
        recipe_dir=tmp_path,
        where="r.yaml: steps[0].distill",
        label="s",
        epochs=6,
        batch_size=32,
        learning_rate=3e-3,
        seed=0,
    )
    assert not any(layer.name.startswith("adapter") for layer in student.layers)  # adapters are training-only
    assert student.get_layer("conv2d_1").filters == 16 and tuple(student.outputs[0].shape[1:]) == (10,)
    assert accuracy(student, digits["xe"], digits["ye"]) > 0.7  # 6 epochs on 400 samples; chance is 0.1
    assert any(k.endswith("loss") and k != "loss" for k in logs)  # the feature loss was trained

    bad = DistillStep(width=0.5, features=[{"student": "conv9", "teacher": "conv2d_1"}])
    with pytest.raises(ConfigError, match=r"r.yaml: steps\[0\].distill.features\[0\].student: no layer 'conv9'"):
        distill(
            teacher,
            bad,
            x,
            digits["y"][:400],
            recipe_dir=tmp_path,
            where="r.yaml: steps[0].distill",
            label="s",
            epochs=1,
            batch_size=32,
            learning_rate=1e-3,
            seed=0,
        )


def test_qat_int8_is_at_least_ptq_int8_where_ptq_loses_accuracy(digits):
    """A sensor that saturates in 1 % of the samples (one pixel at 250): post-training calibration takes
    the absolute range, so int8 inputs keep ~2 levels for real pixels; QAT's running range does not."""
    import tensorflow as tf

    from harness.compress.ptq import tflite_accuracy
    from harness.compress.qat import convert_int8, train_qat
    from harness.compress.recipes import QatStep

    x = digits["x"].copy()
    glitch = np.random.default_rng(0).choice(len(x), size=len(x) // 100, replace=False)
    x[glitch, 0, 0, 0] = 250.0
    calib = x[:200]
    assert (calib > 1).any()
    model = load(digits["path"])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    float_acc = tflite_accuracy(to_tflite(model), digits["xe"], digits["ye"])
    ptq = tflite_accuracy(conv.convert(), digits["xe"], digits["ye"])
    q, _ = train_qat(model, QatStep(), x, digits["y"], label="qat", epochs=1, batch_size=32, learning_rate=1e-4, seed=0)
    blob = convert_int8(q, calib, "digits")
    qat = tflite_accuracy(blob, digits["xe"], digits["ye"])
    assert ptq < float_acc - 0.01, (float_acc, ptq)  # PTQ really loses here
    assert qat >= ptq, (qat, ptq)
    from harness.models.inspect.analysis import analyze

    a = analyze_blob(blob, analyze)
    assert a.inputs[0].dtype == "int8" and a.outputs[0].dtype == "int8"
    conv_ops = [op for op in a.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert conv_ops and all(a.tensor(op.inputs[1]).dtype == "int8" for op in conv_ops)  # full int8 kernels
