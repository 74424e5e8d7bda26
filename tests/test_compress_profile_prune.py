"""Profile-guided channel pruning (profile_prune.py): the channel groups whose TFLite ops take the most time
on the target are narrowed first. Real conversions, real fine-tuning on the digits task; the per-op times
come from explicit cost models (cost_model.py), the arithmetic a cycle-counting simulator does, one of
them weighting depthwise convs 10x as a board without a fast depthwise kernel would."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from arch_models import ARCHITECTURES, digits_task

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MACS = {"per_mac": 1.0, "per_element": 1.0, "per_op": 100.0, "op_weights": {}}
SLOW_DEPTHWISE = {**MACS, "op_weights": {"DEPTHWISE_CONV_2D": 10.0}}


def dw_net(frozen_middle: bool = False):
    """Three channel groups whose cost depends on the board: 'stem' (a 3x3 conv from one channel and a 5x5
    depthwise conv: few MACs), 'pw' (a 1x1 conv in, a 3x3 conv out: most MACs), 'conv3' (the classifier's
    inputs). `frozen_middle`: pw's channels pass through a softmax over channels, which freezes them."""
    import keras

    layers = keras.layers
    inp = keras.Input((16, 16, 1))
    x = layers.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(5, padding="same", name="dw")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(16, 1, name="pw")(x)
    x = layers.Activation("softmax" if frozen_middle else "relu")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="dw_net")


def convert(model) -> Path:
    """A real fp32 conversion (the pipeline goes through the Converter and its cache; tested below)."""
    import tensorflow as tf

    from harness.models import tf_quiet

    path = Path(tempfile.mkdtemp(prefix="hil-test-pp-")) / "model.tflite"
    with tf_quiet.captured("test conversion"):
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def finetuner(task):
    from harness.compress.train import accuracy, compile_classifier, fit

    def finetune(model, epochs):
        compile_classifier(model, 1e-3)
        fit(model, task[0], task[1], label="test", epochs=epochs, batch_size=32, seed=0)
        return accuracy(model, task[2], task[3])

    return finetune


def profiler(spec):
    from harness.compress.profilers import cost_model_profiler
    from harness.compress.recipes import CostModel

    return cost_model_profiler(CostModel(**spec))


def widths(model) -> dict[str, int]:
    """Filters of every conv, channels of every depthwise conv, by layer name."""
    out = {}
    for layer in model.layers:
        if hasattr(layer, "filters"):
            out[layer.name] = int(layer.filters)
        elif type(layer).__name__ == "DepthwiseConv2D":
            out[layer.name] = int(layer.kernel.shape[-2])
    return out


def prune(model, task, spec, **kw):
    from harness.compress.profile_prune import Settings, profile_prune

    settings = Settings(**{"latency_reduction": 0.2, "step": 0.1, **kw})
    return profile_prune(model, settings, profiler(spec), convert, finetuner(task), 0, log=lambda m: None)


def total_under(model, spec) -> float:
    from harness.compress.profile_prune import measure

    return measure(model, profiler(spec), convert, "test").total


@pytest.fixture(scope="module")
def dw_task():
    return digits_task((16, 16, 1), n=300)


@pytest.fixture(scope="module")
def dw_model(dw_task):
    import keras

    keras.utils.set_random_seed(0)
    model = dw_net()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(dw_task[0], dw_task[1], epochs=1, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def pruned(dw_model, dw_task):
    """The same model pruned for two boards: MACs-bound, and slow at depthwise convs."""
    return {name: prune(dw_model, dw_task, spec) for name, spec in (("macs", MACS), ("dw", SLOW_DEPTHWISE))}


def test_the_group_the_profile_says_is_slowest_is_narrowed_first(pruned):
    for out in pruned.values():
        first = out.iterations[0]
        assert first["group"] == first["ranked"][0]["group"]  # the most time at stake
        assert first["stake"] == first["ranked"][0]["stake"] > first["ranked"][1]["stake"]
    # MACs: the 1x1 conv's filters feed the costly 3x3 conv; slow depthwise: the stem's channels carry it
    assert pruned["macs"].iterations[0]["group"] == ["pw"]
    assert pruned["dw"].iterations[0]["group"] == ["stem"]


def test_two_boards_get_two_different_pruned_architectures(pruned):
    macs, dw = widths(pruned["macs"].model), widths(pruned["dw"].model)
    assert macs == {"stem": 16, "dw": 16, "pw": 8, "conv3": 16}  # 16 -> 8: align 8 keeps a multiple of 8
    assert dw == {"stem": 8, "dw": 8, "pw": 16, "conv3": 16}
    for out in pruned.values():
        assert out.stopped == "target met" and out.achieved >= 0.2
        assert out.final == out.iterations[-1]["total"] and out.initial > out.final
    # each board's model is the faster one on that board
    assert total_under(pruned["dw"].model, SLOW_DEPTHWISE) < total_under(pruned["macs"].model, SLOW_DEPTHWISE)
    assert pruned["macs"].final < total_under(pruned["dw"].model, MACS)


def test_frozen_groups_are_never_pruned(dw_task):
    from harness.compress.channels import ChannelGraph

    model = dw_net(frozen_middle=True)
    graph = ChannelGraph(model)
    assert any("pw" in g.producers and g.frozen for g in graph.groups)
    out = prune(model, dw_task, MACS, latency_reduction=0.15)
    assert widths(out.model)["pw"] == 16  # the costliest group under MACs, but a softmax over its channels
    assert out.iterations and all(rec["group"] != ["pw"] for rec in out.iterations)


def test_netadapt_candidates_keep_the_best_scoring_narrowing(dw_model, dw_task):
    out = prune(dw_model, dw_task, MACS, candidates=2, max_iterations=1)
    (rec,) = out.iterations
    assert len(rec["tried"]) == 2 and {tuple(t["group"]) for t in rec["tried"]} >= {("pw",)}
    best = max(rec["tried"], key=lambda t: (t["saved"] > 0, t["score"], t["saved"]))
    assert rec["group"] == best["group"] and rec["score"] == best["score"]


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "unet"])
def test_every_weighted_op_maps_back_to_its_keras_layer(name):
    """Residual (Add), depthwise (BatchNorm folded into the depthwise op), Concatenate: each CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED op names exactly one weighted layer of the matching kind; only
    the softmax at the output names none."""
    import keras

    from harness.compress.channels import ChannelGraph
    from harness.compress.cost_model import cost_profile
    from harness.compress.op_map import attribute, tagged
    from harness.models.inspect.analysis import analyze

    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[name]()
    graph = ChannelGraph(model)
    path = convert(tagged(graph))
    att = attribute(graph, cost_profile(path, 1, 1, 100, {}), analyze(path))
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    want = {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "FULLY_CONNECTED": "Dense"}
    seen = set()
    for op in att.ops:
        if op.type in want:
            weighted = [n for n in op.layers if kinds[n] in want.values()]
            assert [kinds[n] for n in weighted] == [want[op.type]], (op.type, op.layers)
            seen.add(weighted[0])
        if not op.layers:
            assert op.type == "SOFTMAX"
    assert seen == {n for n, k in kinds.items() if k in want.values()}  # every weighted layer has its op
    assert att.unattributed < 0.001 * att.total
    # every prunable group carries time (its producer's op at least)
    assert (att.stake > 0).all()


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn"])
def test_residual_and_depthwise_models_reach_the_target(name):
    import keras

    from harness.compress.channels import ChannelGraph

    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[name]()  # untrained: the fine-tuning after each narrowing trains it
    task = digits_task(model.inputs[0].shape[1:], n=300)
    before = widths(model)
    out = prune(model, task, MACS, latency_reduction=0.15, step=0.15)
    assert out.stopped == "target met" and out.achieved >= 0.15
    after = widths(out.model)
    assert after != before and all(after[k] <= before[k] for k in before)
    assert all(v % 8 == 0 for v in after.values())  # groups of a multiple of 8 keep a multiple of 8
    # the narrowed model is whole: it converts, runs, and its coupled channels still agree
    pred = out.model.predict(task[2][:4], verbose=0)
    assert pred.shape == (4, 10) and np.isfinite(pred).all()
    assert ChannelGraph(out.model).prunable()
    if name == "resnet8":  # both sides of each Add narrowed together
        for layer in out.model.layers:
            if type(layer).__name__ == "Add":
                shapes = {tuple(t.shape) for t in layer._inbound_nodes[0].input_tensors}
                assert len(shapes) == 1


# ------------------------------------------------------------------ recipe, pipeline, lineage, sweep


@pytest.fixture(scope="module")
def compressor(tmp_path_factory, dw_model, dw_task):
    from harness.compress.pipeline import Compressor
    from harness.models.convert import Converter, ModelSource

    d = tmp_path_factory.mktemp("pp")
    dw_model.save(d / "dw.keras")
    np.savez(d / "dw.train.npz", x=dw_task[0], y=dw_task[1])
    conv = Converter(d / "cache" / "convert")
    return Compressor(ModelSource.open(d / "dw.keras"), conv, None, None, str(d / "dw.train.npz"), log=lambda m: None)


def recipe(tmp_path, body: str, name: str = "pp"):
    from harness.compress import recipes

    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\ntrain: {{epochs: 1}}\nsteps:\n{body}")
    return recipes.load(p)


def test_lineage_ids_differ_per_profile(compressor, tmp_path):
    from harness.compress.profile_prune import OpProfiler

    def fails(path):
        raise AssertionError("chain_ids measures nothing")

    board = recipe(tmp_path, "  - profile_prune: {latency_reduction: 0.3}\n", "board")
    a, b = OpProfiler("board-a", {"device_profile": "a"}, fails), OpProfiler("board-b", {"device_profile": "b"}, fails)
    ids = {p.name: compressor.chain_ids(board, p) for p in (a, b)}
    assert ids["board-a"] != ids["board-b"]
    assert ids["board-a"] == compressor.chain_ids(board, OpProfiler("renamed", {"device_profile": "a"}, fails))
    cost = [
        recipe(tmp_path, f"  - profile_prune: {{latency_reduction: 0.3, cost_model: {spec}}}\n", f"c{i}")
        for i, spec in enumerate(({}, {"op_weights": {"DEPTHWISE_CONV_2D": 10}}))
    ]
    assert compressor.chain_ids(cost[0]) != compressor.chain_ids(cost[1])
    assert compressor.chain_ids(cost[0], a) == compressor.chain_ids(cost[0], b)  # a cost model is no device's


def test_recipe_runs_through_the_pipeline_and_device_recipes_ask_the_device(compressor, tmp_path):
    from harness.compress.pipeline import NOT_APPLICABLE, Refused
    from harness.compress.profilers import device_profiler
    from harness.lab.config import load_inventory

    r = recipe(
        tmp_path, "  - profile_prune: {latency_reduction: 0.2, cost_model: {op_weights: {DEPTHWISE_CONV_2D: 10}}}\n"
    )
    cand = compressor.run(r)
    assert cand.name == "dw+pp" and cand.target is None
    node = cand.nodes[0]
    red = node.metrics["reduction"]
    assert red["target"] == "latency" and red["achieved"] >= 0.2 and red["iterations"][0]["group"] == ["stem"]
    assert red["variant"] == "fp32" and node.params["profiler"] == {"cost_model": node.params["cost_model"]}
    assert compressor.run(r).nodes[0].cache_hit  # the same profile source: the node is reused

    # a device-targeted recipe asks the device: one iteration on the local device's real LiteRT profiler
    # (what the loop decides from measured times depends on the host; what it records does not)
    board = recipe(tmp_path, "  - profile_prune: {latency_reduction: 0.3, max_iterations: 1}\n", "board")
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("devices:\n  - {id: local, profile: localhost, transport: {type: local}}\n")
    inv = load_inventory(inv_file)
    (got,) = [compressor.try_run(board, device_profiler(d, inv)) for d in inv.devices]
    assert got.name == "dw+board@localhost" and got.target == "localhost", got
    node = got.nodes[0]
    assert node.params["profiler"] == {"device_profile": "localhost", "runtime": "litert", "num_threads": 1}
    first = node.metrics["reduction"]["iterations"][0]
    assert first["group"] and all(isinstance(g, str) for g in first["group"])
    alone = compressor.try_run(board)
    assert isinstance(alone, Refused) and alone.status == NOT_APPLICABLE and "cost_model" in alone.reason


def test_device_specific_candidates_are_measured_on_their_board_type_only(tmp_path):
    from harness.compress.pipeline import Candidate
    from harness.compress.sweep import target_skips
    from harness.lab.config import load_inventory

    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text(
        "devices:\n  - {id: local, profile: localhost, transport: {type: local}}\n"
        "  - {id: pi, profile: raspberry-pi-4, transport: {type: ssh, host: pi.lan}}\n"
    )
    inv = load_inventory(inv_file)
    cands = [
        Candidate(f"m+r@{t}" if t else "m", "", None, [], Path("m"), "fp32", Path("m"), "", target=t)
        for t in (None, "localhost", "raspberry-pi-4")
    ]
    skips = target_skips(cands, inv.devices, inv)
    assert set(skips) == {("pi", "m+r@localhost"), ("local", "m+r@raspberry-pi-4")}


def test_bad_input_is_one_line_naming_the_field(compressor, tmp_path):
    from harness.errors import ConfigError

    steps = "  - profile_prune: {latency_reduction: 0.3, cost_model: {}}\n  - quantize: {variant: int8}\n"
    int8 = recipe(tmp_path, steps)
    with pytest.raises(ConfigError, match=r"steps\[0\]\.profile_prune: profiles the int8 conversion.*calibration"):
        compressor.preflight(int8)  # before anything trains

    with pytest.raises(ConfigError, match=r"steps\[0\]\.profile_prune\.cost_model\.op_weights"):
        recipe(tmp_path, "  - profile_prune: {latency_reduction: 0.3, cost_model: {op_weights: {depthwise: 10}}}\n")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.profile_prune\.latency_reduction"):
        recipe(tmp_path, "  - profile_prune: {latency_reduction: 1.5}\n")


def test_a_profile_of_delegate_nodes_is_refused_not_guessed(dw_model):
    """XNNPACK in LiteRT's profile is one delegate node for many model ops: no op names a layer."""
    from harness.compress.profile_prune import OpProfiler, measure
    from harness.errors import NotApplicable

    cost = profiler(MACS)

    def delegated(path):
        p = cost.fn(path)
        for op in p.ops[:-1]:  # all but the softmax run inside the delegate
            op.delegated = True
        return p

    with pytest.raises(NotApplicable, match=r"test: xnnpack-board: 100% of the profiled time .* delegate node"):
        measure(dw_model, OpProfiler("xnnpack-board", {}, delegated), convert, "test")
