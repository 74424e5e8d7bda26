"""Depth multipliers on any graph (harness/compress/depth.py) and `features: auto` (stages.py), with real
Keras 3 models: the shapes of tests/arch_models.py, converted with the real TFLite converter."""

from __future__ import annotations

import os
import tempfile

import pytest
from arch_models import ARCHITECTURES, mobilenet_v2, trained

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WHERE = "r.yaml: steps[0].distill.depth"


def macs(model) -> int:
    import tensorflow as tf

    from harness.models.inspect.analysis import analyze

    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name).total_macs


def test_depth_multiplier_drops_the_later_shape_keeping_chain_blocks():
    """A student `depth: 0.5` of a teacher with four repeated conv blocks keeps the first two (the stem,
    the downsampling and the classifier stay); a teacher without such blocks is refused by name."""
    import keras

    from harness.compress.depth import depth_multiplied
    from harness.compress.recipes import DistillStep
    from harness.errors import NotApplicable

    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    for i in range(4):
        h = keras.layers.Conv2D(8, 3, padding="same", name=f"block{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down")(h)  # changes the shape: kept
    h = keras.layers.GlobalAveragePooling2D()(h)
    teacher = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="head")(h))
    student = depth_multiplied(teacher, 0.5, WHERE)
    names = [ly.name for ly in student.layers]
    kept = [n for n in names if n.startswith(("block", "bn", "relu"))]
    assert kept == ["block0", "bn0", "relu0", "block1", "bn1", "relu1"]
    assert {"stem", "down", "head"} <= set(names) and student.output_shape == teacher.output_shape
    assert macs(teacher) - macs(student) == 2 * 12 * 12 * 9 * 8 * 8  # exactly two blocks' convolutions
    assert DistillStep(depth=0.5, width=0.5).depth == 0.5  # both multipliers stack
    with pytest.raises(ValueError, match="give either 'student'"):
        DistillStep()
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3)])
    with pytest.raises(NotApplicable, match=r"r\.yaml: steps\[0\]\.distill\.depth: the model has no block whose"):
        depth_multiplied(flat, 0.5, WHERE)
    with pytest.raises(NotApplicable, match=r"depth 1 of the model's 4 repeatable block\(s\) keeps all"):
        depth_multiplied(teacher, 1.0, WHERE)


def test_a_dropped_residual_block_is_replaced_by_its_input():
    """Add(s, f(s)) -> s: the layer after the Add reads the block's input; a branch whose tensor is also
    used outside (a skip into a Concatenate) or a projection shortcut is no block."""
    import keras

    from harness.compress.depth import depth_multiplied, removable_blocks

    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    s = layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    y = layers.Conv2D(8, 3, padding="same", name="a1")(s)
    y = layers.BatchNormalization(name="a_bn")(y)
    x = layers.ReLU(name="after_a")(layers.Add(name="add_a")([s, layers.Conv2D(8, 1, name="a2")(y)]))
    y2 = layers.Conv2D(8, 3, padding="same", name="b1")(x)
    x2 = layers.ReLU(name="after_b")(layers.Add(name="add_b")([x, y2]))
    p = layers.Conv2D(16, 3, strides=2, padding="same", name="proj")(x2)  # projection: shapes differ
    q = layers.Conv2D(16, 3, strides=2, padding="same", name="c1")(x2)
    x3 = layers.Add(name="add_c")([p, q])
    skip = layers.Conv2D(16, 3, padding="same", name="d1")(x3)  # used by the Add and by the Concatenate
    x4 = layers.Concatenate(name="cat")([layers.Add(name="add_d")([x3, skip]), skip])
    out = layers.Dense(4, name="head")(layers.GlobalAveragePooling2D()(x4))
    model = keras.Model(inp, out)
    blocks = removable_blocks(model)
    # d1 alone keeps its input's shape: a chain block (its input may stand in for it in both uses)
    assert [(b.kind, b.layers[-1]) for b in blocks] == [("residual", "add_a"), ("residual", "add_b"), ("chain", "d1")]
    assert blocks[0].layers == ["a1", "a_bn", "a2", "add_a"]
    student = depth_multiplied(model, 0.4, WHERE)
    names = {ly.name for ly in student.layers}
    assert {"a1", "a2", "add_a"} <= names and not {"b1", "add_b", "d1"} & names
    assert student.get_layer("after_b").input is student.get_layer("after_a").output
    assert student.output_shape == model.output_shape


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_depth_on_the_reference_architectures(name):
    """Residual and inverted-residual blocks (ResNet-8, MobileNetV2) and chain blocks (DS-CNN, MobileNetV1,
    the FC autoencoder) are dropped; nets without a shape-keeping block are refused (Conv1D, U-Net)."""
    from harness.compress.depth import depth_multiplied, removable_blocks
    from harness.errors import NotApplicable

    model = ARCHITECTURES[name]()
    blocks = removable_blocks(model)
    adds = sum(type(ly).__name__ == "Add" for ly in model.layers)
    if name in ("conv1d", "unet"):
        assert blocks == []
        with pytest.raises(NotApplicable, match="no block whose output keeps its input's shape"):
            depth_multiplied(model, 0.5, WHERE)
        return
    residual = [b for b in blocks if b.kind == "residual"]
    identity_adds = {"resnet8": 1, "mobilenet_v2": adds}.get(name, 0)  # ResNet-8: 2 of 3 project
    assert len(residual) == identity_adds
    student = depth_multiplied(model, 0.5, WHERE)
    assert student.output_shape == model.output_shape
    assert student.count_params() < model.count_params()


def test_mobilenet_v2_keeps_its_first_inverted_residuals():
    from harness.compress.depth import depth_multiplied, removable_blocks

    model = mobilenet_v2()
    blocks = removable_blocks(model)
    keep = len(blocks) // 2
    student = depth_multiplied(model, 0.5, WHERE)
    names = {ly.name for ly in student.layers}
    for b in blocks[:keep]:
        assert set(b.layers) <= names
    for b in blocks[keep:]:
        assert not set(b.layers) & names
    assert "block_16_project" in names  # the last stride/width change is no block: it stays


def test_features_auto_pairs_the_resolution_stages_and_trains(tmp_path):
    """A ResNet-8 student half as deep, distilled with `features: auto`: one hint per resolution stage
    of the teacher (16x16, 8x8, 4x4), each with a loss term; a student without common stages is refused."""
    import keras

    from harness.compress.depth import depth_multiplied
    from harness.compress.distill import distill
    from harness.compress.recipes import DistillStep, load
    from harness.compress.stages import auto_pairs, stage_ends
    from harness.errors import ConfigError, NotApplicable

    teacher, (x, y, _, _) = trained("resnet8", epochs=1, n=300)
    assert [list(s) for s in stage_ends(teacher)] == [[16, 16], [8, 8], [4, 4]]
    student = depth_multiplied(teacher, 0.5, WHERE)
    pairs = auto_pairs(student, teacher, "f")
    assert len(pairs) == 3 and all(p.weight == pytest.approx(1 / 3) for p in pairs)
    for p in pairs:
        assert student.get_layer(p.student).output.shape[1:-1] == teacher.get_layer(p.teacher).output.shape[1:-1]

    step = DistillStep(depth=0.5, features="auto")
    trained_student, logs = distill(
        teacher,
        step,
        x,
        y,
        recipe_dir=tmp_path,
        where="r.yaml: steps[0].distill",
        label="s",
        epochs=1,
        batch_size=64,
        learning_rate=2e-3,
        seed=0,
    )
    feature_losses = [k for k in logs if k.endswith("loss") and k not in ("loss", "output_0_loss")]
    assert len(feature_losses) >= 3, logs
    assert not any(ly.name.startswith("adapter") for ly in trained_student.layers)
    assert trained_student.output_shape == teacher.output_shape

    vector = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(NotApplicable, match=r"f: auto: the student and the teacher share no resolution stage"):
        auto_pairs(vector, teacher, "f")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - distill: {width: 0.5, features: all}\n")
    with pytest.raises(ConfigError, match="features"):
        load(bad)
