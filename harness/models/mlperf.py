"""MLPerf Tiny interoperability: benchmark model IDs, their input/output conventions on the wire,
datasets laid out for the reference runner, and the benchmark's scores.

Conventions (what `db load` carries and what `m-results-[...]` holds; docs/MCU.md, "MLPerf Tiny"):

- ``tensor``: the input tensor's bytes; output 0, dequantised (hilbench's own firmware, ``kws01``: int8
  features as they are).
- ``uint8-minus-128``: uint8 image bytes; the device subtracts 128 to get the int8 input tensor
  (``ic01``, ``vww01``: the reference firmware's ``th_load_tensor``). Output 0, dequantised.
- ``float32-mse``: float32 values (little-endian), one per input element; the device quantises them
  with the input's scale and zero point (round half away from zero, clamped) and reports one value,
  the mean squared difference between the dequantised output 0 and the float input (``ad01``: the
  reconstruction error of the autoencoder).

The device side of each convention is written three times: in C for generated firmware
(``harness/mcu/templates/hb_protocol.c``), here in numpy for the simulator, and the host encodes eval
samples for it. The numpy version follows the C arithmetic (float32, sequential sums) so that the
simulator and the firmware print the same ``%0.3f`` values.

Datasets (``y_labels.csv`` next to the ``.bin`` files, as ``benchmark/runner`` of mlcommons/tiny
reads them): one row per file, ``file, classes, class[, bytes_to_send, stride]``. A file is sent as
it is; with ``bytes_to_send`` (anomaly detection) it is cut into windows of that many bytes every
``stride`` bytes, each window is one inference. The reference runner cuts only anomaly-detection
(``ad01``) files into windows; hilbench honours ``bytes_to_send`` for any file. Scores, as the
reference runner computes them: a classification file's class is the argmax of its windows' scores,
each normalised to sum 1 and then averaged (one window: its argmax), top-1 over files; an
anomaly-detection file's score is the mean of its windows' values, and the area under the ROC curve
over files is the score (label 1 = anomalous).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import ConfigError

LABELS_FILE = "y_labels.csv"


# ---------------------------------------------------------------------------------- conventions


@dataclass(frozen=True)
class Convention:
    name: str
    code: int  # HB_IO_CONVENTION in the firmware (hb_protocol.h)
    summary: str
    score: str  # "top1" | "auc"

    def wire_bytes(self, elements: int, itemsize: int) -> int:
        """Bytes of one input on the wire for an input tensor of `elements` x `itemsize` bytes."""
        return elements * 4 if self.name == "float32-mse" else elements * itemsize

    def outputs(self, output_elements: int) -> int:
        """Values in `m-results-[...]` for a model whose output 0 has `output_elements`."""
        return 1 if self.name == "float32-mse" else output_elements


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("tensor", 0, "the input tensor's bytes; output 0 dequantised", "top1"),
        Convention(
            "uint8-minus-128",
            1,
            "uint8 image bytes, the device subtracts 128 (int8 input); output 0 dequantised",
            "top1",
        ),
        Convention(
            "float32-mse",
            2,
            "float32 inputs quantised on the device; one value: the mean squared error of output 0 against the input",
            "auc",
        ),
    )
}


@dataclass(frozen=True)
class Benchmark:
    model_id: str
    task: str
    convention: str
    classes: int | None  # None: a score, not a class (anomaly detection)


BENCHMARKS: dict[str, Benchmark] = {
    b.model_id: b
    for b in (
        Benchmark("kws01", "keyword spotting", "tensor", 12),
        Benchmark("vww01", "visual wake words", "uint8-minus-128", 2),
        Benchmark("ic01", "image classification", "uint8-minus-128", 10),
        Benchmark("ad01", "anomaly detection", "float32-mse", None),
    )
}


def convention(name: str) -> Convention:
    """A convention by its name or by an MLPerf Tiny model ID (``ad01`` -> ``float32-mse``)."""
    if name in BENCHMARKS:
        name = BENCHMARKS[name].convention
    if name not in CONVENTIONS:
        known = ", ".join([*CONVENTIONS, *BENCHMARKS])
        raise ConfigError(f"unknown I/O convention {name!r} (known: {known})")
    return CONVENTIONS[name]


def convention_for_model_id(model_id: str | None) -> Convention:
    """What a firmware reporting `model_id` expects: an MLPerf Tiny ID's convention, else ``tensor``."""
    bench = BENCHMARKS.get((model_id or "").strip().lower())
    return CONVENTIONS[bench.convention if bench else "tensor"]


def check_model(conv: Convention, inputs: list[dict], outputs: list[dict], where: str) -> None:
    """Refuse a model the convention cannot carry. `inputs`/`outputs`: dicts with dtype, elements, scale."""
    if conv.name == "tensor":
        return
    if len(inputs) != 1:
        raise ConfigError(f"{where}: I/O convention {conv.name} needs a model with one input (it has {len(inputs)})")
    inp = inputs[0]
    if inp["dtype"] != "int8":
        raise ConfigError(
            f"{where}: I/O convention {conv.name} needs an int8 input tensor (the model's is {inp['dtype']})"
        )
    if conv.name == "float32-mse":
        if not inp.get("scale"):
            raise ConfigError(
                f"{where}: I/O convention float32-mse quantises on the device and needs the "
                f"input's scale (the model's input has none)"
            )
        if not outputs or outputs[0]["elements"] != inp["elements"]:
            got = outputs[0]["elements"] if outputs else 0
            raise ConfigError(
                f"{where}: I/O convention float32-mse compares output 0 with the input, element "
                f"by element: the input has {inp['elements']} elements, output 0 has {got}"
            )


# ------------------------------------------------------------------ the device side (for the simulator)


def quantize_like_device(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """float32 -> integer as the firmware does: round(x / scale) (half away from zero) + zero point,
    clamped; the division in float32 like `value / scale` in C."""
    q = (np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.float64)
    r = np.where(q >= 0, np.floor(q + 0.5), -np.floor(-q + 0.5)) + int(zero_point)
    info = np.iinfo(dtype)
    return np.clip(r, info.min, info.max).astype(dtype)


def wire_to_tensor(conv: Convention, wire: bytes, dtype: np.dtype, scale: float, zero_point: int) -> bytes:
    """The input tensor's bytes the device makes of `wire`."""
    if conv.name == "uint8-minus-128":
        return (np.frombuffer(wire, dtype=np.uint8).astype(np.int16) - 128).astype(np.int8).tobytes()
    if conv.name == "float32-mse":
        x = np.frombuffer(wire, dtype="<f4")
        return quantize_like_device(x, scale, zero_point, np.dtype(dtype).type).tobytes()
    return bytes(wire)


def mse_like_device(output: np.ndarray, wire: bytes) -> float:
    """float32-mse's one value: sum of (output[i] - x[i])^2 accumulated in float32 in order, / count."""
    x = np.frombuffer(wire, dtype="<f4")
    diff = np.asarray(output, dtype=np.float32) - x
    total = np.cumsum(diff * diff, dtype=np.float32)[-1] if diff.size else np.float32(0)
    return float(np.float32(total) / np.float32(diff.size or 1))


def dequantize_like_device(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(q - zero_point) * scale in float32, as ``hb_model_output`` computes it."""
    return (np.asarray(q).astype(np.int32) - int(zero_point)).astype(np.float32) * np.float32(scale)


# ---------------------------------------------------------------------------------- the host side


def encode_sample(conv: Convention, x: np.ndarray, quantized: bytes) -> bytes:
    """Wire bytes for eval sample `x` (model-input floats); `quantized`: the tensor's bytes for it."""
    if conv.name == "uint8-minus-128":
        return (np.frombuffer(quantized, dtype=np.int8).astype(np.int16) + 128).astype(np.uint8).tobytes()
    if conv.name == "float32-mse":
        return np.asarray(x, dtype="<f4").reshape(-1).tobytes()
    return quantized


# ---------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Entry:
    file: str
    classes: int
    label: int
    bytes_to_send: int | None = None
    stride: int | None = None
    line: int = 0


@dataclass
class Dataset:
    root: Path
    entries: list[Entry]

    @property
    def labels_path(self) -> Path:
        return self.root / LABELS_FILE

    def windows(self, entry: Entry) -> list[bytes]:
        """What the reference runner sends for one file: the file, or its windows."""
        path = self.root / entry.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if entry.bytes_to_send is None:
            return [data]
        size, stride = entry.bytes_to_send, entry.stride or entry.bytes_to_send
        out = [data[start : start + size] for start in range(0, len(data) - size + 1, stride)]
        if not out:
            raise ConfigError(
                f"{path}: {len(data)} bytes, shorter than one window of {size} bytes "
                f"({self.labels_path} line {entry.line}, bytes_to_send)"
            )
        return out


def is_dataset(path: Path | str) -> bool:
    return Path(path).is_dir() and (Path(path) / LABELS_FILE).is_file()


def _labels_text(labels: Path) -> str:
    """The CSV as text whatever the host's locale: a file saved in another encoding is named with its
    line, not a UnicodeDecodeError; a spreadsheet's byte-order mark is not part of the first file name."""
    try:
        raw = labels.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{labels}: cannot read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        data = exc.object  # after the byte-order mark, if any: where exc.start counts from
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{labels} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def read_dataset(path: Path | str) -> Dataset:
    """Read and check ``y_labels.csv``; every listed file must exist. Errors name the file and line."""
    root = Path(path)
    labels = root / LABELS_FILE
    if not root.is_dir():
        raise ConfigError(f"{root}: MLPerf Tiny dataset directory not found")
    if not labels.is_file():
        raise ConfigError(
            f"{root}: not an MLPerf Tiny dataset (no {LABELS_FILE}: one row per .bin file, "
            f"'file, classes, class[, bytes_to_send, stride]')"
        )
    entries: list[Entry] = []
    names = ("classes", "class", "bytes_to_send", "stride")
    with io.StringIO(_labels_text(labels), newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row):
                continue
            where = f"{labels} line {lineno}"
            if len(row) not in (3, 5):
                raise ConfigError(
                    f"{where}: expected 'file, classes, class' or 'file, classes, class, "
                    f"bytes_to_send, stride', got {len(row)} fields"
                )
            values: list[int] = []
            for name, text in zip(names, row[1:]):
                try:
                    values.append(int(text))
                except ValueError:
                    raise ConfigError(f"{where}: {name} {text!r} is not an integer") from None
            classes, label = values[0], values[1]
            if classes < 1 or not 0 <= label < max(classes, 2):
                raise ConfigError(f"{where}: class {label} is not one of the {classes} classes")
            size = stride = None
            if len(values) == 4:
                size, stride = values[2], values[3]
                if size < 1 or stride < 1:
                    raise ConfigError(f"{where}: bytes_to_send and stride must be positive")
            name = row[0]
            if not name or Path(name).is_absolute() or ".." in Path(name).parts:
                raise ConfigError(f"{where}: file {name!r} must be a path inside {root}")
            if not (root / name).is_file():
                raise ConfigError(f"{where}: file {name} not found in {root}")
            entries.append(Entry(name, classes, label, size, stride, lineno))
    if not entries:
        raise ConfigError(f"{labels}: no rows")
    return Dataset(root, entries)


# ---------------------------------------------------------------------------------- scores


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve (label 1 = positive, higher score = more positive), ties counted half;
    None unless both classes are present. Equals sklearn.metrics.roc_auc_score."""
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos, neg = int(np.sum(y == 1)), int(np.sum(y != 1))
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties (1-based)
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def file_prediction(results: list[list[float]]) -> int:
    """A classification file's class as `benchmark/runner` scores it: each window's scores divided by
    their sum, averaged over the file's windows, the argmax of that mean (not a vote: a window the
    model is sure of outweighs two it hesitates on). Scores whose sum is not positive (logits rather
    than probabilities, which the reference models never print) are averaged as they are: dividing
    by a negative sum would turn the ranking upside down."""
    rows = []
    for r in results:
        v = np.asarray(r, dtype=np.float64)
        total = float(v.sum())
        rows.append(v / total if total > 0 else v)
    return int(np.argmax(np.mean(rows, axis=0)))


def file_score(results: list[list[float]]) -> float:
    """An anomaly-detection file's score: the mean of its windows' values."""
    return float(np.mean([r[0] for r in results]))
