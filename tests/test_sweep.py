"""`hil sweep` end to end on a device with a deterministic clock (tests/fixed_runner.py): candidates are
built, measured through the run path, and the choice is the one a hand computation of the Pareto front
and the budgets gives; a second identical sweep trains and converts nothing; `hil lineage` shows the tree."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import hil
from fixed_lab import FAST, make_lab, write_latency

from harness.compress.pareto import Point, choose, front
from harness.lab.config import Budgets

RECIPES = "ptq-int8,ptq-fp16,aeq-weight-only-int8"
USER_RECIPE = (
    "name: prune-half\ntrain: {epochs: 1}\nsteps:\n  - prune: {sparsity: 0.5}\n  - quantize: {variant: int8}\n"
)


def test_front_and_choice_follow_the_rules_on_hand_made_points():
    pts = [
        Point("a", {"accuracy": 0.99, "latency_p50_us": 900.0, "model_size_bytes": 4000.0}),
        Point("b", {"accuracy": 0.97, "latency_p50_us": 300.0, "model_size_bytes": 1000.0}),
        Point("c", {"accuracy": 0.97, "latency_p50_us": 300.0, "model_size_bytes": 1200.0}),  # b beats it
        Point("d", {"accuracy": 0.90, "latency_p50_us": 100.0, "model_size_bytes": 1000.0}),
        Point("e", {"accuracy": 0.90, "latency_p50_us": 150.0, "model_size_bytes": 2000.0}),
    ]  # d beats it
    objectives = ["accuracy", "latency", "size"]
    assert front(pts, objectives) == ["a", "b", "d"]
    ch = choose("dev", "prof", pts, Budgets(max_latency_p50_us=500), {}, "accuracy")
    assert ch.objectives == objectives and ch.front == ["a", "b", "d"] and ch.choice == "b"
    assert ch.verdicts["a"].ruled_out_by == ["latency_p50_us 900 exceeds budget max_latency_p50_us (<= 500)"]
    assert (
        choose("dev", "prof", pts, None, {"min_accuracy_top1": 0.95, "max_model_size_bytes": 1100}, "latency").choice
        == "b"
    )
    assert choose("dev", "prof", pts, None, {}, "latency").choice == "d"
    none = choose("dev", "prof", pts, Budgets(max_arena_bytes=1000), {}, "accuracy")
    assert none.choice is None
    assert none.verdicts["d"].ruled_out_by == ["max_arena_bytes = 1000: no arena_bytes measured"]


@pytest.fixture()
def lab(tmp_path, tiny_model):
    lab = make_lab(tmp_path)
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny_model["path"], d / "tiny.keras")
    np.savez(d / "tiny.train.npz", x=tiny_model["x"], y=tiny_model["y"])
    np.savez(d / "tiny.calibration.npz", x=tiny_model["x"][:30])
    np.savez(d / "tiny.eval.npz", x=tiny_model["x"][60:], y=tiny_model["y"][60:])
    (tmp_path / "prune-half.yaml").write_text(USER_RECIPE)
    lab["model"] = d / "tiny.keras"
    return lab


def sweep(lab, *extra: str):
    return hil(
        "sweep",
        str(lab["model"]),
        "--recipes",
        f"{RECIPES},prune-half.yaml",
        *FAST,
        "--repeats",
        "1",
        "--json",
        "choice.json",
        "--html",
        "fronts.html",
        *extra,
        cwd=lab["dir"],
        env=lab["env"],
    )


def test_sweep_picks_what_a_hand_computation_picks_and_a_second_sweep_rebuilds_nothing(lab):
    first = sweep(lab)
    assert first.returncode == 0, first.stderr[-3000:]
    # TensorFlow's and LiteRT's own output stays off the console: no CUDA probing, no delegate
    # announcement of the host's accuracy interpreter, no logging error from a closed capture (issue 20)
    for chatter in ("cuInit", "XNNPACK", "Logging error", "closed file", "[linux_runner]"):
        assert chatter not in first.stderr, first.stderr[-3000:]
    assert "5 candidate(s), 0 cached step(s), 5 computed (1 trained)" in first.stderr
    built = json.loads((lab["dir"] / "choice.json").read_text())
    cands = {c["name"]: c for c in built["candidates"]}
    assert set(cands) == {"tiny", "tiny+ptq-int8", "tiny+ptq-fp16", "tiny+aeq-weight-only-int8", "tiny+prune-half"}
    # latencies the device will report, per artifact (the fixed clock), chosen by hand
    latency = {
        "tiny": 500.0,
        "tiny+ptq-fp16": 400.0,
        "tiny+aeq-weight-only-int8": 300.0,
        "tiny+ptq-int8": 120.0,
        "tiny+prune-half": 100.0,
    }
    write_latency(lab["script"], {cands[n]["artifact_sha256"][:16]: v for n, v in latency.items()})
    size = {n: (lab["dir"] / c["artifact"]).stat().st_size for n, c in cands.items()}
    for n, c in cands.items():
        assert hashlib.sha256((lab["dir"] / c["artifact"]).read_bytes()).hexdigest() == c["artifact_sha256"]
    acc = {n: c["host"]["host_accuracy"] for n, c in cands.items()}
    size_budget = sorted(size.values())[2]  # the three smallest artifacts fit

    second = sweep(lab, "--budget", "max_latency_p50_us=350", "--budget", f"max_model_size_bytes={size_budget}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "5 candidate(s), 5 cached step(s), 0 computed (0 trained), 0 conversion(s)" in second.stderr
    assert "converting:" not in second.stderr and "training:" not in second.stderr  # the run path neither
    out = json.loads((lab["dir"] / "choice.json").read_text())
    dev = out["devices"]["dut"]
    # by hand: the front over (accuracy up, latency down, size down) ...
    names = sorted(latency)

    def beats(a, b):
        no_worse = acc[a] >= acc[b] and latency[a] <= latency[b] and size[a] <= size[b]
        return no_worse and (acc[a], latency[a], size[a]) != (acc[b], latency[b], size[b])

    hand_front = {b for b in names if not any(beats(a, b) for a in names if a != b)}
    # ... and the most accurate candidate within both budgets (ties: faster, then smaller)
    feasible = [n for n in names if latency[n] <= 350 and size[n] <= size_budget]
    hand_choice = min(feasible, key=lambda n: (-acc[n], latency[n], size[n], n))
    assert dev["objectives"] == ["accuracy", "latency", "size"]
    assert set(dev["front"]) == hand_front
    assert dev["choice"] == hand_choice and dev["artifact_sha256"] == cands[hand_choice]["artifact_sha256"]
    rows = {r["candidate"]: r for r in dev["candidates"]}
    assert rows["tiny"]["meets_budgets"] is False
    assert any("max_latency_p50_us" in why for why in rows["tiny"]["ruled_out_by"])
    for n in names:
        assert rows[n]["latency_p50_us"] == pytest.approx(latency[n], rel=0.01)
        assert rows[n]["model_size_bytes"] == size[n] and rows[n]["accuracy_source"] == "host"
        assert rows[n]["meets_budgets"] == (n in feasible)
    assert f"dut: choose {hand_choice}" in second.stdout and "<- chosen" in second.stdout
    page = (lab["dir"] / "fronts.html").read_text()
    assert 'id="fig-front-dut"' in page and f"{hand_choice} (chosen)" in page
    # every candidate was measured through the run path: one run, rows named after the candidates
    db = sqlite3.connect(lab["db"])
    got = set(db.execute("SELECT model, variant FROM results WHERE run_id=? AND status='ok'", (out["run_id"],)))
    assert got == {
        ("tiny", "fp32"),
        ("tiny+ptq-int8", "int8"),
        ("tiny+ptq-fp16", "fp16"),
        ("tiny+aeq-weight-only-int8", "asis"),
        ("tiny+prune-half", "int8"),
    }

    tree = hil("lineage", str(lab["model"]), "--json", cwd=lab["dir"], env=lab["env"])
    assert tree.returncode == 0, tree.stderr
    t = json.loads(tree.stdout)
    top = {c["recipe"]: c for c in t["children"]}
    assert set(top) == {"ptq-int8", "ptq-fp16", "aeq-weight-only-int8", "prune-half"}
    prune = top["prune-half"]
    assert prune["step"] == "prune" and prune["kind"] == "keras" and prune["params"]["sparsity"] == 0.5
    leaf = prune["children"][0]
    assert leaf["step"] == "quantize" and leaf["model_name"] == "tiny+prune-half"
    assert leaf["node_id"] == cands["tiny+prune-half"]["lineage"][-1]
    assert leaf["results"]["dut int8"]["latency_p50_us"] == pytest.approx(100.0, rel=0.01)
    text = hil("lineage", str(lab["model"]), cwd=lab["dir"], env=lab["env"]).stdout
    assert "└── quantize" in text and "prune-half" in text and "p50 100." in text
    back = hil(
        "lineage", str(lab["model"]), "--export", prune["node_id"][:10], "rolled.keras", cwd=lab["dir"], env=lab["env"]
    )
    assert back.returncode == 0, back.stderr
    assert hashlib.sha256((lab["dir"] / "rolled.keras").read_bytes()).hexdigest() == prune["sha256"]


def test_float_candidates_are_not_sent_to_mcu_boards(tmp_path):
    from fixed_lab import tflite_model

    from harness.compress.pipeline import Candidate
    from harness.compress.sweep import mcu_skips
    from harness.lab.config import load_inventory

    lab = make_lab(tmp_path)
    (lab["dir"] / "inventory.yaml").write_text(
        "devices:\n  - {id: host, profile: localhost, transport: {type: local}}\n"
        "  - {id: board, profile: stm32h7, transport: {type: serial, port: /dev/null}}\n"
        # behind labgrid places: the MCU board is reached over serial too, the Linux board over SSH
        "  - {id: lg-board, profile: stm32h7, transport: {type: labgrid, place: h7, coordinator: 127.0.0.1:1}}\n"
        "  - {id: lg-pi, profile: raspberry-pi-4, transport: {type: labgrid, place: pi, coordinator: 127.0.0.1:1}}\n"
    )
    inv = load_inventory(lab["dir"] / "inventory.yaml")
    model = tflite_model()
    cand = Candidate("sine", "", None, [], model, "asis", model, "0" * 64)
    skips = mcu_skips([cand], inv.select(None, None), inv)
    why = "not measured: an MCU runs full-integer models, this one is float32"
    assert skips == {("board", "sine"): why, ("lg-board", "sine"): why}
