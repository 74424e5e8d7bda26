"""`hil run` end to end on the `local` device with real conversion, runner and SQLite."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, hil
from fixed_lab import FAST as FIXED_FAST
from fixed_lab import make_lab

from harness.store.results import ResultStore


def test_run_stores_rows_with_provenance_and_report(workspace, tiny_model):
    p = hil("run", str(tiny_model["path"]), "--variants", "fp32,int8", *FAST, "--report", "reports/r.md", check=True)
    run_id = p.stdout.strip().splitlines()[-1]
    store = ResultStore(workspace / "reports" / "results.sqlite")
    wide = store.wide(run_id)
    assert sorted(wide["variant"]) == ["fp32", "int8"]
    assert set(wide["status"]) == {"ok"}
    for _, r in wide.iterrows():
        assert r["latency_p50_us"] > 0 and r["latency_count"] >= 5
        assert r["latency_min_us"] <= r["latency_p50_us"] <= r["latency_p90_us"] <= r["latency_max_us"]
        assert r["peak_rss_kb"] > 0 and r["model_size_bytes"] > 0
        assert 0 <= r["accuracy_top1"] <= 1 and 0 <= r["agreement"] <= 1
        assert len(store.samples(int(r["result_id"]))) == r["latency_count"]
        assert r["runtime"] in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
        assert r["converter_version"].startswith("tf-") and len(r["model_sha256"]) == 64
        assert r["host"] and r["harness_version"] and r["device_id"] == "local"
    # the fp32 model agrees with itself perfectly: the reference comes from the same artifact
    assert wide.set_index("variant").loc["fp32", "agreement"] == 1.0
    long = store.dataframe(run_id)
    assert {"metric", "value", "unit", "model_sha256", "profile"} <= set(long.columns)
    report = (workspace / "reports" / "r.md").read_text()
    assert "| tiny | fp32 | local |" in report and "| tiny | int8 | local |" in report
    # second run: conversion comes from the cache only
    p2 = hil("-v", "run", str(tiny_model["path"]), "--variants", "fp32,int8", *FAST, check=True)
    assert "conversion: 2 cache hit(s), 0 conversion(s)" in p2.stderr
    # export
    hil("results", "--csv", "out.csv", "--parquet", "out.parquet", check=True)
    import pandas as pd

    assert len(pd.read_csv(workspace / "out.csv")) == 4
    assert len(pd.read_parquet(workspace / "out.parquet")) == 4


def test_interrupted_run_keeps_results_and_resume_runs_only_missing(workspace, tiny_model):
    args = [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(tiny_model["path"]),
        "--variants",
        "fp32,dynamic,fp16",
        "--min-runs",
        "5",
        "--min-seconds",
        "0",
        "--warmup-runs",
        "0",
        "--warmup-seconds",
        "0",
        "--repeats",
        "1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    seen = []
    for line in proc.stderr:  # event-driven: kill right after the first result is committed
        seen.append(line)
        if line.startswith("done tiny/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    first = db.execute("SELECT result_id, run_id, variant FROM results WHERE status='ok'").fetchall()
    assert len(first) == 1
    p = hil(*args[3:], "--resume", check=True)
    assert "resuming run" in p.stderr and "1 of 3 jobs already measured" in p.stderr
    rows = db.execute("SELECT run_id, variant FROM results WHERE status='ok' ORDER BY result_id").fetchall()
    assert len(rows) == 3 and {r[0] for r in rows} == {first[0][1]}
    assert sorted(r[1] for r in rows) == ["dynamic", "fp16", "fp32"]
    assert p.stderr.count("done tiny/") == 2
    assert db.execute("SELECT status FROM runs").fetchall() == [("complete",)]


@pytest.mark.parametrize("case", ["missing", "corrupt", "yaml", "variant"])
def test_bad_input_gives_one_line_error_and_nonzero_exit(workspace, tiny_model, case):
    model = str(tiny_model["path"])
    extra = []
    if case == "missing":
        model = "nothere.keras"
        expect = "nothere.keras: model file not found"
    elif case == "corrupt":
        (workspace / "bad.tflite").write_bytes(b"\x01\x02garbage-not-a-flatbuffer")
        model = "bad.tflite"
        expect = "bad.tflite: not a TFLite flatbuffer"
    elif case == "yaml":
        (workspace / "inventory.yaml").write_text("devices:\n  - id: x\n   profile: [\n")
        expect = "inventory.yaml: line 3 column 4: malformed YAML"
    else:
        extra = ["--variants", "int3"]
        expect = "unknown variant 'int3'"
    p = hil("run", model, *extra, *FAST)
    assert p.returncode == 3
    err = [line for line in p.stderr.splitlines() if line.startswith("hil: error:")]
    assert len(err) == 1 and expect in err[0], p.stderr
    assert "Traceback" not in p.stderr
    if case == "missing":
        p = hil("--debug", "run", model)
        assert "Traceback" in p.stderr


def test_unknown_command_is_usage_error(workspace):
    p = hil("frobnicate")
    assert p.returncode == 3 and "invalid choice" in p.stderr


def test_convert_writes_the_variants_where_asked(workspace, tiny_model):
    calib = str(tiny_model["dir"] / "tiny.calibration.npz")
    p = hil(
        "convert", str(tiny_model["path"]), "--variants", "fp32,int8", "--calibration", calib, "-o", "out/m", check=True
    )
    rows = [ln.split("\t") for ln in p.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == ["fp32", "int8"]
    for variant, size, path in rows:
        written = workspace / "out" / "m" / f"tiny_{variant}.tflite"
        assert Path(path) == Path("out/m") / written.name and written.stat().st_size == int(size)
        assert written.read_bytes()[4:8] == b"TFL3"
    (workspace / "taken").write_text("a file, not a folder")
    p = hil("convert", str(tiny_model["path"]), "--output", "taken")
    assert p.returncode == 3 and p.stderr.strip().endswith(
        "taken: is not a directory; give a folder for the converted models"
    )
    assert "Traceback" not in p.stderr


def test_tflite_input_runs_asis_and_analyze(workspace, tiny_model):
    conv = hil(
        "convert",
        str(tiny_model["path"]),
        "--variants",
        "int8",
        "--calibration",
        str(tiny_model["dir"] / "tiny.calibration.npz"),
        check=True,
    )
    artifact = conv.stdout.split("\t")[-1].strip()
    p = hil("run", artifact, *FAST, check=True)
    run_id = p.stdout.strip().splitlines()[-1]
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(run_id)
    assert list(wide["variant"]) == ["asis"] and wide["status"].tolist() == ["ok"]
    a = hil("analyze", artifact, check=True)
    assert "CONV_2D" in a.stdout and "FULLY_CONNECTED" in a.stdout
    # this exact file was measured: analyze adds its cost on the device (read from the results database)
    p50 = float(wide["latency_p50_us"].iloc[0])
    assert "Measured (newest result of this file per device):" in a.stdout
    line = next(ln for ln in a.stdout.splitlines() if ln.startswith("| local "))
    assert f"| {1e6 / p50:.1f} |" in line and line.rstrip(" |").endswith(run_id)
    doc = json.loads(hil("analyze", artifact, "--json", check=True).stdout)
    assert doc["measured"][0]["inferences_per_second"] == pytest.approx(1e6 / p50)
    assert "Measured" not in hil("--db", str(workspace / "none.sqlite"), "analyze", artifact, check=True).stdout


def test_devices_sharing_this_host_are_measured_one_after_the_other(workspace, tiny_model):
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - {id: a, profile: localhost, transport: {type: local}}\n"
        "  - {id: b, profile: localhost, transport: {type: local}}\n"
    )
    p = hil("-v", "run", str(tiny_model["path"]), *FAST, check=True)
    events = [
        line.split()[0] + " " + line.split()[1].split("@")[1].rstrip(":")
        for line in p.stderr.splitlines()
        if line.startswith(("measuring ", "done "))
    ]
    assert sorted(events) == ["done a", "done b", "measuring a", "measuring b"]
    first = events[0].split()[1]
    assert events[:2] == [f"measuring {first}", f"done {first}"], events  # no overlap on one host


def test_copied_model_is_stored_under_its_own_name(workspace, tiny_model):
    hil("run", str(tiny_model["path"]), *FAST, check=True)
    copy = workspace / "renamed.keras"
    copy.write_bytes(tiny_model["path"].read_bytes())
    p = hil("-v", "run", str(copy), *FAST, check=True)
    assert "cache hit: renamed fp32" in p.stderr
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(p.stdout.strip().splitlines()[-1])
    assert wide["model"].tolist() == ["renamed"]


def test_one_broken_model_or_device_does_not_sink_the_others(workspace, tiny_model):
    fake = workspace / "fakepython"
    fake.write_text("#!/bin/sh\necho '[1]'\n")  # answers JSON that is not a runner document
    fake.chmod(0o755)
    (workspace / "inventory.yaml").write_text(
        "devices:\n  - {id: a, profile: localhost, transport: {type: local, python: " + str(fake) + "}}\n"
        "  - {id: b, profile: localhost, transport: {type: local}}\n"
    )
    (workspace / "bad.keras").write_bytes(b"garbage")
    corrupt = workspace / "corrupt.tflite"  # right identifier, garbage body: refused when opened
    corrupt.write_bytes(b"\x18\x00\x00\x00TFL3" + b"\xff" * 200)
    p = hil("run", str(tiny_model["path"]), "bad.keras", "missing.keras", *FAST)
    assert p.returncode == 2, p.stderr  # infrastructure (device a) wins over bad inputs
    assert "Traceback" not in p.stderr
    wide = ResultStore(workspace / "reports" / "results.sqlite").wide(p.stdout.strip().splitlines()[-1])
    status = {(r["model"], r["device_id"]): r["status"] for _, r in wide.iterrows()}
    assert status[("tiny", "b")] == "ok" and status[("tiny", "a")] == "infra_error"
    assert status[("bad", "a")] == status[("missing", "b")] == "error"
    err = wide.set_index(["model", "device_id"]).loc[("tiny", "a"), "error"]
    assert "not a result document" in err
    (workspace / "inventory.yaml").write_text("devices:\n  - {id: b, profile: localhost, transport: {type: local}}\n")
    p = hil("run", str(corrupt), *FAST)  # the model's fault, not the lab's: refused before a run exists
    assert p.returncode == 3 and f"hil: error: {corrupt}: corrupt or truncated TFLite flatbuffer" in p.stderr
    # (a model only the runtime rejects is an `error` row too: tests/test_model_inputs.py)


def test_ctrl_c_stops_the_run_without_blaming_the_lab_and_resume_finishes(workspace, tiny_model):
    args = [
        sys.executable,
        "-m",
        "harness",
        "-v",  # the runner's lines: the test interrupts on its "init ... first inference" line
        "run",
        str(tiny_model["path"]),
        "--variants",
        "fp32,dynamic,fp16",
        "--min-runs",
        "5",
        "--min-seconds",
        "2",
        "--max-seconds",
        "60",
        "--warmup-runs",
        "0",
        "--warmup-seconds",
        "0",
        "--repeats",
        "1",
    ]
    # its own process group, like a terminal's job; SIGINT restored to the default in case the suite
    # itself runs in the background (`pytest &` in a script ignores SIGINT, and children inherit that)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    for line in proc.stderr:  # event-driven: interrupt while the first job is in its steady state
        seen.append(line)
        if "init " in line and "first inference" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    seen += proc.stderr.readlines()
    proc.wait(timeout=60)
    assert proc.returncode == 130, "".join(seen)
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0  # nothing half-measured stored
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    p = hil(*args[3:], "--resume", check=True)  # the same command: the same plan
    assert "resuming run" in p.stderr
    assert sorted(r[0] for r in db.execute("SELECT status FROM results")) == ["ok"] * 3


def test_bad_eval_shape_profile_typo_and_unknown_run_are_one_line_errors(workspace, tiny_model):
    np.savez(workspace / "bad.npz", x=np.zeros((5, 3), np.float32), y=np.zeros(5, np.int64))
    p = hil("run", str(tiny_model["path"]), "--eval", "bad.npz", *FAST)
    assert (
        p.returncode == 3
        and "bad.npz: x holds samples of shape (3,), the model's input needs (8, 8, 1)" in p.stderr
        and "Traceback" not in p.stderr
    )
    prof = workspace / "device_profiles" / "localhost.yaml"
    prof.write_text(prof.read_text().replace("latency_p50_us: 0.03", "latency_p50: 0.03"))
    p = hil("devices", "list")
    assert p.returncode == 3 and "thresholds.latency_p50: unknown metric" in p.stderr
    p = hil("results", "--run", "nope")
    assert p.returncode == 3 and "no run 'nope'" in p.stderr


def test_stdout_of_run_is_only_the_run_id(workspace, tiny_model):
    """Nightly scripts do `run_id=$(hil run ...)`: TensorFlow's chatter must not end up in it."""
    p = hil("-v", "run", str(tiny_model["path"]), "--variants", "dynamic", *FAST, check=True)
    assert re.search(r"conversion: 0 cache hit\(s\), [12] conversion\(s\)", p.stderr)  # really converted
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}\n", p.stdout), p.stdout[:500]


def test_every_result_carries_its_model_commit_and_git_is_asked_once_per_model_file(tmp_path):
    """Provenance: the commit of the repository holding the model, on every result; found with one
    `git rev-parse` and one `git status` per model file, not per job (a 50-board lab plans thousands
    of jobs before its first measurement)."""
    lab = make_lab(tmp_path)
    repo = tmp_path / "models"
    repo.mkdir()
    model = repo / "net.tflite"
    shutil.copy(lab["dir"] / "net.tflite", model)
    real_git = shutil.which("git")
    assert real_git is not None
    git = [real_git, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["init", "-q"], ["add", "net.tflite"], ["commit", "-q", "-m", "model"]):
        subprocess.run([*git, *cmd], check=True, capture_output=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    calls = tmp_path / "git-calls"
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "git"  # counts the controller's git processes
    wrapper.write_text(f'#!/bin/sh\necho "$1 $2 $3" >> {calls}\nexec {real_git} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, **lab["env"], "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(model), "--repeats", "4", *FIXED_FAST],
        cwd=lab["dir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    db = sqlite3.connect(lab["db"])
    assert db.execute("SELECT git_commit FROM results").fetchall() == [(head,)] * 4
    assert db.execute("SELECT git_commit FROM runs").fetchall() == [(head,)]
    assert len(calls.read_text().splitlines()) == 2, calls.read_text()
