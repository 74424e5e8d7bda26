#!/usr/bin/env python3
"""Compression recipes on the architectures edge teams ship, through `hil sweep` as a user runs it.

For each architecture of tests/arch_models.py (ResNet-8, DS-CNN, MobileNetV1-0.25, FC autoencoder,
MobileNetV2-0.35, Conv1D, U-Net-like) trained briefly on its digits-derived task, and each recipe:
the time to compress (`hil sweep --compress-only --recipes R`, one recipe per call, TensorFlow start-up
included), then one measured sweep of every candidate on this machine (all cache hits). Printed per
architecture x recipe: MACs and size against the float model and against plain PTQ int8, host
accuracy (LiteRT interpreter) before and after, local p50 latency against PTQ int8 (same precision: the
structural gain alone) and against the float model, and whether the recipe applied at all.

Targets (issue 21): every shipped structural recipe applies to every architecture; filters-50 gives
0.45-0.60x MACs on each and <= 0.70x local p50 on ResNet-8 and MobileNetV2; QAT accuracy >= PTQ
accuracy - 0.5 pt.

Usage: python benchmarks/compress_archs.py [--archs resnet8,ds_cnn,...] [--recipes ...] [--epochs 3]
       [--workdir DIR] [--no-measure]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np

DEFAULT_RECIPES = "ptq-int8,filters-50-int8,qat-int8,distill-half-int8"


LINE = re.compile(
    r"^(?P<name>\S+)\s+(?P<variant>\S+)\s+(?P<score>acc|mse)\s+(?P<acc>[\d.]+ %|[\d.]+|-)\s+"
    r"size\s+(?P<size>[\d,]+) B\s+MACs\s+(?P<macs>[\d,]+)",
    re.M,
)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def hil(args: list[str], env: dict, cwd: Path, want_stdout: bool = False):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    err = proc.stderr.strip().splitlines()
    got = (proc.returncode, time.perf_counter() - t0, err[-1] if err else "")
    return (*got, proc.stdout) if want_stdout else got


def prepare(name: str, epochs: int, work: Path) -> Path:
    """Train the architecture on its task and save it with its sidecar data files."""
    import arch_models

    model, (x, y, xe, ye) = arch_models.trained(name, epochs=epochs, n=None)
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.keras"
    model.save(path)
    stem = path.with_suffix("")
    if name == "fc_autoencoder":  # a reconstruction task: the target is the input
        np.savez(f"{stem}.train.npz", x=x)
        np.savez(f"{stem}.eval.npz", x=xe)
    else:
        np.savez(f"{stem}.train.npz", x=x, y=y)
        np.savez(f"{stem}.eval.npz", x=xe, y=ye)
    np.savez(f"{stem}.calibration.npz", x=x[:200])
    return path


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def pct(a) -> str:
    return f"{100 * a:.1f}" if isinstance(a, int | float) else "-"


def score(host: dict | None) -> str:
    """Top-1 in %, or an autoencoder's reconstruction error (mse)."""
    if host and host.get("host_mse") is not None:
        return f"mse {host['host_mse']:.4f}"
    return pct(host and host.get("host_accuracy"))


def main() -> int:
    import arch_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(arch_models.ARCHITECTURES))
    ap.add_argument("--recipes", default=DEFAULT_RECIPES)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--no-measure", action="store_true", help="compress only (no local latency)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hil-compress-archs-"))
    env = dict(os.environ, HILBENCH_CACHE=str(work / "cache"), PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    recipes = args.recipes.split(",")
    rows = []
    for name in args.archs.split(","):
        model = prepare(name, args.epochs, work)
        db = work / name / "results.sqlite"
        times = {}
        for r in recipes:
            code, secs, last = hil(["--db", str(db), "sweep", str(model), "--recipes", r, "--compress-only"], env, work)
            times[r] = (code, secs, last)
        out = work / name / "sweep.json"
        sweep = ["--db", str(db), "sweep", str(model), "--recipes", ",".join(recipes), "--json", str(out)]
        if args.no_measure:
            sweep.append("--compress-only")
        else:
            sweep += ["--devices", "local", "--repeats", "3", "--min-seconds", "1"]
        code, _, last, stdout = hil(sweep, env, work, want_stdout=True)
        host, lat = {}, {}
        if args.no_measure:  # --compress-only prints one line per candidate (no JSON)
            for m in LINE.finditer(stdout):
                value = None if m["acc"] == "-" else float(m["acc"].rstrip(" %"))
                label = m["name"].split("+", 1)[1] if "+" in m["name"] else ""
                host[label] = {"macs": _int(m["macs"]), "size_bytes": _int(m["size"])}
                if m["score"] == "mse":  # an autoencoder: reconstruction error instead of top-1
                    host[label]["host_mse"] = value
                else:
                    host[label]["host_accuracy"] = None if value is None else value / 100
        elif out.exists():
            doc = json.loads(out.read_text())
            host = {c["recipe"]: c["host"] for c in doc["candidates"]}
            for dev in doc.get("devices", {}).values():
                for c in dev["candidates"]:
                    recipe = "" if c.get("recipe") == "(uncompressed)" else c.get("recipe")
                    lat[recipe] = c.get("latency_p50_us")
        if not host:
            print(f"{name}: sweep failed (exit {code}): {last}")
            continue
        base, ptq = host.get("", {}), host.get("ptq-int8", {})
        for r in recipes:
            h = host.get(r)
            code, secs, last = times[r]
            rows.append(
                {
                    "arch": name,
                    "recipe": r,
                    "applies": h is not None and code == 0,
                    "why": "" if h is not None else last,
                    "macs_vs_fp32": ratio(h and h.get("macs"), base.get("macs")),
                    "size_vs_fp32": ratio(h and h.get("size_bytes"), base.get("size_bytes")),
                    "size_vs_ptq": ratio(h and h.get("size_bytes"), ptq.get("size_bytes")),
                    "acc_fp32": score(base),
                    "acc": score(h),
                    "p50_vs_ptq": ratio(lat.get(r), lat.get("ptq-int8")),
                    "p50_vs_fp32": ratio(lat.get(r), lat.get("")),
                    "compress_s": f"{secs:.0f}",
                }
            )
    cols = list(rows[0]) if rows else []
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    print(f"\nwork dir: {work}")
    return 0 if rows and all(r["applies"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
