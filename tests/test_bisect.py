"""`hil bisect`: a real git repository of a tiny Keras model, real TFLite conversions through the cache,
real runner processes on this host for latency. The regressing commit adds a big layer, so the size
is exact and the slowdown (~100x) is far beyond anything host load can make of a tiny model."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from harness.cli import main
from harness.gate.bisect import first_bad, max_steps
from harness.store.results import ResultStore

FAST = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "1", "--warmup-seconds", "0"]
COMMITS = 16  # commits of the model file; the big layer comes in with commit BIG
BIG = 11
NOTES = (3, 8, 13)  # after these commits, one that only changes notes.txt (grouped with the one before)


def _model_bytes(tmp, seed: int, big: bool) -> bytes:
    """A tiny Dense model whose weights depend on `seed` (every commit changes the file, never its
    size: the layers are named, so no auto-numbered name differs); `big` adds 3 x 256 x 256 Dense."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8,), name="x"), keras.layers.Dense(8, activation="relu", name="d0")]
    if big:
        layers.append(keras.layers.Dense(256, activation="relu", name="wide_in"))
        layers += [keras.layers.Dense(256, activation="relu", name=f"wide{i}") for i in range(2)]
    layers.append(keras.layers.Dense(4, name="out"))
    model = keras.Sequential(layers, name="net")
    path = tmp / f"m{seed}-{int(big)}.keras"
    model.save(path)
    return path.read_bytes()


def _git(repo, *args: str) -> str:
    env = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00"}
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env={**_env(), **env})
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _env() -> dict:
    import os

    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    """16 commits of models/net.keras (each new weights; the big layer from commit BIG on) and three
    commits of notes.txt in between; the artifact cache is shared by the module's tests."""
    tmp = tmp_path_factory.mktemp("models")
    repo = tmp_path_factory.mktemp("repo")
    _git(repo, "init", "-q", "-b", "main")
    (repo / "models").mkdir()
    commits, notes = [], {}
    for i in range(COMMITS):
        (repo / "models" / "net.keras").write_bytes(_model_bytes(tmp, i, big=i >= BIG))
        _git(repo, "add", "models/net.keras")
        _git(repo, "commit", "-q", "-m", f"net: weights {i}" + (" and a wide block" if i == BIG else ""))
        commits.append(_git(repo, "rev-parse", "HEAD"))
        if i in NOTES:
            (repo / "notes.txt").write_text(f"note {i}\n")
            _git(repo, "add", "notes.txt")
            _git(repo, "commit", "-q", "-m", f"notes {i}")
            notes[i] = _git(repo, "rev-parse", "HEAD")
    (repo / ".gitignore").write_text("reports/\n")
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "ignore reports")
    return {"repo": repo, "commits": commits, "notes": notes, "cache": tmp_path_factory.mktemp("cache")}


@pytest.fixture()
def lab(history, monkeypatch):
    monkeypatch.setenv("HILBENCH_CACHE", str(history["cache"]))
    monkeypatch.setenv("HILBENCH_LOCK_DIR", str(history["cache"] / "locks"))
    monkeypatch.chdir(history["repo"])
    return history


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_first_bad_takes_ceil_log2_steps_wherever_the_change_is():
    for n in range(1, 40):
        for k in range(n):
            asked = []
            found = first_bad(n, lambda i: asked.append(i) or i >= k)
            assert found == k and len(asked) <= math.ceil(math.log2(n)) and len(set(asked)) == len(asked)
    assert max_steps(1) == 1 and max_steps(15) == 5 and max_steps(16) == 5 and max_steps(17) == 6


@pytest.mark.parametrize(("good", "bad"), [(0, 15), (5, 15), (10, 11), (0, 11), (10, 15)])
def test_size_bisection_names_the_commit_that_added_the_layer(lab, capsys, good, bad):
    c = lab["commits"]
    code, out, err = cli(capsys, "bisect", "models/net.keras", "--good", c[good], "--bad", c[bad], "--metric", "size")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"first bad commit: {c[BIG]} net: weights {BIG} and a wide block"
    assert lines[1].startswith("size: +") and " bytes, threshold +0.00 %" in lines[1]
    changes = bad - good
    commits = changes + sum(1 for n in NOTES if good <= n < bad)
    steps = int(lines[2].split()[1])
    assert 1 <= steps <= max_steps(changes) <= max_steps(commits)
    assert f"over {commits} commit(s), {changes} changing models/net.keras" in lines[2]
    assert len([ln for ln in err.splitlines() if ln.startswith("step ")]) == steps


def test_size_bisection_from_head_and_by_tag(lab, capsys):
    c = lab["commits"]
    _git(lab["repo"], "tag", "-f", "v1", c[2])
    code, out, err = cli(capsys, "bisect", "models/net.keras", "--good", "v1", "--metric", "size")
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"first bad commit: {c[BIG]} ")
    assert "over 17 commit(s), 13 changing" in out  # HEAD is the .gitignore commit


def _error(capsys, *args: str) -> str:
    code, out, err = cli(capsys, "bisect", *args)
    assert code == 3 and out == "", (code, out, err)
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    assert errors[0].startswith("hil: error: ")
    return errors[0]


def test_usage_errors_are_one_line_and_exit_3(lab, capsys, tmp_path):
    c, repo = lab["commits"], lab["repo"]
    size = ["--metric", "size"]
    # the good revision is already bad: the bad one is not larger than it
    msg = _error(capsys, "models/net.keras", "--good", c[12], "--bad", c[15], *size)
    assert f"--bad {c[15][:12]} is not worse than --good {c[12][:12]}" in msg and "already bad" in msg
    # --bad before --good, the same commit, not a commit at all
    assert "is not an ancestor of --bad" in _error(capsys, "models/net.keras", "--good", c[5], "--bad", c[2], *size)
    assert "same commit" in _error(capsys, "models/net.keras", "--good", c[5], "--bad", c[5], *size)
    assert "--good nope: not a commit" in _error(capsys, "models/net.keras", "--good", "nope", *size)
    # the file is the same at both ends (only notes.txt changed in between)
    assert "nothing to bisect" in _error(capsys, "models/net.keras", "--good", c[3], "--bad", lab["notes"][3], *size)
    # a file git does not track, a file outside any repository, a file that did not exist at --good
    (repo / "models" / "other.keras").write_bytes((repo / "models" / "net.keras").read_bytes())
    try:
        assert "not tracked by git" in _error(capsys, "models/other.keras", "--good", c[0], *size)
    finally:
        (repo / "models" / "other.keras").unlink()
    (tmp_path / "loose.keras").write_bytes(b"x")
    assert "not in a git repository" in _error(capsys, str(tmp_path / "loose.keras"), "--good", "HEAD~1", *size)
    assert "notes.txt: not a file at commit" in _error(capsys, "notes.txt", "--good", c[0], "--bad", c[5], *size)
    # uncommitted changes of the model file (other files may be dirty: they cannot change its artifact)
    path = repo / "models" / "net.keras"
    kept = path.read_bytes()
    path.write_bytes(kept + b"\0")
    try:
        assert "uncommitted changes" in _error(capsys, "models/net.keras", "--good", c[0], *size)
    finally:
        path.write_bytes(kept)
    notes = repo / "notes.txt"
    notes.write_text("edited, not committed\n")
    try:  # another file's changes cannot change the model's artifact
        code, out, err = cli(capsys, "bisect", "models/net.keras", "--good", c[10], "--bad", c[11], *size)
        assert code == 0 and out.startswith(f"first bad commit: {c[BIG]} "), err
    finally:
        _git(repo, "checkout", "--", "notes.txt")
    # latency and accuracy need a device, accuracy its data
    assert "--device: needed for --metric latency" in _error(capsys, "models/net.keras", "--good", c[0])
    assert "--eval" in _error(capsys, "models/net.keras", "--good", c[0], "--metric", "accuracy", "--device", "local")


def test_latency_bisection_pairs_each_revision_with_the_good_artifact(lab, capsys):
    """A short history (4 changes) with a ~100x slowdown at BIG, measured by real runner processes that
    each time the good artifact and the revision's: 3 steps of 5 processes, stored as `bisect` runs
    that are never the latest run."""
    c = lab["commits"]
    db = lab["repo"] / "reports" / "results.sqlite"
    code, out, err = cli(
        capsys,
        "--db",
        str(db),
        "bisect",
        "models/net.keras",
        "--good",
        c[BIG - 2],
        "--bad",
        c[BIG + 2],
        "--device",
        "local",
        "--pairs",
        "5",
        *FAST,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"first bad commit: {c[BIG]} net: weights {BIG} and a wide block"
    effect = float(lines[1].split("latency_p50_us ")[1].split(" %")[0])
    assert effect > 500 and "5 processes timing both" in lines[1]
    # the confirmation profiled both artifacts: the added time is on the wide block's new ops
    assert "; per-operator profile: +" in lines[1] and "(new op)" in lines[1]
    assert lines[2].startswith("steps: 3 measured (at most 3)")
    store = ResultStore(db, read_only=True)
    runs = store.runs()
    assert set(runs.kind) == {"bisect"} and len(runs) == 3 and store.latest_run_id() is None
    assert c[BIG] in set(runs.git_commit) and c[BIG + 2] in set(runs.git_commit)
    results = store.dataframe(include_failed=False)
    assert results[results.run_id == runs.run_id.iloc[0]].result_id.nunique() == 10  # 5 x (good, revision)
    assert set(results.model) == {"net"} and set(results.variant) == {"fp32"}
    store.close()
    # a bisect step is no measurement to gate or to take as a reference
    step = runs.run_id.iloc[0]
    code, _, err = cli(capsys, "--db", str(db), "gate", "--run", step)
    assert code == 3 and "a step of `hil bisect`" in err
    code, _, err = cli(capsys, "--db", str(db), "baseline", "set", step)
    assert code == 3 and "a step of `hil bisect`" in err
    code, out, _ = cli(capsys, "--db", str(db), "report", "--run", step, "-o", str(lab["repo"] / "reports" / "s.md"))
    assert code == 0 and f"- run: `{step}` (complete, a step of `hil bisect`)" in out


def test_accuracy_bisection_names_the_commit_that_broke_the_weights(tmp_path, monkeypatch, capsys):
    """Three commits after the good one: new weights that keep every prediction (1e-6 apart), the
    commit that scrambles the output layer, one more after it. The labels are the good model's own
    predictions, so the good revision scores 1.0 and the scrambled ones far less."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, activation="relu", name="d0"),
            keras.layers.Dense(4, name="out"),
        ],
        name="net",
    )
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    weights = model.get_weights()
    shas = []
    scrambled = [w[::-1].copy() if i == 2 else w for i, w in enumerate(weights)]
    for i, ws in enumerate([weights, [w + 1e-6 for w in weights], scrambled, [w + 1e-6 for w in scrambled]]):
        model.set_weights(ws)
        model.save(repo / "net.keras")
        _git(repo, "add", "net.keras")
        _git(repo, "commit", "-q", "-m", f"step {i}")
        shas.append(_git(repo, "rev-parse", "HEAD"))
    monkeypatch.setenv("HILBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HILBENCH_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.chdir(repo)
    code, out, err = cli(
        capsys,
        "bisect",
        "net.keras",
        "--good",
        shas[0],
        "--metric",
        "accuracy",
        "--eval",
        str(tmp_path / "eval.npz"),
        "--device",
        "local",
        *FAST,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"first bad commit: {shas[2]} step 2"
    assert lines[1].startswith("accuracy: accuracy_top1 1.0000 -> ") and "threshold 1.00 points" in lines[1]
    assert lines[2].startswith("steps: 3 measured (at most 3)")


def test_bisect_steps_are_never_a_reference_a_history_or_an_artifacts_figures(tmp_path):
    """Like a confirmation, a bisect step holds the good artifact's and a commit's processes under the
    series' own key: no baseline, history or measured artifact may take it up."""
    from gate_helpers import add_run

    from harness.gate import baselines as bl
    from harness.store import verdicts
    from harness.store.results import ResultRecord

    store = ResultStore(tmp_path / "r.sqlite")
    art = "a" * 64
    night = add_run(store, [{"samples": [100.0] * 50, "artifact": art}])
    key = bl.key_of("m", "fp32", "local")
    step = store.start_run(
        [f"bisect:{key}"], "bisect", ["bisect"], "0", "host", "c" * 40, "bisect:c vs g", kind="bisect"
    )
    for role in ("reference", "candidate"):
        rec = ResultRecord(step, f"confirm-{role}-0", "m", "0" * 64, "fp32", "local", "localhost", "ok")
        rec.artifact_sha256 = art
        store.record(rec, [("latency_p50_us", 999.0, "us")], {})
    store.finish_run(step)
    verdicts.replace_verdicts(store, step, [{"key": key, "verdict": "pass", "model": "m", "variant": "fp32"}])
    later = add_run(store, [{"samples": [100.0] * 50}])
    rolling = bl.select(store, bl.BaselineSpec.parse("rolling:5"), "m", "fp32", "local", "localhost", later)
    assert rolling is not None and rolling.run_ids == [night]
    assert bl.last_passing(store).empty
    history = verdicts.metric_history(store, key, "m", "fp32", "local", float("inf"))
    assert {r[0] for r in history} == {night, later}
    assert set(store.measured_artifact(art).run_id) == {night} and store.latest_run_id() == later
    store.close()
