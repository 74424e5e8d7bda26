"""Robustness evaluation (issue 24): the eval set under declared, seeded perturbations, scored on the
device beside the clean set, stored as `accuracy_top1@<name>` / `agreement@<name>`, gated like accuracy,
shown in reports and usable as budgets."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from conftest import FAST, REPO, hil

from harness.errors import ConfigError
from harness.models.perturb import metric_suffix, parse, parse_list

DIGITS = REPO / "examples" / "digits"
SNRS = [30, 10, 0, -10]


def test_names_parse_and_bad_ones_say_what_is_accepted():
    assert parse("noise_snr20db").args == (20.0,) and parse("noise_snr-5db").kind == "noise"
    assert parse("translate2x-1").args == (2.0, -1.0) and parse("bits4").kind == "bits"
    assert [p.name for p in parse_list(["gain0.5,clean", "gain0.5", "shift3"])] == ["gain0.5", "clean", "shift3"]
    for bad, why in [
        ("noise20", "is not a perturbation"),
        ("bits0", "bits must be 1 to 16"),
        ("gain-1", "the gain must be >= 0"),
        ("brightness2", r"in \[-1, 1\]"),
    ]:
        with pytest.raises(ConfigError, match=why) as e:
            parse(bad, "--robustness")
        assert str(e.value).startswith("--robustness: ")
    assert metric_suffix("accuracy_top1@noise_snr20db") == ("accuracy_top1", "noise_snr20db")
    assert metric_suffix("latency_p50_us") == ("latency_p50_us", None)


def test_perturbations_are_seeded_and_do_what_they_say():
    rng = np.random.default_rng(3)
    x = rng.random((400, 16, 3), dtype=np.float32)
    noisy = parse("noise_snr10db")
    a, b, c = noisy.apply(x, 0), noisy.apply(x, 0), noisy.apply(x, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # the realised SNR over the set is the declared one
    snr = 10 * math.log10(float(np.mean(x.astype(np.float64) ** 2)) / float(np.mean((a - x) ** 2)))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert np.array_equal(parse("clean").apply(x), x)
    assert np.array_equal(parse("shift2").apply(x)[:, 2:], x[:, :-2]) and not parse("shift2").apply(x)[:, :2].any()
    four = parse("bits2").apply(x)
    assert len(np.unique(four)) <= 4 and four.min() >= x.min() and four.max() <= x.max()
    dark = parse("brightness-0.5").apply(x)
    assert dark.min() == x.min() and dark.mean() < x.mean()  # saturates at the set's own floor
    img = rng.random((5, 8, 8, 1), dtype=np.float32)
    moved = parse("translate1x-2").apply(img)
    assert np.array_equal(moved[:, 1:, :-2], img[:, :-1, 2:]) and not moved[:, 0].any()
    with pytest.raises(
        ConfigError, match=r"needs image samples, \(H, W\) or \(H, W, C\); these samples have shape \[16\]"
    ):
        parse("translate1x1").apply(x[:, :, 0], where="e.npz")
    with pytest.raises(ConfigError, match=r"e.npz: shift1: a time shift needs 1-D samples"):
        parse("shift1").apply(img, where="e.npz")


def test_perturbed_metrics_are_gated_like_their_base_and_budgets_name_them():
    from harness.core.metrics import RULES
    from harness.gate.budgets import check_budgets
    from harness.gate.thresholds import resolve
    from harness.lab.config import Budgets

    rule = RULES["accuracy_top1@noise_snr20db"]
    assert rule.kind == "accuracy" and not rule.higher_is_worse and "noise_snr20db" in rule.label
    assert "agreement@gain0.5" in RULES and "latency_p50_us@gain0.5" not in RULES
    assert resolve("accuracy_top1@gain0.5", "m", {"accuracy_top1": 0.03}, {}) == 0.03
    assert resolve("accuracy_top1@gain0.5", "m", {"accuracy_top1": 0.03}, {"m": {"accuracy_top1@gain0.5": 0.1}}) == 0.1
    b = Budgets(**{"min_accuracy_top1@noise_snr20db": 0.9, "min_agreement@gain0.5": 0.95, "min_accuracy_top1": 0.5})
    got = {c.name: c.status for c in check_budgets(b, {"accuracy_top1": 0.8, "accuracy_top1@noise_snr20db": 0.85})}
    assert got == {
        "min_accuracy_top1": "ok",
        "min_accuracy_top1@noise_snr20db": "exceeded",
        "min_agreement@gain0.5": "no data",
    }
    for bad in ({"min_accuracy_top1@noise": 0.9}, {"max_latency_p50_us@gain2": 5.0}, {"min_agreement@gain2": 2.0}):
        with pytest.raises(ValueError):
            Budgets(**bad)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One real run of the bundled digits model (fp32 and int8 on the local device) with a noise sweep."""
    d = tmp_path_factory.mktemp("robust")
    shutil.copytree(REPO / "device_profiles", d / "device_profiles")
    shutil.copy(REPO / "inventory.yaml", d / "inventory.yaml")
    env = {"HILBENCH_CACHE": str(d / "cache")}
    spec = "clean," + ",".join(f"noise_snr{s}db" for s in SNRS)
    p = hil(
        "run", str(DIGITS / "digits.keras"), "--variants", "fp32,int8", *FAST, "--robustness", spec,
        "--report", "r.md", cwd=d, env=env, check=True,
    )  # fmt: skip
    run_id = p.stdout.strip().splitlines()[-1]
    from harness.store.results import ResultStore

    wide = ResultStore(d / "reports" / "results.sqlite").wide(run_id)
    return {"dir": d, "env": env, "run_id": run_id, "wide": wide, "report": (d / "r.md").read_text()}


def test_a_noise_curve_falls_with_the_snr_and_clean_is_the_eval_set(digits_run):
    wide = digits_run["wide"]
    assert set(wide["variant"]) == {"fp32", "int8"}
    for _, row in wide.iterrows():
        assert row["status"] == "ok"
        # the perturbation 'clean' is the eval set itself: the same score, the same agreement
        assert row["accuracy_top1@clean"] == row["accuracy_top1"]
        assert row["agreement@clean"] == row["agreement"]
        curve = [row[f"accuracy_top1@noise_snr{s}db"] for s in SNRS]
        assert all(0 <= v <= 1 for v in curve)
        assert curve[0] >= curve[2] >= curve[3] and curve[0] - curve[3] > 0.3, curve  # 30 dB mild, -10 dB ruinous
        agreement = [row[f"agreement@noise_snr{s}db"] for s in SNRS]
        if row["variant"] == "fp32":  # the float model against its own answers on the same perturbed inputs
            assert agreement == [1.0] * len(SNRS)
        else:
            assert all(0 <= v <= 1 for v in agreement)
    report = digits_run["report"]
    assert "## Robustness" in report and "top-1 noise_snr-10db" in report
    # columns from mild to harsh
    header = next(line for line in report.splitlines() if "top-1 noise_snr30db" in line)
    assert header.index("noise_snr30db") < header.index("noise_snr10db") < header.index("noise_snr-10db")


def test_perturbed_inputs_are_the_same_every_night(digits_run, tmp_path):
    """The same seed: a second night's prepared file and scores are the very same; another seed is not."""
    from harness.models.evaldata import prepare_eval

    d = digits_run["dir"]
    ref = next((d / "cache").rglob("*.tflite"))  # any artifact of the model: only its input shape matters here
    pert = parse_list(["noise_snr0db,translate1x1"])
    one = np.load(prepare_eval(DIGITS / "digits.eval.npz", ref, tmp_path / "a", reference=False, robustness=pert))
    two = np.load(prepare_eval(DIGITS / "digits.eval.npz", ref, tmp_path / "b", reference=False, robustness=pert))
    other = np.load(
        prepare_eval(DIGITS / "digits.eval.npz", ref, tmp_path / "c", reference=False, robustness=pert, seed=1)
    )
    assert sorted(one.files) == sorted(two.files) == ["x", "x@noise_snr0db", "x@translate1x1", "y"]
    for k in one.files:
        assert np.array_equal(one[k], two[k])
    assert not np.array_equal(one["x@noise_snr0db"], other["x@noise_snr0db"])
    assert np.array_equal(one["x@translate1x1"], other["x@translate1x1"])  # nothing random in a translation
    again = hil(
        "run", str(DIGITS / "digits.keras"), "--variants", "int8", *FAST, "--robustness",
        "clean," + ",".join(f"noise_snr{s}db" for s in SNRS), cwd=d, env=digits_run["env"], check=True,
    )  # fmt: skip
    from harness.store.results import ResultStore

    wide = ResultStore(d / "reports" / "results.sqlite").wide(again.stdout.strip().splitlines()[-1])
    first = digits_run["wide"].set_index("variant").loc["int8"]
    cols = [c for c in wide.columns if "@" in c]
    assert len(cols) == 2 * (len(SNRS) + 1)
    assert all(wide.iloc[0][c] == first[c] for c in cols)


def test_a_shape_a_perturbation_cannot_apply_to_and_missing_eval_data_are_one_line_errors(digits_run, tmp_path):
    d = digits_run["dir"]
    p = hil(
        "run",
        str(DIGITS / "digits.keras"),
        "--variants",
        "fp32",
        *FAST,
        "--robustness",
        "shift2",
        cwd=d,
        env=digits_run["env"],
    )
    assert p.returncode == 3 and "shift2: a time shift needs 1-D samples" in p.stderr and "Traceback" not in p.stderr
    shutil.copy(DIGITS / "digits.keras", tmp_path / "bare.keras")  # no eval sidecar
    p = hil(
        "run",
        str(tmp_path / "bare.keras"),
        "--variants",
        "fp32",
        *FAST,
        "--robustness",
        "gain0.5",
        cwd=d,
        env=digits_run["env"],
    )
    assert p.returncode == 3 and "--robustness: model bare has no evaluation data" in p.stderr
    p = hil("run", str(DIGITS / "digits.keras"), "--robustness", "noise", cwd=d, env=digits_run["env"])
    assert p.returncode == 3 and "'noise' is not a perturbation" in p.stderr
