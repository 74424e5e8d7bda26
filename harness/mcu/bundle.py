"""A TFLM source bundle for one model and one MCU profile (what `hil build` writes).

Layout of the output directory::

    bundle.json            manifest (schema hilbench.mcu-bundle/1)
    README.md              how to drop the bundle into PlatformIO / Zephyr / ESP-IDF
    model.tflite           the exact model the C array holds
    model_data.cc/.h       C array + length + model ID
    op_resolver.h          MicroMutableOpResolver<N>, N = distinct ops
    model_settings.h       arena, I/O sizes, quantisation
    hb_config.h            protocol settings (DUT name, profile string, buffer size)
    main.cc                TFLM glue (hb_model.h on MicroInterpreter)
    hb_protocol.c/.h       serial protocol, plain C
    hb_model.h             protocol <-> model interface
    port.h, port_template.c  porting layer the user fills in
    hb_profile.c/.h        per-operator recorder (only with --op-profiler: hb-profile%)

A ``port.c`` the user wrote in the directory is never touched by a rebuild.

``cached_bundle`` keeps bundles content-addressed for automatic flashing (``hil run`` on a serial
device with ``flash: auto|always``): ``<cache>/bundles/<artifact sha256>-<profile>/``, built once
(atomically, under a lock) and reused as long as the model, the profile's build-relevant settings
and the hilbench version are unchanged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import __version__
from harness.errors import ConfigError, ModelError
from harness.lab.config import DeviceProfile, McuSettings
from harness.mcu import codegen
from harness.mcu.arena import measure_arena
from harness.mcu.fit import check_fit, require_fit
from harness.models import mlperf
from harness.models.inspect.analysis import TFLM_ADD_METHOD, TFLM_CUSTOM_ADD_METHOD, ModelAnalysis, analyze

_log = logging.getLogger(__name__)

SCHEMA = "hilbench.mcu-bundle/1"
INTEGER_DTYPES = ("int8", "int16x8")
# tensors a model without float arithmetic may hold (int8 with some int16 activations)
_INTEGER_TENSORS = ("int8", "int16", "int32", "int64", "bool")


def integer_only(a) -> bool:
    """No float arithmetic: int8, int16x8, or int8 with some operators kept in int16
    (harness/compress/sensitivity.py). A float tensor is allowed only where ai-edge-quantizer
    dequantizes an input for a SHAPE op (shape metadata, no arithmetic on the values). An MCU without
    an FPU runs nothing else."""
    if a.dtype in INTEGER_DTYPES:
        return True
    if not a.dtype.startswith("mixed"):
        return False
    floats = {(t.subgraph, t.index) for t in a.tensors if t.dtype not in _INTEGER_TENSORS}
    for op in a.operators:
        reads = {(op.subgraph, i) for i in op.inputs if i >= 0} & floats
        writes = {(op.subgraph, i) for i in op.outputs if i >= 0} & floats
        if (reads and op.name != "SHAPE") or (writes and op.name != "DEQUANTIZE"):
            return False
    return all(io.dtype in _INTEGER_TENSORS for io in [*a.inputs, *a.outputs])


PROTOCOL_CAPS = ["arena", "dbbin"]
PROFILER_CAP = "profile"
# RAM of the per-operator recorder (hb_profile.c): tag pointer, start and ticks per operator, plus state
PROFILER_BYTES_PER_OP = 12
PROFILER_FIXED_BYTES = 32


def require_mcu_profile(profile: DeviceProfile) -> McuSettings:
    """The profile's MCU settings; a ConfigError unless it is a TFLM profile with an mcu: section."""
    if profile.runtime != "tflm" or profile.mcu is None:
        raise ConfigError(
            f"{profile.source or profile.name}: profile '{profile.name}' has runtime "
            f"'{profile.runtime}'; `hil build` makes TFLM firmware bundles for MCU "
            "profiles (runtime: tflm with an mcu: section)"
        )
    return profile.mcu


def resolver_entries(a: ModelAnalysis) -> list[tuple[str, str]]:
    """(op, MicroMutableOpResolver method) for each distinct op; refuses ops TFLM cannot register."""
    missing = a.micro_unsupported_ops()
    if missing:
        raise ModelError(
            f"{a.path}: TFLM has no kernel registration for op(s) "
            f"{', '.join(missing)}; the model cannot run on a TFLM target"
        )
    entries = [(op, TFLM_ADD_METHOD[op]) for op in a.micro_resolver_ops()]
    entries += [(c, TFLM_CUSTOM_ADD_METHOD[c]) for c in a.custom_ops]
    return entries


def _io(a: ModelAnalysis, items) -> list[dict]:
    out = []
    for t in items:
        info = a.tensor(t.index)
        out.append(
            {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "bytes": info.nbytes,
                "elements": info.elements,
                "scale": t.scale,
                "zero_point": t.zero_point,
            }
        )
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MODEL_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def check_model_id(model_id: str) -> str:
    """A model ID for m-model-[...]: 1..40 of [A-Za-z0-9_.:-] (no brackets, spaces or commas)."""
    if not 1 <= len(model_id) <= 40 or not set(model_id) <= MODEL_ID_CHARS:
        raise ConfigError(
            f"--model-id {model_id!r}: 1 to 40 characters of A-Z a-z 0-9 _ . : - (the MLPerf Tiny "
            f"benchmarks are {', '.join(mlperf.BENCHMARKS)})"
        )
    return model_id


def build_bundle(
    model_path: Path,
    profile: DeviceProfile,
    out_dir: Path,
    *,
    model_name: str | None = None,
    source: dict | None = None,
    log: Callable[[str], None] = _log.info,
    bundle_name: str | None = None,
    model_id: str | None = None,
    op_profiler: bool = False,
) -> dict:
    """Analyse, measure, check the fit and write the bundle; returns the manifest.

    `model_id`: what the firmware reports in m-model-[...] instead of the sha256 prefix; an MLPerf Tiny
    benchmark ID (kws01, vww01, ic01, ad01) also selects that benchmark's I/O convention, so the
    reference runner of mlcommons/tiny can drive the firmware (harness/models/mlperf.py).
    `op_profiler`: compile in the per-operator recorder (hb_profile.c) fed by TFLM's
    MicroProfilerInterface, answering `hb-profile%`; without it the sources are those of every
    other build (the recorder's files are not even in the bundle)."""
    mcu = require_mcu_profile(profile)
    model_path = Path(model_path)
    a = analyze(model_path)
    name = model_name or model_path.stem
    if not integer_only(a):
        raise ModelError(
            f"{model_path}: MCU bundles need a fully integer-quantised model (int8 or "
            f"int16x8) but this model is {a.dtype}; build from the .keras/SavedModel "
            "source with --variant int8 --calibration DATA"
        )
    entries = resolver_entries(a)
    blob = model_path.read_bytes()
    inputs, outputs = _io(a, a.inputs), _io(a, a.outputs)
    input_bytes = sum(t["bytes"] for t in inputs)
    conv = mlperf.convention_for_model_id(check_model_id(model_id) if model_id else None)
    try:
        mlperf.check_model(conv, inputs, outputs, str(model_path))
    except ConfigError as exc:
        raise ModelError(f"{exc} (--model-id {model_id}: {mlperf.BENCHMARKS[str(model_id).lower()].task})") from None
    wire_bytes = sum(conv.wire_bytes(t["elements"], t["bytes"] // max(1, t["elements"])) for t in inputs)
    # RAM: the db buffer holds the wire bytes; other conventions also keep the converted tensor
    buffers = wire_bytes + (input_bytes if conv.name != "tensor" else 0)
    if op_profiler:
        buffers += PROFILER_FIXED_BYTES + PROFILER_BYTES_PER_OP * len(a.operators)

    log(f"measuring the tensor arena with the TFLM interpreter ({len(blob):,}-byte model)")
    arena = measure_arena(model_path, len(a.inputs), mcu.arena_margin, mcu.arena_align, model_size=len(blob))
    log(
        f"arena: TFLM reports {arena.reported_used_bytes:,} bytes used, smallest working arena "
        f"{arena.min_working_bytes:,} bytes -> {arena.size_bytes:,} bytes with "
        f"{mcu.arena_margin:g} margin ({arena.probes} interpreter runs)"
    )
    fit = check_fit(profile, len(blob), [op for op, _ in entries], arena.size_bytes, buffers)
    require_fit(fit, name)

    mid = model_id or codegen.model_id(a.sha256)
    bench = mlperf.BENCHMARKS.get(mid.lower())
    io_note = f"MLPerf Tiny {mid} ({bench.task})" if bench else ""
    arena_d = arena.to_json()
    files: dict[str, str] = {}
    files.update(codegen.render_model_data(blob, mid, name, a.sha256))
    files["op_resolver.h"] = codegen.render_op_resolver(entries, name)
    files["model_settings.h"] = codegen.render_model_settings(name, a.sha256, len(blob), arena_d, inputs, outputs)
    profile_str = codegen.profile_string(profile.name)
    files["hb_config.h"] = codegen.render_hb_config(
        profile.name, profile_str, conv.name, io_note, profiler_ops=len(a.operators) if op_profiler else None
    )
    for static in codegen.STATIC_FILES + (codegen.PROFILER_FILES if op_profiler else ()):
        files[static] = codegen.template_text(static)

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: output path exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    files["README.md"] = codegen.render_readme(
        {
            "model_name": name,
            "profile": profile.name,
            "hil_version": __version__,
            "model_bytes": f"{len(blob):,}",
            "sha256": a.sha256,
            "model_id": mid,
            "num_ops": len(entries),
            "ops_list": ", ".join(op for op, _ in entries),
            "arena_size": f"{arena.size_bytes:,}",
            "reported_used": f"{arena.reported_used_bytes:,}",
            "min_working": f"{arena.min_working_bytes:,}",
            "margin_pct": f"{mcu.arena_margin * 100:g}",
            "align": mcu.arena_align,
            "input_bytes": f"{wire_bytes} ({conv.name}: {conv.summary})",
            "output_count": conv.outputs(outputs[0]["elements"]) if outputs else 0,
            "flash_estimate": f"{fit.flash_estimate_bytes:,}",
            "flash_limit": f"{fit.flash_limit_bytes:,}" if fit.flash_limit_bytes else "(no limit)",
            "flash_limit_source": fit.flash_limit_source,
            "ram_estimate": f"{fit.ram_estimate_bytes:,}",
            "ram_limit": f"{fit.ram_limit_bytes:,}",
            "build_cmd": mcu.build_cmd or "not set",
            "flash_cmd": mcu.flash_cmd or "not set",
            "bundle_dir": bundle_name or out_dir.name,
            "profiler": (
                f"compiled in (`hil build --op-profiler`): `hb-profile%` lists the ticks of each operator of "
                f"the last `infer`'s final, untimed inference (TFLM's MicroProfilerInterface, `hb_profile.c`; "
                f"room for {len(a.operators)} operators); `hil run --profile` collects it"
                if op_profiler
                else "not compiled in; `hil build --op-profiler` adds it (`hb-profile%`, for `hil run --profile`)"
            ),
        }
    )

    for fname, text in files.items():
        (out_dir / fname).write_text(text)
    if model_path.resolve() != (out_dir / "model.tflite").resolve():
        shutil.copyfile(model_path, out_dir / "model.tflite")

    file_hashes = {f: _sha(text.encode()) for f, text in sorted(files.items())}
    file_hashes["model.tflite"] = a.sha256
    manifest = {
        "schema": SCHEMA,
        "hilbench_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": name,
            "file": "model.tflite",
            "sha256": a.sha256,
            "size_bytes": len(blob),
            "model_id": mid,
            "dtype": a.dtype,
            "macs": a.total_macs,
            "source": source,
        },
        "profile": {"name": profile.name, "source": profile.source, "cpu": profile.cpu, "arch": profile.arch},
        "ops": [op for op, _ in entries],
        "op_counts": a.op_counts,
        "resolver": {
            "class": f"tflite::MicroMutableOpResolver<{len(entries)}>",
            "num_ops": len(entries),
            "methods": [m for _, m in entries],
        },
        "arena": arena_d,
        "io": {
            "input_bytes": input_bytes,
            "output_count": outputs[0]["elements"] if outputs else 0,
            "inputs": inputs,
            "outputs": outputs,
            "convention": conv.name,
            "wire_input_bytes": wire_bytes,
            "results_count": conv.outputs(outputs[0]["elements"]) if outputs else 0,
        },
        # estimates made before any compile (harness/mcu/fit.py); the build's ELF is measured later
        "fit": {**fit.to_json(), "estimate": True},
        "protocol": {
            "dut_name": profile.name,
            "profile_string": profile_str,
            "model_id": mid,
            "caps": PROTOCOL_CAPS + ([PROFILER_CAP] if op_profiler else []),
            "baudrate": mcu.baudrate,
            "io_convention": conv.name,
            "mlperf_benchmark": bench.model_id if bench else None,
        },
        "files": file_hashes,
    }
    (out_dir / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_manifest(bundle_dir: Path) -> dict:
    path = Path(bundle_dir) / "bundle.json"
    if not Path(bundle_dir).is_dir():
        raise ConfigError(f"{bundle_dir}: bundle directory not found")
    if not path.exists():
        raise ConfigError(f"{bundle_dir}: not a hilbench bundle (no bundle.json; make one with `hil build`)")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{path}: schema is not {SCHEMA}")
    return doc


# ---------------------------------------------------------------------------------- bundle cache

CACHE_STAMP = "cache.json"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (two boards of one profile may need the same bundle at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def bundle_cache_dir(cache_root: Path, sha256: str, profile: DeviceProfile) -> Path:
    return Path(cache_root) / "bundles" / f"{sha256}-{profile.name}"


def _cache_key(sha256: str, profile: DeviceProfile) -> dict:
    """What a cached bundle depends on: the model, the profile settings that shape the generated
    sources and the fit check (not its build/flash commands or benchmark settings), hilbench."""
    relevant = profile.model_dump(mode="json", include={"name", "arch", "cpu", "ram_mb", "flash_mb", "budgets", "mcu"})
    relevant["mcu"] = {k: v for k, v in (relevant.get("mcu") or {}).items() if k not in ("build_cmd", "flash_cmd")}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
    return {"sha256": sha256, "profile": profile.name, "profile_settings": digest, "hilbench_version": __version__}


def cached_bundle(
    model_path: Path,
    sha256: str,
    profile: DeviceProfile,
    cache_root: Path,
    *,
    model_name: str | None = None,
    source: dict | None = None,
    log: Callable[[str], None] = _log.info,
) -> tuple[Path, dict, bool]:
    """(bundle dir, manifest, cache hit) for the model and profile; builds the bundle on a miss."""
    out = bundle_cache_dir(cache_root, sha256, profile)
    key = _cache_key(sha256, profile)
    with file_lock(out.parent / f".{out.name}.lock"):
        stamp = out / CACHE_STAMP
        if stamp.exists():
            cached: dict | None = None
            try:
                if json.loads(stamp.read_text()) == key and _sha((out / "model.tflite").read_bytes()) == sha256:
                    cached = load_manifest(out)
            except (OSError, ValueError, ConfigError):
                cached = None
            if cached is not None:
                return out, cached, True
            log(f"bundle cache entry {out} is stale or damaged; building it again")
        tmp = out.parent / f".tmp-{sha256[:12]}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()  # (not mkdtemp: the bundle gets the usual permissions)
        try:
            manifest = build_bundle(
                model_path, profile, tmp, model_name=model_name, source=source, log=log, bundle_name=out.name
            )
            (tmp / CACHE_STAMP).write_text(json.dumps(key, indent=1) + "\n")
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out, manifest, False
