"""Model -> TFLite variants, cached by content hash.

Conversion is the slowest host step (TensorFlow import alone takes seconds), so the cache key is
computed without TensorFlow and a hit never imports it. The key covers everything that can change
the artifact: source model bytes, variant recipe, calibration data and converter version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.core.hashing import sha256_file, sha256_tree
from harness.errors import ConfigError, ModelError
from harness.log import DETAIL
from harness.models import tf_quiet
from harness.models.arrays import input_samples, load_array

_log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
ASIS = "asis"  # a .tflite given by the user, benchmarked unchanged
RECIPE_VERSION = "1"  # bump when a recipe below changes the produced bytes
NEEDS_CALIBRATION = {"int8", "int16x8"}
DEFAULT_CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class ModelSource:
    """A user model file plus the data that goes with it."""

    path: Path
    kind: str  # keras | savedmodel | tflite
    sha256: str
    name: str

    @classmethod
    def open(cls, path: str | os.PathLike) -> ModelSource:
        p = Path(path)
        if not p.exists():
            raise ModelError(f"{p}: model file not found")
        if p.is_dir():
            if not (p / "saved_model.pb").exists():
                raise ModelError(f"{p}: directory is not a SavedModel (no saved_model.pb)")
            return cls(p, "savedmodel", sha256_tree(p), p.name)
        suffix = p.suffix.lower()
        if suffix == ".keras":
            kind = "keras"
        elif suffix == ".tflite":
            kind = "tflite"
        else:
            raise ModelError(
                f"{p}: unsupported model type '{suffix}' (expected .keras, .tflite or a SavedModel directory)"
            )
        if p.stat().st_size == 0:
            raise ModelError(f"{p}: model file is empty")
        if kind == "keras" and not zipfile.is_zipfile(p):
            raise ModelError(
                f"{p}: not a Keras 3 model archive (a .keras file is a zip archive); corrupt or truncated?"
            )
        if kind == "tflite":
            # the whole flatbuffer is checked here, so a truncated or corrupt file stops the command
            # before a run exists, named as the user gave it (not as its copy in the cache)
            from harness.models.inspect.analysis import analyze

            return cls(p, kind, analyze(p).sha256, p.stem)
        return cls(p, kind, sha256_file(p), p.stem)


@dataclass
class Calibration:
    """Representative data for full-integer quantisation; random data only when asked explicitly."""

    source: str  # path or "random"
    sha256: str
    samples: int

    @classmethod
    def from_arg(cls, arg: str | None, samples: int = DEFAULT_CALIBRATION_SAMPLES) -> Calibration | None:
        if arg is None:
            return None
        if arg == "random":
            return cls("random", "random", samples)
        p = Path(arg)
        if not p.exists():
            raise ConfigError(f"{p}: calibration data file not found")
        if p.suffix not in (".npy", ".npz"):
            raise ConfigError(f"{p}: calibration data must be .npy or .npz")
        return cls(str(p), sha256_file(p), samples)

    def check(self) -> None:
        """The file's samples, checked before any conversion (readable, numeric, finite, not empty);
        their shape needs the model and is checked when the variant is converted (`arrays`)."""
        if self.source != "random":
            input_samples(Path(self.source), "x", load_array(Path(self.source), key="x"))

    def arrays(self, input_shapes: list[tuple[int | None, ...]]) -> list[list[np.ndarray]]:
        """List of samples, each a list of one batch-1 array per model input."""
        if self.source == "random":
            rng = np.random.default_rng(0)
            return [
                [rng.random((1, *(1 if d is None else d for d in s[1:])), dtype=np.float32) for s in input_shapes]
                for _ in range(self.samples)
            ]
        data = input_samples(Path(self.source), "x", load_array(Path(self.source), key="x"))
        data = data[: self.samples]
        if len(input_shapes) != 1:
            raise ConfigError(f"{self.source}: multi-input models need random calibration for now")
        # dims the model leaves open (None) take the data's size
        want = tuple(
            d if d is not None else (data.shape[i + 1] if i + 1 < data.ndim else 1)
            for i, d in enumerate(input_shapes[0][1:])
        )
        if tuple(data.shape[1:]) != want:
            try:
                data = data.reshape((data.shape[0], *want))
            except ValueError:
                raise ConfigError(
                    f"{self.source}: calibration samples have shape {data.shape[1:]}, model input needs {want}"
                ) from None
        return [[data[i : i + 1]] for i in range(data.shape[0])]


def check_variant_names(requested: list[str] | None) -> None:
    """None is the default variant; an empty list (`--variants ''`, `--variants ,`) asks for nothing,
    which would be a run of 0 jobs that looks like a success."""
    if requested is not None and not requested:
        raise ConfigError(f"--variants: no variant given (choose from {', '.join(VARIANTS)}, {ASIS})")
    for v in requested or []:
        if v not in VARIANTS and v != ASIS:
            raise ConfigError(f"unknown variant '{v}' (choose from {', '.join(VARIANTS)}, {ASIS})")


@dataclass
class ModelVariant:
    """One converted artifact and where it came from."""

    model_name: str
    source_sha256: str
    variant: str
    converter_version: str
    cache_key: str
    artifact: Path
    artifact_sha256: str
    size_bytes: int
    calibration: dict | None = None
    cache_hit: bool = False
    convert_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["artifact"] = str(self.artifact)
        return d


def converter_version() -> str:
    """Version string without importing TensorFlow (that is what makes cache hits fast)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "none"
    return f"tf-{tf_version}+recipe-{RECIPE_VERSION}"


def default_cache_dir() -> Path:
    return Path(os.environ.get("HILBENCH_CACHE", Path.home() / ".cache" / "hilbench")) / "artifacts"


class Converter:
    """Produces variants of a model; every artifact is stored under its cache key."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        log: Callable[[str], None] = _log.info,
        detail: Callable[[str], None] | None = None,
    ):
        """`log`: what the user always sees (a damaged cache entry); `detail`: each conversion and cache
        hit (default: this module's logger at DETAIL, shown with `hil -v`)."""
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.log = log
        self.detail = detail or (lambda msg: _log.log(DETAIL, msg))
        self.hits = 0
        self.misses = 0

    def cache_key(self, src: ModelSource, variant: str, calib: Calibration | None) -> str:
        h = hashlib.sha256()
        parts = [src.sha256, variant, converter_version()]
        if variant in NEEDS_CALIBRATION and calib is not None:
            parts += [calib.sha256, str(calib.samples)]
        h.update("\0".join(parts).encode())
        return h.hexdigest()

    def variants_for(self, src: ModelSource, requested: list[str] | None) -> list[str]:
        """Validate the requested variants; None means the natural default for the source."""
        check_variant_names(requested)
        if src.kind == "tflite":
            bad = [v for v in requested or [] if v != ASIS]
            if bad:
                raise ConfigError(
                    f"{src.path}: a .tflite model is benchmarked as-is; variant(s) "
                    f"{', '.join(bad)} need the .keras or SavedModel source"
                )
            return [ASIS]
        if requested is None:
            return ["fp32"]
        if ASIS in requested:
            raise ConfigError(f"{src.path}: variant '{ASIS}' only applies to .tflite inputs")
        return list(dict.fromkeys(requested))

    def load_entry(self, meta_path: Path) -> ModelVariant | None:
        """A cached variant from its `variant.json`, if its artifact is intact (confirmation runs
        find the reference's artifact this way, by sha256)."""
        try:
            meta = json.loads(meta_path.read_text())
            mv = ModelVariant(**{**meta, "artifact": meta_path.parent / "model.tflite"})
        except (OSError, ValueError, TypeError):
            return None
        return mv if mv.artifact.exists() else None

    def find_artifact(self, sha256: str) -> ModelVariant | None:
        """The cached variant whose artifact has this sha256 (references and confirmations are
        recorded by artifact hash), or None once it left the cache."""
        for meta in sorted(self.cache_dir.glob("*/*/variant.json")):
            mv = self.load_entry(meta)
            if mv is not None and mv.artifact_sha256 == sha256:
                return mv
        return None

    def convert(
        self, src: ModelSource, variant: str, calib: Calibration | None = None, quiet: bool = False
    ) -> ModelVariant:
        """Return the variant's artifact, converting only on a cache miss (`quiet`: no hit count/log)."""
        if variant in NEEDS_CALIBRATION and calib is None:
            raise ConfigError(
                f"variant '{variant}' of {src.path} needs representative data: pass "
                "--calibration FILE.npy|.npz, or --calibration random to accept a "
                "calibration on random data (accuracy will suffer)"
            )
        key = self.cache_key(src, variant, calib)
        entry = self.cache_dir / key[:2] / key
        meta_path = entry / "variant.json"
        t0 = time.perf_counter()
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            mv = ModelVariant(**{**meta, "artifact": entry / "model.tflite"})
            if mv.artifact.exists() and sha256_file(mv.artifact) == mv.artifact_sha256:
                mv.model_name = src.name  # same bytes may live under another name (copied model)
                mv.extra = {}
                mv.cache_hit = True
                mv.convert_seconds = time.perf_counter() - t0
                if quiet:
                    return mv
                self.hits += 1
                self.detail(f"cache hit: {src.name} {variant} (key {key[:12]}, {mv.convert_seconds * 1000:.1f} ms)")
                return mv
            self.log(f"cache entry {key[:12]} is damaged; converting again")
        self.misses += 1
        if src.kind == "tflite":
            blob = src.path.read_bytes()
            _check_tflite(src.path, blob)
        else:
            self.detail(f"converting: {src.name} -> {variant}")
            with tf_quiet.captured(f"conversion of {src.name} to {variant}"):  # TF chatter: --verbose only
                blob = _run_tf_conversion(src, variant, calib)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        (tmp / "model.tflite").write_bytes(blob)
        mv = ModelVariant(
            model_name=src.name,
            source_sha256=src.sha256,
            variant=variant,
            converter_version=converter_version(),
            cache_key=key,
            artifact=entry / "model.tflite",
            artifact_sha256=hashlib.sha256(blob).hexdigest(),
            size_bytes=len(blob),
            calibration=(asdict(calib) if calib and variant in NEEDS_CALIBRATION else None),
        )
        meta = mv.to_json()
        for k in ("cache_hit", "convert_seconds"):
            meta.pop(k)
        (tmp / "variant.json").write_text(json.dumps(meta, indent=1))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)  # atomic: a crash never leaves a half-written cache entry
        mv.convert_seconds = time.perf_counter() - t0
        self.detail(f"converted: {src.name} {variant} -> {len(blob)} bytes in {mv.convert_seconds:.2f} s")
        return mv


def _check_tflite(path: Path, blob: bytes) -> None:
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        ident = blob[4:8].decode("latin-1") if len(blob) >= 8 else ""
        raise ModelError(f"{path}: not a TFLite flatbuffer (file identifier '{ident}', expected 'TFL3')")


def _load_tf_model(src: ModelSource):
    import keras
    import tensorflow as tf  # noqa: F401  (host-only dependency)

    try:
        if src.kind == "keras":
            return keras.models.load_model(src.path, compile=False)
        return None
    except Exception as exc:
        raise ModelError(
            f"{src.path}: cannot load Keras model ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def _run_tf_conversion(src: ModelSource, variant: str, calib: Calibration | None) -> bytes:
    tf_quiet.prepare_env()
    import tensorflow as tf

    model = _load_tf_model(src)
    try:
        if model is not None:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            input_shapes = [tuple(t.shape) for t in model.inputs]  # None: left open by the model
        else:
            conv = tf.lite.TFLiteConverter.from_saved_model(str(src.path))
            loaded = tf.saved_model.load(str(src.path))
            sig = loaded.signatures[next(iter(loaded.signatures))]
            input_shapes = [tuple(spec.shape) for spec in sig.structured_input_signature[1].values()]
    except Exception as exc:
        raise ModelError(f"{src.path}: cannot load model for conversion ({exc.__class__.__name__})") from None

    if variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in NEEDS_CALIBRATION:
        if calib is None:  # Converter.convert refuses this before converting
            raise ConfigError(f"variant '{variant}' of {src.path} needs representative data (--calibration)")
        samples = calib.arrays(input_shapes)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: iter(samples)
        if variant == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        else:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
    try:
        # TF prints export chatter ("Saved artifact at ...") on stdout; hil's stdout is for results
        # (e.g. the run id a nightly script captures), so it goes to stderr with the other logs
        with contextlib.redirect_stdout(sys.stderr):
            return conv.convert()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{src.path}: TFLite conversion to {variant} failed: {first}") from None
