"""`hil analyze` on damaged files: truncations and byte flips of real models (converted by TensorFlow)
end in a table or one `hil: error:` line naming the file, never a traceback, a hang or a number the
file cannot back (a mutant once printed a 1,000-digit parameter count).

Everything runs in-process through the real CLI entry point; a per-mutant alarm turns a hang into a
test failure that names the mutant (it never fires on a healthy run: each mutant takes milliseconds).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

from harness.cli import main  # noqa: E402
from harness.errors import ConfigError, ModelError  # noqa: E402
from harness.models.inspect.analysis import MAX_TENSOR_BYTES, analyze  # noqa: E402
from harness.models.inspect.tflite_schema import _Reader  # noqa: E402

HANG_GUARD_S = 20


def _model() -> tf.keras.Model:
    keras = tf.keras
    inp = keras.Input((12, 12, 2), batch_size=1)
    x = keras.layers.Conv2D(6, 3, activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)
    m = keras.Model(inp, x)
    rng = np.random.default_rng(7)
    m.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in m.get_weights()])
    return m


@pytest.fixture(scope="module")
def real_models(tmp_path_factory) -> dict[str, bytes]:
    """fp32 and int8 (per-channel quantisation) of one small CNN, by the real TFLite converter."""
    m = _model()
    out = {"fp32": tf.lite.TFLiteConverter.from_keras_model(m).convert()}
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 12, 12, 2)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    out["int8"] = conv.convert()
    return out


def _shape_spans(data: bytes) -> list[tuple[int, int]]:
    """(byte position, dims) of every tensor's shape vector in the file."""
    r = _Reader(data)
    root = r.table(r.deref(0, "root"), "Model")
    spans = []
    for sg in root.tables(2, "SubGraph"):
        for t in sg.tables(0, "Tensor"):
            start, n = t.vector_span(0, 4)
            if n:
                spans.append((start, n))
    return spans


def _mutants(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = [(f"truncated to {n} bytes", data[:n]) for n in range(0, len(data), max(1, len(data) // 60))]
    for i in range(150):  # anywhere in the file
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(b))
            b[pos] = rng.randrange(256) if rng.random() < 0.5 else b[pos] ^ (1 << rng.randrange(8))
        out.append((f"seed {seed} flip #{i}", bytes(b)))
    spans = _shape_spans(data)
    for i in range(100):  # in the tensors' shape vectors: huge, negative and zero dimensions
        b = bytearray(data)
        start, n = spans[rng.randrange(len(spans))]
        pos = start + 4 * rng.randrange(n) + rng.randrange(4)
        b[pos] = rng.choice([0x00, 0x40, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        out.append((f"seed {seed} shape flip #{i}", bytes(b)))
    return out


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _plausible(doc: dict, size: int) -> None:
    """What a successful analysis prints is backed by the file."""
    for t in doc["tensors"]:
        elements = 1
        for d in t["shape"]:
            assert d >= -1
            elements *= max(d, 1)
        assert elements <= MAX_TENSOR_BYTES
        if t["is_constant"] and t["dtype"] in ("float32", "int8", "int32"):
            bits = {"float32": 32, "int8": 8, "int32": 32}[t["dtype"]]
            assert elements * bits <= 8 * t["buffer_bytes"], t
    assert len(str(doc["param_count"])) <= 12 and doc["param_count"] <= 4 * size * len(doc["tensors"])
    assert len(str(doc["total_macs"])) <= 40


def test_truncations_and_byte_flips_never_traceback_or_hang(real_models, tmp_path, capsys):
    old = signal.signal(signal.SIGALRM, _on_alarm)
    outcomes = {"ok": 0, "refused": 0}
    try:
        for kind, data in sorted(real_models.items()):
            for seed_offset, (what, blob) in enumerate(_mutants(data, seed=len(kind))):
                path = tmp_path / f"{kind}.tflite"
                path.write_bytes(blob)
                fmt = ["--json"] if seed_offset % 2 else []
                signal.setitimer(signal.ITIMER_REAL, HANG_GUARD_S)
                try:
                    code = main(["analyze", *fmt, str(path)])
                except _Hang:
                    pytest.fail(f"{kind} {what}: hil analyze still running after {HANG_GUARD_S} s")
                except BaseException as exc:  # a traceback: what the user must never see
                    pytest.fail(f"{kind} {what}: {type(exc).__name__}: {exc}")
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                out, err = capsys.readouterr()
                if code == 0:
                    outcomes["ok"] += 1
                    if fmt:
                        _plausible(json.loads(out), len(blob))
                    else:
                        assert "Total MACs" in out
                else:
                    outcomes["refused"] += 1
                    assert code == 3, (kind, what, err)
                    lines = err.strip().splitlines()
                    assert len(lines) == 1 and lines[0].startswith(f"hil: error: {path}: "), (kind, what, err)
    finally:
        signal.signal(signal.SIGALRM, old)
    total = sum(outcomes.values())
    assert total > 600
    # both outcomes occur: the mutations reach the parser and the checks, not only the identifier
    assert outcomes["refused"] > total // 4 and outcomes["ok"] > total // 20, outcomes


def _rewrite(data: bytes, edit) -> bytes:
    """Re-serialise a model after editing it with TF's generated object API (a consistent file whose
    content is wrong, which random flips rarely produce)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as sfb

    m = sfb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _constant(m):
    """Index and tensor of the first weight tensor with data."""
    sg = m.subgraphs[0]
    return next(
        (i, t)
        for i, t in enumerate(sg.tensors)
        if m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data) > 16
    )


@pytest.mark.parametrize(
    "case", ["inflated_constant", "huge_activation", "negative_dim", "rank", "signature_rank", "quant_dim"]
)
def test_shapes_the_file_cannot_back_are_refused(real_models, tmp_path, case):
    def edit(m):
        sg = m.subgraphs[0]
        i, t = _constant(m)
        if case == "inflated_constant":
            t.shape = [int(d) * 1000 for d in t.shape]
        elif case == "huge_activation":
            act = sg.tensors[sg.inputs[0]]
            act.shape = [1, 2**31 - 1, 2**31 - 1, 2]
        elif case == "negative_dim":
            t.shape = [-5, *list(t.shape)[1:]]
        elif case == "rank":
            act = sg.tensors[sg.inputs[0]]
            act.shape = [1] * 40
        elif case == "signature_rank":
            act = sg.tensors[sg.inputs[0]]
            act.shapeSignature = [-1, 12]
        else:
            q = next(
                t
                for t in sg.tensors
                if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1
            )
            q.quantization.quantizedDimension = 9

    data = real_models["int8" if case == "quant_dim" else "fp32"]
    p = tmp_path / f"{case}.tflite"
    p.write_bytes(_rewrite(data, edit))
    with pytest.raises(ModelError) as ei:
        analyze(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: subgraph 0 tensor "), msg
    expect = {
        "inflated_constant": "bytes of data, but its buffer",
        "huge_activation": "larger than any device",
        "negative_dim": "negative dimension",
        "rank": "40 dimensions",
        "signature_rank": "another rank",
        "quant_dim": "per channel along dimension 9",
    }[case]
    assert expect in msg, msg


def test_untouched_models_pass_the_checks(real_models, tmp_path):
    for kind, data in real_models.items():
        p = tmp_path / f"{kind}.tflite"
        p.write_bytes(data)
        a = analyze(p)
        assert a.param_count > 0 and a.total_macs > 0 and a.dtype == {"fp32": "float32", "int8": "int8"}[kind]


def test_analyze_of_a_keras_model_or_savedmodel_says_to_convert_first(tmp_path, capsys):
    keras_file = tmp_path / "net.keras"
    _model().save(keras_file)
    assert main(["analyze", str(keras_file)]) == 3
    err = capsys.readouterr().err.strip()
    assert err == (
        f"hil: error: {keras_file}: a Keras model (zip archive), not a TFLite flatbuffer; hil analyze "
        f"reads .tflite files: convert it first (`hil convert {keras_file}` prints the path of the "
        ".tflite to analyze)"
    )
    renamed = tmp_path / "oops.tflite"  # a Keras archive under the wrong suffix: recognised by its bytes
    renamed.write_bytes(keras_file.read_bytes())
    with pytest.raises(ModelError, match="a Keras model .* convert it first"):
        analyze(renamed)
    sm = tmp_path / "sm"
    _model().export(str(sm))
    with pytest.raises(ModelError, match=f"^{re.escape(str(sm))}: a TensorFlow SavedModel directory; .*convert"):
        analyze(sm)
    with pytest.raises(ConfigError, match="not a regular file"):
        analyze(tmp_path)  # any other directory


def test_shape_spans_helper_finds_real_shapes(real_models):
    """The targeted mutants above really hit shape vectors (else they would test nothing)."""
    data = real_models["fp32"]
    dims = [struct.unpack_from(f"<{n}i", data, start) for start, n in _shape_spans(data)]
    assert (1, 12, 12, 2) in dims and (1, 5) in dims


def test_fuzz_inputs_are_deterministic(real_models):
    a = _mutants(real_models["fp32"], seed=4)
    b = _mutants(real_models["fp32"], seed=4)
    assert [m for _, m in a] == [m for _, m in b] and len(a) > 300
