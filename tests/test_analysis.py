"""Tests for harness.models.inspect.analysis: our flatbuffer reader checked against TensorFlow's own view.

Real models are built and converted with TensorFlow once per session; the analysis (which must not
need TensorFlow) is then compared op by op and tensor by tensor with tf.lite.Interpreter.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

tf = pytest.importorskip("tensorflow")

from harness.errors import ConfigError, ModelError
from harness.models.inspect.analysis import TFLM_ADD_METHOD, analyze, format_table, to_dict
from harness.models.inspect.tflite_schema import BUILTIN_OPERATOR_CODES, BUILTIN_OPERATORS, TENSOR_TYPES

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
]

REPO = Path(__file__).resolve().parents[1]
keras = tf.keras


# ---------------------------------------------------------------------------------------------
# Model fixtures


def _randomize(model: keras.Model, seed: int) -> None:
    # Random non-zero weights everywhere: the converter drops all-zero biases and de-duplicates
    # identical constants, which would make parameter counts differ from Keras for a fresh model.
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])


def _cnn() -> keras.Model:
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="relu6")(x)
    y = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Conv2D(8, 1, groups=2)(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="softmax")(x)
    m = keras.Model(inp, x)
    _randomize(m, 1)
    return m


def _mlp() -> keras.Model:
    # Every weight matrix > 1024 elements, so dynamic-range quantisation quantises all of them.
    inp = keras.Input((64,), batch_size=1)
    x = keras.layers.Dense(48, activation="relu")(inp)
    x = keras.layers.Dense(32)(x)
    m = keras.Model(inp, x)
    _randomize(m, 2)
    return m


def _tconv() -> keras.Model:
    inp = keras.Input((8, 8, 6), batch_size=1)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(inp)
    m = keras.Model(inp, x)
    _randomize(m, 3)
    return m


def _convert(model, kind: str, input_shape) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(16):
            yield [rng.uniform(0, 1, input_shape).astype(np.float32)]

    if kind == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif kind == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind == "int16x8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif kind == "external":
        # Constant data appended after the flatbuffer (the > 2 GB model layout).
        conv._experimental_use_buffer_offset = True
    else:
        assert kind == "fp32"
    return conv.convert()


def _matmul_model() -> bytes:
    @tf.function(
        input_signature=[
            tf.TensorSpec([2, 8, 16], tf.float32),
            tf.TensorSpec([2, 16, 4], tf.float32),
            tf.TensorSpec([2, 5, 16], tf.float32),
        ]
    )
    def f(a, b, c):
        return tf.matmul(a, b), tf.matmul(c, a, transpose_b=True)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


def _rewrite(data: bytes, edit) -> bytes:
    """Re-serialise a model after editing it with TF's generated object API (tests only)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as sfb

    m = sfb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out: dict[str, tuple[Path, object]] = {}

    def save(name, data, keras_model=None):
        p = d / f"{name}.tflite"
        p.write_bytes(data)
        out[name] = (p, keras_model)

    cnn, mlp, tconv = _cnn(), _mlp(), _tconv()
    for kind in ("fp32", "int8", "fp16", "int16x8", "external"):
        save(f"cnn_{kind}", _convert(cnn, kind, (1, 16, 16, 3)), cnn)
    save("mlp_dynamic", _convert(mlp, "dynamic", (1, 64)), mlp)
    save("mlp_fp32", _convert(mlp, "fp32", (1, 64)), mlp)
    save("tconv_fp32", _convert(tconv, "fp32", (1, 8, 8, 6)), tconv)
    save("matmul_fp32", _matmul_model())
    return out


# ---------------------------------------------------------------------------------------------
# Reference values from TensorFlow


def _interpreter(path: Path):
    it = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    return it


def _hand_macs(model) -> int:
    """MACs from the Keras layer configs (batch 1), independent of any TFLite file."""
    total = 0
    for layer in model.layers:
        cfg = layer.get_config()
        out = [int(d) for d in layer.output.shape[1:]]
        inp = [int(d) for d in layer.input.shape[1:]] if not isinstance(layer.input, list) else None
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw = cfg["kernel_size"]
            total += int(np.prod(out)) * kh * kw * inp[-1] // cfg["groups"]
        elif kind == "DepthwiseConv2D":
            kh, kw = cfg["kernel_size"]
            total += int(np.prod(out)) * kh * kw
        elif kind == "Dense":
            total += cfg["units"] * inp[-1]
        elif kind == "Conv2DTranspose":
            kh, kw = cfg["kernel_size"]
            total += int(np.prod(inp)) * kh * kw * cfg["filters"]
    return total


def _np_dtype_name(dt) -> str:
    return np.dtype(dt).name


ALL = [
    "cnn_fp32",
    "cnn_int8",
    "cnn_fp16",
    "cnn_int16x8",
    "cnn_external",
    "mlp_dynamic",
    "mlp_fp32",
    "tconv_fp32",
    "matmul_fp32",
]


# ---------------------------------------------------------------------------------------------
# Schema tables


def test_builtin_operator_table_matches_tf_schema():
    from tensorflow.lite.python import schema_py_generated as sfb

    tf_ops = {k: v for k, v in vars(sfb.BuiltinOperator).items() if not k.startswith("_")}
    for code, name in BUILTIN_OPERATORS.items():
        assert tf_ops.get(name) == code, f"{name}: ours {code}, TF {tf_ops.get(name)}"
    # no gaps: every TF code up to our highest one is named
    missing = {n: c for n, c in tf_ops.items() if c <= max(BUILTIN_OPERATORS) and n not in BUILTIN_OPERATOR_CODES}
    assert not missing
    assert len(BUILTIN_OPERATORS) >= 150


def test_tensor_type_table_matches_tf_schema():
    from tensorflow.lite.python import schema_py_generated as sfb

    tf_types = {v: k for k, v in vars(sfb.TensorType).items() if not k.startswith("_")}
    for code, (name, _bits) in TENSOR_TYPES.items():
        if code in tf_types:
            assert tf_types[code].lower() == name
    assert set(tf_types) <= set(TENSOR_TYPES)


def test_tflm_method_table():
    assert set(TFLM_ADD_METHOD) <= set(BUILTIN_OPERATOR_CODES)
    expected = {
        "CONV_2D": "AddConv2D",
        "FULLY_CONNECTED": "AddFullyConnected",
        "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
        "SOFTMAX": "AddSoftmax",
        "RESHAPE": "AddReshape",
        "QUANTIZE": "AddQuantize",
        "DEQUANTIZE": "AddDequantize",
        "MAX_POOL_2D": "AddMaxPool2D",
        "AVERAGE_POOL_2D": "AddAveragePool2D",
        "MEAN": "AddMean",
        "ADD": "AddAdd",
        "MUL": "AddMul",
        "BATCH_MATMUL": "AddBatchMatMul",
        "PADV2": "AddPadV2",
        "CUMSUM": "AddCumSum",
        "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    }
    for op, method in expected.items():
        assert TFLM_ADD_METHOD[op] == method
    assert all(m.startswith("Add") for m in TFLM_ADD_METHOD.values())


# ---------------------------------------------------------------------------------------------
# Against tf.lite.Interpreter


@pytest.mark.parametrize("name", ALL)
def test_ops_match_interpreter(models, name):
    path, _ = models[name]
    a = analyze(path)
    ref = _interpreter(path)._get_ops_details()
    main = [op for op in a.operators if op.subgraph == 0]
    assert [op.name for op in main] == [o["op_name"] for o in ref]
    assert [op.index for op in main] == [o["index"] for o in ref]
    assert [op.inputs for op in main] == [list(map(int, o["inputs"])) for o in ref]
    assert [op.outputs for op in main] == [list(map(int, o["outputs"])) for o in ref]
    counts: dict[str, int] = {}
    for o in ref:
        counts[o["op_name"]] = counts.get(o["op_name"], 0) + 1
    assert a.op_counts == counts
    assert a.micro_resolver_ops() == sorted(counts)


@pytest.mark.parametrize("name", ALL)
def test_tensors_match_interpreter(models, name):
    path, _ = models[name]
    a = analyze(path)
    ref = _interpreter(path).get_tensor_details()
    main = [t for t in a.tensors if t.subgraph == 0]
    # The runtime may append temporaries (e.g. im2col buffers) after the model's own tensors.
    assert len(ref) >= len(main)
    for t, r in zip(main, ref):
        assert t.index == r["index"]
        assert t.name == r["name"]
        assert t.shape == list(map(int, r["shape"])), t.name
        sig = t.shape_signature if t.shape_signature is not None else t.shape
        assert sig == list(map(int, r["shape_signature"])), t.name
        assert t.dtype == _np_dtype_name(r["dtype"]), t.name
        qp = r["quantization_parameters"]
        if t.quantization is None or not t.quantization.scale:
            assert len(qp["scales"]) == 0, t.name
        else:
            np.testing.assert_array_equal(np.float32(t.quantization.scale), qp["scales"])
            # The runtime may keep a single zero point for a per-channel tensor (all are 0);
            # test_quantization_matches_flatbuffer checks the file's own list.
            zps = np.asarray(qp["zero_points"])
            np.testing.assert_array_equal(
                t.quantization.zero_point,
                np.broadcast_to(zps, (len(t.quantization.zero_point),)) if zps.size == 1 else zps,
            )
            assert t.quantization.quantized_dimension == qp["quantized_dimension"]
            if len(t.quantization.scale) == 1:
                assert r["quantization"] == pytest.approx((t.quantization.scale[0], t.quantization.zero_point[0]))


@pytest.mark.parametrize("name", ALL)
def test_io_match_interpreter(models, name):
    path, _ = models[name]
    a = analyze(path)
    it = _interpreter(path)
    for ours, refs in ((a.inputs, it.get_input_details()), (a.outputs, it.get_output_details())):
        assert len(ours) == len(refs)
        for t, r in zip(ours, refs):
            assert (t.index, t.name) == (r["index"], r["name"])
            assert t.shape == list(map(int, r["shape"]))
            assert t.dtype == _np_dtype_name(r["dtype"])
            scale, zp = r["quantization"]
            if scale == 0.0:
                assert t.scale is None and t.zero_point is None
            else:
                assert t.scale == pytest.approx(scale) and t.zero_point == zp


@pytest.mark.parametrize("name", ALL)
def test_tensors_match_flatbuffer_object_api(models, name):
    """Ground truth for what the file itself says: TF's generated flatbuffer reader."""
    from tensorflow.lite.python import schema_py_generated as sfb

    path, _ = models[name]
    a = analyze(path)
    m = sfb.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    assert a.subgraphs == len(m.subgraphs)
    flat = [(si, ti, t) for si, sg in enumerate(m.subgraphs) for ti, t in enumerate(sg.tensors)]
    assert len(flat) == len(a.tensors)
    for (si, ti, t), ours in zip(flat, a.tensors):
        assert (ours.subgraph, ours.index, ours.name) == (si, ti, t.name.decode())
        assert ours.shape == list(t.shape if t.shape is not None else [])
        assert ours.buffer == t.buffer
        buf = m.buffers[t.buffer]
        data_len = len(buf.data) if buf.data is not None else 0
        assert ours.buffer_bytes == (data_len or (buf.size if buf.offset > 1 else 0))
        q = t.quantization
        if q is None or q.scale is None:
            assert ours.quantization is None or not ours.quantization.scale
        else:
            assert ours.quantization.scale == [float(np.float32(x)) for x in q.scale]
            assert ours.quantization.zero_point == [int(x) for x in q.zeroPoint]
            assert ours.quantization.quantized_dimension == q.quantizedDimension
    ops = [(si, op) for si, sg in enumerate(m.subgraphs) for op in sg.operators]
    for (si, op), ours in zip(ops, a.operators):
        oc = m.operatorCodes[op.opcodeIndex]
        assert ours.builtin_code == max(oc.builtinCode, oc.deprecatedBuiltinCode)
        assert ours.inputs == list(op.inputs) and ours.outputs == list(op.outputs)


def test_int8_io_quantized(models):
    a = analyze(models["cnn_int8"][0])
    for t in a.inputs + a.outputs:
        assert t.dtype == "int8" and t.scale > 0 and -128 <= t.zero_point <= 127


# ---------------------------------------------------------------------------------------------
# MACs, params, dtype


@pytest.mark.parametrize(
    "name", ["cnn_fp32", "cnn_int8", "cnn_fp16", "cnn_int16x8", "cnn_external", "mlp_dynamic", "mlp_fp32", "tconv_fp32"]
)
def test_macs_match_keras(models, name):
    path, km = models[name]
    a = analyze(path)
    assert a.total_macs == _hand_macs(km) > 0
    assert a.total_macs == sum(op.macs for op in a.operators)


def test_macs_per_op_cnn(models):
    a = analyze(models["cnn_fp32"][0])
    macs = {(op.index, op.name): op.macs for op in a.operators}
    by_name: dict[str, list[int]] = {}
    for (_, n), m in macs.items():
        by_name.setdefault(n, []).append(m)
    # 16x16x3 -s2-> 8x8x8 (3x3): 8*8*8*27; DW 3x3 x2 valid -> 6x6x16: 6*6*16*9;
    # 1x1 conv 16->16: 6*6*16*16; grouped 1x1 16->8 (2 groups): 6*6*8*8; dense 72->10
    assert sorted(by_name["CONV_2D"]) == sorted([8 * 8 * 8 * 27, 6 * 6 * 16 * 16, 6 * 6 * 8 * 8])
    assert by_name["DEPTHWISE_CONV_2D"] == [6 * 6 * 16 * 9]
    assert by_name["FULLY_CONNECTED"] == [72 * 10]
    assert all(m == 0 for n, ms in by_name.items() if n in ("ADD", "RESHAPE", "SOFTMAX") for m in ms)
    assert a.total_elementwise == 6 * 6 * 16  # the ADD


def test_macs_batch_matmul(models):
    a = analyze(models["matmul_fp32"][0])
    bmm = [op for op in a.operators if op.name == "BATCH_MATMUL"]
    assert len(bmm) == 2
    # [2,8,16] x [2,16,4] and [2,5,16] x [2,8,16]^T: K = 16 in both
    assert a.total_macs == 2 * 8 * 4 * 16 + 2 * 5 * 8 * 16


def test_macs_transpose_conv(models):
    a = analyze(models["tconv_fp32"][0])
    (op,) = [op for op in a.operators if op.name == "TRANSPOSE_CONV"]
    assert op.macs == 8 * 8 * 6 * 3 * 3 * 4


@pytest.mark.parametrize(
    "name", ["cnn_fp32", "cnn_int8", "cnn_fp16", "cnn_int16x8", "cnn_external", "mlp_fp32", "mlp_dynamic", "tconv_fp32"]
)
def test_param_count_matches_keras(models, name):
    path, km = models[name]
    assert analyze(path).param_count == km.count_params()


@pytest.mark.parametrize(
    "name,expected",
    [
        ("cnn_fp32", "float32"),
        ("cnn_int8", "int8"),
        ("cnn_fp16", "float16 weights"),
        ("cnn_int16x8", "int16x8"),
        ("cnn_external", "float32"),
        ("mlp_dynamic", "dynamic-range int8"),
        ("matmul_fp32", "float32"),
    ],
)
def test_dtype_summary(models, name, expected):
    assert analyze(models[name][0]).dtype == expected


def test_basic_fields(models):
    import hashlib

    path, _ = models["cnn_int8"]
    a = analyze(path)
    data = path.read_bytes()
    assert a.path == str(path)
    assert a.size_bytes == len(data)
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert a.subgraphs == 1 and a.schema_version == 3
    assert a.param_bytes <= a.constant_bytes < a.size_bytes
    assert a.micro_resolver_methods() == [TFLM_ADD_METHOD[n] for n in a.micro_resolver_ops()]
    assert a.micro_unsupported_ops() == []
    assert a.tensor(a.inputs[0].index).name == a.inputs[0].name


def test_external_buffers(models):
    ext = analyze(models["cnn_external"][0])
    ref = analyze(models["cnn_fp32"][0])
    assert ext.external_buffers > 0 and ref.external_buffers == 0
    assert any(t.external for t in ext.tensors)
    assert ext.param_count == ref.param_count and ext.param_bytes == ref.param_bytes
    assert ext.constant_bytes == ref.constant_bytes
    assert [t.buffer_bytes for t in ext.tensors] == [t.buffer_bytes for t in ref.tensors]


# ---------------------------------------------------------------------------------------------
# Operator codes: deprecated field, codes > 127, custom ops


def test_deprecated_builtin_code_only(models, tmp_path):
    """Old writers fill only deprecated_builtin_code; the op must still be named."""
    path, _ = models["cnn_fp32"]

    def edit(m):
        for oc in m.operatorCodes:
            assert oc.builtinCode < 127
            oc.deprecatedBuiltinCode, oc.builtinCode = oc.builtinCode, 0

    p = tmp_path / "old.tflite"
    p.write_bytes(_rewrite(path.read_bytes(), edit))
    assert [op.name for op in analyze(p).operators] == [op.name for op in analyze(path).operators]


def test_large_builtin_code_and_custom_op(models, tmp_path):
    path, _ = models["cnn_fp32"]
    from tensorflow.lite.python import schema_py_generated as sfb

    def edit(m):
        for oc in m.operatorCodes:
            if oc.builtinCode == sfb.BuiltinOperator.SOFTMAX:
                oc.builtinCode = sfb.BuiltinOperator.GELU  # 150 > 127
                oc.deprecatedBuiltinCode = sfb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
            elif oc.builtinCode == sfb.BuiltinOperator.RESHAPE:
                oc.builtinCode = oc.deprecatedBuiltinCode = sfb.BuiltinOperator.CUSTOM
                oc.customCode = b"MyReshape"

    p = tmp_path / "custom.tflite"
    p.write_bytes(_rewrite(path.read_bytes(), edit))
    a = analyze(p)
    names = [op.name for op in a.operators]
    assert "GELU" in names and "SOFTMAX" not in names
    assert "MyReshape" in names and "RESHAPE" not in names
    (custom,) = [op for op in a.operators if op.is_custom]
    assert custom.builtin_code == 32 and custom.custom_code == "MyReshape"
    assert a.custom_ops == ["MyReshape"]
    assert "MyReshape" not in a.micro_resolver_ops()
    assert "GELU" in a.micro_resolver_ops()
    assert set(a.micro_unsupported_ops()) == {"GELU", "MyReshape"}
    assert "MyReshape" in format_table(a)


# ---------------------------------------------------------------------------------------------
# Broken files


def _expect_model_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as ei:
        analyze(path)
    msg = str(ei.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    _expect_model_error(p, "empty")


def test_not_a_flatbuffer(tmp_path):
    p = tmp_path / "model.tflite"
    p.write_text("this is a text file, not a model\n")
    _expect_model_error(p, "not a TFLite flatbuffer", "identifier ' is '", "expected 'TFL3'")


def test_wrong_identifier(models, tmp_path):
    data = bytearray(models["cnn_fp32"][0].read_bytes())
    data[4:8] = b"XXXX"
    p = tmp_path / "wrongid.tflite"
    p.write_bytes(bytes(data))
    _expect_model_error(p, "file identifier 'XXXX', expected 'TFL3'")


def test_tiny_file(tmp_path):
    p = tmp_path / "tiny.tflite"
    p.write_bytes(b"\x10\0\0\0TF")
    _expect_model_error(p, "too small")


def test_unsupported_schema_version(models, tmp_path):
    def edit(m):
        m.version = 2

    p = tmp_path / "v2.tflite"
    p.write_bytes(_rewrite(models["cnn_fp32"][0].read_bytes(), edit))
    _expect_model_error(p, "unsupported TFLite schema version 2 (expected 3)")


def test_truncated(models, tmp_path):
    data = models["cnn_fp32"][0].read_bytes()
    p = tmp_path / "trunc.tflite"
    for n in (8, 12, 64, len(data) // 4, len(data) // 2, len(data) - 200):
        p.write_bytes(data[:n])
        _expect_model_error(p, "corrupt or truncated TFLite flatbuffer")


def test_truncated_external_data(models, tmp_path):
    data = models["cnn_external"][0].read_bytes()
    p = tmp_path / "trunc_ext.tflite"
    p.write_bytes(data[:-200])
    _expect_model_error(p, "past the end")


def test_every_prefix_and_random_corruption_is_clean(models, tmp_path):
    """Any damage gives either a result or a ModelError, never another exception or a hang."""
    data = models["cnn_int8"][0].read_bytes()
    p = tmp_path / "fuzz.tflite"
    rng = random.Random(1234)
    cases = [data[:n] for n in range(0, len(data), 13)]
    for _ in range(400):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    for _ in range(50):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        cases.append(b"\x18\0\0\0TFL3" + junk)
    errors = 0
    for c in cases:
        p.write_bytes(c)
        try:
            analyze(p)
        except ModelError as e:
            assert str(p) in str(e)
            errors += 1
    assert errors > len(cases) // 4


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        analyze(tmp_path / "nope.tflite")
    with pytest.raises(ConfigError):
        analyze(tmp_path)


# ---------------------------------------------------------------------------------------------
# Rendering and independence from TensorFlow


def test_to_dict_is_json(models):
    a = analyze(models["cnn_int8"][0])
    d = json.loads(json.dumps(to_dict(a)))
    assert d["total_macs"] == a.total_macs
    assert d["dtype"] == "int8"
    assert d["inputs"][0]["scale"] == pytest.approx(a.inputs[0].scale)
    assert d["micro_resolver_methods"] == a.micro_resolver_methods()
    assert len(d["operators"]) == len(a.operators)


def test_format_table(models):
    a = analyze(models["cnn_int8"][0])
    text = format_table(a)
    for s in (
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        f"{a.total_macs:,}",
        "[1,16,16,3]int8",
        "scale=",
        "zero_point=",
        "AddConv2D()",
        "Inputs:",
        "Outputs:",
    ):
        assert s in text, s


def test_analysis_does_not_import_tensorflow(models):
    path = models["cnn_int8"][0]
    code = (
        "import sys; from harness.models.inspect.analysis import analyze, format_table; "
        f"a = analyze({str(path)!r}); format_table(a); "
        "bad = [m for m in ('tensorflow', 'numpy', 'tflite_runtime', 'ai_edge_litert') "
        "if m in sys.modules]; "
        "assert not bad, bad; print(a.total_macs)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) == analyze(path).total_macs
