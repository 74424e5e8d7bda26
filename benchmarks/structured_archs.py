"""filters-50 on the architectures edge teams deploy (targets: 0.45-0.60x MACs on each, <= 0.70x local
p50 on ResNet-8 and MobileNetV2).

For each model of tests/arch_models.py at its reference input size (ResNet-8 32x32x3 as MLPerf Tiny IC,
DS-CNN 49x10 MFCCs as KWS, MobileNetV1/V2 96x96x3 as VWW; the others at their test size), weights
as initialised (latency and MACs do not depend on them): structured pruning of half the MACs through
the channel graph, both models converted to int8 TFLite, MACs as `hil analyze` counts them and the
median latency of LiteRT's interpreter on this host (one thread, interleaved rounds so that both
models see the same host load). Usage: python benchmarks/structured_archs.py [NAME ...]
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def int8(model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its signature
        return conv.convert()


def macs(blob: bytes) -> int:
    from harness.models.inspect.analysis import analyze

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        return analyze(f.name).total_macs


def p50s(blobs: list[bytes], rounds: int = 30, per_round: int = 50) -> list[float]:
    """Median microseconds per invoke of each model, rounds interleaved."""
    from ai_edge_litert.interpreter import Interpreter

    its = []
    for b in blobs:
        it = Interpreter(model_content=b, num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        its.append(it)
    times: list[list[float]] = [[] for _ in its]
    for _ in range(rounds):
        for i, it in enumerate(its):
            t0 = time.perf_counter()
            for _ in range(per_round):
                it.invoke()
            times[i].append((time.perf_counter() - t0) / per_round * 1e6)
    return [float(np.median(t)) for t in times]


REFERENCE_INPUTS = {
    "resnet8": (32, 32, 3),
    "ds_cnn": (49, 10, 1),
    "mobilenet_v1": (96, 96, 3),
    "mobilenet_v2": (96, 96, 3),
}


def main(names: list[str]) -> None:
    import keras
    from arch_models import ARCHITECTURES

    from harness.compress.structured import prune_filters

    print(f"{'model':16s} {'MACs':>10s} {'pruned':>10s} {'ratio':>6s} {'p50 us':>8s} {'pruned':>8s} {'ratio':>6s}")
    for name in names or list(ARCHITECTURES):
        keras.utils.set_random_seed(0)
        build = ARCHITECTURES[name]
        model = build(input_shape=REFERENCE_INPUTS[name]) if name in REFERENCE_INPUTS else build()
        x = np.random.default_rng(0).uniform(0, 1, (32, *model.inputs[0].shape[1:])).astype(np.float32)
        pruned, _ = prune_filters(model, 0.5, "macs", "l1", name, log=lambda m: None)
        a, b = int8(model, x[:32]), int8(pruned, x[:32])
        ma, mb = macs(a), macs(b)
        la, lb = p50s([a, b])
        print(f"{name:16s} {ma:10,d} {mb:10,d} {mb / ma:6.3f} {la:8.1f} {lb:8.1f} {lb / la:6.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
