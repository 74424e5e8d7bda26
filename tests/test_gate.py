"""`hil gate` / `hil baseline`: verdicts, baselines, budgets, exit codes (real CLI), JUnit and CSV."""

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import hil
from gate_helpers import add_run, latency_samples, recorded_lab

from harness.gate import baselines as bl
from harness.gate import evaluate as gate
from harness.lab.config import load_profiles
from harness.store.results import ResultRecord, ResultStore
from harness.store.verdicts import verdict_rows


@pytest.fixture()
def lab(workspace):
    """The workspace (shipped profiles, local inventory) with an empty results database."""
    store = ResultStore(workspace / "reports" / "results.sqlite")
    yield workspace, store
    store.close()


_RNG = np.random.default_rng(2024)


def res(level=1000.0, drift=0.0, **kw):
    return {"samples": latency_samples(1500, level=level, rng=_RNG, noise=0.003, drift=drift), **kw}


def judge(store, run_id, spec="last-pass", record=True, **kw):
    profiles = load_profiles(store.path.parent.parent / "device_profiles")
    r = gate.evaluate(store, run_id, bl.BaselineSpec.parse(spec), profiles, **kw)
    if record:
        gate.record(store, r)
    return r


def verdict_of(result, metric="latency_p50_us", model="m", variant="fp32"):
    k = next(k for k in result.keys if k.model == model and k.variant == variant)
    return next(c for c in k.checks if c.metric == metric)


def test_exit_codes_via_cli(lab):
    ws, store = lab
    p = hil("gate")
    assert p.returncode == 3 and "no runs recorded yet" in p.stderr
    add_run(store, [res(), res(500, variant="int8")])
    p = hil("gate", "--junit", "out/j.xml", "--markdown", "out/s.md", "--csv", "out/v.csv")
    assert p.returncode == 0, p.stderr
    assert "# hilbench gate: PASS (exit 0)" in p.stdout and "new" in p.stdout
    add_run(store, [res(drift=0.10), res(500, variant="int8")])
    p = hil("gate", "--junit", "out/j.xml", "--markdown", "out/s.md", "--csv", "out/v.csv")
    assert p.returncode == 1, p.stderr
    md = (ws / "out" / "s.md").read_text()
    assert "FAIL (exit 1)" in md and "| m | fp32 | local | latency_p50_us |" in md and "REGRESSION" in md
    csv = pd.read_csv(ws / "out" / "v.csv")
    row = csv[(csv.variant == "fp32") & (csv.metric == "latency_p50_us")].iloc[0]
    assert row.verdict == "regression" and row.status == "fail" and 0.08 < row.effect < 0.12
    assert set(csv[csv.variant == "int8"].status) == {"pass"}
    # infrastructure failure wins over the regression, which is still listed
    add_run(
        store,
        [
            res(drift=0.10),
            {"variant": "int8", "status": "infra_error", "error": "device 'local': runner exited with code 137"},
        ],
    )
    p = hil("gate", "--markdown", "out/s.md")
    assert p.returncode == 2
    md = (ws / "out" / "s.md").read_text()
    assert "## Infrastructure failures" in md and "runner exited with code 137" in md
    assert "REGRESSION" in md
    # a planned job that never produced a result is an infrastructure failure too
    add_run(store, [res(), res(500, variant="int8")], extra_plan=("job-that-never-ran",))
    p = hil("gate")
    assert p.returncode == 2 and "planned job job-that-never-ran has no result" in p.stdout
    # usage / configuration errors
    for args, msg in (
        (["--baseline", "weekly"], "expected last-pass, pinned or rolling:K"),
        (["--baseline", "rolling:0"], "positive run count"),
        (["--run", "no-such-run"], "no run 'no-such-run'"),
        (["--thresholds", "missing.yaml"], "missing.yaml: thresholds file not found"),
    ):
        p = hil("gate", *args)
        assert p.returncode == 3 and msg in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    (ws / "t.yaml").write_text("m: {latency_p51_us: 0.1}\n")
    p = hil("gate", "--thresholds", "t.yaml")
    assert p.returncode == 3 and "t.yaml: m.latency_p51_us: unknown metric" in p.stderr


def test_last_pass_baseline_keeps_a_regression_red_until_fixed(lab):
    _, store = lab
    r1 = add_run(store, [res()])
    assert judge(store, r1).exit_code == 0
    r2 = add_run(store, [res(drift=0.10)])
    assert judge(store, r2).exit_code == 1
    r3 = add_run(store, [res(drift=0.10)])
    g3 = judge(store, r3)
    assert g3.exit_code == 1 and g3.keys[0].baseline.run_ids == [r1]  # not the failed r2
    r4 = add_run(store, [res(drift=0.005)])
    g4 = judge(store, r4)
    assert g4.exit_code == 0 and g4.keys[0].baseline.run_ids == [r1]
    r5 = add_run(store, [res()])
    assert judge(store, r5).keys[0].baseline.run_ids == [r4, r1]  # the last K=5 accepted runs
    hist = bl.verdicts(store)
    assert list(hist.sort_values("gated_at").verdict) == ["pass", "fail", "fail", "pass", "pass"]
    # re-gating a run replaces its verdict instead of adding one
    judge(store, r5)
    assert len(bl.verdicts(store, r5)) == 1


def test_pinned_baseline_per_device_and_per_profile(lab):
    ws, store = lab
    r1 = add_run(store, [res(drift=0.10), res(500, variant="int8")])
    judge(store, r1)
    r2 = add_run(store, [res(), res(500, variant="int8")])
    judge(store, r2)
    p = hil("baseline", "set", r1, "--variant", "fp32", check=True)
    assert f"pinned m/fp32 for device:local: run {r1}" in p.stdout
    r3 = add_run(store, [res(drift=0.10), res(500, variant="int8")])
    g = judge(store, r3, "pinned")
    assert verdict_of(g).verdict == "pass" and g.keys[0].baseline.run_ids == [r1]
    assert verdict_of(g, variant="int8").verdict == "new"  # not pinned -> no baseline
    # r2 was an improvement over r1: never accepted silently, so last-pass still compares with r1 ...
    g = judge(store, r3, "last-pass", record=False)
    assert g.exit_code == 0 and g.keys[0].baseline.run_ids == [r1]
    # ... until someone accepts it; then r3 is a regression against r2 (the newest accepted run)
    p = hil("baseline", "accept", r2, check=True)
    assert f"accepted 1 key(s) of run {r2}" in p.stdout
    g = judge(store, r3, "last-pass:1", record=False)
    assert g.exit_code == 1 and g.keys[0].baseline.run_ids[0] == r2
    show = hil("baseline", "show", check=True).stdout
    assert f"| m | fp32 | device:local | {r1} |" in show and "m/int8@local" in show
    # a profile-wide pin serves another board of the same profile
    hil("baseline", "set", r2, "--scope", "profile", check=True)
    r4 = add_run(store, [res(device="local-b"), res(500, variant="int8", device="local-b")])
    g = judge(store, r4, "pinned")
    assert g.keys[0].baseline.source == "pinned (profile:localhost)" and g.exit_code == 0
    p = hil("baseline", "clear", "--device", "local", check=True)
    assert "cleared 1 pinned baseline(s)" in p.stdout
    assert hil("baseline", "clear", check=True).stdout.startswith("cleared 2")
    assert bl.pins(store).empty
    p = hil("baseline", "set", "no-such-run")
    assert p.returncode == 3 and "no run 'no-such-run'" in p.stderr


def test_rolling_baseline_uses_last_k_runs_whatever_their_verdict(lab):
    _, store = lab
    ids = [add_run(store, [res(drift=d)]) for d in (0.0, 0.0, 0.12, 0.12, 0.12)]
    g = judge(store, ids[-1], "rolling:3", record=False)
    assert g.keys[0].baseline.run_ids == [ids[3], ids[2], ids[1]]
    assert verdict_of(g).verdict == "pass"  # two of three baseline runs are already slow
    g = judge(store, ids[2], "rolling:5", record=False)
    assert g.keys[0].baseline.run_ids == [ids[1], ids[0]] and verdict_of(g).verdict == "regression"
    assert verdict_of(g).n_baseline == 2  # one process level per baseline run


def test_budgets_gate_without_baseline(lab):
    ws, store = lab
    prof = ws / "device_profiles" / "localhost.yaml"
    prof.write_text(
        prof.read_text().replace(
            "budgets: {}", "budgets: {max_latency_p50_us: 900, min_accuracy_top1: 0.95, max_energy_per_inference_uj: 5}"
        )
    )
    add_run(store, [res(metrics={"accuracy_top1": 0.97})])
    p = hil("gate", "--junit", "j.xml")
    assert p.returncode == 1, p.stdout
    assert "exceeds budget max_latency_p50_us" in p.stdout and "OVER BUDGET" in p.stdout
    root = ET.parse(ws / "j.xml").getroot()
    fails = [tc for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert [(tc.get("name"), tc.find("failure").get("type")) for tc in fails] == [("latency_p50_us", "budget")]
    g = judge(store, None, record=False)
    energy = verdict_of(g, "energy_per_inference_uj")
    assert energy.budget.status == "no data" and not energy.failed
    assert verdict_of(g, "accuracy_top1").budget.status == "ok"


def test_thresholds_file_deterministic_accuracy_new_missing(lab):
    ws, store = lab
    add_run(store, [res(metrics={"model_size_bytes": 10000, "accuracy_top1": 0.90, "agreement": 0.99})])
    hil("gate", check=True)
    add_run(
        store,
        [
            res(
                drift=0.10,
                metrics={
                    "model_size_bytes": 10001,
                    "accuracy_top1": 0.88,
                    "agreement": None,
                    "energy_per_inference_uj": 3.0,
                },
            )
        ],
    )
    g = judge(store, None, record=False)
    assert verdict_of(g, "model_size_bytes").verdict == "regression"  # +1 byte, threshold 0
    acc = verdict_of(g, "accuracy_top1")
    assert acc.verdict == "regression" and acc.effect == pytest.approx(-0.02)
    assert verdict_of(g, "agreement").verdict == "missing" and verdict_of(g, "agreement").skipped
    assert verdict_of(g, "energy_per_inference_uj").verdict == "new"
    (ws / "t.yaml").write_text(
        '"*": {latency_p50_us: 0.2, latency_p90_us: 0.2}\n'
        "m: {model_size_bytes: 0.01, accuracy_top1: 0.05}\nother: {latency_p50_us: 0}\n"
    )
    p = hil("gate", "--thresholds", "t.yaml", "--no-record", "--csv", "v.csv")
    assert p.returncode == 0, p.stdout
    csv = pd.read_csv(ws / "v.csv").set_index("metric")
    assert csv.loc["latency_p50_us", "threshold"] == 0.2 and csv.loc["accuracy_top1", "threshold"] == 0.05
    assert csv.loc["latency_p50_us", "verdict"] == "pass" and csv.loc["latency_p50_us", "effect"] > 0.08
    add_run(store, [res(metrics={"model_size_bytes": 9000})])
    assert verdict_of(judge(store, None, record=False), "model_size_bytes").verdict == "improvement"


def test_an_anomaly_detectors_auc_is_shown_and_gated_like_top1(lab):
    from harness.report.gate_markdown import render_gate_markdown
    from harness.report.junit import render_junit
    from harness.report.run_markdown import render_run

    ws, store = lab
    prof = ws / "device_profiles" / "localhost.yaml"
    prof.write_text(prof.read_text().replace("budgets: {}", "budgets: {min_accuracy_auc: 0.88}"))
    ad = {"accuracy_top1": None, "accuracy_auc": 0.90}  # MLPerf Tiny ad01: an AUC, no top-1
    add_run(store, [res(model="ad", metrics=ad)])
    judge(store, None)
    run = add_run(store, [res(model="ad", metrics={**ad, "accuracy_auc": 0.87})])
    g = judge(store, None, record=False)
    assert g.exit_code == 1
    auc = verdict_of(g, "accuracy_auc", model="ad")
    assert auc.verdict == "regression" and auc.effect == pytest.approx(-0.03) and auc.budget.exceeded
    md = render_gate_markdown(g)
    assert "AUC (anomaly detection) regressed: AUC 0.9000 -> AUC 0.8700 (-3.00 pt, threshold 1 pt)" in md
    fails = [
        tc for tc in ET.fromstring(render_junit(g).split("\n", 1)[1]).iter("testcase") if tc.find("failure") is not None
    ]
    assert [(tc.get("name"), tc.find("failure").get("type")) for tc in fails] == [("accuracy_auc", "regression,budget")]
    results = hil("results", "--latest", check=True).stdout
    assert "accuracy_auc" in results.splitlines()[0] and "0.87" in results
    table = [ln for ln in render_run(store.wide(run), store.run_row(run)).splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    row = dict(zip(head, (c.strip() for c in table[2].strip("|").split("|"))))
    assert row["AUC"] == "0.870" and row["top-1 (%)"] == "-"


def test_resumed_job_supersedes_its_infra_failure(lab):
    _, store = lab
    run_id = add_run(store, [{"status": "infra_error", "error": "ssh: connection refused"}])
    s = latency_samples(500, rng=_RNG)
    rec = ResultRecord(
        run_id=run_id,
        job_key="m-fp32-local#0",
        model="m",
        model_sha256="0" * 64,
        variant="fp32",
        device_id="local",
        profile="localhost",
        status="ok",
    )
    store.record(rec, [("latency_p50_us", float(np.median(s)), "us")], {"steady": list(s)})
    g = judge(store, run_id, record=False)
    assert g.exit_code == 0 and len(g.keys) == 1 and g.keys[0].status == "pass"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write fails: disk full)")
def test_an_output_that_cannot_be_written_after_the_verdict_keeps_the_verdict(lab):
    """The path passes the up-front check but the write fails (a full disk): one line says so, the
    other outputs are written, the verdict is recorded and a failing gate keeps its exit code."""
    ws, store = lab
    first = add_run(store, [res()])
    p = hil("gate", "--junit", "/dev/full", "--csv", "v.csv")
    assert p.returncode == 3, p.stderr  # a pass whose JUnit file is missing is no pass
    assert "# hilbench gate: PASS (exit 0)" in p.stdout and "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("hil: error:")]
    assert errors == [
        "hil: error: /dev/full: cannot write the JUnit XML: No space left on device (gate verdict PASS, recorded)"
    ]
    assert pd.read_csv(ws / "v.csv").verdict.tolist() == ["new", "new", "new", "new"]
    assert {row[2] for row in verdict_rows(store, first)} == {"pass"}
    second = add_run(store, [res(drift=0.10)])
    p = hil("gate", "--no-confirm", "--markdown", "/dev/full")
    assert p.returncode == 1, p.stderr  # the regression (against the recorded pass) keeps its code
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("hil: error:")]
    assert errors == [
        "hil: error: /dev/full: cannot write the Markdown summary: No space left on device "
        "(gate verdict FAIL, recorded)"
    ]
    assert {row[2] for row in verdict_rows(store, second)} == {"fail"}


def test_junit_counts_are_consistent(lab):
    ws, store = lab
    add_run(store, [res(), res(500, variant="int8"), res(device="local-b")])
    hil("gate", check=True)
    add_run(
        store,
        [
            res(drift=0.10),
            {"variant": "int8", "status": "infra_error", "error": "unreachable"},
            {"samples": latency_samples(5, rng=_RNG), "device": "local-b"},
        ],
    )
    p = hil("gate", "--junit", "j.xml")
    assert p.returncode == 2
    root = ET.parse(ws / "j.xml").getroot()
    assert root.tag == "testsuites"
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        counted = {
            "tests": len(cases),
            "failures": sum(c.find("failure") is not None for c in cases),
            "errors": sum(c.find("error") is not None for c in cases),
            "skipped": sum(c.find("skipped") is not None for c in cases),
        }
        for key, value in counted.items():
            assert int(suite.get(key)) == value, (suite.get("name"), key)
            total[key] += value
        assert float(suite.get("time")) >= 0 and suite.get("timestamp")
    for key, value in total.items():
        assert int(root.get(key)) == value
    # errors: the unreachable int8, and local-b's p50 and p90 from 5 samples per process
    # (inconclusive, never a pass)
    assert total["failures"] >= 1 and total["errors"] == 3
    names = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
    assert ("hilbench.local.m.fp32", "latency_p50_us") in names
    assert ("hilbench.local.m.int8", "measurement") in names
    assert ("hilbench.local-b.m.fp32", "latency_p50_us") in names


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return recorded_lab(tmp_path_factory, hil)


def test_real_runs_first_new_then_aa_pass(real, tmp_path):
    """A real `hil run` of a small conv net is all new; an A/A replay of its recorded samples passes
    against it at the profile's own thresholds (how real runs behave on a busy host is what
    benchmarks/gate_power.py measures, not a unit test)."""
    shutil.copytree(real["dir"] / "device_profiles", tmp_path / "device_profiles")
    shutil.copy(real["dir"] / "inventory.yaml", tmp_path)
    (tmp_path / "reports").mkdir()
    shutil.copy(real["db"], tmp_path / "reports" / "results.sqlite")
    run1, run2 = real["runs"]
    p = hil("gate", "--run", run1, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("| latency_p50_us |") == 4 and "0 regression(s)" in p.stdout
    p = hil("gate", "--run", run2, "--csv", "v.csv", cwd=tmp_path)
    csv = pd.read_csv(tmp_path / "v.csv")
    lat = csv[csv.metric == "latency_p50_us"]
    assert len(lat) == 2 and set(lat.baseline_runs) == {run1} and set(lat.verdict) <= {"pass", "improvement"}
    assert set(csv[csv.metric == "model_size_bytes"].verdict) == {"pass"}
    assert set(csv[csv.metric == "accuracy_top1"].effect) == {0.0}
    assert p.returncode == 0, p.stdout


def test_accuracy_under_a_perturbation_is_gated_like_top1_and_budgeted(lab):
    """Issue 24: `accuracy_top1@<perturbation>` regresses and breaks budgets like top-1 does, while the
    clean top-1 stays where it was."""
    from harness.report.gate_markdown import render_gate_markdown

    ws, store = lab
    prof = ws / "device_profiles" / "localhost.yaml"
    prof.write_text(prof.read_text().replace("budgets: {}", 'budgets: {"min_accuracy_top1@noise_snr10db": 0.8}'))
    noisy = "accuracy_top1@noise_snr10db"
    add_run(store, [res(metrics={noisy: 0.85, "agreement@noise_snr10db": 0.9})])
    judge(store, None)
    add_run(store, [res(metrics={noisy: 0.78, "agreement@noise_snr10db": 0.9})])
    g = judge(store, None, record=False)
    assert g.exit_code == 1
    check = verdict_of(g, noisy)
    assert check.verdict == "regression" and check.effect == pytest.approx(-0.07) and check.budget.exceeded
    assert (
        verdict_of(g, "accuracy_top1").verdict == "pass" and verdict_of(g, "agreement@noise_snr10db").verdict == "pass"
    )
    assert "top-1 accuracy @ noise_snr10db regressed" in render_gate_markdown(g)
