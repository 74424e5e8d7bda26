"""Lineage IDs change when and only when an input changes; an unchanged recipe is never recomputed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.compress import lineage, recipes
from harness.compress.pipeline import Compressor, EvalData
from harness.errors import ConfigError
from harness.models.convert import Calibration, Converter, ModelSource

PRUNE = (
    "name: {name}\ndescription: {desc}\nseed: {seed}\ntrain: {{epochs: 1}}\nsteps:\n"
    "  - prune: {{sparsity: {sparsity}{extra}}}\n  - quantize: {{variant: int8}}\n"
)


@pytest.fixture()
def lab(tmp_path, tiny_model) -> dict:
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny_model["path"], d / "tiny.keras")
    np.savez(d / "tiny.train.npz", x=tiny_model["x"], y=tiny_model["y"])
    np.savez(d / "tiny.calibration.npz", x=tiny_model["x"][:30])
    np.savez(d / "tiny.eval.npz", x=tiny_model["x"][60:], y=tiny_model["y"][60:])
    return {"dir": d, "cache": tmp_path / "cache"}


def compressor(lab: dict, data: Path | None = None, model: Path | None = None) -> Compressor:
    d = lab["dir"]
    conv = Converter(lab["cache"] / "artifacts", log=lambda m: None)
    return Compressor(
        ModelSource.open(model or d / "tiny.keras"),
        conv,
        Calibration.from_arg(str(d / "tiny.calibration.npz")),
        EvalData.load(d / "tiny.eval.npz"),
        str(data or d / "tiny.train.npz"),
        log=lambda m: None,
    )


def recipe(tmp_path: Path, name="p", desc="x", seed=0, sparsity=0.5, extra="", file="r.yaml") -> recipes.Recipe:
    p = tmp_path / file
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(PRUNE.format(name=name, desc=desc, seed=seed, sparsity=sparsity, extra=extra))
    return recipes.load(p)


def test_node_id_covers_exactly_its_inputs():
    base = dict(
        parent="file:aa", step="prune", params={"sparsity": 0.8}, data="d1", seed=0, versions={"tensorflow": "2.20.0"}
    )
    ref = lineage.node_id(**base)
    assert lineage.node_id(**base) == ref
    assert lineage.node_id(**{**base, "params": {"sparsity": 0.8}}) == ref  # a fresh but equal dict
    for change in (
        {"parent": "file:ab"},
        {"step": "qat"},
        {"params": {"sparsity": 0.5}},
        {"data": "d2"},
        {"seed": 1},
        {"versions": {"tensorflow": "2.21.0"}},
    ):
        assert lineage.node_id(**{**base, **change}) != ref, change


def test_ids_change_when_and_only_when_an_input_changes(lab, tmp_path, monkeypatch):
    comp = compressor(lab)
    ref = comp.chain_ids(recipe(tmp_path))
    assert len(ref) == 2
    # not inputs: the recipe's name, description and file location; a default written out; key order
    assert comp.chain_ids(recipe(tmp_path, name="renamed", desc="other words", file="sub/moved.yaml")) == ref
    assert comp.chain_ids(recipe(tmp_path, extra=", schedule: polynomial, frequency: 10")) == ref
    # the same data from another file (another name, another path) is the same data
    moved = tmp_path / "elsewhere" / "data.npz"
    moved.parent.mkdir()
    shutil.copy(lab["dir"] / "tiny.train.npz", moved)
    assert compressor(lab, data=moved).chain_ids(recipe(tmp_path)) == ref
    # inputs: each one changes the trained node and, through it, its child
    changed = [
        comp.chain_ids(recipe(tmp_path, sparsity=0.6)),
        comp.chain_ids(recipe(tmp_path, seed=1)),
        comp.chain_ids(recipe(tmp_path, extra=", schedule: constant")),
    ]
    x = np.load(moved)["x"].copy()
    x[0, 0, 0, 0] += 0.5
    np.savez(moved, x=x, y=np.load(lab["dir"] / "tiny.train.npz")["y"])
    changed.append(compressor(lab, data=moved).chain_ids(recipe(tmp_path)))
    other = lab["dir"] / "other.keras"
    import keras

    m = keras.models.load_model(lab["dir"] / "tiny.keras")
    m.set_weights([w + 0.01 for w in m.get_weights()])
    m.save(other)
    changed.append(compressor(lab, model=other).chain_ids(recipe(tmp_path)))
    monkeypatch.setattr(lineage, "STEP_VERSION", "test-2")
    changed.append(comp.chain_ids(recipe(tmp_path)))
    for ids in changed:
        assert ids[0] != ref[0] and ids[1] != ref[1]
    assert len({ids[0] for ids in changed}) == len(changed)
    monkeypatch.undo()
    # the quantize step's own inputs: calibration data changes only the last node
    np.savez(lab["dir"] / "tiny.calibration.npz", x=np.load(lab["dir"] / "tiny.calibration.npz")["x"][:20])
    ids = compressor(lab).chain_ids(recipe(tmp_path))
    assert ids[0] == ref[0] and ids[1] != ref[1]


def test_an_unchanged_recipe_is_never_trained_or_converted_again(lab, tmp_path):
    r = recipe(tmp_path, sparsity=0.6)
    first = compressor(lab)
    a = first.run(r)
    assert first.trained == 1 and first.cache.misses == 2 and first.converter.misses >= 1
    assert [n.id for n in a.nodes] == first.chain_ids(r)
    assert a.metrics["sparsity"] >= 0.59 and a.variant == "int8" and a.name == "tiny+p"
    node = a.nodes[0]
    assert node.kind == "keras" and node.parent == lineage.root_id(first.base.sha256)
    assert node.data == first.data_hash() and node.params["sparsity"] == 0.6 and node.params["epochs"] == 1
    second = compressor(lab)
    b = second.run(recipe(tmp_path, sparsity=0.6, name="renamed"))
    assert second.trained == 0 and second.cache.misses == 0 and second.cache.hits == 2
    assert second.converter.misses == 0  # the int8 artifact comes from the conversion cache
    assert b.artifact_sha256 == a.artifact_sha256 and b.metrics["host_accuracy"] == a.metrics["host_accuracy"]
    # a damaged node file is computed again, under the same ID
    (a.nodes[0].path).write_bytes(b"damaged")
    third = compressor(lab)
    c = third.run(r)
    assert third.trained == 1 and [n.id for n in c.nodes] == [n.id for n in a.nodes]


def test_a_student_that_does_not_fit_and_data_that_does_not_fit_name_recipe_and_field(lab, tmp_path):
    import keras

    student = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    student.save(tmp_path / "student.keras")
    p = tmp_path / "d.yaml"
    p.write_text("name: d\ntrain: {epochs: 1}\nsteps:\n  - distill: {student: student.keras}\n")
    with pytest.raises(ConfigError) as err:
        compressor(lab).run(recipes.load(p))
    assert str(err.value) == (
        f"{p}: steps[0].distill.student: the student takes inputs of shape [8, 8, 3], the teacher [8, 8, 1]"
    )
    wide = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    wide.save(tmp_path / "student.keras")
    with pytest.raises(ConfigError, match=r"d.yaml: steps\[0\].distill.student: the student gives outputs of shape"):
        compressor(lab).run(recipes.load(p))

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((20, 5), np.float32), y=np.zeros(20, np.int64))
    r = recipe(tmp_path)
    with pytest.raises(ConfigError) as err:
        compressor(lab, data=bad).run(r)
    assert str(err.value) == (
        f"{r.path}: steps[0].prune: training data {bad} array 'x' has samples of shape (5,), "
        "the model's input needs (8, 8, 1)"
    )
    np.savez(bad, x=np.zeros((20, 8, 8, 1), np.float32), y=np.full(20, 9))
    with pytest.raises(ConfigError, match=r"r.yaml: steps\[0\].prune: training data .* labels 9..9, the model has 4"):
        compressor(lab, data=bad).run(r)


def test_the_results_database_keeps_lineage_and_migrates_older_files(tmp_path):
    import sqlite3

    from harness.store import schema
    from harness.store.results import ResultStore

    db = tmp_path / "r.sqlite"
    store = ResultStore(db)
    leaf = {
        "node_id": "b" * 64,
        "parent_id": "a" * 64,
        "root_id": "file:" + "0" * 64,
        "step": "quantize",
        "params": {"variant": "int8"},
        "data_hash": None,
        "seed": 0,
        "versions": {"keras": "3"},
        "kind": "tflite",
        "sha256": "c" * 64,
        "recipe": "ptq",
        "model_name": "m+ptq",
        "created_at": 2.0,
        "metrics": {"host_accuracy": {"top1": 0.9}},
    }
    mid = {
        **leaf,
        "node_id": "a" * 64,
        "parent_id": "file:" + "0" * 64,
        "step": "prune",
        "kind": "keras",
        "model_name": None,
        "created_at": 1.0,
    }
    store.record_lineage([leaf, mid])
    store.record_lineage([{**leaf, "model_name": None, "recipe": "renamed"}])  # a later sweep under another name
    got = store.lineage("file:" + "0" * 64)
    assert [n["step"] for n in got] == ["prune", "quantize"]
    assert got[1]["model_name"] == "m+ptq" and got[1]["recipe"] == "renamed"
    assert got[1]["params"] == {"variant": "int8"} and got[1]["metrics"]["host_accuracy"]["top1"] == 0.9
    assert store.lineage("file:other") == []
    store.close()
    # a schema-3 file (no lineage table) is migrated by a writing open; read-only opens see no lineage
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE lineage")
        c.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    c.close()
    ro = ResultStore(db, read_only=True)
    assert ro.schema_version == 3 and ro.lineage() == []
    ro.close()
    rw = ResultStore(db)
    assert rw.schema_version == schema.SCHEMA_VERSION == 6 and rw.lineage() == []
    rw.close()
