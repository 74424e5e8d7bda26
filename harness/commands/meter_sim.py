"""`hil meter-sim`: an emulated PPK2 or LPM01A on a pseudo-terminal, wired to `hil mcu-sim --energy-mode`.

The whole energy path (profile meter -> host driver -> marker edges -> energy per inference) can then
be tried and tested without a bench: the emulator answers the instrument's real wire protocol and
streams a known current waveform, so the expected energy is supply x active current x inference time.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "meter-sim",
        help="emulate a PPK2 or LPM01A energy meter on a pty (for mcu-sim --energy-mode)",
        description="Serves an emulated energy meter on a pseudo-terminal. Start it first with "
        "--wire PATH, then `hil mcu-sim MODEL --energy-mode PATH`; point the inventory "
        "device's meter: {port: ...} at the printed path or the --link path.",
    )
    p.add_argument("kind", choices=["ppk2", "lpm01a"], help="which instrument to emulate")
    p.add_argument(
        "--wire",
        required=True,
        metavar="PATH",
        help="UNIX socket the simulated board's timestamp pin 'pulls low' (created here)",
    )
    p.add_argument("--link", help="also create this symlink to the pty (e.g. /tmp/hil-meter)")
    p.add_argument("--idle-ma", type=float, default=1.5, help="board current outside windows (default: %(default)s)")
    p.add_argument(
        "--active-ma", type=float, default=20.0, help="board current between the timestamp edges (default: %(default)s)"
    )
    p.add_argument(
        "--ripple-ma",
        type=float,
        default=0.0,
        help="zero-mean ripple on the active current, period 4 samples (default: %(default)s)",
    )
    p.add_argument("--marker-input", type=int, default=0, help="PPK2 logic input of the marker (default: D0)")
    p.set_defaults(func=cmd_meter_sim)


def cmd_meter_sim(args) -> int:
    from harness.meters.emulators.base import Waveform

    wave = Waveform(args.idle_ma, args.active_ma, args.ripple_ma)
    if args.kind == "ppk2":
        from harness.meters.emulators.ppk2 import Ppk2Emulator

        emu = Ppk2Emulator(args.wire, wave, args.link, args.marker_input)
    else:
        from harness.meters.emulators.lpm01a import Lpm01aEmulator

        emu = Lpm01aEmulator(args.wire, wave, args.link)  # type: ignore[assignment]
    print(f"serving on {emu.path}", flush=True)
    emu.serve()
    return 0
