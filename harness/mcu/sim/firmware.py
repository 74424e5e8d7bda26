"""The firmware's side of the wire protocol (docs/SERIAL_PROTOCOL.md), byte for byte.

``Firmware`` is fed the bytes the host sends and answers through a ``write`` callback, exactly as the
MLPerf Tiny / EEMBC reference firmware does (command buffer of 80 chars, ``%`` terminator, lines
ending CRLF, every answer closed by ``m-ready``), plus the negotiated hilbench extensions unless it
plays a stock firmware. Inference runs synchronously inside ``feed`` like on a single-core MCU: bytes
that arrive meanwhile wait in the port's buffer.

Timer: microseconds since boot, wrapping at ``timer_wrap_us`` (2^32: a 32-bit counter printed with
``%lu``; smaller values play a timer that wraps within a measurement window). With ``inference_us``
the clock is virtual and deterministic: it advances by exactly that much per inference and by nothing
else, and the simulator spends the same time on the host's clock, so laps are exact and agree with
the host's time. Energy mode (``marker``): like firmware built with HB_ENERGY_MODE, the banner says
``m-timestamp-mode-energy`` and every timestamp is a falling edge on the marker wire (stamped with the
board clock, `harness/meters/emulators/wire.py`) instead of an ``m-lap-us`` line. I/O conventions
(``io``): what ``db load`` carries and ``m-results`` reports, as the MLPerf Tiny reference firmware
of a benchmark ID does it (``harness/models/mlperf.py``). ``op_profiler``: like firmware built with
``hil build --op-profiler``, ``hb-caps`` lists ``profile`` and ``hb-profile%`` answers with the last
inference's time split over its operators by the simulator's cost model (``op_costs.py``: modelled,
not measured; the ticks are microseconds and add up exactly to the inference's time).
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable

import numpy as np

from harness import __version__
from harness.mcu.sim.engine import TflmModel, tflm_version
from harness.mcu.sim.faults import Faults
from harness.mcu.sim.op_costs import OpCost, op_costs, split_ticks
from harness.models import mlperf

CMD_SIZE = 80
MAX_DB_INPUT_SIZE = 96 * 96 * 3  # the reference firmware's buffer
DBBIN_IDLE_TIMEOUT_S = 1.0
HOST_CLOCK_MIN_US = 2  # host-clock mode: the least time one simulated inference takes (see _spend_until)
BANNER = ("m-timestamp-mode-performance", "m-init-done", "m-ready")
ENERGY_BANNER = ("m-timestamp-mode-energy", "m-init-done", "m-ready")
CAPS = ("arena", "dbbin")
PROFILE_CAP = "profile"
COMMAND_RECORD = 1000  # commands the simulator remembers (Firmware.commands), for tests and debugging


class _Stalled(Exception):
    pass


class _Rebooted(Exception):
    pass


def model_id_for(sha256: str) -> str:
    """What generated firmware reports in ``m-model-[...]``: the sha256 prefix of its .tflite."""
    return f"sha256:{sha256[:16]}"


class Firmware:
    def __init__(
        self,
        model: TflmModel,
        write: Callable[[bytes], None],
        *,
        name: str = "hilbench-sim",
        model_id: str | None = None,
        stock: bool = False,
        faults: Faults | None = None,
        clock_start_us: int = 0,
        timer_wrap_us: int = 1 << 32,
        inference_us: int | None = None,
        io: mlperf.Convention | None = None,
        trace: Callable[[str], None] | None = None,
        marker: Callable[[int], None] | None = None,
        op_profiler: bool = False,
    ):
        self.model = model
        self.op_profiler = op_profiler
        self.commands: deque[str] = deque(maxlen=COMMAND_RECORD)  # the latest commands received, in order
        self._costs: tuple[str, list[OpCost]] | None = None  # (model sha256, cost model of its ops)
        self.marker = marker  # energy mode: the timestamp pin's falling edge, stamped with now_us()
        self.timer_wrap_us = int(timer_wrap_us)
        self.inference_us = inference_us
        self._virtual_us = 0  # inference_us mode: device time spent inferring since boot
        self.io = io or mlperf.convention_for_model_id(model_id)
        self._write = write
        self.name = name
        self._fixed_model_id = model_id
        self.model_id = model_id or model_id_for(model.sha256)
        self.stock = stock
        self.faults = faults or Faults()
        self.profile = f"hilbench mcu-sim {__version__} (TFLM {tflm_version()})"
        self._clock_start = clock_start_us
        self._t0_ns = time.perf_counter_ns()
        self._trace = trace or (lambda msg: None)
        self.stalled = False
        self.powered = True  # --power-signals: a relay in the supply (the test's power switch) cuts it
        self.infers = 0
        self._infer_commands = 0  # since start, across resets: stall-from-infer counts these
        self._cmd = bytearray()
        self._overflow = False
        self._reset_state()

    # ------------------------------------------------------------------ state

    @property
    def wire_bytes(self) -> int:
        """Bytes of one input on the wire (`db load N`) under the I/O convention."""
        m = self.model
        return self.io.wire_bytes(m.input_bytes // m.in_dtype.itemsize, m.in_dtype.itemsize)

    def _reset_state(self) -> None:
        self.buf = bytearray(max(MAX_DB_INPUT_SIZE, self.wire_bytes))
        self.buf_size = 0
        self.buf_pos = 0
        self._bin_left = 0
        self._bin_data = bytearray()
        self._bin_crc = 0
        self.binary_deadline: float | None = None
        self.model.set_input(bytes(self.model.input_bytes))
        self._wire = bytes(self.wire_bytes)  # the input the tensor holds, as it came over the wire
        self.last_inference_us: int | None = None  # device time of the last inference (hb-profile)

    def now_us(self) -> int:
        if self.inference_us is not None:
            elapsed = self._virtual_us
        else:
            elapsed = (time.perf_counter_ns() - self._t0_ns) // 1000
        return (self._clock_start + elapsed) % self.timer_wrap_us  # e.g. a 32-bit µs timer, printed with %lu

    def _invoke(self) -> None:
        self.model.invoke()
        if self.inference_us is not None:
            self._virtual_us += self.inference_us

    def _spend_until(self, start_ns: int, inferences: int) -> None:
        """Take as long on the host's clock as the device clock says the inferences took (the
        simulated computation; nothing waits for anyone): `inference_us` each, or on the host's clock
        at least HOST_CLOCK_MIN_US each. A tiny model runs in under a microsecond on a fast host,
        faster than any MCU interpreter can (one invoke is thousands of cycles), and the host rightly
        rejects a lap of less than 1 us per inference: the simulated board must not depend on how
        fast the host is."""
        per_us = self.inference_us if self.inference_us is not None else HOST_CLOCK_MIN_US
        remaining = start_ns + inferences * per_us * 1000 - time.perf_counter_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)

    def boot(self) -> None:
        for line in ENERGY_BANNER if self.marker is not None else BANNER:
            self._line(line)

    # ------------------------------------------------------------------ output

    _stall_pending = False

    def _line(self, text: str) -> None:
        if self.stalled or not self.powered:
            raise _Stalled()
        self._write(self.faults.line(text.encode("ascii", errors="replace")))
        if self._stall_pending:  # fault stall-after: the first line of the answer, then nothing
            self.stalled = True
            self._trace("stalled (fault stall-after)")
            raise _Stalled()

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        for i, b in enumerate(data):
            if self.stalled or not self.powered:
                return
            if self._bin_left:
                self._bin_byte(b)
                continue
            if b == 0x25:  # '%'
                cmd, overflow = self._cmd.decode("ascii", errors="replace"), self._overflow
                self._cmd.clear()
                self._overflow = False
                self._command(cmd, overflow)
            elif len(self._cmd) >= CMD_SIZE:
                self._overflow = True
            else:
                self._cmd.append(b)

    def tick(self, now: float) -> None:
        """Called by the server loop; aborts an hb-dbbin transfer that stopped arriving."""
        if self._bin_left and self.binary_deadline is not None and now >= self.binary_deadline:
            self._bin_left = 0
            self.binary_deadline = None

            def abort() -> None:
                self._line("e-[hb-dbbin timeout]")
                self._line("m-ready")

            self._guarded(abort)

    def _guarded(self, fn) -> None:
        try:
            fn()
        except (_Stalled, _Rebooted):
            pass

    # ------------------------------------------------------------------ commands

    def _command(self, cmd: str, overflow: bool) -> None:
        cmd = cmd.strip("\r\n ")
        self._trace(f"<- {cmd}%")
        self.commands.append(cmd)
        tok = cmd.split(" ")[0] if cmd else ""
        if self.faults.stall_after and tok == self.faults.stall_after:
            self.faults.stall_after = None
            self._stall_pending = True
        if tok == "infer":
            self._infer_commands += 1
            if self.faults.stall_from_infer and self._infer_commands >= self.faults.stall_from_infer:
                self._stall_pending = True
        try:
            if overflow:
                self._line(f"e-[Command too long (max {CMD_SIZE} chars)]")
            elif not self._dispatch(cmd):
                return  # binary transfer under way: m-ready comes when it ends
            self._line("m-ready")
        except (_Stalled, _Rebooted):
            pass  # a hung or rebooted device says nothing more about this command

    def _dispatch(self, cmd: str) -> bool:
        args = [a for a in cmd.split(" ") if a]
        tok = args[0] if args else ""
        if tok == "name":
            self._line(f"m-name-dut-[{self.name}]")
        elif tok == "timestamp":
            self._timestamp()
        elif tok == "profile":
            self._line(f"m-profile-[{self.profile}]")
            self._line(f"m-model-[{self.model_id}]")
        elif tok == "help":
            for text in (
                self.profile,
                "",
                "help         : Print this information",
                "name         : Print the name of the device",
                "timestsamp   : Generate a timetsamp",
                "db SUBCMD    : Manipulate a generic byte buffer",
                "  load N     : Allocate N bytes and set load counter",
                "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes",
                "  print [N=16] [offset=0]",
                "             : Print N bytes at offset as hex",
                "infer N [W=0]: Load input, execute N inferences after W warmup loops",
                "results      : Return the result fp32 vector",
            ):
                self._line(text)
        elif tok == "db":
            self._db(args[1:])
        elif tok == "infer":
            self._infer(args[1:])
        elif tok == "results":
            self._results()
        elif tok.startswith("hb-") and not self.stock:
            return self._extension(tok, args[1:])
        else:
            self._line(f"e-[Unknown command: {tok}]")
        return True

    def _db(self, args: list[str]) -> None:
        if not args:
            self._line("e-[Command 'db' requires a subcommand]")
        elif args[0] == "load":
            if len(args) < 2:
                self._line("e-[Command 'db load' requires the # of bytes]")
                return
            n = _atoi(args[1])
            if n <= 0:
                self._line("e-[Command 'db load' must be >0 bytes]")
            elif n > len(self.buf):
                self._line(f"e-[Supplied buffer size {n} exceeds maximum of {len(self.buf)}]")
            else:
                self.buf_size, self.buf_pos = n, 0
                self._line(f"m-[Expecting {n} bytes]")
        elif args[0] == "print":
            size = self.buf_size
            for start in range(0, size, 8):
                chunk = self.buf[start : min(size, start + 8)]
                self._line("m-buffer-" + "-".join(f"{b:02x}" for b in chunk))
            if size % 8:
                self._line("")  # the reference firmware's trailing blank line
        else:
            digits = args[0]
            if len(digits) % 2:
                self._line("e-[Insufficent number of hex digits]")
                return
            if self.buf_size == 0 or self.buf_pos >= self.buf_size:
                self._line("e-[No 'db load' in progress]")
                return
            for i in range(0, len(digits), 2):
                pair = digits[i : i + 2]
                if not all(c in "0123456789abcdefABCDEF" for c in pair):
                    self._line(f"e-[Invalid hex digit '{pair}']")
                    return
                self.buf[self.buf_pos] = int(pair, 16)
                self.buf_pos += 1
                if self.buf_pos == self.buf_size:
                    self._line("m-load-done")
                    return

    def _load_tensor(self) -> bool:
        """The loaded input into the tensor, as the firmware played does it with an input of the wrong
        size. hilbench firmware (hb_protocol.c, input_ready) refuses to infer unless exactly one
        complete input of the model's size was loaded: False, the answer is the error line. The MLPerf
        Tiny reference (th_load_tensor) prints a plain line and infers on the input it had (and takes
        the first bytes of a longer input without a word, as ee_get_buffer copies at most that many)."""
        need = self.wire_bytes
        if self.stock:
            have = min(self.buf_pos, need)
            if have != need:
                per = need // max(1, self.model.input_bytes // self.model.in_dtype.itemsize)  # wire bytes per element
                self._line(f"Input db has {have // per} elemented, expected {need // per}")
                return True
        elif self.buf_size != need or self.buf_pos != need:
            self._line(f"e-[input incomplete: have {self.buf_pos} of {need} bytes; send db load first]")
            return False
        wire = bytes(self.buf[:need])
        m = self.model
        q = m.in_details.get("quantization_parameters") or {}
        scale = float(q["scales"][0]) if len(q.get("scales", [])) else 0.0
        zp = int(q["zero_points"][0]) if len(q.get("zero_points", [])) else 0
        m.set_input(mlperf.wire_to_tensor(self.io, wire, m.in_dtype, scale, zp))
        self._wire = wire  # float32-mse compares the outputs with it
        return True

    def _infer(self, args: list[str]) -> None:
        n, w = 1, 10
        if args:
            n = _atoi(args[0])
            if n <= 0:
                self._line("e-[Inference iterations must be >0]")
                return
            if len(args) > 1:
                w = _atoi(args[1])
                if w < 0:
                    self._line("e-[Inference warmup must be >=0]")
                    return
        if not self._load_tensor():
            return
        self.infers += 1
        reboot = self.faults.reboot_on_infer == self.infers
        start_ns = time.perf_counter_ns()
        self._line(f"m-warmup-start-{w}")
        for _ in range(w):
            self._invoke()
        self._spend_until(start_ns, w)
        self._line("m-warmup-done")
        self._line(f"m-infer-start-{n}")
        invoke = self._invoke
        lap_ns = time.perf_counter_ns()
        self._timestamp()
        if reboot:
            invoke()
            self._reboot()
        for _ in range(n):
            invoke()
        if self.inference_us is not None:  # the virtual clock counts from the warmup's start
            self._spend_until(start_ns, w + n)
            self.last_inference_us = self.inference_us
        else:  # the host's clock times the lap itself
            self._spend_until(lap_ns, n)
            self.last_inference_us = max(1, round((time.perf_counter_ns() - lap_ns) / 1000 / n))
        self._timestamp()
        self._line("m-infer-done")
        self._results()

    def _timestamp(self) -> None:
        """hb_protocol.c timestamp(): a lap line, or in energy mode a pulse on the marker pin."""
        if self.marker is not None:
            self.marker(self.now_us())
        else:
            self._line(f"m-lap-us-{self.now_us()}")

    def _reboot(self) -> None:
        self._trace(f"rebooting during infer #{self.infers} (fault reboot-during-infer)")
        self._reset_state()
        self._cmd.clear()
        self._t0_ns = time.perf_counter_ns()
        self._virtual_us = 0
        self.boot()
        raise _Rebooted()

    def flashed(self, model: TflmModel) -> None:
        """The board was flashed with `model` and reset: the new model (and model ID, unless fixed
        with --model-id), empty buffers, the timer restarted, a half-received command and the
        loaded input forgotten, and the boot banner."""
        self.model = model
        self.model_id = self._fixed_model_id or model_id_for(model.sha256)
        self._restart()

    def power_off(self) -> None:
        """The supply is cut: the board says nothing and hears nothing (bytes sent to it are lost)
        until power_on(); whatever it was doing, and a hang, end here."""
        self._trace("power off")
        self.powered = False
        self.stalled = self._stall_pending = False
        self._cmd.clear()
        self._overflow = False
        self._reset_state()

    def power_on(self) -> None:
        """Power is back: a cold boot with the model in flash, the timer from zero, the boot banner."""
        self._trace("power on")
        self.powered = True
        self._restart()

    def _restart(self) -> None:
        self.stalled = self._stall_pending = False
        self._cmd.clear()
        self._overflow = False
        self._reset_state()
        self._t0_ns = time.perf_counter_ns()
        self._virtual_us = 0
        self._guarded(self.boot)

    def results(self) -> list[float]:
        """What m-results reports under the I/O convention."""
        m = self.model
        if self.io.name != "float32-mse":
            return m.results()
        y = np.asarray(m.interp.get_output(0)).reshape(-1)
        if np.issubdtype(y.dtype, np.integer) and m.out_scale > 0:
            y = mlperf.dequantize_like_device(y, m.out_scale, m.out_zero_point)
        return [mlperf.mse_like_device(y, self._wire)]

    def _results(self) -> None:
        self._line("m-results-[" + ",".join(f"{v:0.3f}" for v in self.results()) + "]")

    # ------------------------------------------------------------------ hilbench extensions

    def _extension(self, tok: str, args: list[str]) -> bool:
        if tok == "hb-caps":
            self._line(f"m-hb-caps-[{','.join(CAPS + ((PROFILE_CAP,) if self.op_profiler else ()))}]")
        elif tok == "hb-profile" and self.op_profiler:
            self._op_profile()
        elif tok == "hb-arena":
            self._line(f"m-hb-arena-[used={self.model.arena_used},size={self.model.arena_size}]")
        elif tok == "hb-dbbin":
            if len(args) != 2:
                self._line("e-[hb-dbbin needs N and CRC32]")
                return True
            n = _atoi(args[0])
            try:
                crc = int(args[1], 16)
            except ValueError:
                crc = -1
            if n <= 0 or n > len(self.buf) or crc < 0:
                self._line(f"e-[hb-dbbin bad arguments (N must be 1..{len(self.buf)}, CRC32 hex)]")
                return True
            self._bin_left, self._bin_crc = n, crc
            self._bin_data = bytearray()
            self.binary_deadline = time.monotonic() + DBBIN_IDLE_TIMEOUT_S
            self._line("m-hb-dbbin-go")
            return False
        else:
            self._line(f"e-[Unknown command: {tok}]")
        return True

    def op_ticks(self) -> list[tuple[int, str, int]]:
        """(index, type, ticks) of the last inference's operators under the cost model (op_costs.py)."""
        if self._costs is None or self._costs[0] != self.model.sha256:
            from harness.models.inspect.analysis import analyze

            self._costs = (self.model.sha256, op_costs(analyze(self.model.path)))
        costs = self._costs[1]
        ticks = split_ticks(self.last_inference_us or 0, [c.weight for c in costs])
        return [(c.index, c.type, t) for c, t in zip(costs, ticks)]

    def _op_profile(self) -> None:
        if self.last_inference_us is None:
            self._line("e-[hb-profile: no profiled inference yet (run infer first)]")
            return
        ops = self.op_ticks()
        for i, (_, tag, ticks) in enumerate(ops):
            self._line(f"m-hb-op-[{i},{tag},{ticks}]")
        self._line(f"m-hb-profile-done-[ops={len(ops)},lost=0,invoke={self.last_inference_us},hz=1000000,clock=model]")

    def _bin_byte(self, b: int) -> None:
        self._bin_data.append(b)
        self._bin_left -= 1
        self.binary_deadline = time.monotonic() + DBBIN_IDLE_TIMEOUT_S
        if self._bin_left:
            return
        self.binary_deadline = None
        data = bytes(self._bin_data)

        def finish() -> None:
            if zlib.crc32(data) & 0xFFFFFFFF != self._bin_crc:
                self.buf_size = self.buf_pos = 0
                self._line("e-[hb-dbbin crc mismatch]")
            else:
                self.buf[: len(data)] = data
                self.buf_size = self.buf_pos = len(data)
                self._line("m-hb-dbbin-ok")
            self._line("m-ready")

        self._guarded(finish)


def _atoi(text: str) -> int:
    """C atoi: leading digits (with sign), 0 when there are none."""
    sign, i = 1, 0
    if text[:1] in "+-":
        sign, i = (-1 if text[0] == "-" else 1), 1
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    return sign * int(text[i:j]) if j > i else 0
