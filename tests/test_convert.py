"""Real TensorFlow conversions: every variant, calibration rules, and the content-hash cache."""

import numpy as np
import pytest

from harness.errors import ConfigError, ModelError
from harness.models.convert import VARIANTS, Calibration, Converter, ModelSource


def interp(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


@pytest.fixture(scope="module")
def converted(tiny_model, tmp_path_factory):
    conv = Converter(tmp_path_factory.mktemp("cache"), log=lambda m: None)
    src = ModelSource.open(tiny_model["path"])
    calib = Calibration.from_arg(str(tiny_model["dir"] / "tiny.calibration.npz"))
    return conv, src, calib, {v: conv.convert(src, v, calib) for v in VARIANTS}


def test_every_variant_is_a_valid_tflite_with_expected_types(converted, tiny_model):
    conv, src, calib, out = converted
    io_types = {}
    for v, mv in out.items():
        it = interp(mv.artifact)
        io_types[v] = (it.get_input_details()[0]["dtype"], it.get_output_details()[0]["dtype"])
        tensors = {t["dtype"] for t in it.get_tensor_details()}
        if v == "int16x8":
            assert np.int16 in tensors
        if v == "fp16":
            assert np.float16 in tensors
    assert io_types["int8"] == (np.int8, np.int8)
    assert io_types["fp32"] == (np.float32, np.float32)
    assert out["int8"].size_bytes < out["fp32"].size_bytes
    assert out["int8"].calibration["source"].endswith("tiny.calibration.npz")
    # fp32 matches Keras numerically
    it = interp(out["fp32"].artifact)
    x = tiny_model["x"][:1]
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    np.testing.assert_allclose(
        it.get_tensor(it.get_output_details()[0]["index"]), tiny_model["model"].predict(x, verbose=0), atol=1e-5
    )


def test_second_conversion_is_a_cache_hit_without_tensorflow_work(converted):
    conv, src, calib, out = converted
    misses = conv.misses
    again = conv.convert(src, "int8", calib)
    assert again.cache_hit and conv.misses == misses
    assert again.artifact_sha256 == out["int8"].artifact_sha256
    assert again.convert_seconds < out["int8"].convert_seconds / 10


def test_cache_key_changes_with_calibration_and_model(converted, tiny_model, tmp_path):
    conv, src, calib, out = converted
    other = tmp_path / "c.npz"
    np.savez(other, x=tiny_model["x"][60:110])
    assert conv.cache_key(src, "int8", calib) != conv.cache_key(src, "int8", Calibration.from_arg(str(other)))
    # calibration data does not affect float variants
    assert conv.cache_key(src, "fp32", calib) == conv.cache_key(src, "fp32", Calibration.from_arg(str(other)))
    changed = tmp_path / "tiny.keras"
    changed.write_bytes(tiny_model["path"].read_bytes() + b"\0")
    assert ModelSource.open(changed).sha256 != src.sha256


def test_damaged_cache_entry_is_rebuilt(converted):
    conv, src, calib, out = converted
    mv = conv.convert(src, "dynamic", calib)
    mv.artifact.write_bytes(b"garbage")
    rebuilt = conv.convert(src, "dynamic", calib)
    assert not rebuilt.cache_hit and rebuilt.artifact.read_bytes()[4:8] == b"TFL3"


def test_rules_and_errors(converted, tmp_path):
    conv, src, calib, out = converted
    with pytest.raises(ConfigError, match="unknown variant 'int4'"):
        conv.variants_for(src, ["int4"])
    with pytest.raises(ConfigError, match="--calibration random"):
        conv.convert(src, "int8", None)
    with pytest.raises(ModelError, match="model file not found"):
        ModelSource.open(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.keras: not a Keras 3 model archive"):
        conv.convert(ModelSource.open(bad), "fp32")
    import zipfile

    with zipfile.ZipFile(tmp_path / "zip.keras", "w") as z:
        z.writestr("hello.txt", "not a model")
    with pytest.raises(ModelError, match="zip.keras: cannot load Keras model"):
        conv.convert(ModelSource.open(tmp_path / "zip.keras"), "fp32")
    tfl = tmp_path / "x.tflite"
    tfl.write_bytes(out["fp32"].artifact.read_bytes())
    assert conv.variants_for(ModelSource.open(tfl), None) == ["asis"]
    with pytest.raises(ConfigError, match="benchmarked as-is"):
        conv.variants_for(ModelSource.open(tfl), ["int8"])
    corrupt = tmp_path / "c.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="c.tflite: not a TFLite flatbuffer"):
        conv.convert(ModelSource.open(corrupt), "asis")


def test_random_calibration_must_be_explicit_and_works(converted):
    conv, src, _, _ = converted
    mv = conv.convert(src, "int8", Calibration.from_arg("random", samples=10))
    assert mv.calibration["source"] == "random"
    assert interp(mv.artifact).get_input_details()[0]["dtype"] == np.int8


def test_savedmodel_input(tiny_model, tmp_path):
    sm = tmp_path / "sm"
    tiny_model["model"].export(str(sm))
    conv = Converter(tmp_path / "cache", log=lambda m: None)
    src = ModelSource.open(sm)
    assert src.kind == "savedmodel"
    mv = conv.convert(src, "fp32")
    assert interp(mv.artifact).get_input_details()[0]["shape"].tolist() == [1, 8, 8, 1]
