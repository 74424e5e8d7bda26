"""A small, bounds-checked reader of the TFLite flatbuffer format (schema version 3).

No TensorFlow, no generated code: the few tables hilbench needs are read straight from the bytes.

Flatbuffer layout in brief (all little-endian):
- byte 0: uoffset (u32) to the root table; bytes 4..8: the file identifier (``TFL3``).
- a table starts with an soffset (i32); its vtable is at ``table - soffset``. The vtable holds
  u16 vtable size, u16 table size, then one u16 per field: the field's offset inside the table,
  0 when the field is absent (the schema default applies).
- tables, vectors and strings are referenced by a u32 offset relative to where that offset is
  stored. A vector is a u32 element count followed by the elements; a string is a vector of bytes
  followed by a NUL.

Every read is checked against the buffer length, so a corrupt or truncated file raises
``SchemaError`` (a ``ValueError``) instead of ``struct.error``/``IndexError`` or a runaway loop.
Callers (``harness.models.inspect.analysis``) turn that into a ``ModelError`` naming the file.

Field slots below follow tensorflow/lite/schema/schema.fbs (field ids in declaration order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3

# --------------------------------------------------------------------------------------------
# Enums


# BuiltinOperator, in code order: _BUILTIN_OPERATOR_NAMES[code] == name.
_BUILTIN_OPERATOR_NAMES: tuple[str, ...] = (
    # 0
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE",
    "DEQUANTIZE",
    "EMBEDDING_LOOKUP",
    "FLOOR",
    "FULLY_CONNECTED",
    # 10
    "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION",
    "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION",
    "LOGISTIC",
    "LSH_PROJECTION",
    "LSTM",
    "MAX_POOL_2D",
    "MUL",
    "RELU",
    # 20
    "RELU_N1_TO_1",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RNN",
    "SOFTMAX",
    "SPACE_TO_DEPTH",
    "SVDF",
    "TANH",
    "CONCAT_EMBEDDINGS",
    # 30
    "SKIP_GRAM",
    "CALL",
    "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE",
    "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER",
    "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND",
    "TRANSPOSE",
    # 40
    "MEAN",
    "SUB",
    "DIV",
    "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP",
    "TOPK_V2",
    "SPLIT",
    # 50
    "LOG_SOFTMAX",
    "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "CAST",
    "PRELU",
    "MAXIMUM",
    "ARG_MAX",
    "MINIMUM",
    "LESS",
    "NEG",
    # 60
    "PADV2",
    "GREATER",
    "GREATER_EQUAL",
    "LESS_EQUAL",
    "SELECT",
    "SLICE",
    "SIN",
    "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE",
    "TILE",
    # 70
    "EXPAND_DIMS",
    "EQUAL",
    "NOT_EQUAL",
    "LOG",
    "SUM",
    "SQRT",
    "RSQRT",
    "SHAPE",
    "POW",
    "ARG_MIN",
    # 80
    "FAKE_QUANT",
    "REDUCE_PROD",
    "REDUCE_MAX",
    "PACK",
    "LOGICAL_OR",
    "ONE_HOT",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "UNPACK",
    "REDUCE_MIN",
    # 90
    "FLOOR_DIV",
    "REDUCE_ANY",
    "SQUARE",
    "ZEROS_LIKE",
    "FILL",
    "FLOOR_MOD",
    "RANGE",
    "RESIZE_NEAREST_NEIGHBOR",
    "LEAKY_RELU",
    "SQUARED_DIFFERENCE",
    # 100
    "MIRROR_PAD",
    "ABS",
    "SPLIT_V",
    "UNIQUE",
    "CEIL",
    "REVERSE_V2",
    "ADD_N",
    "GATHER_ND",
    "COS",
    "WHERE",
    # 110
    "RANK",
    "ELU",
    "REVERSE_SEQUENCE",
    "MATRIX_DIAG",
    "QUANTIZE",
    "MATRIX_SET_DIAG",
    "ROUND",
    "HARD_SWISH",
    "IF",
    "WHILE",
    # 120
    "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND",
    "SELECT_V2",
    "DENSIFY",
    "SEGMENT_SUM",
    "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES",
    "CUMSUM",
    "CALL_ONCE",
    # 130
    "BROADCAST_TO",
    "RFFT2D",
    "CONV_3D",
    "IMAG",
    "REAL",
    "COMPLEX_ABS",
    "HASHTABLE",
    "HASHTABLE_FIND",
    "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE",
    # 140
    "REDUCE_ALL",
    "CONV_3D_TRANSPOSE",
    "VAR_HANDLE",
    "READ_VARIABLE",
    "ASSIGN_VARIABLE",
    "BROADCAST_ARGS",
    "RANDOM_STANDARD_NORMAL",
    "BUCKETIZE",
    "RANDOM_UNIFORM",
    "MULTINOMIAL",
    # 150
    "GELU",
    "DYNAMIC_UPDATE_SLICE",
    "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD",
    "UNSORTED_SEGMENT_MAX",
    "UNSORTED_SEGMENT_SUM",
    "ATAN2",
    "UNSORTED_SEGMENT_MIN",
    "SIGN",
    "BITCAST",
    # 160
    "BITWISE_XOR",
    "RIGHT_SHIFT",
    "STABLEHLO_LOGISTIC",
    "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE",
    "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM",
    "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP",
    "STABLEHLO_CONCATENATE",
    # 170
    "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION",
    "STABLEHLO_SLICE",
    "STABLEHLO_CUSTOM_CALL",
    "STABLEHLO_REDUCE",
    "STABLEHLO_ABS",
    "STABLEHLO_AND",
    "STABLEHLO_COSINE",
    "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR",
    # 180
    "STABLEHLO_LOG",
    "STABLEHLO_MINIMUM",
    "STABLEHLO_NEGATE",
    "STABLEHLO_OR",
    "STABLEHLO_POWER",
    "STABLEHLO_REMAINDER",
    "STABLEHLO_RSQRT",
    "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT",
    "STABLEHLO_TANH",
    # 190
    "STABLEHLO_SCATTER",
    "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT",
    "STABLEHLO_DYNAMIC_SLICE",
    "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD",
    "STABLEHLO_IOTA",
    "STABLEHLO_DOT_GENERAL",
    "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT",
    # 200
    "STABLEHLO_WHILE",
    "STABLEHLO_GATHER",
    "STABLEHLO_TRANSPOSE",
    "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR",
    "REDUCE_WINDOW",
    "STABLEHLO_COMPOSITE",
    "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT",
    "STABLEHLO_CASE",
)

#: BuiltinOperator code -> name (as in schema.fbs).
BUILTIN_OPERATORS: dict[int, str] = dict(enumerate(_BUILTIN_OPERATOR_NAMES))
#: name -> BuiltinOperator code.
BUILTIN_OPERATOR_CODES: dict[str, int] = {n: c for c, n in BUILTIN_OPERATORS.items()}

CUSTOM_CODE = BUILTIN_OPERATOR_CODES["CUSTOM"]
PLACEHOLDER_FOR_GREATER_OP_CODES = BUILTIN_OPERATOR_CODES["PLACEHOLDER_FOR_GREATER_OP_CODES"]


def builtin_op_name(code: int) -> str:
    """Name of a BuiltinOperator code; unknown (newer) codes become ``BUILTIN_<code>``."""
    return BUILTIN_OPERATORS.get(code, f"BUILTIN_{code}")


# TensorType code -> (numpy-style name, bits per element).
TENSOR_TYPES: dict[int, tuple[str, int]] = {
    0: ("float32", 32),
    1: ("float16", 16),
    2: ("int32", 32),
    3: ("uint8", 8),
    4: ("int64", 64),
    5: ("string", 8),  # variable length; buffer size is what counts
    6: ("bool", 8),
    7: ("int16", 16),
    8: ("complex64", 64),
    9: ("int8", 8),
    10: ("float64", 64),
    11: ("complex128", 128),
    12: ("uint64", 64),
    13: ("resource", 0),
    14: ("variant", 0),
    15: ("uint32", 32),
    16: ("uint16", 16),
    17: ("int4", 4),
    18: ("bfloat16", 16),
    19: ("int2", 2),
}


def tensor_type_name(code: int) -> str:
    return TENSOR_TYPES.get(code, (f"type{code}", 0))[0]


def tensor_type_bits(code: int) -> int:
    return TENSOR_TYPES.get(code, ("", 0))[1]


# --------------------------------------------------------------------------------------------
# Raw reader


class SchemaError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer (message says what and where)."""


class UnsupportedSchema(SchemaError):
    """A well-formed file of a schema version this reader does not handle."""


_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_SCALAR_FMT = {"b": 1, "B": 1, "?": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4, "d": 8}


class _Reader:
    """Bounds-checked primitive reads over a bytes-like object (bytes, memoryview, mmap)."""

    def __init__(self, buf: Any, limit: int | None = None) -> None:
        self.buf = buf
        self.size = len(buf) if limit is None else limit
        # Guard against corrupt files whose offsets alias into huge or cyclic structures: no
        # real model has more tables than it has 4-byte words.
        self.table_budget = self.size // 4 + 1024
        # Same for vector/string payloads: a well-formed file reads each payload once.
        self.byte_budget = 4 * self.size + (1 << 20)

    def need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise SchemaError(
                f"{what} at byte {pos} (+{n}) lies outside the {self.size}-byte flatbuffer (file truncated or corrupt)"
            )

    def unpack(self, st: struct.Struct, pos: int, what: str) -> Any:
        self.need(pos, st.size, what)
        return st.unpack_from(self.buf, pos)[0]

    def spend(self, nbytes: int, what: str) -> None:
        self.byte_budget -= nbytes
        if self.byte_budget < 0:
            raise SchemaError(f"{what}: vectors overlap far more than the file size allows (corrupt offsets)")

    def deref(self, pos: int, what: str) -> int:
        """Follow the u32 offset stored at ``pos``."""
        return pos + self.unpack(_U32, pos, what)

    def table(self, pos: int, what: str) -> _Table:
        self.table_budget -= 1
        if self.table_budget < 0:
            raise SchemaError(f"{what}: too many tables for the file size (corrupt offsets)")
        soff = self.unpack(_I32, pos, f"{what} table")
        vt = pos - soff
        vt_size = self.unpack(_U16, vt, f"{what} vtable")
        if vt_size < 4 or vt_size % 2:
            raise SchemaError(f"{what}: bad vtable size {vt_size} at byte {vt}")
        self.need(vt, vt_size, f"{what} vtable")
        tbl_size = self.unpack(_U16, vt + 2, f"{what} vtable")
        self.need(pos, max(tbl_size, 4), f"{what} table")
        return _Table(self, pos, vt, vt_size, tbl_size, what)


class _Table:
    __slots__ = ("r", "pos", "vt", "vt_size", "tbl_size", "what")

    def __init__(self, r: _Reader, pos: int, vt: int, vt_size: int, tbl_size: int, what: str):
        self.r, self.pos, self.vt, self.vt_size, self.tbl_size, self.what = (r, pos, vt, vt_size, tbl_size, what)

    def _field(self, slot: int, width: int) -> int:
        """Absolute position of field ``slot`` or 0 when absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_size:
            return 0
        off = _U16.unpack_from(self.r.buf, self.vt + entry)[0]
        if off == 0:
            return 0
        if off + width > self.tbl_size:
            raise SchemaError(f"{self.what}: field {slot} lies outside its table")
        return self.pos + off

    def has(self, slot: int) -> bool:
        return self._field(slot, 0) != 0

    def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
        st = struct.Struct("<" + fmt)
        p = self._field(slot, st.size)
        if not p:
            return default
        return self.r.unpack(st, p, f"{self.what} field {slot}")

    def _ref(self, slot: int) -> int:
        p = self._field(slot, 4)
        if not p:
            return 0
        return self.r.deref(p, f"{self.what} field {slot}")

    def table(self, slot: int, what: str) -> _Table | None:
        p = self._ref(slot)
        return self.r.table(p, f"{self.what}.{what}") if p else None

    def string(self, slot: int) -> str | None:
        p = self._ref(slot)
        if not p:
            return None
        n = self.r.unpack(_U32, p, f"{self.what} string")
        self.r.need(p + 4, n, f"{self.what} string")
        self.r.spend(n, f"{self.what} string")
        raw = bytes(self.r.buf[p + 4 : p + 4 + n])
        return raw.decode("utf-8", errors="replace")

    def vector_span(self, slot: int, elem_size: int) -> tuple[int, int]:
        """(start of elements, element count) of a vector field; (0, 0) when absent."""
        p = self._ref(slot)
        if not p:
            return 0, 0
        n = self.r.unpack(_U32, p, f"{self.what} field {slot} vector length")
        self.r.need(p + 4, n * elem_size, f"{self.what} field {slot} vector of {n}")
        return p + 4, n

    def scalars(self, slot: int, fmt: str) -> list:
        size = _SCALAR_FMT[fmt]
        start, n = self.vector_span(slot, size)
        if not n:
            return []
        self.r.spend(n * size, f"{self.what} field {slot}")
        return list(struct.unpack_from(f"<{n}{fmt}", self.r.buf, start))

    def tables(self, slot: int, what: str) -> list[_Table]:
        start, n = self.vector_span(slot, 4)
        name = f"{self.what}.{what}"
        return [self.r.table(self.r.deref(start + 4 * i, name), f"{name}[{i}]") for i in range(n)]


# --------------------------------------------------------------------------------------------
# Typed views of the tables hilbench uses


@dataclass
class OperatorCode:
    builtin_code: int  # max(deprecated_builtin_code, builtin_code)
    deprecated_builtin_code: int
    custom_code: str | None
    version: int

    @property
    def name(self) -> str:
        if self.builtin_code == CUSTOM_CODE:
            return self.custom_code or "CUSTOM"
        return builtin_op_name(self.builtin_code)


@dataclass
class Quantization:
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    quantized_dimension: int = 0
    details_type: int = 0  # QuantizationDetails union type (1 = CustomQuantization)


@dataclass
class Tensor:
    name: str
    shape: list[int]
    shape_signature: list[int] | None
    type: int
    buffer: int
    quantization: Quantization | None
    is_variable: bool
    sparse: bool


@dataclass
class Operator:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    intermediates: list[int]
    builtin_options_type: int
    custom_options_size: int


@dataclass
class SubGraph:
    name: str | None
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator]


@dataclass
class Buffer:
    data_pos: int  # absolute position of inline data in the file, 0 when none
    data_size: int  # inline data bytes
    offset: int  # external data: absolute file offset (models > 2 GB style), 0/1 = unused
    size: int  # external data bytes

    @property
    def external(self) -> bool:
        # The writer uses offset 1 / size 1 as a placeholder; real external data has offset > 1.
        return self.offset > 1 and self.size > 0

    @property
    def nbytes(self) -> int:
        if self.data_size:
            return self.data_size
        return self.size if self.external else 0


@dataclass
class Metadata:
    name: str | None
    buffer: int


@dataclass
class SignatureDef:
    key: str | None
    subgraph_index: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass
class Model:
    version: int
    description: str | None
    operator_codes: list[OperatorCode]
    subgraphs: list[SubGraph]
    buffers: list[Buffer]
    metadata: list[Metadata]
    signature_defs: list[SignatureDef]
    flatbuffer_size: int  # bytes the flatbuffer itself may span (the whole file)


def _read_quant(t: _Table | None) -> Quantization | None:
    if t is None:
        return None
    return Quantization(
        min=t.scalars(0, "f"),
        max=t.scalars(1, "f"),
        scale=t.scalars(2, "f"),
        zero_point=t.scalars(3, "q"),
        details_type=t.scalar(4, "B", 0),
        quantized_dimension=t.scalar(6, "i", 0),
    )


def _read_tensor(t: _Table) -> Tensor:
    return Tensor(
        shape=t.scalars(0, "i"),
        type=t.scalar(1, "b", 0),
        buffer=t.scalar(2, "I", 0),
        name=t.string(3) or "",
        quantization=_read_quant(t.table(4, "QuantizationParameters")),
        is_variable=bool(t.scalar(5, "B", 0)),
        sparse=t.has(6),
        shape_signature=t.scalars(7, "i") if t.has(7) else None,
    )


def _read_operator(t: _Table) -> Operator:
    _, n_custom = t.vector_span(5, 1)
    large = t.scalar(10, "Q", 0)
    return Operator(
        opcode_index=t.scalar(0, "I", 0),
        inputs=t.scalars(1, "i"),
        outputs=t.scalars(2, "i"),
        builtin_options_type=t.scalar(3, "B", 0),
        custom_options_size=n_custom or large,
        intermediates=t.scalars(8, "i"),
    )


def _read_subgraph(t: _Table) -> SubGraph:
    return SubGraph(
        tensors=[_read_tensor(x) for x in t.tables(0, "Tensor")],
        inputs=t.scalars(1, "i"),
        outputs=t.scalars(2, "i"),
        operators=[_read_operator(x) for x in t.tables(3, "Operator")],
        name=t.string(4),
    )


def _read_opcode(t: _Table) -> OperatorCode:
    deprecated = t.scalar(0, "b", 0)
    builtin = t.scalar(3, "i", 0)
    return OperatorCode(
        deprecated_builtin_code=deprecated,
        custom_code=t.string(1),
        version=t.scalar(2, "i", 1),
        # Old writers fill only the deprecated int8 field; new ones put 127 there for codes > 127
        # and the real code in builtin_code. The larger of the two is the op.
        builtin_code=max(deprecated, builtin),
    )


def _read_buffer(t: _Table) -> Buffer:
    pos, n = t.vector_span(0, 1)
    return Buffer(data_pos=pos, data_size=n, offset=t.scalar(1, "Q", 0), size=t.scalar(2, "Q", 0))


def _read_tensor_map(tables: list[_Table]) -> dict[str, int]:
    return {(m.string(0) or ""): m.scalar(1, "I", 0) for m in tables}


def _read_signature(t: _Table) -> SignatureDef:
    return SignatureDef(
        inputs=_read_tensor_map(t.tables(0, "TensorMap")),
        outputs=_read_tensor_map(t.tables(1, "TensorMap")),
        key=t.string(2),
        subgraph_index=t.scalar(4, "I", 0),
    )


def read_model(buf: Any) -> Model:
    """Parse a TFLite model from a bytes-like object. Raises ``SchemaError`` when malformed."""
    size = len(buf)
    if size < 8:
        raise SchemaError(f"file is {size} bytes, too small for a flatbuffer")
    ident = bytes(buf[4:8])
    if ident != FILE_IDENTIFIER:
        shown = ident.decode("latin-1")
        shown = shown if shown.isprintable() else ident.hex()
        raise SchemaError(f"not a TFLite flatbuffer (file identifier {shown!r}, expected 'TFL3')")
    try:
        return _read_root(buf, size)
    except UnsupportedSchema:
        raise
    except SchemaError as e:
        raise SchemaError(f"corrupt or truncated TFLite flatbuffer: {e}") from None


def _read_root(buf: Any, size: int) -> Model:
    r = _Reader(buf)
    root = r.table(r.deref(0, "root offset"), "Model")
    version = root.scalar(0, "I", 0)
    if version != SCHEMA_VERSION:
        raise UnsupportedSchema(f"unsupported TFLite schema version {version} (expected {SCHEMA_VERSION})")
    return Model(
        version=version,
        operator_codes=[_read_opcode(t) for t in root.tables(1, "OperatorCode")],
        subgraphs=[_read_subgraph(t) for t in root.tables(2, "SubGraph")],
        description=root.string(3),
        buffers=[_read_buffer(t) for t in root.tables(4, "Buffer")],
        metadata=[Metadata(name=t.string(0), buffer=t.scalar(1, "I", 0)) for t in root.tables(6, "Metadata")],
        signature_defs=[_read_signature(t) for t in root.tables(7, "SignatureDef")],
        flatbuffer_size=size,
    )
