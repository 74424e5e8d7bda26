"""`hil deploy`: build and flash a `hil build` bundle with the device profile's own commands."""

from __future__ import annotations

from pathlib import Path

from harness.commands import common


def register(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="build and flash an MCU bundle (profile mcu.build_cmd/flash_cmd)",
        description="Run the device profile's mcu.build_cmd and mcu.flash_cmd in the "
        "bundle directory ({bundle} {port} {baudrate} {device} {profile} {model_id} "
        "are filled in); output goes to BUNDLE/logs/build.log and flash.log.",
    )
    p.add_argument("bundle", help="directory written by `hil build`")
    p.add_argument("--device", required=True, help="device id from the inventory")
    p.add_argument("--no-build", dest="build", action="store_false", help="only run flash_cmd")
    p.add_argument("--no-flash", dest="flash", action="store_false", help="only run build_cmd")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per command (default: %(default)s)")
    common.add_lock_options(p)
    p.set_defaults(func=cmd_deploy)


def cmd_deploy(args) -> int:
    from harness.mcu.bundle import load_manifest
    from harness.mcu.flash import deploy_bundle

    inv = common.inventory(args)
    device = inv.device(args.device)
    profile = inv.profile_of(device)
    bundle = Path(args.bundle)
    manifest = load_manifest(bundle)
    from harness.run.device_lock import DeviceLock

    lock = DeviceLock(device, command="hil deploy")  # never flash a board in the middle of a measurement
    lock.acquire(wait=args.wait, log=common.log)
    try:
        steps = deploy_bundle(
            device, profile, bundle, manifest, build=args.build, flash=args.flash, timeout=args.timeout, log=common.log
        )
    finally:
        lock.release()
    for s in steps:
        print(f"{s.step}: ok ({s.seconds:.1f} s), log {s.log}")
    return 0
