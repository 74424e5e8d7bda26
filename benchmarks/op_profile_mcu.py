#!/usr/bin/env python3
"""Per-operator profiles from simulated MCUs: where `hb-profile%` says the time goes, per model.

For each architecture of tests/arch_models.py (untrained: the split does not depend on the weights)
the model is converted to int8 (real TF conversion, random calibration data), served by `hil mcu-sim
--op-profiler` on a pty, and profiled by the serial host exactly as `hil run --profile` does it
(harness.mcu.serial.session.op_profile: N single inferences, `hb-profile%` after each). With the
QEMU tools installed, the QEMU mps2-an386 firmware built with the recorder (stand-in layer, cycle
counter under -icount) adds a row of real on-target ticks.

Printed per model: the sum of the op ticks over the inference's ticks (the simulator's cost model
splits its inference time exactly, so 1.000 there; on firmware the rest is interpreter overhead),
and the three ops with the largest share. The simulator's split is its cost model
(harness/mcu/sim/op_costs.py), not a measurement.

Usage:
    .venv/bin/python benchmarks/op_profile_mcu.py [--archs resnet8,ds_cnn] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ARCHS = ("resnet8", "ds_cnn", "mobilenet_v1", "conv1d_net", "fc_autoencoder")


def convert(name: str, work: Path) -> Path:
    import arch_models

    from harness.models.convert import Calibration, Converter, ModelSource

    model = getattr(arch_models, name)()
    path = work / f"{name}.keras"
    model.save(path)
    shape = (32, *model.input_shape[1:])
    np.savez(work / f"{name}.calib.npz", x=np.random.default_rng(0).random(shape, dtype=np.float32))
    mv = Converter(work / "cache", log=lambda m: None).convert(
        ModelSource.open(path), "int8", Calibration.from_arg(str(work / f"{name}.calib.npz"))
    )
    return Path(mv.artifact)


def profile_sim(artifact: Path, runs: int) -> dict:
    from harness.lab.config import SerialSettings
    from harness.mcu.serial import session
    from harness.models.inspect.analysis import analyze

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "mcu-sim", str(artifact), "--op-profiler"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        said = []
        for line in proc.stdout:
            said.append(line)
            if line.startswith("serving on "):
                break
        else:
            raise RuntimeError(f"mcu-sim {artifact} exited: {''.join(said)[-300:]}")
        port = said[-1].split()[2]
        client = session.connect("sim", SerialSettings(type="serial", port=port, infer_timeout=60), log=lambda m: None)
        try:
            a = analyze(artifact)
            spec = session.tensor_spec(a.inputs[0])
            client.load(session.random_input(session.io_convention("tensor", client.info), spec))
            doc = session.op_profile(client, runs, lambda m: None, analysis=a)
        finally:
            client.link.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert doc is not None
    return doc


def profile_qemu(runs: int) -> dict | None:
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        return None
    from harness.lab.config import SerialSettings
    from harness.mcu import qemu
    from harness.mcu.serial import session

    with tempfile.TemporaryDirectory() as d:
        fw = qemu.build_firmware(Path(d), defines={"HB_PROFILE": "1", "HB_PORT_TIMER_CYCLES": "1"})
        with qemu.QemuDevice(fw) as dev:
            client = session.connect("qemu", SerialSettings(type="serial", port=dev.url), log=lambda m: None)
            try:
                client.load(bytes(qemu.parse_params()["inputs"]))
                return session.op_profile(client, runs, lambda m: None)
            finally:
                client.link.close()


def summary(name: str, doc: dict) -> dict:
    ops = doc["ops"]
    means = [sum(o["times"]) / len(o["times"]) for o in ops]
    total_ops = sum(means)
    invoke = sum(doc["invoke"]) / len(doc["invoke"])
    top = sorted(zip(ops, means), key=lambda om: -om[1])[:3]
    return {
        "model": name,
        "source": doc["source"],
        "ops": len(ops),
        "invoke_ticks": invoke,
        "ticks_per_us": doc["ticks_per_us"],
        "op_sum_over_invoke": total_ops / invoke if invoke else None,
        "top3": [{"index": o["index"], "type": o["type"], "share": m / total_ops} for o, m in top],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--runs", type=int, default=5, help="profiled invocations per model (default 5)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.archs.split(","):
            try:
                rows.append(summary(f"{name} (mcu-sim)", profile_sim(convert(name, Path(d)), args.runs)))
            except Exception as exc:  # one model TFLM cannot run must not hide the others
                print(f"{name}: {exc}", file=sys.stderr)
    q = profile_qemu(args.runs)
    if q is not None:
        rows.append(summary("stand-in FC 64x10 (QEMU M4)", q))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':32} {'source':20} {'ops':>4} {'invoke ticks':>13} {'sum/invoke':>10}  top 3 ops (share)")
    for r in rows:
        top = ", ".join(f"#{t['index']} {t['type']} {100 * t['share']:.1f} %" for t in r["top3"])
        print(
            f"{r['model']:32} {r['source']:20} {r['ops']:>4} {r['invoke_ticks']:>13.1f} "
            f"{r['op_sum_over_invoke']:>10.3f}  {top}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
