"""`hil sweep` end to end on a device with a deterministic clock (tests/fixed_runner.py): candidates are
built, measured through the run path, and the choice is the one a hand computation of the Pareto front
and the budgets gives; a second identical sweep trains and converts nothing; `hil lineage` shows the tree."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

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
    # ... and the most accurate candidate within both budgets, where accuracies within paired sampling
    # error of the best one's (exact McNemar p >= 0.05 on the same eval samples) tie: faster, then smaller
    from scipy.stats import binomtest

    from harness.compress.ptq import tflite_correct

    ev = np.load(lab["model"].parent / "tiny.eval.npz")
    right = {n: tflite_correct(lab["dir"] / cands[n]["artifact"], ev["x"], ev["y"]) for n in names}
    feasible = [n for n in names if latency[n] <= 350 and size[n] <= size_budget]
    best = min(feasible, key=lambda n: (-acc[n], n))

    def tied(n):
        only_best, only_n = int(np.sum(right[best] & ~right[n])), int(np.sum(~right[best] & right[n]))
        return only_best + only_n == 0 or binomtest(min(only_best, only_n), only_best + only_n).pvalue >= 0.05

    floor = min(acc[n] for n in feasible if tied(n))
    hand_choice = min((n for n in feasible if acc[n] >= floor), key=lambda n: (latency[n], size[n], -acc[n], n))
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


def _paired(n: int, a_right: int, b_right: int, both: int, seed: int = 0):
    """Per-sample correctness of two candidates on the same n samples: `both` right for both, the
    rest of each one's right answers on samples the other gets wrong (shuffled)."""
    from harness.compress.pareto import Paired

    a = np.zeros(n, dtype=bool)
    b = np.zeros(n, dtype=bool)
    a[:both] = b[:both] = True
    a[both:a_right] = True
    b[a_right : a_right + b_right - both] = True
    order = np.random.default_rng(seed).permutation(n)
    return Paired(np.arange(n), a[order]), Paired(np.arange(n), b[order])


def test_accuracy_within_paired_sampling_error_is_a_tie_broken_by_the_next_objective():
    """The issue's case: ptq-int8 176 of 200 right (88.0 %), a student 173 (86.5 %), 2.9x faster and
    38 % smaller; 5 samples only ptq gets right, 2 only the student: McNemar p = 2 * P(X <= 2 | 7, 1/2)
    = 58/128. A tie: the faster student is chosen. 190 vs 150 of 200 is no tie."""
    from harness.compress.pareto import mcnemar

    ptq, student = _paired(200, 176, 173, 171)
    assert mcnemar(ptq, student) == (pytest.approx(58 / 128), 200)
    pts = [
        Point("m+ptq-int8", {"accuracy": 0.88, "latency_p50_us": 2900.0, "model_size_bytes": 1000.0}),
        Point("m+student", {"accuracy": 0.865, "latency_p50_us": 1000.0, "model_size_bytes": 620.0}),
    ]
    paired = {"m+ptq-int8": ptq, "m+student": student}
    ch = choose("board", "stm32h7", pts, None, {}, "accuracy", paired)
    assert ch.choice == "m+student" and ch.most_accurate == "m+ptq-int8" and ch.decided_by == "latency"
    assert [(t.name, t.samples) for t in ch.ties] == [("m+student", 200)]
    assert choose("board", "stm32h7", pts, None, {}, "accuracy").choice == "m+ptq-int8"  # no per-sample data
    # a real difference stays one: 40 more right answers out of 200
    far_a, far_b = _paired(200, 190, 150, 150)
    far = {"m+ptq-int8": far_a, "m+student": far_b}
    pts[1].values["accuracy"] = 0.75
    pts[0].values["accuracy"] = 0.95
    ch = choose("board", "stm32h7", pts, None, {}, "accuracy", far)
    assert ch.choice == "m+ptq-int8" and ch.ties == [] and ch.decided_by == "accuracy"
    # only the samples both were scored on are compared
    a, b = _paired(100, 90, 88, 86)
    c = type(a)(np.arange(50, 150), b.correct)
    assert mcnemar(a, c)[1] == 50


@pytest.fixture()
def mcu_sweep(tmp_path):
    """A sweep's measurements as the run path stores them for an MCU board that scored 200 of 500 eval
    samples (the serial transport's default cap), in a real results database; no board needed."""
    from harness.compress.pipeline import Candidate, EvalData
    from harness.lab.config import load_inventory
    from harness.mcu.serial.session import sample_indices
    from harness.run.rows import flatten
    from harness.store.results import ResultRecord, ResultStore

    lab = make_lab(tmp_path)
    (lab["dir"] / "inventory.yaml").write_text(
        "devices:\n  - {id: board, profile: stm32h7, transport: {type: serial, port: /dev/null}}\n"
    )
    inv = load_inventory(lab["dir"] / "inventory.yaml")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    np.savez(tmp_path / "eval.npz", x=rng.random((500, 4), dtype=np.float32), y=y)
    ev = EvalData.load(tmp_path / "eval.npz")
    idx = sample_indices(500, 200)
    ptq, student = _paired(200, 176, 173, 171)
    # on the host (the full set): 425 vs 428 right
    host_ptq, host_student = _paired(500, 425, 428, 410, seed=1)
    store = ResultStore(tmp_path / "r.sqlite")
    run_id = store.start_run([], "h", [], "test", "host", None)
    cands = []
    for name, right, host, lat, size in (
        ("m+ptq-int8", ptq, host_ptq, 2900.0, 1000),
        ("m+student", student, host_student, 1000.0, 620),
    ):
        preds = np.where(right.correct, y[idx], (y[idx] + 1) % 10)
        acc = {"n": 200, "of": 500, "top1": float(right.correct.mean()), "score": "top1"}
        acc.update(indices=idx.tolist(), predictions=preds.tolist())
        doc = {"latency_us": {"p50": lat, "count": 5}, "model": {"size_bytes": size}, "accuracy": acc}
        doc["memory"] = {"arena_bytes": 4000, "flash_bytes": 60000}  # within the stm32h7 profile's budgets
        rec = ResultRecord(run_id, name, name, "0" * 64, "int8", "board", "stm32h7", "ok", raw=doc)
        store.record(rec, *flatten(doc))
        c = Candidate(name, name.split("+")[1], None, [], tmp_path / "x", "int8", tmp_path / "x.tflite", "0" * 64)
        c.metrics = {"host_accuracy": float(host.correct.mean()), "macs": 1, "size_bytes": size}
        c.host_correct = host.correct
        cands.append(c)
    return {"store": store, "run_id": run_id, "cands": cands, "inv": inv, "eval": ev, "idx": idx}


def test_mcu_subset_accuracy_says_n_of_N_and_the_tie_rule_in_the_table_json_and_html(mcu_sweep):
    from harness.compress.sweep import SweepResult, collect, decide, format_table, render_html, to_json
    from harness.run.orchestrate import RunSummary

    m = mcu_sweep
    devices = m["inv"].select(None, None)
    points, sources, failures, paired, paired_sources = collect(
        m["store"], m["run_id"], m["cands"], m["inv"], devices, m["eval"]
    )
    assert paired_sources == {("board", "m+ptq-int8"): "device", ("board", "m+student"): "device"}
    assert list(paired["board"]["m+ptq-int8"].indices) == list(m["idx"])
    choices = decide(points, m["inv"], devices, {}, "accuracy", paired)
    res = SweepResult(RunSummary(m["run_id"], ok=2), m["cands"], points, sources, choices, failures, {}, [], paired)
    res.paired_sources = paired_sources
    table = format_table(res)
    assert "88.00 % (200 of 500)" in table and "86.50 % (200 of 500)" in table
    assert "(n of N): accuracy on n evenly spread samples of the N-sample evaluation set" in table
    assert "ties: accuracy differences within the sampling error of a paired comparison" in table
    assert "board: choose m+student" in table and "p = 0.45 on 200 paired samples" in table
    assert "decided by latency" in table
    doc = to_json(res, Path("m.keras"))
    dev = doc["devices"]["board"]
    assert dev["choice"] == "m+student" and dev["decided_by"] == "latency"
    assert dev["accuracy_ties"][0]["candidate"] == "m+student" and dev["accuracy_ties"][0]["samples"] == 200
    row = {r["candidate"]: r for r in dev["candidates"]}["m+ptq-int8"]
    assert (row["accuracy_n"], row["accuracy_of"], row["accuracy_paired"]) == (200, 500, "device")
    assert "McNemar" in doc["tie_rule"]
    page = render_html(res, Path("m.keras"))
    assert "88.00 % (200 of 500)" in page and "McNemar" in page and "m+student (chosen)" in page


def test_without_stored_predictions_the_host_scores_the_same_samples(mcu_sweep):
    """A result without per-sample predictions (an older transport): the host's per-sample correctness
    on the indices the board used (the serial transport's rule) stands in."""
    from harness.compress.sweep import accuracy_samples

    m = mcu_sweep
    store, c = m["store"], m["cands"][1]
    wide = store.wide(m["run_id"])
    ok = wide[wide["model"] == c.name]
    raw = store.raw(int(ok["result_id"].iloc[0]))
    n, of, pair, where = accuracy_samples(store, ok, c, m["eval"])
    assert (n, of, where) == (200, 500, "device")
    del raw["accuracy"]["predictions"]
    from harness.run.rows import flatten
    from harness.store.results import ResultRecord

    rid = store.record(
        ResultRecord(m["run_id"], "old", c.name, "0" * 64, "int8", "board", "stm32h7", "ok", raw=raw), *flatten(raw)
    )
    wide = store.wide(m["run_id"])
    n, of, pair, where = accuracy_samples(store, wide[wide["result_id"] == rid], c, m["eval"])
    assert (n, of, where) == (200, 500, "host")
    assert list(pair.indices) == list(m["idx"]) and list(pair.correct) == list(c.host_correct[m["idx"]])


DEEP_HALF = "name: deep-half\ntrain: {epochs: 1}\nsteps:\n  - distill: {depth: 0.5}\n  - quantize: {variant: int8}\n"


def test_a_recipe_that_cannot_apply_is_listed_and_the_others_are_measured_and_chosen(lab):
    """The tiny model has no repeatable block: `distill: {depth: 0.5}` refuses it. The sweep lists that
    candidate as not applicable in the table, the JSON and the page, measures the others, chooses,
    and exits 0; an input the invocation lacks (a student file) stops it before anything trains."""
    (lab["dir"] / "deep-half.yaml").write_text(DEEP_HALF)
    p = hil(
        "sweep",
        str(lab["model"]),
        "--recipes",
        "deep-half.yaml,ptq-int8",
        *FAST,
        "--repeats",
        "1",
        "--json",
        "choice.json",
        "--html",
        "fronts.html",
        cwd=lab["dir"],
        env=lab["env"],
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "tiny+deep-half: not applicable:" in p.stderr and "Traceback" not in p.stderr
    assert "2 candidate(s)" in p.stderr and "1 recipe(s) gave none (listed)" in p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("dut") and "tiny+deep-half" in x)
    assert "not applicable: deep-half.yaml: steps[0].distill.depth" in line
    assert "tiny+deep-half: not applicable: deep-half.yaml: steps[0].distill.depth: the model has no block" in p.stdout
    out = json.loads((lab["dir"] / "choice.json").read_text())
    listed = {c["name"]: c for c in out["candidates"]}
    assert listed["tiny+deep-half"]["status"] == "not applicable"
    assert "steps[0].distill.depth: the model has no block" in listed["tiny+deep-half"]["reason"]
    dev = out["devices"]["dut"]
    rows = {r["candidate"]: r for r in dev["candidates"]}
    assert rows["tiny+deep-half"]["status"] == "not applicable"
    assert rows["tiny+ptq-int8"]["status"] == "ok" and rows["tiny"]["status"] == "ok"
    assert dev["choice"] in ("tiny", "tiny+ptq-int8")
    assert "not applicable: " in (lab["dir"] / "fronts.html").read_text()

    only = hil(
        "sweep", str(lab["model"]), "--recipes", "deep-half.yaml", "--compress-only", cwd=lab["dir"], env=lab["env"]
    )
    assert only.returncode == 0, only.stderr[-2000:]
    assert "tiny+deep-half" in only.stdout and "not applicable: " in only.stdout
    none = hil(
        "sweep", str(lab["model"]), "--recipes", "deep-half.yaml", "--no-baseline", cwd=lab["dir"], env=lab["env"]
    )
    assert none.returncode == 3 and "no candidate to measure" in none.stderr and "not applicable: " in none.stdout

    (lab["dir"] / "student.yaml").write_text(
        "name: from-file\nsteps:\n  - distill: {student: nowhere.keras}\n  - quantize: {variant: int8}\n"
    )
    bad = hil(
        "sweep",
        str(lab["model"]),
        "--recipes",
        "prune-half.yaml,student.yaml",
        "--compress-only",
        cwd=lab["dir"],
        env=lab["env"],
    )
    assert bad.returncode == 3 and "nowhere.keras: student model file not found" in bad.stderr
    assert "training:" not in bad.stderr  # refused before prune-half trained


def test_a_training_crash_is_a_failed_candidate(tiny_model, tmp_path, monkeypatch):
    """Training that crashes (here: the allocator runs out of memory, which cannot be provoked reliably,
    so `fit` raises TensorFlow's own error) gives a `failed` entry, not an aborted sweep."""
    import tensorflow as tf

    from harness.compress import recipes, train
    from harness.compress.pipeline import FAILED, Compressor, Refused
    from harness.models.convert import Calibration, Converter, ModelSource

    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    np.savez(tmp_path / "train.npz", x=tiny_model["x"], y=tiny_model["y"])
    (tmp_path / "prune-half.yaml").write_text(USER_RECIPE)

    def oom(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,8,8,4]")

    monkeypatch.setattr(train, "fit", oom)
    comp = Compressor(
        ModelSource.open(tiny_model["path"]),
        Converter(tmp_path / "cache" / "models"),
        Calibration.from_arg(str(tiny_model["dir"] / "tiny.calibration.npz")),
        None,
        str(tmp_path / "train.npz"),
    )
    got = comp.try_run(recipes.expand([str(tmp_path / "prune-half.yaml")], {})[0])
    assert isinstance(got, Refused) and got.status == FAILED
    assert got.describe() == "failed: ResourceExhaustedError: OOM when allocating tensor with shape[64,8,8,4]"
    from harness.compress.pipeline import NOT_APPLICABLE
    from harness.compress.sweep import SweepResult
    from harness.run.orchestrate import RunSummary

    def code(status: str) -> int:
        refused = [Refused("tiny+x", "x", got.recipe, status, "why")]
        return SweepResult(RunSummary("r", ok=1), [], {}, {}, [], refused=refused).exit_code

    assert (code(FAILED), code(NOT_APPLICABLE)) == (3, 0)  # a crash is an error; not applying is an outcome


def test_a_robustness_budget_rules_out_a_candidate_that_passes_on_clean_data(lab):
    """Issue 24: the candidate a sweep chooses on clean data is ruled out once the budget asks for its
    accuracy under noise, and the choice moves to one that keeps it (or to none)."""
    first = sweep(lab, "--robustness", "noise_snr0db")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = {
        r["candidate"]: r for r in json.loads((lab["dir"] / "choice.json").read_text())["devices"]["dut"]["candidates"]
    }
    chosen = next(n for n, r in rows.items() if r.get("chosen"))
    noisy = {n: r["accuracy_top1@noise_snr0db"] for n, r in rows.items() if r.get("status") == "ok"}
    assert all(0 <= v <= 1 for v in noisy.values()) and len(noisy) == 5
    clean = min(r["accuracy"] for r in rows.values() if r.get("status") == "ok")  # every candidate passes it
    # just above what the chosen candidate keeps under noise: at the next more robust candidate if any
    floor = min([v for v in noisy.values() if v > noisy[chosen]] or [noisy[chosen] + 1e-6])
    second = sweep(
        lab, "--budget", f"min_accuracy_top1={clean}", "--budget", f"min_accuracy_top1@noise_snr0db={floor}"
    )  # the budget alone asks for the perturbation: no --robustness needed
    dev = json.loads((lab["dir"] / "choice.json").read_text())["devices"]["dut"]
    rows = {r["candidate"]: r for r in dev["candidates"]}
    assert rows[chosen]["meets_budgets"] is False
    assert rows[chosen]["ruled_out_by"] == [
        f"accuracy_top1@noise_snr0db {noisy[chosen]:g} exceeds budget min_accuracy_top1@noise_snr0db (>= {floor:g})"
    ]  # it passes the clean budget: the robustness one alone rules it out
    keep = {n for n, v in noisy.items() if v >= floor}
    assert (dev["choice"] in keep) if keep else (dev["choice"] is None)
    assert second.returncode == (0 if keep else 1), second.stderr[-3000:]  # 1: no candidate within budgets
