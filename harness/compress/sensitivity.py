"""Per-operator quantization sensitivity, and mixed precision that spends bits where it matters.

Quantizing every operator alike loses most where one activation tensor has a range int8 cannot hold
(a few huge values next to fine detail). Such a tensor is crushed wherever it is quantized: at the
output of the operator that produces it and at the input of every operator that reads it. So an
operator's sensitivity here is what the int8 model *gains* when that operator's output stays precise:
the all-int8 model with operator i and the readers of its output left in float, its output compared
with the float model's on the same inputs (signal-to-quantization-noise ratio, SQNR, in dB). The gain
lands on the operator that produces the bad tensor, not on its neighbours: keeping only the reader
precise still quantizes the tensor at the producer's output, keeping only the producer still
quantizes it at the reader's input. For the top few, the accuracy drop of the float model with only
that operator in int8 says what it costs on the task (TFLite's QuantizationDebugger and
ai-edge-quantizer's validation give per-tensor errors of the int8 model; this ranks what to fix).

Mixed precision keeps the k most sensitive operators, with the readers of their outputs, out of int8
(int16 activations with int8 weights, which TFLite Micro has kernels for, or float on devices with an
FPU) and quantizes the rest to int8, through ai-edge-quantizer's per-operator recipes (an operator is
addressed by its output tensor name, as the quantizer's regex scopes are): exactly the set the ranking
measured.

Activation ranges come from one calibration of the all-int8 recipe (min/max over every sample, as
ptq.py calibrates), shared by every model of the ranking: one quantize and one pass over the samples
per operator, no re-calibration.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError, ModelError
from harness.models import tf_quiet

MAX_SAMPLES = 64  # inputs the SQNR is measured on: enough for a stable ranking, quick per operator


@dataclass
class OpSensitivity:
    index: int
    type: str
    tensor: str  # the operator's output tensor name (the quantizer's scope)
    gain_db: float  # output SQNR gained over all-int8 when it and its output's readers stay float
    sqnr_db: float  # output SQNR of that model (the all-int8 model's is `base_db` of the ranking)
    readers: tuple[int, ...] = ()  # operators reading its output: kept with it
    accuracy_drop: float | None = None  # float top-1 minus top-1 with only this operator in int8

    @property
    def keeps(self) -> tuple[int, ...]:
        return (self.index, *self.readers)


@dataclass
class Ranking:
    ops: list[OpSensitivity]  # most sensitive first
    base_db: float  # output SQNR of the all-int8 model
    tensors: dict[int, str]  # op index -> output tensor name (scopes for the quantizer)
    float_top1: float | None = None
    int8_top1: float | None = None


def _scope(tensor: str) -> str:
    """The quantizer's scope of an op is its output tensor names, each followed by ';' (ModelExplorer's
    convention): anchored at both ends of the first name, so no other op's scope matches."""
    return "^" + re.escape(tensor) + ";"


def _quantizer(float_blob: bytes):
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise ConfigError("sensitivity and mixed precision need the ai-edge-quantizer package") from None
    return quantizer.Quantizer(bytearray(float_blob))


def _graph(float_blob: bytes) -> tuple[list[tuple[int, str, str]], dict[int, tuple[int, ...]]]:
    """(index, type, output tensor name) of the main graph's operators, and the readers of each one's
    outputs."""
    import tempfile
    from pathlib import Path

    from harness.models.inspect.analysis import analyze

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "float.tflite"
        p.write_bytes(float_blob)
        a = analyze(p)
    if a.dtype not in ("float32", "float16"):
        raise ModelError(f"sensitivity needs a float model; this one is {a.dtype}")
    main = [op for op in a.operators if op.subgraph == 0 and op.outputs and op.outputs[0] >= 0]
    ops = [(op.index, op.name, a.tensor(op.outputs[0]).name) for op in main]
    readers = {
        op.index: tuple(r.index for r in main if r is not op and set(r.inputs) & set(t for t in op.outputs if t >= 0))
        for op in main
    }
    return ops, readers


def _run_quantize(q, calibration: dict | None, what: str) -> bytes:
    try:
        with tf_quiet.captured(f"ai-edge-quantizer {what}"), contextlib.redirect_stdout(sys.stderr):
            result = q.quantize(calibration, enable_progress_report=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"ai-edge-quantizer {what} failed: {first}") from None
    if result.quantized_model is None:
        raise ModelError(f"ai-edge-quantizer {what} produced no model")
    return bytes(result.quantized_model)


def _calibration(float_blob: bytes, recipe_q, x: np.ndarray) -> dict:
    from harness.compress.ptq import _calibrate, _signature_data

    with tf_quiet.captured("ai-edge-quantizer calibration"), contextlib.redirect_stdout(sys.stderr):
        return _calibrate(recipe_q, float_blob, _signature_data(float_blob, x[:200]))


def _outputs(blob: bytes, x: np.ndarray) -> np.ndarray:
    from harness.compress.ptq import tflite_outputs

    with tf_quiet.captured("sensitivity outputs"):
        return np.stack([o.astype(np.float64) for o in tflite_outputs(blob, x)])


def sqnr_db(reference: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((reference - got) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def _mixed(float_blob: bytes, keep: dict[str, int | None], granularity: str = "channel"):
    """A quantizer set to static int8 everywhere, and per scope in `keep` activations of that many bits
    (16) or float (None)."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    gran = qtyping.QuantGranularity.CHANNELWISE if granularity == "channel" else qtyping.QuantGranularity.TENSORWISE
    all_ops = qtyping.TFLOperationName.ALL_SUPPORTED
    q = _quantizer(float_blob)
    q.add_static_config(".*", all_ops, 8, 8, gran)
    for tensor, bits in keep.items():  # later scopes win over ".*" (the quantizer's rule)
        if bits is None:
            q.update_quantization_recipe(
                _scope(tensor), all_ops, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE
            )
        else:
            q.add_static_config(_scope(tensor), all_ops, bits, 8, gran)
    return q


def rank(
    float_blob: bytes,
    calibration: np.ndarray,
    eval_x: np.ndarray | None = None,
    eval_y: np.ndarray | None = None,
    top: int = 3,
) -> Ranking:
    """Every operator, most sensitive first; accuracy drops for the first `top` when labels are given."""
    from ai_edge_quantizer import qtyping

    from harness.compress.ptq import tflite_accuracy

    ops, readers = _graph(float_blob)
    tensors = {i: t for i, _, t in ops}
    q_all = _mixed(float_blob, {})
    qsvs = _calibration(float_blob, q_all, calibration)
    x = calibration[:MAX_SAMPLES]
    ref = _outputs(float_blob, x)
    int8 = _run_quantize(q_all, qsvs, "static int8")
    base = sqnr_db(ref, _outputs(int8, x))
    out: list[OpSensitivity] = []
    for index, kind, tensor in ops:
        keeps = (index, *readers[index])
        q = _mixed(float_blob, {tensors[j]: None for j in keeps})
        db = sqnr_db(ref, _outputs(_run_quantize(q, qsvs, f"int8 but {kind} #{index}"), x))
        out.append(OpSensitivity(index, kind, tensor, db - base, db, readers[index]))
    out.sort(key=lambda s: (-s.gain_db, s.index))
    ranking = Ranking(out, base, tensors)
    if eval_x is not None and eval_y is not None:
        ranking.float_top1 = tflite_accuracy(float_blob, eval_x, eval_y)
        ranking.int8_top1 = tflite_accuracy(int8, eval_x, eval_y)
        all_ops = qtyping.TFLOperationName.ALL_SUPPORTED
        for s in out[:top]:
            q = _quantizer(float_blob)
            q.add_static_config(_scope(s.tensor), all_ops, 8, 8)
            alone = _run_quantize(q, qsvs, f"int8 {s.type} #{s.index} alone")
            s.accuracy_drop = ranking.float_top1 - tflite_accuracy(alone, eval_x, eval_y)
    return ranking


def mixed_quantize(
    float_blob: bytes,
    keep: int,
    keep_as: str,
    calibration: np.ndarray,
    granularity: str = "channel",
    ranking: Ranking | None = None,
) -> tuple[bytes, list[int]]:
    """Static int8 everywhere except the `keep` most sensitive operators and the readers of their
    outputs (int16 activations with int8 weights, or float); returns the model and the operators kept."""
    ranking = ranking if ranking is not None else rank(float_blob, calibration)
    kept = sorted({j for s in ranking.ops[:keep] for j in s.keeps})
    bits = 16 if keep_as == "int16" else None
    q = _mixed(float_blob, {ranking.tensors[j]: bits for j in kept}, granularity)
    qsvs = _calibration(float_blob, q, calibration)
    return _run_quantize(q, qsvs, f"mixed precision (keep {keep} as {keep_as})"), kept


def format_ranking(ranking: Ranking, top: int) -> str:
    acc = ""
    if ranking.float_top1 is not None and ranking.int8_top1 is not None:
        acc = f"; top-1 float {ranking.float_top1 * 100:.2f} %, all-int8 {ranking.int8_top1 * 100:.2f} %"
    lines = [
        f"Quantization sensitivity (all-int8 output SQNR {ranking.base_db:.2f} dB against the float model{acc}).",
        "gain: SQNR the int8 model gains when the operator and the readers of its output stay float;",
        "top-1 drop: the float model with only that operator in int8.",
        f"{'rank':>4}  {'op':<5} {'type':<20} {'gain dB':>8} {'SQNR dB':>8} {'top-1 drop':>10}  readers  tensor",
    ]
    for i, s in enumerate(ranking.ops, 1):
        drop = f"{s.accuracy_drop * 100:+.2f} pt" if s.accuracy_drop is not None else "-"
        rd = ",".join(f"#{r}" for r in s.readers) or "-"
        lines.append(
            f"{i:>4}  #{s.index:<4} {s.type:<20} {s.gain_db:>8.2f} {s.sqnr_db:>8.2f} {drop:>10}  {rd:<7}  {s.tensor}"
        )
    return "\n".join(lines)
