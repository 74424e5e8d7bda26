"""`hil mcu-sim`: serve a simulated MCU on a pseudo-terminal or TCP port (CI test double, and a quick
"does TFLM run my model, and how much arena does it need" check)."""

from __future__ import annotations

import signal
import sys


def register(sub) -> None:
    p = sub.add_parser("mcu-sim", help="simulate an MCU running a .tflite in TFLite Micro, over a pty or TCP",
                       description="Runs MODEL in the TFLite Micro interpreter and answers the MLPerf Tiny "
                                   "serial protocol (docs/SERIAL_PROTOCOL.md) on a pseudo-terminal (default) "
                                   "or a raw TCP port. Point an inventory device {type: serial, port: ...} at "
                                   "the printed path, at the --link path, or at socket://HOST:PORT.")
    p.add_argument("model", help=".tflite the simulated firmware has 'flashed'")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--link", help="also create this symlink to the pty (e.g. /tmp/hil-dut)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on a raw TCP port instead of a pty (0: any)")
    p.add_argument("--bind", default="127.0.0.1", help="address for --tcp (default: %(default)s)")
    p.add_argument("--stock", action="store_true",
                   help="no hilbench extensions: behave like stock MLPerf Tiny firmware")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="misbehave: drop-bytes:P, garbage-every:K, stall-after:CMD, reboot-during-infer:K (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="random seed for faults (default: %(default)s)")
    p.add_argument("--arena-size", type=int, help="tensor arena bytes (default: measured usage + 10%%, 16-aligned)")
    p.add_argument("--name", default="hilbench-sim", help="what name%% answers (default: %(default)s)")
    p.add_argument("--model-id", help="what m-model-[...] reports (default: sha256:<first 16 hex of the model>)")
    p.add_argument("--clock-start", type=int, default=0, metavar="US",
                   help="initial value of the 32-bit microsecond timer (to exercise wrap-around)")
    p.add_argument("--flash-file", metavar="PATH",
                   help="on SIGHUP, load the model from PATH and reset (boot banner), as a board does after "
                        "flashing; a profile's mcu.flash_cmd can write PATH and send the signal")
    p.add_argument("--check", action="store_true", help="load and run the model once, print arena usage, exit")
    p.add_argument("--verbose", "-v", action="store_true", help="trace commands on stderr")
    p.set_defaults(func=cmd_mcu_sim)


def cmd_mcu_sim(args) -> int:
    from harness.mcu.sim.engine import TflmModel
    from harness.mcu.sim.faults import Faults
    from harness.mcu.sim.firmware import Firmware
    from harness.mcu.sim.server import PtyServer, SignalPipe, TcpServer

    faults = Faults.parse(args.fault, args.seed)
    model = TflmModel(args.model, arena_size=args.arena_size)

    def out(msg: str) -> None:
        print(msg, flush=True)

    def trace(msg: str) -> None:
        if args.verbose:
            print(f"[mcu-sim] {msg}", file=sys.stderr, flush=True)

    out(f"model {args.model}: {model.size_bytes} bytes, sha256 {model.sha256[:16]}, input "
        f"{list(model.in_shape)} {model.in_dtype.name} ({model.input_bytes} bytes)")
    out(f"TFLM runs this model, arena used {model.arena_used} bytes (smallest working arena "
        f"{model.arena_min} bytes, arena size {model.arena_size} bytes)")
    if args.check:
        return 0
    server = TcpServer(args.tcp, args.bind) if args.tcp is not None else PtyServer(args.link)
    fw = Firmware(model, server.write, name=args.name, model_id=args.model_id, stock=args.stock,
                  faults=faults, clock_start_us=args.clock_start, trace=trace)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    wake = None
    if args.flash_file:
        def reflash() -> None:
            try:
                new = TflmModel(args.flash_file)
                out(f"flashed {args.flash_file}: sha256 {new.sha256[:16]}, arena size {new.arena_size} "
                    f"bytes; resetting")
            except Exception as exc:
                new = fw.model
                out(f"flashing {args.flash_file} failed ({exc}); resetting with the previous model")
            fw.flashed(new)

        wake = SignalPipe({signal.SIGHUP: reflash})
    try:
        fw.boot()
        extras = ", stock firmware (no extensions)" if args.stock else ", extensions hb-caps/hb-arena/hb-dbbin"
        if faults.active:
            extras += ", faults " + " ".join(faults.active)
        if args.flash_file:
            extras += f", SIGHUP reloads {args.flash_file}"
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
