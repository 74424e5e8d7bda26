"""`hil build`: a TFLite Micro benchmark firmware bundle (C/C++ sources) for an MCU profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.commands import common
from harness.errors import ConfigError
from harness.lab.config import DeviceProfile, load_profiles
from harness.run.orchestrate import ModelSpec


def register(sub) -> None:
    p = sub.add_parser(
        "build",
        help="generate a TFLM firmware bundle for an MCU profile",
        description="Generate TFLite Micro sources (model array, op resolver, "
        "settings, MLPerf Tiny protocol firmware, porting layer) for an MCU profile; "
        "the tensor arena is measured with the TFLM interpreter and the model is "
        "checked against the profile's flash and RAM.",
    )
    p.add_argument("model", help="int8 .tflite, or a .keras / SavedModel to convert")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device id from the inventory (uses its profile)")
    target.add_argument("--profile", help="device profile name (device_profiles/<name>.yaml)")
    p.add_argument("--variant", help="variant to convert a .keras/SavedModel to (default: int8)")
    p.add_argument("--calibration", help="representative data .npy/.npz for int8, or 'random'")
    p.add_argument("-o", "--output", help="bundle directory (default: build/mcu/<model>-<profile>)")
    p.add_argument(
        "--model-id",
        metavar="ID",
        help="what the firmware reports in m-model-[...] (default: sha256:<first 16 hex of the "
        "model>); an MLPerf Tiny benchmark ID (kws01, vww01, ic01, ad01) also makes the firmware "
        "take and answer what that benchmark's reference firmware does, so the mlcommons/tiny "
        "runner can drive it (ic01/vww01: uint8 image bytes; ad01: float32 windows, one "
        "reconstruction error)",
    )
    p.add_argument(
        "--op-profiler",
        action="store_true",
        help="compile in TFLM's per-operator profiler (MicroProfilerInterface) and the hb-profile%% "
        "protocol extension, for `hil run --profile` (the timed loop is never profiled)",
    )
    p.set_defaults(func=cmd_build)


def resolve_profile(args) -> DeviceProfile:
    if args.device:
        inv = common.inventory(args)
        return inv.profile_of(inv.device(args.device))
    directory = Path(args.profiles) if args.profiles else Path(args.inventory).parent / "device_profiles"
    profiles = load_profiles(directory)
    if args.profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"{directory}: no profile '{args.profile}' (known: {known})")
    return profiles[args.profile]


def cmd_build(args) -> int:
    from harness.mcu.bundle import build_bundle, require_mcu_profile

    profile = resolve_profile(args)
    require_mcu_profile(profile)
    spec = ModelSpec.from_args(args.model, args.calibration, None)
    src = spec.source
    if src.kind == "tflite":
        if args.variant not in (None, "asis"):
            raise ConfigError(
                f"{src.path}: a .tflite model is used as-is; --variant "
                f"{args.variant} needs the .keras or SavedModel source"
            )
        artifact, variant = src.path, "asis"
        source: dict[str, Any] = {"path": str(src.path), "kind": src.kind, "sha256": src.sha256, "variant": variant}
    else:
        variant = args.variant or "int8"
        conv = common.converter(args)
        conv.variants_for(src, [variant])
        mv = conv.convert(src, variant, spec.calibration)
        artifact = mv.artifact
        source = {
            "path": str(src.path),
            "kind": src.kind,
            "sha256": src.sha256,
            "variant": variant,
            "converter_version": mv.converter_version,
            "cache_key": mv.cache_key,
            "calibration": mv.calibration,
        }
    out = Path(args.output) if args.output else Path("build") / "mcu" / f"{src.name}-{profile.name}"
    m = build_bundle(
        artifact,
        profile,
        out,
        model_name=src.name,
        source=source,
        log=common.log,
        model_id=args.model_id,
        op_profiler=args.op_profiler,
    )
    ar, fit = m["arena"], m["fit"]
    limit = f"{fit['flash_limit_bytes']:,}" if fit["flash_limit_bytes"] else "no limit"
    print(f"bundle: {out}")
    print(f"model: {src.name} ({variant}) {m['model']['size_bytes']:,} bytes, model id {m['model']['model_id']}")
    io = m["io"]
    if io["convention"] != "tensor":
        print(
            f"I/O convention: {io['convention']} ({io['wire_input_bytes']:,} input bytes, "
            f"{io['results_count']} result value(s))"
        )
    print(f"ops ({m['resolver']['num_ops']}): {', '.join(m['ops'])}")
    if args.op_profiler:
        print("per-operator profiler: compiled in (hb-profile%)")
    print(
        f"arena: {ar['size_bytes']:,} bytes (TFLM used {ar['reported_used_bytes']:,}, smallest "
        f"working {ar['min_working_bytes']:,}, margin {ar['margin']:g})"
    )
    print(
        f"flash: ~{fit['flash_estimate_bytes']:,} of {limit} bytes; RAM: "
        f"~{fit['ram_estimate_bytes']:,} of {fit['ram_limit_bytes']:,} bytes (profile {profile.name}; "
        f"estimates before any compile: `hil run`/`hil deploy` measure the built firmware's ELF)"
    )
    return 0
