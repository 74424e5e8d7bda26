"""Structured pruning and width students through the channel dependency graph, on the shapes edge teams
deploy (tests/arch_models.py): real training on the digits task, real TFLite conversion and interpreters,
MACs checked with `hil analyze`'s own counter."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from arch_models import ARCHITECTURES, digits_task, trained

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_models: dict[str, tuple] = {}


def model_and_task(name: str):
    """Each architecture trained once per module; MobileNetV2, the slowest to train, is not trained: its
    BatchNorm statistics are drawn at random instead (what the checks on it need)."""
    if name not in _models:
        if name == "mobilenet_v2":
            import keras

            keras.utils.set_random_seed(0)
            model = ARCHITECTURES[name]()
            _randomize_norms(model)
            _models[name] = model, digits_task(model.inputs[0].shape[1:], n=240)
        else:
            _models[name] = trained(name, epochs=2, n=480)
    return _models[name]


def analyze_blob(blob: bytes):
    from harness.models.inspect.analysis import analyze

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name)


def int8_tflite(model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def run_tflite(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for row in x:
        it.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0])
    return np.stack(rows)


def zeroed(graph, keep):
    """The original model with the pruned channels' filters, biases and BatchNorm scale/offset set to 0:
    the function the pruned model must compute before any fine-tuning."""
    from harness.compress.narrow import narrowed

    copy = narrowed(graph, graph.all_kept())  # an exact copy (every layer cloned, weights copied)
    for call in graph.first.values():
        if call.role in ("pass", "merge", "flatten", "reshape", "frozen"):
            continue
        layer = copy.get_layer(call.layer.name)
        w = layer.get_weights()
        chans = call.inputs[0] if call.role == "depthwise" else call.outputs[0]
        drop = np.nonzero(~keep[graph.root[chans]])[0]
        if call.role == "transpose":
            w[0][..., drop, :] = 0
        elif call.role == "separable":
            w[1][..., drop] = 0
        elif call.role == "depthwise":
            w[0][..., drop, :] = 0
        elif call.role in ("conv", "dense"):
            w[0][..., drop] = 0
        for a in w[-1:] if call.role != "norm" else w[:2]:  # the bias / gamma and beta
            if call.role == "norm" or a.ndim == 1:
                a[drop] = 0
        layer.set_weights(w)
    return copy


def assert_same_function(graph, keep, pruned, x):
    # a direct inference-mode call is what predict() computes on one batch, without tracing a predict
    # function for each of the two models (seconds apiece on the larger architectures)
    expected = np.asarray(zeroed(graph, keep)(x, training=False))
    np.testing.assert_allclose(np.asarray(pruned(x, training=False)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_filters_50_removes_real_channels_on_each_architecture(name):
    """Half the MACs go (0.45-0.50x as `hil analyze` counts the int8 TFLite), the pruned model is the
    original with the pruned channels zeroed, and it fine-tunes, converts to int8 and runs."""
    import keras

    from harness.compress.channels import ChannelGraph
    from harness.compress.narrow import narrowed
    from harness.compress.structured import choose_keep

    model, (x, y, xe, ye) = model_and_task(name)
    graph = ChannelGraph(model)
    assert graph.prunable() and not graph.frozen_report()
    keep, achieved = choose_keep(graph, 0.5, "macs", "l1", align=8)  # as the recipe does
    pruned = narrowed(graph, keep)
    assert_same_function(graph, keep, pruned, xe[:32])
    for g in graph.prunable():  # groups of a multiple of 8 channels keep a multiple of 8 (int8 kernels' blocks)
        n = int(keep[g.channels].sum())
        assert n % 8 == 0 if len(g.channels) % 8 == 0 and len(g.channels) >= 16 else n >= 1, (g.producers, n)

    if name != "mobilenet_v2":  # fine-tunes (the slowest to train is left as pruned)
        target, loss = (x, "mse") if name == "fc_autoencoder" else (y, "sparse_categorical_crossentropy")
        pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        pruned.fit(x[:128], target[:128], epochs=1, batch_size=32, verbose=0)
    blob = int8_tflite(pruned, x[:16])
    out = run_tflite(blob, xe[:4])
    assert out.shape == (4, *model.output_shape[1:]) and np.isfinite(out).all()

    a = analyze_blob(blob)
    base_macs, base_params = graph.counts(graph.all_kept())
    after = ChannelGraph(pruned)
    assert a.total_macs == after.counts(after.all_kept())[0]  # the graph counts as `hil analyze` does
    ratio = a.total_macs / base_macs
    assert 0.45 <= ratio <= 0.5 and ratio == pytest.approx(1 - achieved), (name, ratio)
    assert pruned.count_params() < 0.8 * model.count_params()


def test_a_group_that_spans_an_add_is_pruned_identically_on_both_sides():
    """ResNet-8: the stem's filters and each identity block's second conv meet at an Add, a projection
    shortcut and the block's conv meet at the next; each pair keeps the same channels, weights copied."""
    from harness.compress.channels import ChannelGraph
    from harness.compress.narrow import narrowed
    from harness.compress.structured import choose_keep

    model, _ = model_and_task("resnet8")
    graph = ChannelGraph(model)
    keep, _ = choose_keep(graph, 0.5, "macs", "l1")
    pruned = narrowed(graph, keep)
    adds = [c for c in graph.calls if type(c.layer).__name__ == "Add"]
    assert len(adds) == 3
    for add in adds:
        left, right = (graph.kept(a, keep) for a in add.inputs)
        assert len(left) < len(add.inputs[0]) and np.array_equal(left, right)
        new = pruned.get_layer(add.layer.name)
        assert [tuple(t.shape) for t in new.input] == [tuple(new.input[0].shape)] * 2
    # the convs that feed the last Add: the 1x1 shortcut and the block's second conv (through its BN)
    last = adds[-1]
    feeding = [c for c in graph.calls if c.role == "conv" and any(np.array_equal(c.outputs[0], a) for a in last.inputs)]
    bn = [c for c in graph.calls if c.role == "norm" and any(np.array_equal(c.outputs[0], a) for a in last.inputs)]
    assert len(feeding) == 2 and len(bn) == 1  # shortcut conv, block conv (whose BN feeds the Add)
    kept = graph.kept(last.inputs[0], keep)
    for call in feeding:
        w, nw = call.layer.get_weights()[0], pruned.get_layer(call.layer.name).get_weights()[0]
        np.testing.assert_array_equal(nw, w[..., graph.kept(call.inputs[0], keep), :][..., kept])
    gamma = pruned.get_layer(bn[0].layer.name).get_weights()[0]
    np.testing.assert_array_equal(gamma, bn[0].layer.get_weights()[0][kept])


def _randomize_norms(model, seed: int = 0) -> None:
    """BatchNorm statistics away from (0, 1), so that zeroing and slicing are really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.3, b.shape),
                    rng.normal(0, 0.3, m.shape),
                    rng.uniform(0.5, 2, v.shape),
                ]
            )


def test_every_supported_layer_kind_couples_its_channels():
    """Concatenate offsets joined to an Add, SeparableConv, DepthwiseConv, a squeeze-excite Multiply (a
    Dense -> Reshape scale), Conv2DTranspose, Cropping, a Reshape that keeps the channel axis, a Dense on
    a 3-D tensor, Subtract, Conv1D, UpSampling, padding and Flatten -> Dense: the pruned model computes
    the original with the pruned channels zeroed; a Sequential model and a layer called twice too."""
    import keras

    from harness.compress.channels import ChannelGraph
    from harness.compress.narrow import narrowed
    from harness.compress.structured import choose_keep

    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = keras.Input((12, 12, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(inp)))
    b = L.SeparableConv2D(8, 3, padding="same")(a)
    c = L.Concatenate()([a, b])
    e = L.Add()([c, L.Conv2D(16, 1)(inp)])
    e = L.DepthwiseConv2D(3, padding="same")(e)
    s = L.Dense(16, activation="sigmoid")(L.Dense(4, activation="relu")(L.GlobalAveragePooling2D()(e)))
    e = L.Multiply()([e, L.Reshape((1, 1, 16))(s)])
    f = L.MaxPooling2D(2)(L.Cropping2D(2)(L.Conv2DTranspose(8, 3, strides=2, padding="same")(e)))
    g = L.Dense(12)(L.Reshape((100, 8))(f))
    g = L.Subtract()([g, L.Dense(12)(g)])
    h = L.ZeroPadding1D(1)(L.UpSampling1D(2)(L.Conv1D(8, 3, strides=4)(g)))
    model = keras.Model(inp, L.Dense(5, activation="softmax")(L.Flatten()(h)))
    seq = keras.Sequential(
        [keras.Input((8, 8, 1)), L.Conv2D(6, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(3)]
    )
    shared = L.Conv2D(6, 3, padding="same", name="shared")  # one set of filters called twice
    inp2 = keras.Input((8, 8, 2))
    y2 = L.Add()([shared(L.Conv2D(4, 1)(inp2)), shared(L.Conv2D(4, 1)(inp2))])
    twice = keras.Model(inp2, L.Dense(3)(L.Flatten()(y2)))
    x = np.random.default_rng(0).normal(size=(8, 12, 12, 3)).astype(np.float32)
    for m, xs in ((model, x), (seq, x[:, :8, :8, :1]), (twice, x[:, :8, :8, :2])):
        _randomize_norms(m)
        graph = ChannelGraph(m)
        assert not graph.frozen_report()
        keep, achieved = choose_keep(graph, 0.4, "macs", "l2")
        pruned = narrowed(graph, keep)
        assert_same_function(graph, keep, pruned, xs)
        after = ChannelGraph(pruned)
        assert 1 - after.counts(after.all_kept())[0] / graph.counts(graph.all_kept())[0] == pytest.approx(achieved)
    # bn_gamma ranks a group's channels by |gamma| of its BatchNorm (L1 would not pick these two)
    bn = next(ly for ly in seq.layers if type(ly).__name__ == "BatchNormalization")
    w = bn.get_weights()
    w[0] = np.where(np.isin(np.arange(6), [2, 5]), 3.0, 0.01).astype(np.float32)
    bn.set_weights(w)
    conv = seq.layers[0]
    k = conv.get_weights()
    k[0][..., [2, 5]] *= 1e-3  # the weakest filters by norm
    conv.set_weights(k)
    sg = ChannelGraph(seq)
    keep, _ = choose_keep(sg, 0.5, "macs", "bn_gamma")
    assert {2, 5} <= set(sg.kept(sg.first[id(conv)].outputs[0], keep).tolist())
    keep, _ = choose_keep(sg, 0.5, "macs", "l1")
    assert not {2, 5} & set(sg.kept(sg.first[id(conv)].outputs[0], keep).tolist())
    # the concatenation's two halves are pruned as the 1x1 conv's matching channels
    g0 = ChannelGraph(model)
    add = next(c for c in g0.calls if type(c.layer).__name__ == "Add")
    assert add.inputs[0].tolist() != add.inputs[1].tolist()  # different elements, united channel by channel
    assert np.array_equal(g0.root[add.inputs[0]], g0.root[add.inputs[1]])


def test_layers_the_graph_cannot_reason_about_freeze_their_groups_and_are_reported():
    """A Lambda, a custom layer, a depth multiplier of 2, a Reshape that mixes channels, a softmax over
    the channels and attention leave the channels they touch whole (each named in the log); everything
    else is still pruned, exactly."""
    import keras

    from harness.compress.channels import ChannelGraph
    from harness.compress.narrow import narrowed
    from harness.compress.structured import choose_keep, prune_filters

    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    L = keras.layers
    keras.utils.set_random_seed(2)
    inp = keras.Input((10, 10, 3))
    a = L.Lambda(lambda t: t * 0.5, name="halve")(L.Conv2D(8, 3, padding="same", name="conv_a")(inp))
    b = L.ReLU()(L.Conv2D(12, 3, padding="same", name="conv_b")(a))  # free
    c = Doubler(name="doubler")(L.Conv2D(6, 3, padding="same", name="conv_c")(b))
    d = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw2")(L.Conv2D(4, 1, name="conv_d")(c))
    e = L.Conv2D(10, 1, name="conv_e")(d)  # free
    f = L.Reshape((50, 20), name="mix")(L.Conv2D(10, 1, name="conv_f")(e))
    g = L.Activation("softmax", name="chan_softmax")(L.Conv2D(5, 1, name="conv_g")(e))
    q = L.Reshape((100, 6), name="seq")(L.Conv2D(6, 1, name="conv_h")(e))
    att = L.MultiHeadAttention(2, 4, name="attn")(q, q)
    flat = [L.Flatten()(t) for t in (L.Dense(4, name="per_step")(f), g, att)]
    model = keras.Model(inp, L.Dense(3, name="head")(L.Concatenate()(flat)))
    lines: list[str] = []
    pruned, achieved = prune_filters(model, 0.3, "macs", "l1", "r.yaml: steps[0].structured_prune", log=lines.append)
    text = "\n".join(lines)
    assert all(line.startswith("r.yaml: steps[0].structured_prune: left unpruned: ") for line in lines)
    for producer, cause in [
        ("conv_a", "'halve' (Lambda)"),
        ("conv_c", "'doubler' (Doubler)"),
        ("conv_d", "'dw2' (DepthwiseConv2D, depth_multiplier 2)"),
        ("conv_f", "'mix' (Reshape)"),
        ("conv_g", "'chan_softmax' (Activation, softmax over the channels)"),
        ("conv_h", "'attn' (MultiHeadAttention)"),
    ]:
        assert any(line.split(": left unpruned: ")[1].startswith(producer) and cause in line for line in lines), text
    widths = {ly.name: ly.output.shape[-1] for ly in pruned.layers}
    assert [widths[n] for n in ("conv_a", "conv_c", "conv_d", "conv_f", "conv_g", "conv_h")] == [8, 6, 4, 10, 5, 6]
    graph = ChannelGraph(model)
    free = {n for g in graph.prunable() for n in g.producers}
    assert free == {"conv_b", "conv_e", "per_step"} and widths["conv_b"] < 12 and achieved >= 0.3
    keep, _ = choose_keep(graph, 0.3, "macs", "l1")
    x = np.random.default_rng(0).normal(size=(4, 10, 10, 3)).astype(np.float32)
    assert_same_function(graph, keep, narrowed(graph, keep), x)


def test_width_students_scale_every_group_and_distill_on_each_architecture():
    """`width: 0.5` through the graph: every group half as wide (MACs about a quarter, the output
    classes whole), fresh weights, and logit distillation trains it (on a residual and a U-Net)."""
    from harness.compress.channels import ChannelGraph
    from harness.compress.distill import distill
    from harness.compress.recipes import DistillStep
    from harness.compress.structured import width_multiplied

    for name in ARCHITECTURES:
        model, (x, y, xe, _) = model_and_task(name)
        graph = ChannelGraph(model)
        student = width_multiplied(model, 0.5, "w")
        sg = ChannelGraph(student)
        ratio = sg.counts(sg.all_kept())[0] / graph.counts(graph.all_kept())[0]
        assert 0.2 <= ratio <= 0.45, (name, ratio)
        assert student.output_shape == model.output_shape
        for g, h in zip(graph.prunable(), sg.prunable()):
            assert len(h.channels) == max(1, round(len(g.channels) * 0.5)), name
        if name not in ("resnet8", "unet"):  # distillation is the same on every graph: an Add, a Concatenate
            continue
        trained_student, logs = distill(
            model,
            DistillStep(width=0.5),
            x[:64],
            y[:64],
            recipe_dir=tempfile.gettempdir(),
            where="w",
            label=name,
            epochs=1,
            batch_size=32,
            learning_rate=1e-3,
            seed=0,
        )
        assert np.isfinite(logs["loss"]) and trained_student.predict(xe[:2], verbose=0).shape == (2, 10)


def test_sweep_compress_only_filters_50_int8_on_a_model_the_user_built(tmp_path):
    """The user's check: `hil sweep --compress-only` with filters-50-int8 on a ResNet-8 of his own
    (branches, Adds) gives an int8 candidate with at most 0.65x the base's MACs."""
    import re

    from conftest import hil

    model, (x, y, xe, ye) = model_and_task("resnet8")
    model.save(tmp_path / "net.keras")
    np.savez(tmp_path / "net.train.npz", x=x, y=y)
    np.savez(tmp_path / "net.eval.npz", x=xe, y=ye)
    np.savez(tmp_path / "net.calibration.npz", x=x[:32])
    env = {"HILBENCH_CACHE": str(tmp_path / "cache"), "HILBENCH_LOCK_DIR": str(tmp_path / "locks")}
    p = hil("sweep", "net.keras", "--recipes", "filters-50-int8", "--compress-only", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    macs = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^(\S+)\s.*MACs\s+([\d,]+)", p.stdout, re.M)}
    assert set(macs) == {"net", "net+filters-50-int8"}, p.stdout
    assert macs["net+filters-50-int8"] <= 0.65 * macs["net"], macs
