"""Reconstruction tasks (issue 21): the MLPerf Tiny FC autoencoder swept with unlabelled data is fine-tuned
and distilled towards its input (mean squared error), and scored by the host's reconstruction error;
real training, real TFLite conversion, real LiteRT interpreters, the real `hil` CLI."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from arch_models import trained
from conftest import hil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def ae(tmp_path_factory):
    """The FC autoencoder fitted briefly on the digits task, saved with x-only sidecars."""
    model, (x, _, x_eval, _) = trained("fc_autoencoder", epochs=20, n=320)
    d = tmp_path_factory.mktemp("ae")
    model.save(d / "ae.keras")
    np.savez(d / "ae.train.npz", x=x)
    np.savez(d / "ae.eval.npz", x=x_eval)
    np.savez(d / "ae.calibration.npz", x=x[:40])
    return {"dir": d, "model": model, "x": x, "x_eval": x_eval}


def _env(root):
    return {"HILBENCH_CACHE": str(root / "cache"), "HILBENCH_LOCK_DIR": str(root / "locks")}


def test_sweep_of_an_autoencoder_with_unlabelled_data_reconstructs(ae, tmp_path):
    d = ae["dir"]
    proc = hil(
        "sweep",
        str(d / "ae.keras"),
        "--recipes",
        "filters-50-int8,qat-int8,distill-half-int8",
        "--compress-only",
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert set(rows) == {"ae", "ae+filters-50-int8", "ae+qat-int8", "ae+distill-half-int8"}, proc.stdout
    macs = {name: int(r[r.index("MACs") + 1].replace(",", "")) for name, r in rows.items()}
    mse = {name: float(r[r.index("mse") + 1]) for name, r in rows.items()}
    assert macs["ae+filters-50-int8"] <= 0.65 * macs["ae"]
    assert macs["ae+distill-half-int8"] <= 0.60 * macs["ae"]
    # the baseline's host error is the Keras model's own error on the evaluation inputs
    pred = ae["model"].predict(ae["x_eval"], verbose=0)
    assert mse["ae"] == pytest.approx(float(np.mean((pred - ae["x_eval"]) ** 2)), rel=1e-3)
    # trained towards the input, each candidate stays within 2x the base's error (a classification loss
    # cannot even take the float targets: Keras refuses them)
    assert mse["ae"] < 0.5 * float(np.mean(ae["x_eval"] ** 2))  # the base learnt something to keep
    for name, v in mse.items():
        assert 0 < v < 2.0 * mse["ae"], (name, v, mse["ae"])
    assert "acc" not in proc.stdout


def test_unlabelled_data_for_a_classifier_keeps_the_one_line_error(ae, tmp_path):
    from arch_models import ARCHITECTURES

    clf = ARCHITECTURES["conv1d"]()
    clf.save(tmp_path / "clf.keras")
    np.savez(tmp_path / "clf.train.npz", x=np.zeros((20, 64, 1), np.float32))
    proc = hil("sweep", str(tmp_path / "clf.keras"), "--recipes", "qat-int8", "--compress-only", env=_env(tmp_path))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert f"{tmp_path / 'clf.train.npz'}: training data needs labels: an array 'y' beside 'x'" in proc.stderr
    assert "Traceback" not in proc.stderr
    # unlabelled evaluation data for it: no reconstruction to score either
    from harness.compress.pipeline import Compressor, EvalData
    from harness.errors import ConfigError
    from harness.models.convert import Converter, ModelSource

    np.savez(tmp_path / "clf.eval.npz", x=np.zeros((5, 64, 1), np.float32))
    with pytest.raises(ConfigError) as err:
        Compressor(
            ModelSource.open(tmp_path / "clf.keras"),
            Converter(tmp_path / "cache" / "models"),
            None,
            EvalData.load(tmp_path / "clf.eval.npz"),
            None,
        )
    assert str(err.value) == f"{tmp_path / 'clf.eval.npz'}: evaluation data needs labels 'y' for accuracy"


def test_fine_tuning_an_autoencoder_without_labels_minimises_reconstruction_error(ae, tmp_path, monkeypatch):
    """A perturbed autoencoder fine-tuned by a pipeline step (magnitude pruning at a low sparsity) on
    x-only data: the reconstruction error to the input falls, on the validation split and on the host."""
    import keras

    from harness.compress import recipes
    from harness.compress.pipeline import Compressor, EvalData
    from harness.compress.recon import keras_mse
    from harness.models.convert import Calibration, Converter, ModelSource

    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    model = keras.models.clone_model(ae["model"])
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.2, w.shape) if w.ndim > 1 else w for w in ae["model"].get_weights()])
    model.save(tmp_path / "noisy.keras")
    before = keras_mse(model, ae["x_eval"])
    (tmp_path / "tune.yaml").write_text(
        "name: tune\ntrain: {epochs: 4, learning_rate: 0.003}\nsteps:\n  - prune: {sparsity: 0.1}\n"
        "  - quantize: {variant: fp32}\n"
    )
    comp = Compressor(
        ModelSource.open(tmp_path / "noisy.keras"),
        Converter(tmp_path / "cache" / "models"),
        Calibration.from_arg(str(ae["dir"] / "ae.calibration.npz")),
        EvalData.load(ae["dir"] / "ae.eval.npz"),
        str(ae["dir"] / "ae.train.npz"),
    )
    cand = comp.run(recipes.expand([str(tmp_path / "tune.yaml")], {})[0])
    assert cand.metrics["host_mse"] < 0.7 * before, (before, cand.metrics)
    assert cand.metrics["keras_mse"] < 0.7 * before
    assert "host_accuracy" not in cand.metrics and "keras_accuracy" not in cand.metrics


def test_reconstruction_distillation_loss_is_alpha_teacher_mse_plus_input_mse():
    from harness.compress.recon import distill_loss

    student = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
    teacher = np.array([[0.0, 2.0], [2.0, -1.0]], np.float32)
    x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    got = np.asarray(distill_loss(2, 0.25)(np.concatenate([teacher, x], axis=1), student))
    mse_t = ((student - teacher) ** 2).mean(axis=1)  # [0.5, 2.0]
    mse_x = ((student - x) ** 2).mean(axis=1)  # [2.0, 2.0]
    np.testing.assert_allclose(got, 0.25 * mse_t + 0.75 * mse_x, rtol=1e-6)


def test_data_without_labels_loads_from_npz_and_functions(tmp_path):
    from harness.compress import data

    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.savez(tmp_path / "d.npz", x=x)
    from_file = data.load(str(tmp_path / "d.npz"))
    assert from_file.y is None
    assert data._from_value("m:f", x).sha256 == from_file.sha256  # x alone: hashed as x with y absent
    assert data._from_value("m:f", (x, None)).sha256 == from_file.sha256
    assert data._from_value("m:f", {"x": x}).sha256 == from_file.sha256
    assert str(data._from_value("m:f", x).missing_labels()) == "m:f: the training data function returned no x or no y"


def test_measured_sweep_on_the_local_device_with_unlabelled_eval_data(ae, tmp_path):
    shutil.copytree(ae["dir"], tmp_path / "m")
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "device_profiles"), tmp_path / "device_profiles")
    (tmp_path / "inventory.yaml").write_text("devices:\n  - {id: host, profile: localhost, transport: {type: local}}\n")
    proc = hil(
        "sweep",
        str(tmp_path / "m" / "ae.keras"),
        "--recipes",
        "ptq-int8",
        "--repeats",
        "1",
        "--min-seconds",
        "0.2",
        "--json",
        "choice.json",
        "--html",
        "fronts.html",
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "host MSE" in proc.stdout
    doc = json.loads((tmp_path / "choice.json").read_text())
    cands = {c["candidate"]: c for c in doc["devices"]["host"]["candidates"]}
    assert set(cands) == {"ae", "ae+ptq-int8"}
    for c in cands.values():
        assert c["status"] == "ok" and c["accuracy"] is None and c["host_mse"] > 0
        assert c["latency_p50_us"] > 0
    assert doc["devices"]["host"]["choice"] in cands
    page = (tmp_path / "fronts.html").read_text()
    assert "host MSE" in page and f"{cands['ae']['host_mse']:.5f}" in page


def test_reconstruction_distillation_with_a_feature_pair_trains_the_student_towards_the_input(ae):
    """alpha 0: only the input term pulls; a hidden-layer pair (an adapter maps the narrower student's
    features) trains beside it. The student starts from fresh weights, so its error falls from there."""
    import keras

    from harness.compress.distill import distill, make_student
    from harness.compress.recipes import DistillStep, FeaturePair
    from harness.compress.recon import keras_mse

    teacher = ae["model"]
    hidden = next(layer.name for layer in teacher.layers if type(layer).__name__ == "Activation")
    step = DistillStep(width=0.5, alpha=0.0, features=[FeaturePair(student=hidden, teacher=hidden)])
    keras.utils.set_random_seed(0)
    fresh = keras_mse(make_student(step, teacher, ae["dir"], "t"), ae["x_eval"])
    common = dict(recipe_dir=ae["dir"], where="t", label="s", batch_size=32, learning_rate=3e-3, seed=0)
    student, logs = distill(teacher, step, ae["x"], None, epochs=8, **common)
    assert keras_mse(student, ae["x_eval"]) < 0.7 * fresh, (fresh, logs)
    assert len(student.outputs) == 1 and tuple(student.outputs[0].shape[1:]) == (64,)
