"""HTML gate report and `hil compare`: single-file pages with embedded figures, opened in Chromium."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import hil
from gate_helpers import recorded_lab

from harness.report.compare import comparison
from harness.report.plots import pareto_front

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FIGURES = ("fig-latency", "fig-trend", "fig-devices", "fig-pareto")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return recorded_lab(tmp_path_factory, hil)


@pytest.fixture()
def lab_copy(real, tmp_path):
    shutil.copytree(real["dir"] / "device_profiles", tmp_path / "device_profiles")
    shutil.copy(real["dir"] / "inventory.yaml", tmp_path)
    (tmp_path / "reports").mkdir()
    shutil.copy(real["db"], tmp_path / "reports" / "results.sqlite")
    return tmp_path


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gate_html_is_self_contained_with_all_figures(real, lab_copy):
    run1, run2 = real["runs"]
    hil("gate", "--run", run1, "--quiet", cwd=lab_copy, check=True)
    hil("gate", "--run", run2, "--quiet", "--html", "out/gate.html", cwd=lab_copy, check=True)
    page = (lab_copy / "out" / "gate.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "hilbench gate" in page
    for fig in FIGURES:
        m = re.search(rf'<img id="{fig}" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        assert m, fig
        assert base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<script" not in page and "<link" not in page


@pytest.mark.chromium
def test_gate_html_renders_in_headless_chromium(real, lab_copy, tmp_path):
    run1, run2 = real["runs"]
    hil("gate", "--run", run1, "--quiet", cwd=lab_copy, check=True)
    hil("gate", "--run", run2, "--quiet", "--html", "gate.html", cwd=lab_copy, check=True)
    url = (lab_copy / "gate.html").as_uri()
    shot = tmp_path / "shot.png"
    p = chromium([f"--screenshot={shot}", "--window-size=1400,3000", url], tmp_path / "chrome1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = chromium(["--dump-dom", url], tmp_path / "chrome2")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for fig in FIGURES:
        assert re.search(rf'<img id="{fig}"[^>]*src="data:image/png;base64,', dom.stdout), fig
    assert "INFRASTRUCTURE FAILURE" not in dom.stdout and "PASS" in dom.stdout


def test_compare_two_device_profiles(real, lab_copy):
    run1, _ = real["runs"]
    p = hil(
        "compare",
        "--run",
        run1,
        "--reference",
        "local",
        "--html",
        "cmp.html",
        "--csv",
        "cmp.csv",
        cwd=lab_copy,
        check=True,
    )
    out = p.stdout
    assert "reference: **local** (localhost)" in out and "local2 (localhost-2t)" in out
    assert "local2 speed-up (x)" in out and "| convnet | fp32 |" in out and "| convnet | int8 |" in out
    table = pd.read_csv(lab_copy / "cmp.csv")
    assert set(table.device_id) == {"local", "local2"} and set(table.profile) == {"localhost", "localhost-2t"}
    ref = table[table.device_id == "local"].set_index("variant")
    other = table[table.device_id == "local2"].set_index("variant")
    for v in ("fp32", "int8"):
        assert ref.loc[v, "speedup"] == 1.0
        assert other.loc[v, "speedup"] == pytest.approx(ref.loc[v, "latency_p50_us"] / other.loc[v, "latency_p50_us"])
    page = (lab_copy / "cmp.html").read_text()
    assert '<img id="fig-devices"' in page and "localhost-2t" in page
    p = hil("compare", "--run", run1, "--devices", "local,pi9", cwd=lab_copy)
    assert p.returncode == 3 and "no results for device(s) pi9" in p.stderr
    p = hil("compare", "--run", run1, "--reference", "pi9", cwd=lab_copy)
    assert p.returncode == 3 and "reference device 'pi9'" in p.stderr


def test_comparison_ratios_and_pareto_front():
    wide = pd.DataFrame(
        [
            {
                "result_id": 1,
                "status": "ok",
                "model": "m",
                "variant": "fp32",
                "device_id": "pi4",
                "profile": "raspberry-pi-4",
                "latency_p50_us": 4000.0,
                "peak_rss_kb": 100.0,
                "energy_per_inference_uj": 40.0,
            },
            {
                "result_id": 2,
                "status": "ok",
                "model": "m",
                "variant": "fp32",
                "device_id": "pi5",
                "profile": "raspberry-pi-5",
                "latency_p50_us": 1000.0,
                "peak_rss_kb": 120.0,
                "energy_per_inference_uj": 20.0,
            },
            {
                "result_id": 3,
                "status": "infra_error",
                "model": "m",
                "variant": "int8",
                "device_id": "pi5",
                "profile": "raspberry-pi-5",
            },
        ]
    )
    table, ref = comparison(wide, reference="pi4")
    pi5 = table.set_index("device_id").loc["pi5"]
    assert ref == "pi4" and pi5["speedup"] == 4.0 and pi5["rss_ratio"] == 1.2 and pi5["energy_ratio"] == 0.5
    assert len(table) == 2  # the failed result takes no part
    # latency (lower better) vs accuracy (higher better): (3, 0.8) is dominated by (2, 0.9)
    assert pareto_front([1, 2, 3, 4], [0.7, 0.9, 0.8, 0.95]) == [True, True, False, True]
