"""Will a TFLM build of the model fit the board? Flash and RAM estimates checked against the profile.

Flash = model bytes (the C array) + TFLM runtime and benchmark code + the kernels of the model's ops.
The code sizes below are *estimates* for a Cortex-M build with ``-Os`` and TFLM reference kernels
(arm-none-eabi-gcc 12, newlib-nano). They are deliberately on the high side and only used by `hil build`,
before anything is compiled; once a profile's build_cmd ran, ``harness/mcu/footprint.py`` measures the
firmware ELF and those measured numbers are what `hil run` stores and the budgets gate. Optimised kernel
libraries (CMSIS-NN, ESP-NN) are usually larger for conv/depthwise/fully-connected.

- ``BASE_CODE_BYTES`` (48 KiB): TFLM core (MicroInterpreter, MicroAllocator, greedy memory planner,
  flatbuffer access, logging) ~36 KiB, protocol layer + porting layer ~4 KiB, libc/libgcc pieces the
  build pulls in (memcpy, soft 64-bit division, float conversion) ~8 KiB.
- ``OP_CODE_BYTES``: per registered op, the kernel's code (all the type variants TFLM compiles in,
  since MicroMutableOpResolver registers the whole kernel). Ops not listed cost
  ``DEFAULT_OP_CODE_BYTES`` (4 KiB).

RAM = tensor arena (with margin) + input staging buffer (``db load`` bytes) + ``RAM_OVERHEAD_BYTES``
(16 KiB: stack, interpreter and resolver objects, protocol buffers, C library state).

Limits: flash = min(``flash_mb`` MiB, ``budgets.max_flash_bytes``); RAM = ``ram_mb`` MiB; the arena
alone must also stay within ``budgets.max_arena_bytes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.errors import ConfigError
from harness.lab.config import DeviceProfile

KIB = 1024
MIB = 1024 * 1024

BASE_CODE_BYTES = 48 * KIB
DEFAULT_OP_CODE_BYTES = 4 * KIB
RAM_OVERHEAD_BYTES = 16 * KIB

#: Estimated kernel code per registered op (bytes); see the module docstring.
OP_CODE_BYTES: dict[str, int] = {
    "CONV_2D": 12 * KIB,
    "DEPTHWISE_CONV_2D": 12 * KIB,
    "TRANSPOSE_CONV": 10 * KIB,
    "FULLY_CONNECTED": 6 * KIB,
    "BATCH_MATMUL": 8 * KIB,
    "SVDF": 8 * KIB,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 24 * KIB,
    "ADD": 6 * KIB,
    "SUB": 6 * KIB,
    "MUL": 6 * KIB,
    "SOFTMAX": 5 * KIB,
    "LOG_SOFTMAX": 4 * KIB,
    "LOGISTIC": 4 * KIB,
    "TANH": 4 * KIB,
    "AVERAGE_POOL_2D": 4 * KIB,
    "MAX_POOL_2D": 4 * KIB,
    "MEAN": 5 * KIB,
    "CONCATENATION": 3 * KIB,
    "QUANTIZE": 3 * KIB,
    "DEQUANTIZE": 3 * KIB,
    "STRIDED_SLICE": 3 * KIB,
    "PAD": 2 * KIB,
    "PACK": 2 * KIB,
    "RELU": 2 * KIB,
    "RELU6": 2 * KIB,
    "RESHAPE": 1 * KIB,
    "SHAPE": 1 * KIB,
    "SQUEEZE": 1 * KIB,
    "EXPAND_DIMS": 1 * KIB,
}


def op_code_bytes(op: str) -> int:
    return OP_CODE_BYTES.get(op, DEFAULT_OP_CODE_BYTES)


@dataclass
class FitReport:
    profile: str
    profile_source: str
    model_bytes: int
    code_estimate_bytes: int
    flash_estimate_bytes: int
    flash_limit_bytes: int | None
    flash_limit_source: str
    arena_bytes: int
    input_buffer_bytes: int
    ram_overhead_bytes: int
    ram_estimate_bytes: int
    ram_limit_bytes: int | None
    arena_limit_bytes: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        d = asdict(self)
        d["fits"] = self.fits
        return d


def check_fit(
    profile: DeviceProfile, model_bytes: int, ops: list[str], arena_bytes: int, input_bytes: int
) -> FitReport:
    """Estimate flash and RAM and compare with the profile's limits (problems listed, not raised)."""
    code = BASE_CODE_BYTES + sum(op_code_bytes(op) for op in ops)
    flash = model_bytes + code
    limits: list[tuple[int, str]] = []
    if profile.flash_mb is not None:
        limits.append((int(profile.flash_mb * MIB), f"flash_mb {profile.flash_mb:g}"))
    if profile.budgets.max_flash_bytes is not None:
        limits.append((profile.budgets.max_flash_bytes, "budgets.max_flash_bytes"))
    flash_limit, flash_src = min(limits) if limits else (None, "none")
    ram = arena_bytes + input_bytes + RAM_OVERHEAD_BYTES
    ram_limit = int(profile.ram_mb * MIB)
    arena_limit = profile.budgets.max_arena_bytes

    rep = FitReport(
        profile=profile.name,
        profile_source=profile.source,
        model_bytes=model_bytes,
        code_estimate_bytes=code,
        flash_estimate_bytes=flash,
        flash_limit_bytes=flash_limit,
        flash_limit_source=flash_src,
        arena_bytes=arena_bytes,
        input_buffer_bytes=input_bytes,
        ram_overhead_bytes=RAM_OVERHEAD_BYTES,
        ram_estimate_bytes=ram,
        ram_limit_bytes=ram_limit,
        arena_limit_bytes=arena_limit,
    )
    if flash_limit is not None and flash > flash_limit:
        rep.problems.append(
            f"flash: needs ~{flash:,} bytes (model {model_bytes:,} + estimated TFLM code {code:,}) "
            f"but the limit is {flash_limit:,} bytes ({flash_src})"
        )
    if arena_limit is not None and arena_bytes > arena_limit:
        rep.problems.append(
            f"arena: needs {arena_bytes:,} bytes (measured + margin) but budgets.max_arena_bytes is {arena_limit:,}"
        )
    if ram > ram_limit:
        rep.problems.append(
            f"RAM: needs ~{ram:,} bytes (arena {arena_bytes:,} + input buffer {input_bytes:,} + "
            f"overhead {RAM_OVERHEAD_BYTES:,}) but ram_mb {profile.ram_mb:g} is {ram_limit:,} bytes"
        )
    return rep


def require_fit(rep: FitReport, model_name: str) -> None:
    if rep.problems:
        where = f" ({rep.profile_source})" if rep.profile_source else ""
        raise ConfigError(f"model {model_name} does not fit profile '{rep.profile}'{where}: " + "; ".join(rep.problems))
