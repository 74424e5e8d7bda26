"""MLPerf Tiny interoperability (issue 11, part 4): benchmark model IDs in generated firmware, the
benchmarks' input/output conventions (ic01/vww01: uint8 image bytes shifted by -128 on the device;
ad01: float32 windows answered by one reconstruction error; kws01: int8 as is) in the simulator, the
C firmware and the host, MLPerf Tiny datasets (y_labels.csv + .bin files as the mlcommons/tiny
runner lays them out) and the benchmark's scores (top-1, AUC).

Models are small generated ones (a dense autoencoder for anomaly detection, a conv classifier on
uint8 images); expected values come from the TFLite Micro interpreter run directly in the test and
from sklearn's roc_auc_score. With HILBENCH_MLPERF_TINY pointing at a checkout of mlcommons/tiny the
reference models themselves go through `hil build --model-id` and the simulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, hil
from sim_process import client_on as sim_process_client
from sim_process import simulator

from harness.errors import ConfigError
from harness.mcu.serial import session
from harness.mcu.serial.protocol import InputRefused, parse_results
from harness.models import mlperf

AD_N = 32  # elements of one anomaly-detection window (ad01 has 640: 5 frames x 128 mels)


# ---------------------------------------------------------------------------------- models and data


def _round_half_away(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))


def tflm_outputs(model: Path, tensor: np.ndarray) -> np.ndarray:
    """Output 0 of the TFLite Micro interpreter, run here (not through the simulator)."""
    from tflite_micro import runtime

    ip = runtime.Interpreter.from_file(str(model), arena_size=1 << 20)
    d = ip.get_input_details(0)
    ip.set_input(tensor.reshape(d["shape"]).astype(d["dtype"]), 0)
    ip.invoke()
    return np.asarray(ip.get_output(0)).reshape(-1)


def quant(model: Path, which: str) -> tuple[float, int]:
    from harness.models.inspect.analysis import analyze

    t = getattr(analyze(model), which)[0]
    return float(t.scale), int(t.zero_point)


def ad_score(model: Path, window: np.ndarray) -> float:
    """What an ad01 reference firmware prints for one float32 window: quantise as QuantizeFloatToInt8,
    run, dequantise, mean squared error accumulated in float32."""
    s_in, z_in = quant(model, "inputs")
    s_out, z_out = quant(model, "outputs")
    x = window.astype(np.float32)
    q = np.clip(_round_half_away((x / np.float32(s_in)).astype(np.float64)) + z_in, -128, 127).astype(np.int8)
    y = (tflm_outputs(model, q).astype(np.int32) - z_out).astype(np.float32) * np.float32(s_out)
    total = np.float32(0)
    for d in y - x:
        total = np.float32(total + np.float32(d * d))
    return float(f"{float(total / np.float32(len(x))):0.3f}")


def _normal(rng, n: int) -> np.ndarray:
    t = np.arange(n) / 8.0
    return (np.sin(t * rng.uniform(0.8, 1.2) + rng.uniform(0, 6.3)) * 0.8).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Two int8 models (TF conversion through hilbench's converter): an autoencoder AD_N -> 8 -> AD_N
    trained on sine windows, and a conv classifier on 4x4x3 images in [0, 1] (3 classes)."""
    import keras

    from harness.models.convert import Calibration, Converter, ModelSource

    d = tmp_path_factory.mktemp("mlperf-models")
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    xs = np.stack([_normal(rng, AD_N) for _ in range(600)])
    ae = keras.Sequential([keras.Input((AD_N,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(AD_N)])
    ae.compile("adam", "mse")
    ae.fit(xs, xs, epochs=40, batch_size=32, verbose=0)
    ae.save(d / "ae.keras")
    np.savez(d / "ae.calib.npz", x=xs[:64])
    img = rng.random((300, 4, 4, 3), dtype=np.float32)
    lab = np.argmax(img.reshape(300, -1)[:, :3], axis=1)
    clf = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(4, 2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    clf.compile("adam", "sparse_categorical_crossentropy")
    clf.fit(img, lab, epochs=20, verbose=0)
    clf.save(d / "clf.keras")
    np.savez(d / "clf.calib.npz", x=np.concatenate([img[:62], np.zeros((1, 4, 4, 3)), np.ones((1, 4, 4, 3))]))
    conv = Converter(d / "cache", log=lambda m: None)
    out = {"dir": d}
    for name in ("ae", "clf"):
        calib = Calibration.from_arg(str(d / f"{name}.calib.npz"))
        mv = conv.convert(ModelSource.open(d / f"{name}.keras"), "int8", calib)
        out[name] = d / f"{name}_int8.tflite"
        shutil.copyfile(mv.artifact, out[name])
    return out


def ad_dataset(root: Path, rng, normal: int = 6, anomalous: int = 6, frames: int = 96) -> Path:
    """Laid out like mlcommons/tiny's ad01 set: float32 files cut into windows of bytes_to_send every
    stride bytes (here 32 floats every 16)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(normal + anomalous):
        bad = i >= normal
        sig = rng.normal(0, 0.8, frames).astype(np.float32) if bad else _normal(rng, frames)
        name = f"{'anomaly' if bad else 'normal'}_id_01_{i:08d}.bin"
        (root / name).write_bytes(sig.astype("<f4").tobytes())
        rows.append(f"{name},2,{int(bad)},{AD_N * 4},{16 * 4}")
    (root / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return root


# ---------------------------------------------------------------------------------- datasets, scores


def test_datasets_read_like_the_reference_runner(tmp_path):
    rng = np.random.default_rng(1)
    ds = mlperf.read_dataset(ad_dataset(tmp_path / "ad", rng, normal=2, anomalous=1, frames=100))
    assert [e.label for e in ds.entries] == [0, 0, 1] and ds.entries[0].bytes_to_send == 128
    data = (tmp_path / "ad" / ds.entries[0].file).read_bytes()
    wins = ds.windows(ds.entries[0])
    # the runner's segmentation: start += stride while start + size <= len(data)
    assert len(wins) == (400 - 128) // 64 + 1 == 5 and wins[1] == data[64:192] and wins[-1] == data[256:384]
    (tmp_path / "ic").mkdir()
    (tmp_path / "ic" / "a.bin").write_bytes(bytes(range(48)))
    (tmp_path / "ic" / "y_labels.csv").write_text("a.bin, 10, 7\n\n")
    ic = mlperf.read_dataset(tmp_path / "ic")
    assert ic.entries == [mlperf.Entry("a.bin", 10, 7, None, None, 1)]
    assert ic.windows(ic.entries[0]) == [bytes(range(48))]
    for text, msg in (
        ("a.bin,10\n", "expected 'file, classes, class'"),
        ("a.bin,10,x\n", "class 'x' is not an integer"),
        ("a.bin,10,10\n", "class 10 is not one of the 10 classes"),
        ("b.bin,10,1\n", "file b.bin not found"),
        ("../a.bin,10,1\n", "must be a path inside"),
        ("a.bin,2,0,0,4\n", "bytes_to_send and stride must be positive"),
    ):
        (tmp_path / "ic" / "y_labels.csv").write_text(text)
        where = re.escape(f"{tmp_path / 'ic' / 'y_labels.csv'} line 1: ")
        with pytest.raises(ConfigError, match=where + ".*" + re.escape(msg)):
            mlperf.read_dataset(tmp_path / "ic")
    with pytest.raises(ConfigError, match="not an MLPerf Tiny dataset"):
        mlperf.read_dataset(tmp_path)
    (tmp_path / "ic" / "y_labels.csv").write_text("a.bin,2,0,100,4\n")
    with pytest.raises(ConfigError, match="shorter than one window of 100 bytes"):
        mlperf.read_dataset(tmp_path / "ic").windows(mlperf.Entry("a.bin", 2, 0, 100, 4, 1))


def test_auc_and_file_scores_match_the_reference_runner():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        s = np.round(rng.normal(size=40) + y, 1)  # ties on purpose
        if 0 < y.sum() < 40:
            assert mlperf.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert mlperf.roc_auc([1, 1], [0.1, 0.2]) is None
    assert mlperf.roc_auc([0, 1, 1], [0.5, 0.5, 0.9]) == 0.75
    assert mlperf.file_prediction([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]) == 1
    # benchmark/runner main.py: each window's scores divided by their sum, averaged over the file's
    # windows, argmax of the mean; not a majority vote (two of three windows say class 0 here)
    assert mlperf.file_prediction([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]]) == 1
    # windows weigh alike once normalised: the raw mean (1.47, 0.87) would say class 0
    assert mlperf.file_prediction([[4.0, 1.0], [0.2, 0.8], [0.2, 0.8]]) == 1
    # outputs that do not sum to a positive total (logits) are averaged as they are: no sign flip
    assert mlperf.file_prediction([[-1.0, -3.0]]) == 0
    assert mlperf.file_score([[2.0], [4.0]]) == 3.0
    # the vww01 reference firmware prints a trailing comma ("%0.3f," for 3 slots, 2 values)
    assert parse_results("m-results-[0.125,0.875,]") == [0.125, 0.875]
    assert parse_results("m-results-[0.125,,0.875]") is None


def test_conventions_and_their_checks():
    assert mlperf.convention("ad01").name == "float32-mse" and mlperf.convention("tensor").code == 0
    assert mlperf.convention_for_model_id("IC01").name == "uint8-minus-128"
    assert mlperf.convention_for_model_id("sha256:0123456789abcdef").name == "tensor"
    assert mlperf.convention_for_model_id("kws01").name == "tensor"
    with pytest.raises(ConfigError, match="unknown I/O convention 'float16'"):
        mlperf.convention("float16")
    ad = mlperf.convention("ad01")
    assert ad.wire_bytes(640, 1) == 2560 and ad.outputs(640) == 1  # the official runner's 2,560-byte windows
    with pytest.raises(ConfigError, match="input has 640 elements, output 0 has 10"):
        mlperf.check_model(ad, [{"dtype": "int8", "elements": 640, "scale": 0.4}], [{"elements": 10}], "m.tflite")
    with pytest.raises(ConfigError, match="needs an int8 input tensor"):
        mlperf.check_model(mlperf.convention("ic01"), [{"dtype": "float32", "elements": 3}], [{"elements": 3}], "m")
    # the host's encoding: uint8 wire bytes are the int8 tensor + 128
    spec = session.TensorSpec(np.dtype(np.int8), (1, 4), 1 / 255, -128)
    x = np.array([0.0, 0.5, 1.0, 0.25])
    assert list(session.encode_input(mlperf.convention("vww01"), spec, x)) == [0, 128, 255, 64]
    assert session.encode_input(ad, spec, x) == x.astype("<f4").tobytes()


# ---------------------------------------------------------------------------------- the simulator


def client_on(port: str):
    return sim_process_client(port, infer_timeout=10.0)


def test_simulated_stock_ad01_takes_float_windows_and_answers_one_value(models):
    rng = np.random.default_rng(3)
    with simulator(models["ae"], "--stock", "--model-id", "ad01") as (port, out):
        assert f"I/O convention float32-mse ({AD_N * 4} input bytes)" in out
        with client_on(port) as client:
            assert client.info.model_id == "ad01" and client.info.caps == set()
            conv = session.io_convention("auto", client.info)
            assert conv.name == "float32-mse"
            for window in (_normal(rng, AD_N), rng.normal(0, 1, AD_N).astype(np.float32)):
                client.load(window.astype("<f4").tobytes())
                r = client.infer(1, 0)
                assert r.results == [ad_score(models["ae"], window)]
            client.load(bytes(AD_N))  # the tensor's size is not what an ad01 device takes
            retried = client.retried
            # the reference prints a plain line and infers on its old input: the host refuses the answer
            with pytest.raises(InputRefused) as exc:
                client.infer(1, 0)
            assert client.retried == retried  # not retried: the same bytes would be refused again
            assert str(exc.value) == (
                f"device 'sim' did not take the {AD_N}-byte input for 'infer 1 0%' on {port} ('Input db has "
                f"{AD_N // 4} elemented, expected {AD_N}'): the firmware runs a model with another input size "
                "than the job's (flash the firmware built for this model, or set the device's io_convention)"
            )


def test_simulated_ic01_subtracts_128_from_uint8_images(models):
    rng = np.random.default_rng(4)
    with simulator(models["clf"], "--model-id", "ic01") as (port, _):
        with client_on(port) as client:
            for _ in range(3):
                u = rng.integers(0, 256, 48, dtype=np.uint8)
                client.load(u.tobytes())
                r = client.infer(1, 0)
                q = tflm_outputs(models["clf"], (u.astype(np.int16) - 128).astype(np.int8))
                s, z = quant(models["clf"], "outputs")
                assert r.results == [float(f"{(v - z) * s:0.3f}") for v in q.astype(np.int64)]
            client.load(bytes(5))  # hilbench firmware (and the simulator playing it) refuses to infer
            with pytest.raises(InputRefused, match=r"\('e-\[input incomplete: have 5 of 48 bytes; send db load"):
                client.infer(1, 0)
    p = hil("mcu-sim", str(models["clf"]), "--io-convention", "float32-mse", "--check")
    assert p.returncode == 3 and "I/O convention float32-mse compares output 0 with the input" in p.stderr


# ---------------------------------------------------------------------------------- hil run, end to end


def _lab(workspace: Path, **transport) -> None:
    t = {
        "type": "serial",
        "port": str(workspace / "dut"),
        "timeout": 2.0,
        "infer_timeout": 10.0,
        "accuracy_samples": 200,
        **transport,
    }
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: h7\n    profile: stm32h7\n    transport: " + json.dumps(t) + "\n"
    )


def _doc(workspace: Path, run_id: str) -> tuple[dict, dict]:
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    raw = json.loads(db.execute("SELECT raw FROM results WHERE run_id=?", (run_id,)).fetchone()[0])
    rows = dict(
        db.execute(
            "SELECT m.metric, m.value FROM measurements m JOIN results r USING (result_id) WHERE r.run_id=?", (run_id,)
        ).fetchall()
    )
    return raw, rows


RUN = ("--min-seconds", "0.05", "--min-runs", "5", "--warmup-seconds", "0")


def test_hil_run_scores_an_ad01_dataset_by_auc(workspace, models):
    from sklearn.metrics import roc_auc_score

    data = ad_dataset(workspace / "ad01", np.random.default_rng(6))
    ds = mlperf.read_dataset(data)
    want_scores = [
        np.mean([ad_score(models["ae"], np.frombuffer(w, "<f4")) for w in ds.windows(e)]) for e in ds.entries
    ]
    want_auc = roc_auc_score([e.label for e in ds.entries], want_scores)
    assert want_auc > 0.8  # noise reconstructs worse than the sines the autoencoder learnt
    _lab(workspace)
    with simulator(models["ae"], "--stock", "--model-id", "ad01", link=workspace / "dut"):
        p = hil("run", str(models["ae"]), "--eval", str(data), *RUN, check=True)
    raw, rows = _doc(workspace, p.stdout.strip().splitlines()[-1])
    acc = raw["accuracy"]
    assert acc["dataset"] == "mlperf-tiny" and acc["score"] == "auc" and acc["n"] == 12
    assert acc["inferences"] == 12 * 5  # every window of every file
    assert rows["accuracy_auc"] == pytest.approx(want_auc, abs=1e-12) and "accuracy_top1" not in rows
    assert raw["device"]["io_convention"] == "float32-mse" and raw["device"]["model_verified"] is None
    assert "I/O convention float32-mse (model ID ad01)" in p.stderr
    assert all(w["latency_us"] > 0 for w in raw["windows"])
    # a dataset on a Linux device is refused before anything runs
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - id: pc\n    profile: localhost\n    transport: {type: local}\n"
    )
    p = hil("run", str(models["ae"]), "--eval", str(data))
    assert p.returncode == 3 and "an MLPerf Tiny dataset (y_labels.csv + .bin files) is sent as raw bytes" in p.stderr


def test_hil_run_scores_an_ic01_dataset_by_top1_per_device_setting(workspace, models):
    rng = np.random.default_rng(7)
    root = workspace / "ic01"
    root.mkdir()
    rows, correct = [], 0
    s, z = quant(models["clf"], "outputs")
    for i in range(30):
        u = rng.integers(0, 256, 48, dtype=np.uint8)
        label = int(rng.integers(0, 3))
        (root / f"img_{i:03d}.bin").write_bytes(u.tobytes())
        rows.append(f"img_{i:03d}.bin,3,{label}")
        q = tflm_outputs(models["clf"], (u.astype(np.int16) - 128).astype(np.int8))
        correct += int(np.argmax([float(f"{(v - z) * s:0.3f}") for v in q.astype(np.int64)]) == label)
    (root / "y_labels.csv").write_text("\n".join(rows) + "\n")
    # the firmware reports its sha256 model ID (hilbench firmware): the convention comes from the device
    _lab(workspace, io_convention="ic01")
    with simulator(models["clf"], "--io-convention", "ic01", link=workspace / "dut"):
        p = hil("run", str(models["clf"]), "--eval", str(root), *RUN, check=True)
    raw, got = _doc(workspace, p.stdout.strip().splitlines()[-1])
    assert raw["device"]["model_verified"] is True and raw["device"]["io_convention"] == "uint8-minus-128"
    assert raw["accuracy"]["correct"] == correct and got["accuracy_top1"] == correct / 30
    assert "I/O convention uint8-minus-128 (transport io_convention)" in p.stderr


# ---------------------------------------------------------------------------------- hil build --model-id


def test_hil_build_with_a_benchmark_model_id(models, tmp_path):
    inv = str(REPO / "inventory.yaml")
    out = tmp_path / "ad"
    p = hil(
        "--inventory", inv, "build", str(models["ae"]), "--profile", "stm32h7", "--model-id", "ad01", "-o", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert f"I/O convention: float32-mse ({AD_N * 4} input bytes, 1 result value(s))" in p.stdout
    m = json.loads((out / "bundle.json").read_text())
    assert m["model"]["model_id"] == m["protocol"]["model_id"] == "ad01"
    assert m["io"]["convention"] == "float32-mse" and m["io"]["wire_input_bytes"] == AD_N * 4
    assert m["protocol"]["mlperf_benchmark"] == "ad01" and m["fit"]["estimate"] is True
    assert 'g_model_id[] = "ad01";' in (out / "model_data.cc").read_text()
    cfg = (out / "hb_config.h").read_text()
    assert "#define HB_IO_CONVENTION HB_IO_FLOAT32_MSE  // MLPerf Tiny ad01 (anomaly detection)" in cfg
    assert "#define HB_WIRE_INPUT_BYTES (HB_INPUT_BYTES * 4u)" in cfg
    assert "estimates before any compile" in p.stdout
    # a classifier cannot be ad01 (one MSE value needs output 0 the size of the input)
    p = hil(
        "--inventory",
        inv,
        "build",
        str(models["clf"]),
        "--profile",
        "stm32h7",
        "--model-id",
        "ad01",
        "-o",
        str(tmp_path / "x"),
    )
    assert p.returncode == 3 and "I/O convention float32-mse compares output 0 with the input" in p.stderr
    assert "(--model-id ad01: anomaly detection)" in p.stderr
    p = hil("--inventory", inv, "build", str(models["clf"]), "--profile", "stm32h7", "--model-id", "ic 01")
    assert p.returncode == 3 and "--model-id 'ic 01': 1 to 40 characters" in p.stderr
    if shutil.which("arm-none-eabi-gcc"):  # the generated configuration compiles with the protocol layer
        cc = subprocess.run(
            [
                "arm-none-eabi-gcc",
                "-mcpu=cortex-m4",
                "-mthumb",
                "-Os",
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                f"-I{out}",
                "-c",
                str(out / "hb_protocol.c"),
                "-o",
                str(tmp_path / "p.o"),
            ],
            capture_output=True,
            text=True,
        )
        assert cc.returncode == 0, cc.stderr


# ---------------------------------------------------------------------------------- the C firmware on QEMU


@pytest.mark.qemu
def test_firmware_conventions_on_qemu(tmp_path):
    """hb_protocol.c's conventions, compiled for a Cortex-M4 and run on QEMU with the stand-in layer:
    uint8 bytes -128, and float32 windows answered with one MSE that the simulator's numpy version
    of the device arithmetic reproduces to the printed digit."""
    from test_mcu_qemu import Port, _infer, _load, reference

    from harness.mcu import qemu

    params = qemu.parse_params()
    rng = np.random.default_rng(9)
    # ic01/vww01: the stand-in sees u - 128
    elf = qemu.build_firmware(tmp_path / "u8", {"HB_IO_CONVENTION": "1"})
    u = rng.integers(0, 256, 64, dtype=np.uint8)
    with qemu.QemuDevice(elf) as dev:
        port = Port(dev.url)
        try:
            port.lines_until_ready()
            _load(port, u.tobytes())
            got = _infer(port, 3, 1)[2]
        finally:
            port.close()
    q = reference(params, (u.astype(np.int16) - 128).astype(np.int8))
    assert got == [f"{(v - params['output_zero_point']) * params['output_scale']:.3f}" for v in q]
    # ad01: a 64 -> 64 stand-in, float32 in, one MSE out
    text = qemu.render_params(seed=11, n_in=64, n_out=64)
    (tmp_path / "ae_params.h").write_text(text)
    ae = qemu.parse_params(tmp_path / "ae_params.h")
    elf = qemu.build_firmware(tmp_path / "f32", {"HB_IO_CONVENTION": "2", "HB_DB_BUFFER_BYTES": "256"}, params=text)
    with qemu.QemuDevice(elf) as dev:
        port = Port(dev.url)
        try:
            port.lines_until_ready()
            answers = []
            for _ in range(4):
                x = rng.normal(0, 2.0, 64).astype(np.float32)
                _load(port, x.astype("<f4").tobytes())
                answers.append((x, _infer(port, 2, 0)[2]))
            assert port.cmd("db load 64")[0].startswith("m-[Expecting 64")
        finally:
            port.close()
    for x, got in answers:
        qx = mlperf.quantize_like_device(x, ae["input_scale"], ae["input_zero_point"])
        out = mlperf.dequantize_like_device(reference(ae, qx), ae["output_scale"], ae["output_zero_point"])
        assert got == [f"{mlperf.mse_like_device(out, x.astype('<f4').tobytes()):.3f}"]
    # float32-mse with output 0 smaller than the input is refused at boot
    elf = qemu.build_firmware(tmp_path / "bad", {"HB_IO_CONVENTION": "2", "HB_DB_BUFFER_BYTES": "256"})
    with qemu.QemuDevice(elf) as dev:
        port = Port(dev.url)
        try:
            assert port.lines_until_ready()[0] == "e-[model init failed with code 5]"
        finally:
            port.close()


# ---------------------------------------------------------------------------------- the reference models

MLPERF = os.environ.get("HILBENCH_MLPERF_TINY")
REFERENCE = {  # model ID -> path in mlcommons/tiny
    "kws01": "benchmark/training/keyword_spotting/trained_models/kws_ref_model.tflite",
    "vww01": "benchmark/training/visual_wake_words/trained_models/vww_96_int8.tflite",
    "ic01": "benchmark/training/image_classification/trained_models/pretrainedResnet_quant.tflite",
    "ad01": "benchmark/training/anomaly_detection/trained_models/ad01_int8.tflite",
}


@pytest.mark.skipif(not MLPERF, reason="set HILBENCH_MLPERF_TINY to a checkout of mlcommons/tiny")
@pytest.mark.parametrize("model_id", sorted(REFERENCE))
def test_mlperf_reference_models(model_id, tmp_path):
    model = Path(MLPERF) / REFERENCE[model_id]
    p = hil(
        "--inventory",
        str(REPO / "inventory.yaml"),
        "build",
        str(model),
        "--profile",
        "stm32h7",
        "--model-id",
        model_id,
        "-o",
        str(tmp_path / "b"),
    )
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert m["protocol"]["model_id"] == model_id
    assert m["io"]["convention"] == mlperf.BENCHMARKS[model_id].convention
    with simulator(model, "--stock", "--model-id", model_id) as (port, _):
        with client_on(port) as client:
            size = m["io"]["wire_input_bytes"]
            sample = Path(MLPERF) / (
                "benchmark/reference_submissions/anomaly_detection/datasets/dcase01/"
                "normal_id_01_00000000_hist_librosa.bin"
            )
            data = sample.read_bytes()[:size] if model_id == "ad01" else bytes(size)
            client.load(data)
            r = client.infer(1, 0)
    assert len(r.results) == (1 if model_id == "ad01" else mlperf.BENCHMARKS[model_id].classes)
    if model_id == "ad01":
        assert r.results == [ad_score(model, np.frombuffer(data, "<f4"))]


def test_profiles_stay_valid():
    # the shipped MCU profiles still load with the new settings
    from harness.lab.config import load_profile

    for name in ("stm32h7", "esp32-s3"):
        prof = load_profile(REPO / "device_profiles" / f"{name}.yaml")
        assert prof.mcu.timer_wrap_s == pytest.approx(2**32 / 1e6)
        assert yaml.safe_load((REPO / "device_profiles" / f"{name}.yaml").read_text())["mcu"].get("timer_wrap_s")
