"""The gate names the operators behind a confirmed latency regression (harness.gate.remeasure's
profile pass, harness.profile.diff). Real Keras models converted by the real TFLite converter: a
small MLP and its twin with one much bigger Dense layer inserted in front, so the twin is several
times slower and the inserted FULLY_CONNECTED carries nearly all of the added time on any host."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, hil

from harness.models.inspect.analysis import analyze
from harness.profile.diff import NEW, SAME, diff, explain
from harness.profile.document import attach_analysis, from_dict
from harness.store.results import ResultStore
from harness.store.verdicts import verdict_details

WIDE = 512  # the inserted layer: 512 x 512 MACs against the base's 512 x 64 + 64 x 4


def _runner_profiles() -> bool:
    """The device runner can profile per operator (runners/linux_runner.py --profile-runs)."""
    p = subprocess.run(
        [sys.executable, str(REPO / "runners" / "linux_runner.py"), "--help"], capture_output=True, text=True
    )
    return "--profile-runs" in p.stdout + p.stderr  # the runner keeps its stdout for the JSON document


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, Path]:
    """base: Dense(64) -> Dense(4) on 512 inputs; twin: Dense(512) inserted before them (the ops after
    it keep their shapes, so a profile diff can match them)."""
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("twins")
    out = {}
    for name, extra in (("base", []), ("twin", [WIDE])):
        keras.utils.set_random_seed(3)
        layers = [keras.Input((WIDE,))] + [keras.layers.Dense(n) for n in extra]
        model = keras.Sequential(layers + [keras.layers.Dense(64), keras.layers.Dense(4)])
        blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        out[name] = d / f"{name}.tflite"
        out[name].write_bytes(blob)
    return out


def _contract(path: Path, us_per_mac: float) -> dict:
    """A profile document as a device sends it for the real model at `path`: one op per model op,
    times made up in proportion to its MACs (plus a fixed cost per op)."""
    a = analyze(path)
    return {
        "source": "litert-builtin",
        "unit": "us",
        "invocations": 2,
        "ops": [{"index": o.index, "type": o.name, "times": [0.5 + o.macs * us_per_mac] * 2} for o in a.operators],
    }


def test_real_twins_are_matched_by_shape_and_the_inserted_dense_explains_the_change(twins):
    """The real graphs: with shapes from the artifacts' analysis, the twin's ops after the inserted
    layer are matched to the base's (their indices shifted by one), and the new op is named."""
    base = attach_analysis(from_dict(_contract(twins["base"], 1e-3)), analyze(twins["base"]))
    twin = attach_analysis(from_dict(_contract(twins["twin"], 1e-3)), analyze(twins["twin"]))
    assert [o.type for o in base.ops] == ["FULLY_CONNECTED"] * 2 and len(twin.ops) == 3
    d = diff(base, twin)
    assert [(o.index, o.status) for o in d.ops] == [(0, NEW), (1, SAME), (2, SAME)]
    assert d.ops[1].delta == 0 and d.ops[2].delta == 0
    e = explain(base, twin)
    assert e.text == "+263 us: FULLY_CONNECTED #0 (new op) +263 us (100 %)"


def _lab(root: Path) -> None:
    """The host as the device (XNNPACK on, as shipped: the gate names the model's ops from the runner's
    built-in-kernel profile), with short timed windows."""
    (root / "device_profiles").mkdir()
    for p in (REPO / "device_profiles").glob("*.yaml"):
        shutil.copy(p, root / "device_profiles" / p.name)
    prof = root / "device_profiles" / "localhost.yaml"
    short = (
        "benchmark: {min_runs: 50, min_seconds: 0.1, max_seconds: 30, warmup_runs: 5, warmup_seconds: 0.02, repeats: 3}"
    )
    prof.write_text(re.sub(r"benchmark: \{[^}]*\}", short, prof.read_text()))
    (root / "inventory.yaml").write_text("devices:\n  - {id: dut, profile: localhost, transport: {type: local}}\n")


@pytest.mark.skipif(not _runner_profiles(), reason="runners/linux_runner.py has no --profile-runs (Linux profiler)")
def test_a_confirmed_regression_names_the_inserted_dense_layer(twins, tmp_path, monkeypatch):
    """The reference night, then the twin: the gate confirms the regression (reference and candidate
    timed in the same runner processes), profiles both in one more process, and its console line,
    Markdown, HTML, CSV and stored verdict name the new FULLY_CONNECTED as >= 80 % of the added time."""
    _lab(tmp_path)
    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    shutil.copy(twins["base"], tmp_path / "net.tflite")
    hil("run", "net.tflite", check=True)
    hil("gate", "--quiet", check=True)
    shutil.copy(twins["twin"], tmp_path / "net.tflite")
    run = hil("run", "net.tflite", check=True).stdout.strip().splitlines()[-1]
    p = hil("gate", "--markdown", "s.md", "--html", "g.html", "--csv", "v.csv")
    assert p.returncode == 1, p.stdout + p.stderr
    named = re.compile(r"per-operator profile: \+[\d.]+ us: FULLY_CONNECTED #0 \(new op\) \+[\d.]+ us \((\d+) %\)")
    line = next(ln for ln in p.stderr.splitlines() if "latency regression confirmed" in ln)
    assert line.startswith("net/asis@dut: latency regression confirmed (")
    share = named.search(line)
    assert share and int(share.group(1)) >= 80, line
    for report in ("s.md", "g.html"):
        assert named.search((tmp_path / report).read_text()), report
    rows = pd.read_csv(tmp_path / "v.csv")
    latency = rows[rows.metric.str.startswith("latency") & rows.confirmed.fillna(False).astype(bool)]
    assert len(latency) and all(named.search("per-operator profile: " + t) for t in latency.confirm_operators)
    store = ResultStore(tmp_path / "reports" / "results.sqlite", read_only=True)
    assert named.search("per-operator profile: " + verdict_details(store, run)["net/asis@dut"]["operators"])
    store.close()
