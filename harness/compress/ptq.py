"""Post-training quantization beyond the converter's variants, and host-side accuracy of a .tflite.

The converter's variants (fp32, fp16, dynamic, int8, int16x8) come from harness/models/convert.py and
its cache. `ai-edge-quantizer` (Google's quantizer for converted LiteRT models) adds methods that work
on any float `.tflite`, including models that exist only as `.tflite`: weight-only int8/int4 (weights
stored quantized, computation in float), dynamic-range int8/int4, static int8 (int8 weights and
activations, calibrated) and static int16 activations with int8 weights; each with per-channel or
per-tensor weight scales (`granularity`).

Static methods give integer inputs and outputs of the activation width (int8, or int16 for
static_int16), like the converter's int8 variant and QAT: the model runs integer-only, and the run path
and `tflite_accuracy` quantize the float data with the input's scale. Their activation ranges are the
min/max over all calibration samples, as the TFLite converter calibrates: ai-edge-quantizer's own
default is a moving average (factor 0.95) of each sample's min/max, which for one sample per step
keeps about the last 20 samples' typical extremes, not the data's (an MLP's input range came out at
+-1.38 for data reaching +-10.35, 10.9 % of its inputs saturated).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.errors import ConfigError, ModelError
from harness.models import tf_quiet

_log = logging.getLogger(__name__)

# method -> (mode, weight bits, activation bits)
AEQ = {
    "weight_only_int8": ("weight_only", 8, None),
    "weight_only_int4": ("weight_only", 4, None),
    "dynamic_int8": ("dynamic", 8, None),
    "dynamic_int4": ("dynamic", 4, None),
    "static_int8": ("static", 8, 8),
    "static_int16": ("static", 8, 16),
}


def aeq_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-quantizer")
    except PackageNotFoundError:
        return "none"


def _interpreter(model: bytes | Path):
    tf_quiet.prepare_env()
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, Path):
        return Interpreter(model_path=str(model))
    return Interpreter(model_content=model)


def aeq_quantize(
    float_tflite: bytes, method: str, granularity: str, calibration: np.ndarray | None, where: str
) -> bytes:
    """Quantize a float .tflite with ai-edge-quantizer; static methods calibrate on `calibration`."""
    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise ConfigError(f"{where}: needs the ai-edge-quantizer package (pip install ai-edge-quantizer)") from None
    mode, wbits, abits = AEQ[method]
    gran = qtyping.QuantGranularity.CHANNELWISE if granularity == "channel" else qtyping.QuantGranularity.TENSORWISE
    op = qtyping.TFLOperationName.ALL_SUPPORTED
    q = quantizer.Quantizer(bytearray(float_tflite))
    if mode == "weight_only":
        q.add_weight_only_config(".*", op, wbits, gran)
    elif mode == "dynamic":
        q.add_dynamic_config(".*", op, wbits, gran)
    else:
        q.add_static_config(".*", op, abits, wbits, gran)
    try:
        with tf_quiet.captured(f"ai-edge-quantizer {method}"), contextlib.redirect_stdout(sys.stderr):
            calib = None
            if q.need_calibration:
                if calibration is None:
                    raise ConfigError(
                        f"{where}: '{method}' needs calibration data (a <model>.calibration.npz "
                        "sidecar or --calibration)"
                    )
                calib = _calibrate(q, float_tflite, _signature_data(float_tflite, calibration[:200]))
            result = q.quantize(calib, enable_progress_report=False)
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{where}: ai-edge-quantizer {method} failed: {first}") from None
    if result.quantized_model is None:
        raise ModelError(f"{where}: ai-edge-quantizer {method} produced no model")
    return bytes(result.quantized_model)


def _calibrate(q, float_tflite: bytes, data: dict) -> dict:
    """Activation ranges as min/max over every sample (see the module doc), through the calibrator's
    documented `qsv_update_func` hook; quantizer.calibrate offers no way to pass it."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(q.get_quantization_recipe())
    calib = calibrator.Calibrator(float_tflite, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate(data, manager)
    return calib.get_model_qsvs()


def _signature_data(model: bytes, x: np.ndarray) -> dict[str, list[dict[str, np.ndarray]]]:
    it = _interpreter(model)
    sigs = it.get_signature_list()
    if not sigs:
        raise ModelError("the float model has no signature (ai-edge-quantizer calibrates through one)")
    key = next(iter(sigs))
    names = sigs[key]["inputs"]
    if len(names) != 1:
        raise ModelError("ai-edge-quantizer calibration here supports single-input models")
    return {key: [{names[0]: x[i : i + 1].astype(np.float32)} for i in range(len(x))]}


def tflite_accuracy(model: Path | bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite on the host's LiteRT interpreter ((de)quantising int inputs/outputs)."""
    correct = tflite_correct(model, x, y)
    return float(correct.mean()) if len(correct) else float("nan")


def tflite_correct(model: Path | bytes, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample, whether the top-1 class is the label: what a paired comparison of two candidates
    on the same samples needs (the sweep's accuracy ties). LiteRT announces its XNNPACK delegate on
    fd 2: captured like TensorFlow's output."""
    with tf_quiet.captured("host accuracy of a .tflite model"):
        return _correct(model, x, y)


def _correct(model: Path | bytes, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    correct = np.zeros(len(y), dtype=bool)
    for i, (o, yi) in enumerate(zip(tflite_outputs(model, x), y)):
        correct[i] = o.argmax() == yi
    return correct


def tflite_outputs(model: Path | bytes, x: np.ndarray) -> Iterator[np.ndarray]:
    """Each sample's flattened output of a .tflite on the host's LiteRT interpreter, one sample at a
    time, integer inputs quantised and integer outputs dequantised with their scales: what host
    accuracy and host reconstruction error both read (call inside a `tf_quiet.captured`)."""
    it = _interpreter(model)
    inp = it.get_input_details()[0]
    want = [int(d) for d in inp["shape"]]
    if want[0] != 1:
        it.resize_tensor_input(inp["index"], [1, *want[1:]])
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = x.reshape((len(x), *[int(d) for d in inp["shape"][1:]]))
    for xi in x:
        v = xi[None].astype(np.float32)
        if np.issubdtype(inp["dtype"], np.integer):
            s, z = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / s + z), info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], v)
        it.invoke()
        o = it.get_tensor(out["index"]).reshape(-1).astype(np.float64)
        if np.issubdtype(out["dtype"], np.integer):
            s, z = out["quantization"]
            o = (o - z) * s
        yield o
