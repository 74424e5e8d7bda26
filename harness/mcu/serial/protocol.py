"""The MLPerf Tiny / EEMBC performance-mode protocol, host side (docs/SERIAL_PROTOCOL.md).

``ProtocolClient`` sends one ``%``-terminated command at a time and collects the device's protocol lines
(``m-...`` / ``e-[...]``) up to the closing ``m-ready``, ignoring anything else on the line (boot
chatter, debug prints, line noise). Recovery is bounded and explicit:

- no ``m-ready`` in time -> resync (send ``name%`` until ``m-name-...`` + ``m-ready`` come back,
  a few attempts) and retry the command; a device that stays silent is an ``InfraError`` naming the
  device, the port, the command and the last line seen;
- a malformed or ``e-[...]`` answer -> retry the command (the link is still in sync);
- a boot banner inside an answer -> ``DeviceRebooted`` at once (the loaded input is gone; the
  measurement of the job cannot be trusted).

Our extensions (``hb-*``) are only used when ``hb-caps%`` lists them; a stock firmware answers
``e-[Unknown command: hb-caps]`` and the host carries on with the base protocol.

``hb-profile%`` (cap ``profile``, firmware built with ``hil build --op-profiler``; ``hil mcu-sim
--op-profiler``): the per-operator ticks of the last profiled inference, the untimed one at the end
of ``infer N W`` whose outputs ``m-results`` reports::

    m-hb-op-[0,CONV_2D,10432]                 one line per operator: index, tag, ticks
    m-hb-op-[1,FULLY_CONNECTED,2210]
    m-hb-profile-done-[ops=2,lost=0,invoke=12950,hz=480000000,clock=cycles]
    m-ready

``invoke``: ticks of the whole inference (interpreter overhead included, so at least the ops' sum);
``hz``: ticks per second; ``clock``: ``cycles`` (a CPU cycle counter, DWT->CYCCNT), ``us`` (the
microsecond timer) or ``model`` (``hil mcu-sim``: the simulated time split by a cost model, not
measured); ``lost``: operators beyond the recorder's capacity. Before any inference the
answer is ``e-[hb-profile: no profiled inference yet (run infer first)]``.
"""

from __future__ import annotations

import math
import re
import statistics
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import InfraError
from harness.mcu.serial.link import SerialLink

HEX_CHUNK = 31  # bytes per `db HEX%` command, as the reference host sends them (65 chars <= 80)
TIMER_WRAP = 1 << 32  # `m-lap-us-%lu` from a 32-bit microsecond timer (the default mcu.timer_wrap_s)
DBBIN_IDLE_TIMEOUT_S = 1.0  # the device gives up a binary transfer after this much silence

_PROTO_START = re.compile(r"m-[a-z\[]|e-\[")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_RESULTS = re.compile(r"^m-results-\[(.*)\]$")
_NAME = re.compile(r"^m-name-([^-\[]*)-\[(.*)\]$")
_BRACKET = re.compile(r"^m-([a-z0-9-]+?)-\[(.*)\]$")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
_OP = re.compile(r"^m-hb-op-\[(\d+),([A-Za-z0-9_.]+),(\d+)\]$")
_PROFILE_DONE = re.compile(
    r"^m-hb-profile-done-\[ops=(\d+),lost=(\d+),invoke=(\d+),hz=(\d+),clock=(cycles|us|model)\]$"
)


class SerialTimeout(InfraError):
    """No complete answer in time, but the device answered a resync afterwards (retryable)."""


class BadResponse(InfraError):
    """A complete answer that is malformed or an `e-[...]` error (retryable: the link is in sync)."""


class DeviceSilent(InfraError):
    """No answer in time, and no answer to resync attempts either."""


class DeviceRebooted(InfraError):
    """The boot banner appeared where an answer was expected."""


class InputRefused(InfraError):
    """The firmware did not take the loaded input for an `infer` (its model takes another input size).
    Never retried: the same bytes would be refused again."""


# The firmware did not take the loaded input. hilbench firmware (and `hil mcu-sim`) refuse to infer:
# `e-[input incomplete: have H of N bytes; ...]`; the MLPerf Tiny reference firmware prints a plain
# line, `Input db has H elemented, expected N`, and infers on the input it had before (th_load_tensor).
_INPUT_REFUSED = (
    re.compile(r"^e-\[input incomplete: have \d+ of \d+ bytes"),
    re.compile(r"Input db has -?\d+ elemented, expected \d+"),
)


def protocol_part(line: str) -> str | None:
    """The protocol content of a received line, or None for a non-protocol line.

    Lines start with `m-` or `e-[`; a line whose protocol text is preceded only by noise characters
    (no letters or digits) is taken from where the protocol text starts.
    """
    if line.startswith(("m-", "e-")):
        return line
    m = _PROTO_START.search(line)
    if m and not any(c.isalnum() for c in line[: m.start()]):
        return line[m.start() :]
    return None


def is_banner(line: str) -> bool:
    return line == "m-init-done" or line.startswith("m-timestamp-mode-")


@dataclass
class Response:
    command: str
    lines: list[str]  # protocol lines, without the closing m-ready
    noise: int = 0  # non-protocol lines ignored
    seconds: float = 0.0  # host time from sending the command to its m-ready
    other: list[str] = field(default_factory=list)  # the non-protocol lines (a stock firmware's complaints)

    def first(self, prefix: str) -> str | None:
        return next((line for line in self.lines if line.startswith(prefix)), None)

    def all(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]

    @property
    def errors(self) -> list[str]:
        return self.all("e-")


@dataclass
class InferResult:
    n: int
    warmup: int
    t0: int
    t1: int
    elapsed_us: int
    results: list[float]
    host_seconds: float

    @property
    def per_inference_us(self) -> float:
        return self.elapsed_us / self.n


@dataclass
class OpTicks:
    """`hb-profile%`: the operators of the last profiled inference, in the firmware's ticks."""

    ops: list[tuple[int, str, int]]  # (index, tag, ticks) in execution order
    invoke: int  # ticks of the whole inference
    hz: int  # ticks per second
    clock: str  # cycles | us | model (the simulator's cost model)
    lost: int = 0  # operators the firmware's recorder had no room for


@dataclass
class DeviceInfo:
    name: str | None = None
    role: str | None = None
    profile: str | None = None
    model_id: str | None = None
    caps: set[str] = field(default_factory=set)
    timestamp_mode: str | None = None


# A lap (T1 - T0 of `infer N W`) must agree with the host's time for the same command, both ways:
# - never longer than the host waited (the host's time holds the device's), up to LAP_RATE_TOL for a
#   device clock that runs a little fast and LAP_AHEAD_S for coarse timers and clock reads;
# - never shorter than the host's time minus what the device did not time: the W warmups (taken at the
#   lap's per-inference rate) and the link. The link may take LAP_SLACK_S (printing, scheduling) plus
#   twice the measured round trip of short commands plus the answer's bytes at the baud rate; plus
#   LAP_RATE_TOL of the host time (warmups slower than timed inferences, a slow device clock) and one
#   inference (hilbench firmware runs one more, untimed, for the outputs it prints).
# That tolerance is capped below half the timer's wrap period: a lap that missed a wrap reads at least
# one whole period short, so it can never pass (docs/MCU.md, "Timing").
LAP_SLACK_S = 0.25
LAP_RATE_TOL = 0.05
LAP_AHEAD_S = 0.05
RTT_HISTORY = 16  # round trips of short commands kept for the link latency


def lap_difference(t0: int, t1: int, wrap_us: int = TIMER_WRAP) -> int:
    """T1 - T0 on a timer that wraps at `wrap_us` (one wrap at most). A timer value at or above the wrap
    is from a wider timer than assumed (hilbench firmware prints 64-bit microseconds): no wrap is
    added then, and T1 < T0 stays negative."""
    d = t1 - t0
    if d < 0 and t0 < wrap_us and t1 < wrap_us:
        d += wrap_us
    return d


def check_lap(
    t0: int, t1: int, n: int, warmup: int, host_s: float, wrap_us: int = TIMER_WRAP, slack_s: float = LAP_SLACK_S
) -> tuple[int | None, str | None]:
    """(elapsed microseconds, None) for a plausible lap, else (None, why). `host_s`: host time from
    sending `infer N W%` to its m-ready; `slack_s`: what the link may add (see LAP_SLACK_S)."""
    wrap_s = wrap_us / 1e6
    where = f"timestamps {t0} -> {t1}"
    d = lap_difference(t0, t1, wrap_us)
    if d < 0:
        return None, (
            f"{where} run backwards on a timer wider than its wrap period (mcu.timer_wrap_s = "
            f"{wrap_s:g} s): negative lap"
        )
    if d < n:
        return None, f"{where} give {d} us for {n} inferences (less than 1 us each: implausible lap)"
    device_s = d / 1e6
    wrapped = " (one timer wrap added)" if t1 < t0 else ""
    if device_s > host_s * (1 + LAP_RATE_TOL) + LAP_AHEAD_S:
        return None, (
            f"{where} claim {device_s:.3f} s{wrapped} but the answer came {host_s:.3f} s after the "
            f"command (corrupted timestamp, or a timer that wraps elsewhere than mcu.timer_wrap_s = "
            f"{wrap_s:g} s)"
        )
    accounted = device_s * (1 + warmup / n)
    tolerance = min(slack_s + LAP_RATE_TOL * host_s + device_s / n, wrap_s / 2)
    if host_s - accounted > tolerance:
        return None, (
            f"{where} claim {device_s:.3f} s{wrapped} (~{accounted:.3f} s with {warmup} warmups) but "
            f"the answer came {host_s:.3f} s after the command, {host_s - accounted:.3f} s more than "
            f"the link accounts for ({tolerance:.3f} s): the timer wrapped inside the window "
            f"(mcu.timer_wrap_s = {wrap_s:g} s?), or a corrupted timestamp"
        )
    return d, None


def parse_results(line: str) -> list[float] | None:
    m = _RESULTS.match(line)
    if not m:
        return None
    body = m.group(1).strip()
    if body.endswith(","):  # the MLPerf Tiny vww01 reference firmware prints "a,b," (3 slots, 2 values)
        body = body[:-1].rstrip()
    if not body:
        return []
    values = [v.strip() for v in body.split(",")]
    # A firmware prints every value with one format (%0.3f, %f, %d): a value with a different number
    # of decimals, or none before the point, lost a character on the way.
    decimals = {len(v.partition(".")[2]) if "." in v else -1 for v in values if _NUMBER.match(v)}
    if len(decimals) > 1 or not all(_NUMBER.match(v) or v.lower().lstrip("+-") in ("nan", "inf") for v in values):
        return None
    return [float(v) for v in values]


class ProtocolClient:
    """One device under test on an open `SerialLink`."""

    def __init__(
        self,
        link: SerialLink,
        device_id: str,
        *,
        timeout: float = 5.0,
        infer_timeout: float = 120.0,
        boot_timeout: float = 10.0,
        retries: int = 2,
        resync_attempts: int = 2,
        timer_wrap_us: int = TIMER_WRAP,
        log: Callable[[str], None] = lambda m: None,
    ):
        self.link = link
        self.device_id = device_id
        self.timer_wrap_us = int(timer_wrap_us)
        self._rtts: deque[float] = deque(maxlen=RTT_HISTORY)  # round trips of short answers
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.boot_timeout = boot_timeout
        self.retries = retries
        self.resync_attempts = resync_attempts
        self.log = log
        self.info = DeviceInfo()
        self.resyncs = 0
        self.retried = 0
        self.reboots = 0
        self.noise = 0
        self.dbbin_failures = 0  # consecutive
        self.dbbin_fallbacks = 0  # total
        self._dbbin = True
        self.loaded = 0  # bytes of the input last loaded (for messages)

    # ------------------------------------------------------------------ messages

    @property
    def where(self) -> str:
        return self.link.port_name

    def _last(self) -> str:
        last = self.link.last_line
        return f"last line: {last[:120]!r}" if last else "nothing received"

    def _who(self) -> str:
        return f"device '{self.device_id}'"

    # ------------------------------------------------------------------ core exchange

    def _check_unsolicited(self, command: str) -> None:
        for raw in self.link.pending():
            line = protocol_part(raw)
            if line is not None and is_banner(line):
                self.reboots += 1
                raise DeviceRebooted(
                    f"{self._who()} rebooted before '{command}%' on {self.where} (unsolicited boot banner {line!r})"
                )

    def _collect(self, command: str, timeout: float, t_send: float, last: str | None = None) -> Response:
        """Lines up to m-ready. Once a line starting with `last` (the answer's final line before
        m-ready) has arrived, m-ready is only waited for `self.timeout` more."""
        deadline = t_send + timeout
        lines: list[str] = []
        other: list[str] = []
        waited = f"within {timeout:.1f} s after '{command}%'"
        while True:
            raw = self.link.read_line(deadline)
            if raw is None:
                raise SerialTimeout(f"{self._who()}: no m-ready {waited} on {self.where} ({self._last()})")
            line = protocol_part(raw)
            if line is None:
                other.append(raw)
                continue
            if is_banner(line):
                self.reboots += 1
                raise DeviceRebooted(
                    f"{self._who()} rebooted during '{command}%' on {self.where} (boot banner {line!r} in the answer)"
                )
            if line == "m-ready":
                self.noise += len(other)
                return Response(command, lines, len(other), time.monotonic() - t_send, other)
            lines.append(line)
            if last is not None and line.startswith(last) and time.monotonic() + self.timeout < deadline:
                deadline = time.monotonic() + self.timeout
                waited = f"within {self.timeout:.1f} s of the {last}... line of '{command}%'"

    def resync(self) -> None:
        """Bring the link back to a known state: `name%` answered by m-name + m-ready."""
        self.resyncs += 1
        for attempt in range(self.resync_attempts):
            self.link.discard_input()
            t_send = time.monotonic()
            self.link.write_command("name")
            deadline = t_send + self.timeout
            saw_name = False
            while True:
                raw = self.link.read_line(deadline)
                if raw is None:
                    break
                line = protocol_part(raw)
                if line is None:
                    continue
                if is_banner(line):
                    self.reboots += 1
                elif line.startswith("m-name-"):
                    saw_name = True
                    self._parse_name(line)
                elif line == "m-ready" and saw_name:
                    return
        raise DeviceSilent(
            f"{self._who()}: no answer to 'name%' on {self.where} within "
            f"{self.timeout:.1f} s ({self.resync_attempts} attempts; {self._last()})"
        )

    def transact(
        self,
        command: str,
        timeout: float | None = None,
        check: Callable[[Response], str | None] | None = None,
        retries: int | None = None,
        last: str | None = None,
    ) -> Response:
        """Send `command`, return its answer; retry (bounded) on timeouts and bad answers.

        `check(response)` returns None when the answer is usable, else a description of the problem.
        By default any `e-[...]` line is a problem.
        """
        timeout = self.timeout if timeout is None else timeout
        attempts = 1 + (self.retries if retries is None else retries)
        check = check or _no_errors
        last_exc: InfraError | None = None
        for attempt in range(attempts):
            if attempt:
                self.retried += 1
            self._check_unsolicited(command)
            reboots = self.reboots
            t_send = time.monotonic()
            self.link.write_command(command)
            try:
                resp = self._collect(command, timeout, t_send, last)
            except SerialTimeout as exc:
                last_exc = exc
                try:
                    self.resync()
                except DeviceSilent as silent:
                    raise DeviceSilent(
                        f"{exc}; afterwards no answer to 'name%' either "
                        f"({self.resync_attempts} attempts of {self.timeout:.1f} s)"
                    ) from silent
                if self.reboots != reboots:
                    raise DeviceRebooted(
                        f"{self._who()} rebooted during '{command}%' on {self.where} "
                        f"(boot banner seen while resyncing after: {exc})"
                    ) from None
                if attempt + 1 < attempts:
                    self.log(f"{exc}; link resynced, retrying")
                continue
            problem = check(resp)
            if problem is None:
                if len(resp.lines) <= 2 and not command.startswith("infer"):
                    self._rtts.append(resp.seconds)
                return resp
            last_exc = BadResponse(f"{self._who()}: bad answer to '{command}%' on {self.where}: {problem}")
            if attempt + 1 < attempts:
                self.log(f"{last_exc}; retrying")
        assert last_exc is not None
        raise last_exc

    def stable(self, command: str, check: Callable[[Response], str | None] | None = None) -> Response:
        """`transact` until two answers in a row agree: a value read once (model ID, capabilities, arena
        size) could have lost a character that leaves it well-formed."""
        previous: list[str] | None = None
        for _ in range(2 + self.retries):
            resp = self.transact(command, check=check)
            if previous is not None and resp.lines == previous:
                return resp
            previous = resp.lines
        raise BadResponse(
            f"{self._who()}: answers to '{command}%' on {self.where} differ from one "
            f"attempt to the next (noisy line?): last {'; '.join(previous or [])!r}"
        )

    @property
    def link_latency_s(self) -> float:
        """Median round trip of the recent short commands (name%, profile%, db chunks...), 0 before any."""
        return statistics.median(self._rtts) if self._rtts else 0.0

    def lap_slack_s(self, answer_chars: int) -> float:
        """What the link may add to an answer of `answer_chars` characters (see LAP_SLACK_S)."""
        return LAP_SLACK_S + 2 * self.link_latency_s + answer_chars * 10 / max(1, self.link.baudrate)

    # ------------------------------------------------------------------ boot and identity

    def wait_boot(self, after: str, deadline: float | None = None) -> None:
        """After a reset: the banner (m-init-done, then m-ready) within boot_timeout (or by `deadline`,
        a time.monotonic())."""
        deadline = time.monotonic() + self.boot_timeout if deadline is None else deadline
        init = False
        while True:
            raw = self.link.read_line(deadline)
            if raw is None:
                raise DeviceSilent(
                    f"{self._who()}: no boot banner (m-init-done, m-ready) within "
                    f"{self.boot_timeout:.1f} s after {after} on {self.where} ({self._last()})"
                )
            line = protocol_part(raw)
            if line is None:
                continue
            if line.startswith("m-timestamp-mode-"):
                self.info.timestamp_mode = line[len("m-timestamp-mode-") :]
            elif line == "m-init-done":
                init = True
            elif line == "m-ready" and init:
                return

    def _parse_name(self, line: str) -> None:
        m = _NAME.match(line)
        if m:
            self.info.role, self.info.name = m.group(1), m.group(2)

    def identify(self) -> DeviceInfo:
        resp = self.transact("name", check=lambda r: None if r.first("m-name-") else "no m-name-... line")
        name_line = resp.first("m-name-")
        assert name_line is not None  # the check above refuses answers without one
        self._parse_name(name_line)
        fields: dict[str, str] = {}

        def bracketed(r: Response, *wanted: str) -> str | None:
            fields.clear()
            for line in r.lines:
                m = _BRACKET.match(line)
                if m:
                    fields[m.group(1)] = m.group(2)
            if r.errors or all(w in fields for w in wanted):
                return None  # complete, or refused (a firmware without the command)
            return "no " + " / ".join(f"m-{w}-[...]" for w in wanted if w not in fields) + " line"

        self.stable("profile", check=lambda r: bracketed(r, "profile", "model"))
        self.info.profile, self.info.model_id = fields.get("profile"), fields.get("model")
        self.stable("hb-caps", check=lambda r: bracketed(r, "hb-caps"))
        caps = fields.get("hb-caps")
        self.info.caps = {c.strip() for c in caps.split(",") if c.strip()} if caps is not None else set()
        return self.info

    def probe_timestamp_mode(self) -> str:
        """performance or energy. Known from the boot banner after a reset; otherwise `timestamp%`
        tells: a performance-mode firmware prints a lap, an energy-mode one only pulses its pin (no
        meter is recording between captures, so the pulse is harmless)."""
        if self.info.timestamp_mode is None:
            resp = self.transact("timestamp")
            laps = any(_LAP.match(line) for line in resp.lines)
            self.info.timestamp_mode = "performance" if laps else "energy"
        return self.info.timestamp_mode

    # ------------------------------------------------------------------ extensions

    def arena(self) -> dict | None:
        """`hb-arena%` -> {"used": U, "size": S} (None without the extension)."""
        if "arena" not in self.info.caps:
            return None

        fields: dict[str, int] = {}

        def check(r: Response) -> str | None:
            fields.clear()
            m = _BRACKET.match(r.first("m-hb-arena-[") or "")
            if not m:
                return "no m-hb-arena-[...] line"
            for part in m.group(2).split(","):
                key, _, value = part.partition("=")
                if not value.isdigit():
                    return f"malformed m-hb-arena-[{m.group(2)}]"
                fields[key] = int(value)
            return None if "used" in fields else "m-hb-arena-[...] without used="

        self.stable("hb-arena", check=check)
        return dict(fields)

    def op_profile(self) -> OpTicks | None:
        """`hb-profile%` -> the per-operator ticks of the last profiled inference (None without the
        extension). An answer that does not parse is retried, then a BadResponse naming the device."""
        if "profile" not in self.info.caps:
            return None
        parsed: dict = {}

        def check(r: Response) -> str | None:
            err = _no_errors(r)
            if err:
                return err
            ops = []
            done = None
            for line in r.lines:
                m = _OP.match(line)
                if m and done is None:
                    ops.append((int(m.group(1)), m.group(2), int(m.group(3))))
                    continue
                d = _PROFILE_DONE.match(line)
                if d and done is None:
                    done = d
                    continue
                return f"unexpected line {line[:80]!r} in the per-operator profile"
            if done is None:
                return "no m-hb-profile-done-[...] line"
            n, lost, invoke, hz = (int(done.group(i)) for i in range(1, 5))
            if len(ops) != n or [i for i, _, _ in ops] != list(range(n)):
                return f"{len(ops)} m-hb-op-[...] lines numbered {[i for i, _, _ in ops][:8]} for ops={n}"
            if hz <= 0:
                return "hz=0 in m-hb-profile-done-[...]"
            parsed.update(ops=ops, lost=lost, invoke=invoke, hz=hz, clock=done.group(5))
            return None

        self.transact("hb-profile", check=check, last="m-hb-profile-done-")
        return OpTicks(parsed["ops"], parsed["invoke"], parsed["hz"], parsed["clock"], parsed["lost"])

    # ------------------------------------------------------------------ input buffer

    def load(self, data: bytes) -> str:
        """Put `data` in the device's input buffer; returns the method used ("dbbin" or "hex")."""
        if not data:
            raise ValueError("empty input")
        self.loaded = len(data)
        if "dbbin" in self.info.caps and self._dbbin:
            try:
                self._load_binary(data)
                self.dbbin_failures = 0
                return "dbbin"
            except (BadResponse, SerialTimeout) as exc:
                self.dbbin_failures += 1
                self.dbbin_fallbacks += 1
                self.log(f"{exc}; falling back to hex db chunks")
                if self.dbbin_failures >= 2:
                    self._dbbin = False
                    self.log(f"{self._who()}: binary transfer failed twice in a row; using hex db chunks from now on")
        self._load_hex(data)
        return "hex"

    def _load_binary(self, data: bytes) -> None:
        n = len(data)
        command = f"hb-dbbin {n} {zlib.crc32(data) & 0xFFFFFFFF:08x}"
        self._check_unsolicited(command)
        t_send = time.monotonic()
        self.link.write_command(command)
        deadline = t_send + self.timeout + DBBIN_IDLE_TIMEOUT_S
        lines: list[str] = []
        while True:  # wait for the go-ahead (or a refusal closed by m-ready)
            raw = self.link.read_line(deadline)
            if raw is None:
                exc = SerialTimeout(
                    f"{self._who()}: no m-hb-dbbin-go within {self.timeout:.1f} s after "
                    f"'{command}%' on {self.where} ({self._last()})"
                )
                self.resync()
                raise exc
            line = protocol_part(raw)
            if line is None:
                continue
            if is_banner(line):
                self.reboots += 1
                raise DeviceRebooted(f"{self._who()} rebooted during '{command}%' on {self.where}")
            if line == "m-hb-dbbin-go":
                break
            if line == "m-ready":
                raise BadResponse(
                    f"{self._who()}: '{command}%' refused on {self.where}: {'; '.join(lines) or 'no reason given'}"
                )
            lines.append(line)
        self.link.write_raw(data)
        transfer = n * 10 / max(1, self.link.baudrate) * 2
        try:
            resp = self._collect(command + " <data>", self.timeout + transfer, time.monotonic())
        except SerialTimeout:
            self.resync()
            raise
        if not resp.first("m-hb-dbbin-ok"):
            raise BadResponse(
                f"{self._who()}: binary transfer of {n} bytes failed on {self.where}: "
                f"{'; '.join(resp.lines) or 'no m-hb-dbbin-ok'}"
            )

    def _load_hex(self, data: bytes) -> None:
        n = len(data)
        chunks = [data[i : i + HEX_CHUNK] for i in range(0, n, HEX_CHUNK)]
        expect = f"m-[Expecting {n} bytes]"
        last_exc: InfraError | None = None
        for attempt in range(1 + self.retries):
            if attempt:
                self.retried += 1
                self.log(f"{last_exc}; restarting the load")
            try:
                self.transact(
                    f"db load {n}",
                    retries=0,
                    check=lambda r: _no_errors(r) or (None if expect in r.lines else f"no {expect!r}"),
                )
                for i, chunk in enumerate(chunks):
                    final = i == len(chunks) - 1

                    def check(r: Response, final=final) -> str | None:
                        err = _no_errors(r)
                        if err:
                            return err
                        done = "m-load-done" in r.lines
                        if done and not final:
                            return "m-load-done before the last chunk"
                        if final and not done:
                            return "no m-load-done after the last chunk"
                        return None

                    self.transact("db " + chunk.hex(), retries=0, check=check)
                return
            except (BadResponse, SerialTimeout) as exc:
                last_exc = exc
        assert last_exc is not None
        raise last_exc

    # ------------------------------------------------------------------ inference

    def _input_taken(self, r: Response, command: str) -> None:
        """InputRefused when the answer to an `infer` says the firmware did not take the loaded input."""
        line = _refusal(r)
        if line is not None:
            raise InputRefused(
                f"{self._who()} did not take the {self.loaded}-byte input for '{command}%' on {self.where} "
                f"({line.strip()!r}): the firmware runs a model with another input size than the job's "
                f"(flash the firmware built for this model, or set the device's io_convention)"
            )

    def infer_timeout_for(self, expected_s: float) -> float:
        """How long an `infer` may take. Its duration unknown (the first inference of a model, which may
        take seconds): `infer_timeout`. Known from earlier answers (`expected_s`): the command timeout
        plus twice that, so that a board that hangs in a 1 s window is noticed after seconds, not after
        infer_timeout (minutes)."""
        if expected_s <= 0:
            return self.infer_timeout
        return min(self.timeout, self.infer_timeout) + 2.0 * expected_s

    def infer(self, n: int, warmup: int = 0, expected_s: float = 0.0) -> InferResult:
        """`infer N W%`: N timed inferences after W warmups, expected to take `expected_s` (0: unknown)."""
        command = f"infer {n} {warmup}"
        timeout = self.infer_timeout_for(expected_s)
        parsed: dict = {}

        def check(r: Response) -> str | None:
            self._input_taken(r, command)
            err = _no_errors(r)
            if err:
                return err
            laps = [int(m.group(1)) for m in (_LAP.match(line) for line in r.lines) if m]
            if not laps:
                return "no m-lap-us-... timestamps (firmware built in energy mode? latency needs the performance mode)"
            if len(laps) != 2:
                return f"expected 2 m-lap-us-... lines, got {len(laps)}"
            results, problem = _infer_results(r, n)
            if results is None:
                return problem
            # the lap against the host's time, both ways: a corrupted stamp, or a timer that wrapped
            # inside the window (reads short by a whole wrap period), is refused, never measured
            chars = sum(len(line) + 2 for line in r.lines) + len("m-ready\r\n")
            elapsed, problem = check_lap(
                laps[0], laps[1], n, warmup, r.seconds, self.timer_wrap_us, self.lap_slack_s(chars)
            )
            if problem is not None:
                return problem
            parsed.update(t0=laps[0], t1=laps[1], elapsed=elapsed, results=results, seconds=r.seconds)
            return None

        self.transact(command, timeout=timeout, check=check, last="m-results-")
        return InferResult(
            n=n,
            warmup=warmup,
            t0=parsed["t0"],
            t1=parsed["t1"],
            elapsed_us=parsed["elapsed"],
            results=parsed["results"],
            host_seconds=parsed["seconds"],
        )

    def infer_marked(self, n: int, warmup: int = 0, expected_s: float = 0.0) -> tuple[list[float], float]:
        """`infer N W%` on firmware in energy mode: no laps, the timing is on the meter's marker input.
        Returns (results, host seconds). Never retried here: a repeated command inside one meter
        capture would put four edges in it; the energy flow restarts the whole capture instead."""
        command = f"infer {n} {warmup}"
        parsed: dict = {}

        def check(r: Response) -> str | None:
            self._input_taken(r, command)
            err = _no_errors(r)
            if err:
                return err
            if any(_LAP.match(line) for line in r.lines):
                return (
                    "m-lap-us-... timestamps: the firmware runs in performance mode, so its timestamp pin "
                    "does not mark the inferences for the energy meter (build it in energy mode)"
                )
            results, problem = _infer_results(r, n)
            if results is None:
                return problem
            parsed.update(results=results, seconds=r.seconds)
            return None

        self.transact(command, timeout=self.infer_timeout_for(expected_s), check=check, retries=0, last="m-results-")
        return parsed["results"], parsed["seconds"]


def _refusal(r: Response) -> str | None:
    for line in r.lines + r.other:
        if any(p.search(line) for p in _INPUT_REFUSED):
            return line
    return None


def _infer_results(r: Response, n: int) -> tuple[list[float] | None, str | None]:
    """The results of an `infer n W%` answer, or why the answer is not one (both firmware modes)."""
    if f"m-infer-start-{n}" not in r.lines or "m-infer-done" not in r.lines:
        return None, "m-infer-start/m-infer-done missing or for another count"
    res_line = r.first("m-results-[")
    results = parse_results(res_line) if res_line else None
    if results is None:
        return None, "missing or malformed m-results-[...] line"
    return results, None


def _no_errors(r: Response) -> str | None:
    return "; ".join(r.errors) if r.errors else None


def iterations_for(target_s: float, per_inference_us: float, floor: int = 1, cap: int = 10**9) -> int:
    """Inferences needed for a window of at least `target_s` seconds."""
    per = max(per_inference_us, 1e-3)
    return int(min(cap, max(floor, math.ceil(target_s * 1e6 / per))))
