"""Static analysis of a .tflite model without TensorFlow.

``analyze(path)`` reads the flatbuffer (``harness.models.inspect.tflite_schema``) and returns a ``ModelAnalysis``:
size, hash, tensors, operators with MACs, op counts, parameter count, a dtype summary and the ops a
TFLM ``MicroMutableOpResolver`` needs. ``format_table`` renders it for people, ``to_dict`` for JSON.

Conventions:
- ``operators`` and ``tensors`` cover every subgraph, main subgraph (0) first; each entry carries
  its ``subgraph`` and its subgraph-local ``index`` (operator inputs/outputs are local indices,
  -1 = optional input omitted). For single-subgraph models ``tensors[i].index == i``.
- MACs are counted for CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL, TRANSPOSE_CONV,
  CONV_3D and CONV_3D_TRANSPOSE; other ops count 0. Binary elementwise arithmetic (ADD, MUL, ...)
  is counted separately in ``elementwise`` (one per output element).
- ``param_count``: elements of the constant tensors that feed ops as weights/biases: every constant
  operator input of a float or quantized-value type (float32/16, bfloat16, int8, uint8, int16,
  int4), plus int32/int64 constants in a bias slot. Shape/axis/padding constants (int32/int64
  outside bias slots) are not parameters. Each tensor counts once however many ops read it.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ModelError
from harness.models.inspect.tflite_schema import (
    BUILTIN_OPERATOR_CODES,
    CUSTOM_CODE,
    Buffer,
    Model,
    SchemaError,
    Tensor,
    read_model,
    tensor_type_bits,
    tensor_type_name,
)

# --------------------------------------------------------------------------------------------
# TFLM resolver names

#: Builtin op name -> tflite::MicroMutableOpResolver method that registers it.
TFLM_ADD_METHOD: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

#: Custom op code -> MicroMutableOpResolver method for the custom ops TFLM ships.
TFLM_CUSTOM_ADD_METHOD: dict[str, str] = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "ethos-u": "AddEthosU",
}

# --------------------------------------------------------------------------------------------
# Op roles

_OP = BUILTIN_OPERATOR_CODES
# op code -> input slots holding weights (filters / matrices)
_WEIGHT_SLOTS: dict[int, tuple[int, ...]] = {
    _OP["CONV_2D"]: (1,),
    _OP["DEPTHWISE_CONV_2D"]: (1,),
    _OP["FULLY_CONNECTED"]: (1,),
    _OP["TRANSPOSE_CONV"]: (1,),
    _OP["CONV_3D"]: (1,),
    _OP["CONV_3D_TRANSPOSE"]: (1,),
    _OP["BATCH_MATMUL"]: (0, 1),  # whichever operand is constant
}
# op code -> the input slot holding the activation that feeds the MACs
_DATA_SLOT: dict[int, int] = {
    _OP["CONV_2D"]: 0,
    _OP["DEPTHWISE_CONV_2D"]: 0,
    _OP["FULLY_CONNECTED"]: 0,
    _OP["TRANSPOSE_CONV"]: 2,
    _OP["CONV_3D"]: 0,
    _OP["CONV_3D_TRANSPOSE"]: 2,
    _OP["BATCH_MATMUL"]: 0,
}
# op code -> input slots holding biases (int32/int64 in quantized models)
_BIAS_SLOTS: dict[int, tuple[int, ...]] = {
    _OP["CONV_2D"]: (2,),
    _OP["DEPTHWISE_CONV_2D"]: (2,),
    _OP["FULLY_CONNECTED"]: (2,),
    _OP["TRANSPOSE_CONV"]: (3,),
    _OP["CONV_3D"]: (2,),
    _OP["CONV_3D_TRANSPOSE"]: (3,),
    _OP["SVDF"]: (3,),
    _OP["LSTM"]: (12, 13, 14, 15),
    _OP["UNIDIRECTIONAL_SEQUENCE_LSTM"]: (12, 13, 14, 15),
    _OP["BIDIRECTIONAL_SEQUENCE_LSTM"]: (12, 13, 14, 15, 29, 30, 31, 32),
}
_ELEMENTWISE_OPS = {
    _OP[n]
    for n in (
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "SQUARED_DIFFERENCE",
        "MAXIMUM",
        "MINIMUM",
        "POW",
        "FLOOR_DIV",
        "FLOOR_MOD",
        "ADD_N",
    )
}
_CONVERSION_OPS = {_OP["QUANTIZE"], _OP["DEQUANTIZE"], _OP["CAST"]}
_PARAM_TYPES = {"float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int4", "int2"}
_BIAS_TYPES = {"int32", "int64"}

# --------------------------------------------------------------------------------------------
# Result types


@dataclass
class QuantParams:
    scale: list[float]
    zero_point: list[int]
    quantized_dimension: int = 0
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass
class TensorInfo:
    subgraph: int
    index: int
    name: str
    shape: list[int]
    shape_signature: list[int] | None
    dtype: str
    quantization: QuantParams | None
    buffer: int
    buffer_bytes: int  # bytes of constant data (0 for activations)
    nbytes: int  # bytes the tensor occupies at its (static) shape
    is_constant: bool
    is_variable: bool
    external: bool = False  # constant data stored outside the flatbuffer
    sparse: bool = False

    @property
    def elements(self) -> int:
        return _num_elements(self.shape)


@dataclass
class IOTensor:
    index: int
    name: str
    shape: list[int]
    shape_signature: list[int] | None
    dtype: str
    scale: float | None  # None when not quantized
    zero_point: int | None


@dataclass
class OperatorInfo:
    subgraph: int
    index: int
    name: str  # builtin name (CONV_2D) or the custom code for custom ops
    builtin_code: int
    custom_code: str | None
    version: int
    inputs: list[int]
    outputs: list[int]
    macs: int = 0
    elementwise: int = 0

    @property
    def is_custom(self) -> bool:
        return self.builtin_code == CUSTOM_CODE


@dataclass
class ModelAnalysis:
    path: str
    size_bytes: int
    sha256: str
    schema_version: int
    description: str | None
    subgraphs: int
    inputs: list[IOTensor]
    outputs: list[IOTensor]
    tensors: list[TensorInfo]
    operators: list[OperatorInfo]
    op_counts: dict[str, int]
    param_count: int
    param_bytes: int
    constant_bytes: int  # all constant buffers referenced by tensors
    external_buffers: int  # buffers stored outside the flatbuffer
    total_macs: int
    total_elementwise: int
    dtype: str
    activation_dtypes: dict[str, int]
    weight_dtypes: dict[str, int]
    custom_ops: list[str]
    signatures: list[str]
    metadata: dict[str, int]  # metadata name -> bytes
    min_runtime_version: str | None

    def tensor(self, index: int, subgraph: int = 0) -> TensorInfo:
        for t in self.tensors:
            if t.subgraph == subgraph and t.index == index:
                return t
        raise KeyError(f"no tensor {index} in subgraph {subgraph}")

    def micro_resolver_ops(self) -> list[str]:
        """Sorted unique builtin op names (all subgraphs; custom ops excluded)."""
        return sorted({op.name for op in self.operators if not op.is_custom})

    def micro_resolver_methods(self) -> list[str]:
        """MicroMutableOpResolver method names for the ops TFLM can register (builtin, custom)."""
        out = [TFLM_ADD_METHOD[n] for n in self.micro_resolver_ops() if n in TFLM_ADD_METHOD]
        out += [TFLM_CUSTOM_ADD_METHOD[c] for c in self.custom_ops if c in TFLM_CUSTOM_ADD_METHOD]
        return out

    def micro_unsupported_ops(self) -> list[str]:
        """Ops (builtin names or custom codes) with no known TFLM registration method."""
        miss = [n for n in self.micro_resolver_ops() if n not in TFLM_ADD_METHOD]
        miss += [c for c in self.custom_ops if c not in TFLM_CUSTOM_ADD_METHOD]
        return miss


# --------------------------------------------------------------------------------------------
# Helpers


def _num_elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)  # dynamic (-1) dims count as 1, as in the static shape TFLite stores
    return n


def _sha256(buf: Any) -> str:
    h = hashlib.sha256()
    view = memoryview(buf)
    for i in range(0, len(view), 1 << 24):
        h.update(view[i : i + (1 << 24)])
    return h.hexdigest()


def _macs(code: int, ins: list[TensorInfo | None], outs: list[TensorInfo | None]) -> int:
    """Multiply-accumulates of one op from its tensor shapes (0 when shapes are missing)."""

    def shape(ts: list[TensorInfo | None], i: int) -> list[int] | None:
        t = ts[i] if i < len(ts) else None
        if t is not None:
            return [max(int(d), 1) for d in t.shape]
        return None

    out = shape(outs, 0)
    if code == _OP["CONV_2D"]:
        w = shape(ins, 1)  # [out_c, kh, kw, in_c / groups]
        if out and w and len(w) == 4:
            return _num_elements(out) * w[1] * w[2] * w[3]
    elif code == _OP["DEPTHWISE_CONV_2D"]:
        w = shape(ins, 1)  # [1, kh, kw, out_c]
        if out and w and len(w) == 4:
            return _num_elements(out) * w[1] * w[2]
    elif code == _OP["FULLY_CONNECTED"]:
        w = shape(ins, 1)  # [units, in_units]
        if out and w and len(w) >= 2:
            return _num_elements(out) * w[-1]
    elif code == _OP["TRANSPOSE_CONV"]:
        w, x = shape(ins, 1), shape(ins, 2)  # w [out_c, kh, kw, in_c]
        if w and x and len(w) == 4:
            return _num_elements(x) * w[0] * w[1] * w[2]
    elif code == _OP["CONV_3D"]:
        w = shape(ins, 1)  # [kd, kh, kw, in_c, out_c]
        if out and w and len(w) == 5:
            return _num_elements(out) * w[0] * w[1] * w[2] * w[3]
    elif code == _OP["CONV_3D_TRANSPOSE"]:
        w, x = shape(ins, 1), shape(ins, 2)  # w [kd, kh, kw, out_c, in_c]
        if w and x and len(w) == 5:
            return _num_elements(x) * w[0] * w[1] * w[2] * w[3]
    elif code == _OP["BATCH_MATMUL"]:
        a = shape(ins, 0)
        if out and a and len(a) >= 2 and len(out) >= 2:
            # out [..., M, N]; a is [..., M, K] or, with adj_x, [..., K, M].
            m = out[-2]
            k = a[-1] if (a[-2] == m or a[-1] != m) else a[-2]
            return _num_elements(out) * k
    return 0


def _dtype_summary(acts: Counter, weights: Counter, dequantized: set[str]) -> str:
    if not acts and not weights:
        return "unknown"
    a_set, w_set = set(acts), set(weights)
    if len(a_set) > 1 or len(w_set) > 1:
        parts = []
        if a_set:
            parts.append("activations " + "/".join(sorted(a_set)))
        if w_set:
            parts.append("weights " + "/".join(sorted(w_set)))
        return "mixed (" + "; ".join(parts) + ")"
    a = next(iter(a_set)) if a_set else None
    w = next(iter(w_set)) if w_set else None
    if w is None or a == w:
        return a or "unknown"
    if a is None:
        return f"{w} weights"
    if a == "int16" and w == "int8":
        return "int16x8"
    if a in ("float32", "float16") and w in ("float16", "bfloat16"):
        return f"{w} weights"
    if a == "float32" and w in ("int8", "uint8", "int4", "int2"):
        # Weights dequantized by a DEQUANTIZE op: weight-only quantization; weights fed straight
        # into the compute op with float activations: hybrid (dynamic-range) kernels.
        return f"{w} weights" if w in dequantized else f"dynamic-range {w}"
    return f"{a} activations, {w} weights"


# --------------------------------------------------------------------------------------------
# Analysis


#: More dimensions than any runtime supports (TFLite kernels handle up to 6-8): a corrupt shape vector.
MAX_RANK = 32
#: Bytes of one tensor beyond any device's memory (1 TiB): a corrupt shape, not a real activation.
MAX_TENSOR_BYTES = 1 << 40


def _check_tensor(t: Tensor, b: Buffer, where: str) -> str | None:
    """Why a tensor's shape, signature, data or quantisation cannot be right (None: plausible).

    Shapes come straight from the file, so a flipped byte can claim a 2^31-wide dimension or a
    constant whose data the file does not hold; the numbers derived from them (parameters, MACs)
    would then be nonsense. Each check is one the TFLite runtime also relies on."""
    shape = list(t.shape)
    if len(shape) > MAX_RANK:
        return f"{where} has {len(shape)} dimensions (at most {MAX_RANK} are plausible)"
    if any(d < -1 for d in shape):
        return f"{where} has a negative dimension in shape {shape}"
    sig = t.shape_signature
    if sig is not None:
        if len(sig) != len(shape):
            return f"{where} has shape signature {list(sig)} of another rank than its shape {shape}"
        if any(d < -1 for d in sig):
            return f"{where} has a negative dimension in shape signature {list(sig)}"
    bits = tensor_type_bits(t.type)
    elements = _num_elements(shape)
    if elements * max(bits, 8) > 8 * MAX_TENSOR_BYTES:
        return f"{where} has shape {shape} ({elements:.3g} elements), larger than any device's memory"
    name = tensor_type_name(t.type)
    if b.nbytes and bits and name != "string" and not t.sparse and not t.is_variable:
        need = (elements * bits + 7) // 8
        if b.nbytes < need:
            return (
                f"{where} has shape {shape} ({name}), which needs {need:,} bytes of data, but "
                f"its buffer {t.buffer} holds {b.nbytes:,} bytes"
            )
    q = t.quantization
    if q is not None:
        if any(not math.isfinite(v) for v in q.scale):
            return f"{where} has a non-finite quantisation scale"
        if len(q.scale) > 1 and not 0 <= q.quantized_dimension < max(len(shape), 1):
            return (
                f"{where} is quantised per channel along dimension {q.quantized_dimension}, "
                f"but its shape {shape} has {len(shape)} dimensions"
            )
    return None


def _analyze_model(path: str, buf: Any, model: Model, file_size: int) -> ModelAnalysis:
    def fail(msg: str) -> ModelError:
        return ModelError(f"{path}: {msg}")

    buffers = model.buffers
    for bi, b in enumerate(buffers):
        if b.external and b.offset + b.size > file_size:
            raise fail(
                f"buffer {bi} data at offset {b.offset} (+{b.size} bytes) lies past the "
                f"end of the {file_size}-byte file (truncated)"
            )
    if not model.subgraphs:
        raise fail("model has no subgraphs")

    tensors: list[TensorInfo] = []
    operators: list[OperatorInfo] = []
    param_tensors: dict[tuple[int, int], TensorInfo] = {}
    acts: Counter = Counter()
    weights: Counter = Counter()
    dequantized: set[str] = set()
    used_buffers: set[int] = set()

    for si, sg in enumerate(model.subgraphs):
        local: list[TensorInfo] = []
        for ti, t in enumerate(sg.tensors):
            if t.buffer >= len(buffers):
                raise fail(
                    f"subgraph {si} tensor {ti} ({t.name!r}) refers to buffer {t.buffer} "
                    f"but the model has {len(buffers)} buffers"
                )
            b = buffers[t.buffer]
            bad = _check_tensor(t, b, f"subgraph {si} tensor {ti} ({t.name[:80]!r})")
            if bad:
                raise fail(f"{bad} (corrupt file)")
            q = None
            if t.quantization is not None and (t.quantization.scale or t.quantization.min):
                q = QuantParams(
                    scale=list(t.quantization.scale),
                    zero_point=list(t.quantization.zero_point),
                    quantized_dimension=t.quantization.quantized_dimension,
                    min=list(t.quantization.min),
                    max=list(t.quantization.max),
                )
            bits = tensor_type_bits(t.type)
            tinfo = TensorInfo(
                subgraph=si,
                index=ti,
                name=t.name,
                shape=list(t.shape),
                shape_signature=list(t.shape_signature) if t.shape_signature is not None else None,
                dtype=tensor_type_name(t.type),
                quantization=q,
                buffer=t.buffer,
                buffer_bytes=b.nbytes,
                nbytes=(_num_elements(t.shape) * bits + 7) // 8,
                is_constant=b.nbytes > 0,
                is_variable=t.is_variable,
                external=b.external,
                sparse=t.sparse,
            )
            if tinfo.is_constant:
                used_buffers.add(t.buffer)
            local.append(tinfo)
        tensors.extend(local)

        def get(idx: int, where: str, oi: int) -> TensorInfo | None:
            if idx == -1:
                return None
            if not 0 <= idx < len(local):
                raise fail(
                    f"subgraph {si} operator {oi} {where} refers to tensor {idx} but the "
                    f"subgraph has {len(local)} tensors"
                )
            return local[idx]

        for where, idxs in (("input", sg.inputs), ("output", sg.outputs)):
            for idx in idxs:
                if not 0 <= idx < len(local):
                    raise fail(
                        f"subgraph {si} {where} refers to tensor {idx} but the subgraph has {len(local)} tensors"
                    )

        producer: dict[int, int] = {}
        ops_codes: list[int] = []
        for oi, op in enumerate(sg.operators):
            if op.opcode_index >= len(model.operator_codes):
                raise fail(
                    f"subgraph {si} operator {oi} uses opcode {op.opcode_index} but the "
                    f"model has {len(model.operator_codes)} operator codes"
                )
            for o in op.outputs:
                if 0 <= o < len(local):
                    producer[o] = oi
            ops_codes.append(model.operator_codes[op.opcode_index].builtin_code)

        for oi, op in enumerate(sg.operators):
            oc = model.operator_codes[op.opcode_index]
            code = oc.builtin_code
            ins = [get(i, "input", oi) for i in op.inputs]
            outs = [get(i, "output", oi) for i in op.outputs]
            opinfo = OperatorInfo(
                subgraph=si,
                index=oi,
                name=oc.name,
                builtin_code=code,
                custom_code=oc.custom_code if code == CUSTOM_CODE else None,
                version=oc.version,
                inputs=list(op.inputs),
                outputs=list(op.outputs),
                macs=_macs(code, ins, outs),
            )
            if code in _ELEMENTWISE_OPS and outs and outs[0] is not None:
                opinfo.elementwise = outs[0].elements
            operators.append(opinfo)

            # parameters
            bias_slots = _BIAS_SLOTS.get(code, ())
            for slot, tin in enumerate(ins):
                if tin is None or not tin.is_constant:
                    continue
                if tin.dtype in _PARAM_TYPES or (tin.dtype in _BIAS_TYPES and slot in bias_slots):
                    param_tensors[(si, tin.index)] = tin

            # dtypes of the compute ops (what the kernels actually run in)
            if code in _WEIGHT_SLOTS:
                data = ins[_DATA_SLOT[code]] if _DATA_SLOT[code] < len(ins) else None
                for slot in _WEIGHT_SLOTS[code]:
                    w = ins[slot] if slot < len(ins) else None
                    if w is None or w is data and code != _OP["BATCH_MATMUL"]:
                        continue
                    if w.is_constant:
                        weights[w.dtype] += 1
                    elif w.index in producer and ops_codes[producer[w.index]] == _OP["DEQUANTIZE"]:
                        src_op = sg.operators[producer[w.index]]
                        src = get(src_op.inputs[0], "input", producer[w.index]) if src_op.inputs else None
                        if src is not None and src.is_constant:
                            weights[src.dtype] += 1
                            dequantized.add(src.dtype)
                if data is not None and not data.is_constant:
                    acts[data.dtype] += 1

    if not weights and not acts:
        # No compute ops: judge by what the other ops produce and the constants they read.
        by_key = {(tt.subgraph, tt.index): tt for tt in tensors}
        for opi in operators:
            if opi.builtin_code in _CONVERSION_OPS:
                continue
            for o in opi.outputs:
                out_t = by_key.get((opi.subgraph, o))
                if out_t is not None and out_t.dtype in _PARAM_TYPES:
                    acts[out_t.dtype] += 1
        for pt in param_tensors.values():
            if pt.dtype in _PARAM_TYPES:
                weights[pt.dtype] += 1

    main = model.subgraphs[0]
    main_tensors = tensors[: len(main.tensors)]

    def io(idx: int) -> IOTensor:
        t = main_tensors[idx]
        q = t.quantization
        scale = zp = None
        if q is not None and q.scale:
            scale = float(q.scale[0])
            zp = int(q.zero_point[0]) if q.zero_point else 0
        return IOTensor(
            index=idx,
            name=t.name,
            shape=list(t.shape),
            shape_signature=t.shape_signature,
            dtype=t.dtype,
            scale=scale,
            zero_point=zp,
        )

    op_counts = Counter(op.name for op in operators)
    metadata: dict[str, int] = {}
    min_runtime = None
    for m in model.metadata:
        nbytes = buffers[m.buffer].nbytes if m.buffer < len(buffers) else 0
        metadata[m.name or ""] = nbytes
        if m.name == "min_runtime_version" and m.buffer < len(buffers):
            b = buffers[m.buffer]
            if b.data_size and b.data_size <= 64:
                raw = bytes(buf[b.data_pos : b.data_pos + b.data_size])
                min_runtime = raw.split(b"\0", 1)[0].decode("ascii", errors="replace") or None

    return ModelAnalysis(
        path=path,
        size_bytes=file_size,
        sha256=_sha256(buf),
        schema_version=model.version,
        description=model.description,
        subgraphs=len(model.subgraphs),
        inputs=[io(i) for i in main.inputs],
        outputs=[io(i) for i in main.outputs],
        tensors=tensors,
        operators=operators,
        op_counts=dict(sorted(op_counts.items())),
        param_count=sum(t.elements for t in param_tensors.values()),
        param_bytes=sum(t.buffer_bytes for t in param_tensors.values()),
        constant_bytes=sum(buffers[i].nbytes for i in used_buffers),
        external_buffers=sum(1 for b in buffers if b.external),
        total_macs=sum(op.macs for op in operators),
        total_elementwise=sum(op.elementwise for op in operators),
        dtype=_dtype_summary(acts, weights, dequantized),
        activation_dtypes=dict(sorted(acts.items())),
        weight_dtypes=dict(sorted(weights.items())),
        custom_ops=sorted({op.custom_code or "CUSTOM" for op in operators if op.is_custom}),
        signatures=[s.key or "" for s in model.signature_defs],
        metadata=metadata,
        min_runtime_version=min_runtime,
    )


def analyze(path: str | os.PathLike) -> ModelAnalysis:
    """Analyse a .tflite file. Raises ``ModelError`` (naming the file) if it is not a valid model,
    ``ConfigError`` if it does not exist or cannot be read."""
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{name}: model file not found")
    convert_first = (
        f"; hil analyze reads .tflite files: convert it first (`hil convert {name}` prints "
        "the path of the .tflite to analyze)"
    )
    if p.is_dir() and (p / "saved_model.pb").exists():
        raise ModelError(f"{name}: a TensorFlow SavedModel directory{convert_first}")
    if not p.is_file():
        raise ConfigError(f"{name}: not a regular file")
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelError(f"{name}: empty file (0 bytes), not a TFLite model")
            if p.suffix.lower() == ".keras" or f.read(4) == b"PK\x03\x04":
                raise ModelError(f"{name}: a Keras model (zip archive), not a TFLite flatbuffer{convert_first}")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    model = read_model(mm)
                except SchemaError as e:
                    raise ModelError(f"{name}: {e}") from None
                return _analyze_model(name, mm, model, size)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read model file: {e.strerror or e}") from None


# --------------------------------------------------------------------------------------------
# Rendering


def to_dict(analysis: ModelAnalysis) -> dict[str, Any]:
    """JSON-serialisable form (plain dicts/lists/str/int/float/None)."""
    d = asdict(analysis)
    d["micro_resolver_ops"] = analysis.micro_resolver_ops()
    d["micro_resolver_methods"] = analysis.micro_resolver_methods()
    d["micro_unsupported_ops"] = analysis.micro_unsupported_ops()
    return d


def _fmt_shape(t: TensorInfo) -> str:
    return "[" + ",".join(str(d) for d in t.shape) + "]" + t.dtype


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def _fmt_quant(scale: float | None, zp: int | None) -> str:
    return "-" if scale is None else f"scale={scale:.6g} zero_point={zp}"


def format_table(analysis: ModelAnalysis) -> str:
    a = analysis
    lines = [
        f"Model: {a.path}",
        f"  size {a.size_bytes:,} bytes, sha256 {a.sha256[:16]}, schema v{a.schema_version}, {a.subgraphs} subgraph(s)",
        f"  dtype {a.dtype}, {len(a.operators)} ops, {a.param_count:,} params "
        f"({a.param_bytes:,} bytes), {a.total_macs:,} MACs ({_human(a.total_macs)})",
    ]
    if a.external_buffers:
        lines.append(f"  {a.external_buffers} buffer(s) stored outside the flatbuffer")
    if a.min_runtime_version:
        lines.append(f"  min runtime version {a.min_runtime_version}")
    lines.append("")

    by_sg: dict[int, dict[int, TensorInfo]] = {}
    for t in a.tensors:
        by_sg.setdefault(t.subgraph, {})[t.index] = t

    # Tensors that are weights at run time: constants, and DEQUANTIZE outputs of constants.
    weight_like: set[tuple[int, int]] = {(t.subgraph, t.index) for t in a.tensors if t.is_constant}
    for op in a.operators:
        if op.name == "DEQUANTIZE" and op.inputs and (op.subgraph, op.inputs[0]) in weight_like:
            weight_like.update((op.subgraph, o) for o in op.outputs)

    rows = [("sg" if a.subgraphs > 1 else "", "#", "op", "inputs", "weights", "outputs", "MACs")]
    for op in a.operators:
        ts = by_sg.get(op.subgraph, {})
        ins = [ts[i] for i in op.inputs if i in ts]
        data = " ".join(_fmt_shape(t) for t in ins if (t.subgraph, t.index) not in weight_like) or "-"
        wts = " ".join(_fmt_shape(t) for t in ins if (t.subgraph, t.index) in weight_like) or "-"
        outs = " ".join(_fmt_shape(ts[i]) for i in op.outputs if i in ts) or "-"
        rows.append(
            (
                str(op.subgraph) if a.subgraphs > 1 else "",
                str(op.index),
                op.name,
                data,
                wts,
                outs,
                f"{op.macs:,}" if op.macs else "-",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for i, r in enumerate(rows):
        cells = [r[c].rjust(widths[c]) if c in (1, 6) else r[c].ljust(widths[c]) for c in range(len(r)) if widths[c]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths if w))
    lines.append("")
    lines.append(
        f"Total MACs: {a.total_macs:,}   elementwise ops: {a.total_elementwise:,}   "
        f"params: {a.param_count:,}   constant data: {a.constant_bytes:,} bytes"
    )
    lines.append("Op counts: " + ", ".join(f"{k} x{v}" for k, v in a.op_counts.items()))
    lines.append("")
    for title, items in (("Inputs", a.inputs), ("Outputs", a.outputs)):
        lines.append(f"{title}:")
        for io_t in items:
            shape = "[" + ",".join(str(d) for d in io_t.shape) + "]"
            sig = io_t.shape_signature
            if sig is not None and any(d < 0 for d in sig[1:]):  # dynamic: what `hil run --input-shape` sets
                shape += " (signature [" + ",".join(str(d) for d in sig) + "])"
            lines.append(f"  {io_t.name}  {shape} {io_t.dtype}  {_fmt_quant(io_t.scale, io_t.zero_point)}")
    methods = a.micro_resolver_methods()
    lines.append("")
    lines.append("TFLM resolver: " + (", ".join(m + "()" for m in methods) or "-"))
    if a.micro_unsupported_ops():
        lines.append("  no TFLM registration known for: " + ", ".join(a.micro_unsupported_ops()))
    return "\n".join(lines)
