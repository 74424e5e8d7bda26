"""QAT int8 against PTQ int8 per architecture (target: QAT accuracy >= PTQ accuracy - 0.5 pt).

Each model of tests/arch_models.py is trained on its digits task, then converted two ways with int8
inputs and outputs: the converter's int8 variant (post-training, calibrated on 100 training samples)
and `qat-int8` (harness/compress/qat.py: the shipped recipe's 2 epochs at 1e-4, same calibration
samples). Top-1 on the held-out quarter with the host's LiteRT interpreter; the autoencoder reports
the reconstruction MSE instead. Also prints how often the QAT Keras twin and its int8 model agree.

    .venv/bin/python benchmarks/qat_vs_ptq.py [--epochs 10] [--archs resnet8,ds_cnn,...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def int8_outputs(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [1, *x.shape[1:]])
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = inp["quantization"], out["quantization"]
    rows = []
    for xi in x:
        it.set_tensor(inp["index"], np.clip(np.round(xi[None] / si + zi), -128, 127).astype(np.int8))
        it.invoke()
        rows.append(((it.get_tensor(out["index"]).astype(np.float32) - zo) * so).reshape(-1))
    return np.array(rows)


def ptq_int8(model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(sys.stderr):  # TF's export chatter; stdout is the table
        return bytes(conv.convert())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10, help="float training epochs (default %(default)s)")
    ap.add_argument("--archs", default="", help="comma-separated subset of tests/arch_models.ARCHITECTURES")
    args = ap.parse_args()

    import keras
    from arch_models import ARCHITECTURES, digits_task

    from harness.compress.qat import convert_int8, train_qat
    from harness.compress.recipes import QatStep

    names = [n for n in args.archs.split(",") if n] or list(ARCHITECTURES)
    print(f"{'model':16s} {'float':>7s} {'PTQ int8':>9s} {'QAT int8':>9s} {'QAT-PTQ':>8s} {'agree':>6s} {'s':>5s}")
    for name in names:
        t0 = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = ARCHITECTURES[name]()
        x, y, xe, ye = digits_task(model.inputs[0].shape[1:], seed=0)
        ae = name == "fc_autoencoder"
        target = x if ae else y
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse" if ae else "sparse_categorical_crossentropy")
        model.fit(x, target, epochs=args.epochs, batch_size=32, verbose=0)
        calib = x[:100]
        ptq = int8_outputs(ptq_int8(model, calib), xe)
        q, _ = train_qat(
            model,
            QatStep(),
            x,
            target,
            label=name,
            epochs=2,
            batch_size=32,
            learning_rate=1e-4,
            seed=0,
            loss="mse" if ae else None,
        )
        qat = int8_outputs(convert_int8(q, calib, name), xe)
        flt = np.asarray(model.predict(xe, verbose=0)).reshape(len(xe), -1)
        twin = np.asarray(q.predict(xe, verbose=0)).reshape(len(xe), -1)
        secs = time.perf_counter() - t0
        if ae:  # reconstruction error, lower is better
            err = [float(((o - xe) ** 2).mean()) for o in (flt, ptq, qat)]
            agree = float(np.abs(twin - qat).mean())
            print(
                f"{name:16s} {err[0]:7.4f} {err[1]:9.4f} {err[2]:9.4f} {err[2] - err[1]:+8.4f} "
                f"{agree:6.4f} {secs:5.0f}  (MSE; agree = mean |twin - int8|)"
            )
            continue
        acc = [float((o.argmax(1) == ye).mean()) * 100 for o in (flt, ptq, qat)]
        agree = float((twin.argmax(1) == qat.argmax(1)).mean()) * 100
        print(
            f"{name:16s} {acc[0]:6.1f}% {acc[1]:8.1f}% {acc[2]:8.1f}% {acc[2] - acc[1]:+7.1f}  "
            f"{agree:5.1f}% {secs:5.0f}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
