"""`hil mcu-sim`: serve a simulated MCU on a pseudo-terminal or TCP port (CI test double, and a quick
"does TFLM run my model, and how much arena does it need" check)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def register(sub) -> None:
    p = sub.add_parser(
        "mcu-sim",
        help="simulate an MCU running a .tflite in TFLite Micro, over a pty or TCP",
        description="Runs MODEL in the TFLite Micro interpreter and answers the MLPerf Tiny "
        "serial protocol (docs/SERIAL_PROTOCOL.md) on a pseudo-terminal (default) "
        "or a raw TCP port. Point an inventory device {type: serial, port: ...} at "
        "the printed path, at the --link path, or at socket://HOST:PORT.",
    )
    p.add_argument("model", help=".tflite the simulated firmware has 'flashed'")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--link", help="also create this symlink to the pty (e.g. /tmp/hil-dut)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on a raw TCP port instead of a pty (0: any)")
    p.add_argument("--bind", default="127.0.0.1", help="address for --tcp (default: %(default)s)")
    p.add_argument(
        "--stock", action="store_true", help="no hilbench extensions: behave like stock MLPerf Tiny firmware"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="misbehave: drop-bytes:P, garbage-every:K, stall-after:CMD, reboot-during-infer:K, "
        "stall-from-infer:K (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for faults (default: %(default)s)")
    p.add_argument("--arena-size", type=int, help="tensor arena bytes (default: measured usage + 10%%, 16-aligned)")
    p.add_argument("--name", default="hilbench-sim", help="what name%% answers (default: %(default)s)")
    p.add_argument("--model-id", help="what m-model-[...] reports (default: sha256:<first 16 hex of the model>)")
    p.add_argument(
        "--clock-start",
        type=int,
        default=0,
        metavar="US",
        help="initial value of the microsecond timer (to exercise wrap-around)",
    )
    p.add_argument(
        "--timer-wrap-us",
        type=_positive_int,
        default=1 << 32,
        metavar="N",
        help="the microsecond timer wraps to 0 at N (default 2^32, a 32-bit counter; e.g. "
        "8947849 plays DWT->CYCCNT / 480 on a 480 MHz Cortex-M7)",
    )
    p.add_argument(
        "--inference-us",
        type=_positive_int,
        metavar="US",
        help="deterministic timing: every inference takes exactly US microseconds on the device "
        "timer (and as long on the host's clock); the timer advances only by inferences",
    )
    p.add_argument(
        "--io-convention",
        default="auto",
        metavar="NAME",
        help="what db load carries and m-results reports: auto (from --model-id: an MLPerf "
        "Tiny ID kws01/vww01/ic01/ad01 selects its convention, else tensor), tensor, "
        "uint8-minus-128, float32-mse, or an MLPerf Tiny ID",
    )
    p.add_argument(
        "--flash-file",
        metavar="PATH",
        help="on SIGHUP, load the model from PATH and reset (boot banner), as a board does after "
        "flashing; a profile's mcu.flash_cmd can write PATH and send the signal",
    )
    p.add_argument(
        "--energy-mode",
        metavar="WIRE",
        help="play firmware built in energy mode: no laps, every timestamp pulls the marker pin "
        "low, i.e. sends an edge to the meter emulator listening on the UNIX socket WIRE",
    )
    p.add_argument(
        "--power-signals",
        action="store_true",
        help="SIGUSR1 cuts the board's power (silent, deaf, its state lost), SIGUSR2 restores it (cold "
        "boot, boot banner), as a relay in its supply would; a power switch in front of a "
        "labgrid place can send them",
    )
    p.add_argument(
        "--op-profiler",
        action="store_true",
        help="play firmware built with `hil build --op-profiler`: hb-caps lists profile, and hb-profile%% "
        "splits the last inference's time over its operators by the simulator's cost model (not a measurement)",
    )
    p.add_argument("--check", action="store_true", help="load and run the model once, print arena usage, exit")
    p.add_argument("--verbose", "-v", action="store_true", help="trace commands on stderr")
    p.set_defaults(func=cmd_mcu_sim)


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def cmd_mcu_sim(args) -> int:
    import numpy as np

    from harness.errors import ConfigError
    from harness.mcu.sim.engine import TflmModel
    from harness.mcu.sim.faults import Faults
    from harness.mcu.sim.firmware import Firmware
    from harness.mcu.sim.server import PtyServer, SignalPipe, TcpServer
    from harness.meters.emulators.wire import MarkerWire
    from harness.models import mlperf

    faults = Faults.parse(args.fault, args.seed)
    if args.io_convention == "auto":
        io = mlperf.convention_for_model_id(args.model_id)
    else:
        try:
            io = mlperf.convention(args.io_convention)
        except ConfigError as exc:
            raise ConfigError(f"--io-convention: {exc}") from None
    if not 0 <= args.clock_start < args.timer_wrap_us:
        raise ConfigError(
            f"--clock-start {args.clock_start} must lie in 0..{args.timer_wrap_us - 1} "
            f"(--timer-wrap-us {args.timer_wrap_us})"
        )
    model = TflmModel(args.model, arena_size=args.arena_size)
    ios = [
        {
            "dtype": model.in_dtype.name,
            "elements": model.input_bytes // model.in_dtype.itemsize,
            "scale": _scale(model.in_details),
        }
    ]
    outs = [{"dtype": str(np.dtype(model.out_details["dtype"])), "elements": int(np.prod(model.out_details["shape"]))}]
    mlperf.check_model(io, ios, outs, str(args.model))

    def out(msg: str) -> None:
        print(msg, flush=True)

    def trace(msg: str) -> None:
        if args.verbose:
            print(f"[mcu-sim] {msg}", file=sys.stderr, flush=True)

    out(
        f"model {args.model}: {model.size_bytes} bytes, sha256 {model.sha256[:16]}, input "
        f"{list(model.in_shape)} {model.in_dtype.name} ({model.input_bytes} bytes)"
    )
    out(
        f"TFLM runs this model, arena used {model.arena_used} bytes (smallest working arena "
        f"{model.arena_min} bytes, arena size {model.arena_size} bytes)"
    )
    if args.check:
        return 0
    server = TcpServer(args.tcp, args.bind) if args.tcp is not None else PtyServer(args.link)
    fw = Firmware(
        model,
        server.write,
        name=args.name,
        model_id=args.model_id,
        stock=args.stock,
        faults=faults,
        clock_start_us=args.clock_start,
        timer_wrap_us=args.timer_wrap_us,
        inference_us=args.inference_us,
        io=io,
        trace=trace,
        marker=MarkerWire(args.energy_mode).fall if args.energy_mode else None,
        op_profiler=args.op_profiler,
    )

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    actions: dict[int, Callable[[], None]] = {}
    if args.power_signals:

        def power_off() -> None:
            out("power off")
            fw.power_off()

        def power_on() -> None:
            out("power on")
            fw.power_on()

        actions.update({signal.SIGUSR1: power_off, signal.SIGUSR2: power_on})
    if args.flash_file:

        def reflash() -> None:
            try:
                new = TflmModel(args.flash_file)
                out(
                    f"flashed {args.flash_file}: sha256 {new.sha256[:16]}, arena size {new.arena_size} bytes; resetting"
                )
            except Exception as exc:
                new = fw.model
                out(f"flashing {args.flash_file} failed ({exc}); resetting with the previous model")
            fw.flashed(new)

        actions[signal.SIGHUP] = reflash
    wake = SignalPipe(actions) if actions else None
    try:
        fw.boot()
        extras = ", stock firmware (no extensions)" if args.stock else ", extensions hb-caps/hb-arena/hb-dbbin"
        if args.op_profiler and not args.stock:
            extras += "/hb-profile (modelled per-operator split)"
        if faults.active:
            extras += ", faults " + " ".join(faults.active)
        if args.flash_file:
            extras += f", SIGHUP reloads {args.flash_file}"
        if args.power_signals:
            extras += ", SIGUSR1/SIGUSR2 cut/restore power"
        if io.name != "tensor":
            extras += f", I/O convention {io.name} ({fw.wire_bytes} input bytes)"
        if args.timer_wrap_us != 1 << 32:
            extras += f", timer wraps at {args.timer_wrap_us} us"
        if args.inference_us:
            extras += f", {args.inference_us} us per inference (virtual clock)"
        out(f"model ID {fw.model_id}{extras}")
        out(server.describe())
        if isinstance(server, TcpServer):
            server.serve(fw, trace, wake=wake)
        else:
            server.serve(fw, wake=wake)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if wake is not None:
            wake.close()
    return 0


def _scale(details: dict) -> float | None:
    q = details.get("quantization_parameters") or {}
    scales = list(q.get("scales", []))
    return float(scales[0]) if scales else None
