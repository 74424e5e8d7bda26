"""Measurement flows over the serial protocol: connect, performance windows, accuracy.

Performance follows MLPerf Tiny's method: latency per inference = (T1 - T0) / N from the device's
own microsecond timer, over several windows (``profile.benchmark.windows``, each at least
``window_seconds`` long; MLPerf uses 5 windows of >= 10 s). N comes from a calibration: one
``infer 1 0`` (the first inference, reported as such) and one probe of a few milliseconds whose
per-inference time sets N so that a window lasts the target time.

Run options map onto windows so a mixed lab reads one set of flags the same way everywhere:
``--min-seconds S`` is the total timed duration (each window S / windows; without the flag the
profile's ``window_seconds``), ``--min-runs R`` the minimum number of timed inferences in total (at
least ceil(R / windows) per window), ``--max-seconds`` caps the total, ``--warmup-runs`` is passed as
W to every window's ``infer N W`` and ``--warmup-seconds`` adds warmup to the probe. Windows stay
below half the firmware timer's wrap period (the profile's ``mcu.timer_wrap_s``): a ``--min-seconds``
that asks for longer windows is split into more of them.

Per-operator profile (``--profile``, ``op_profile``): a pass of its own after the timed windows, N
single inferences each followed by ``hb-profile%``, on firmware that lists the ``profile`` extension;
other firmware gets a warning and no profile, and without ``--profile`` the command is never sent.

Inputs go over the wire in the device's I/O convention (``harness/models/mlperf.py``): the tensor's
bytes, uint8 image bytes (MLPerf Tiny ic01/vww01), or float32 values (ad01, which answers with one
reconstruction error). Accuracy is top-1 for classifiers and the area under the ROC curve for a
float32-mse (anomaly detection) device; eval data is an ``.npz`` or an MLPerf Tiny dataset directory
(``y_labels.csv`` + ``.bin`` files, sent as they are, scored per file as the reference runner does).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness import progress
from harness.core.jobs import RunOptions
from harness.errors import ConfigError, InfraError, ModelError
from harness.lab.config import TIMER_WINDOW_SHARE, DeviceProfile, SerialSettings
from harness.mcu.serial.link import SerialLink
from harness.mcu.serial.protocol import (
    TIMER_WRAP,
    BadResponse,
    DeviceInfo,
    DeviceSilent,
    InferResult,
    OpTicks,
    ProtocolClient,
    iterations_for,
)
from harness.models import mlperf
from harness.profile.document import OpProfile, OpTime, attach_analysis

PORT_POLL_S = 0.1  # a USB board's port vanishes while it re-enumerates after flashing
PROBE_MAX_S = 1.0
WINDOW_MARGIN = 1.05  # aim a little above window_seconds so jitter does not make windows short
DEFAULT_ACCURACY_SAMPLES = 200
_SHA_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{8,64})$")


def connect(
    device_id: str,
    transport: SerialSettings,
    log: Callable[[str], None],
    trace: Callable[[str], None] | None = None,
    timer_wrap_us: int = TIMER_WRAP,
) -> ProtocolClient:
    """Open the port, get the device into a known state (reset + banner, or resync), identify it.
    `timer_wrap_us`: where the firmware's microsecond timer wraps (the profile's mcu.timer_wrap_s)."""
    link = SerialLink(transport.port, transport.baudrate, device_id, trace=trace)
    link.open()
    client = _dut(link, device_id, transport, log, timer_wrap_us)
    try:
        _pulse_reset(client, transport, "")
        client.resync()
        client.identify()
    except Exception:
        link.close()
        raise
    return client


def _dut(
    link: SerialLink,
    device_id: str,
    transport: SerialSettings,
    log: Callable[[str], None],
    timer_wrap_us: int = TIMER_WRAP,
) -> ProtocolClient:
    return ProtocolClient(
        link,
        device_id,
        timeout=transport.timeout,
        infer_timeout=transport.infer_timeout,
        boot_timeout=transport.boot_timeout,
        retries=transport.retries,
        timer_wrap_us=timer_wrap_us,
        log=log,
    )


def timer_wrap_us(profile: DeviceProfile) -> int:
    """The profile's mcu.timer_wrap_s in microseconds (2^32 without an mcu section)."""
    return round(profile.mcu.timer_wrap_s * 1e6) if profile.mcu is not None else TIMER_WRAP


def _pulse_reset(client: ProtocolClient, transport: SerialSettings, after: str) -> None:
    """Reset the board through DTR/RTS when the transport says so, and wait for its boot banner."""
    if transport.reset != "none":
        client.link.discard_input()
        client.link.pulse_reset(transport.reset)
        client.wait_boot(f"pulsing {transport.reset.upper()}{after}")


def reconnect(
    device_id: str,
    transport: SerialSettings,
    log: Callable[[str], None],
    after: str,
    trace: Callable[[str], None] | None = None,
    timer_wrap_us: int = TIMER_WRAP,
    flashed: bool = True,
) -> ProtocolClient:
    """Open the port again after the board was reset behind the host's back (flashed), let the
    firmware boot and identify it, all within `boot_timeout`. `flashed`: a flash command ran (a
    build_cmd alone resets nothing, and there is no banner to wait for).

    A flash command may return before the board has reset (a tool that resets as it exits, a
    simulated board that reloads on a signal): a command sent then is answered by the old firmware,
    and the new one's boot banner lands in the next answer. So when the port stayed (no USB
    re-enumeration), the host first waits for the banner; when it does not come within boot_timeout
    it was printed before the port was open again (opening discards it) and a resync finds the board.
    A port that vanished and came back belongs to a board that has reset already: resync at once. A
    board still booting does not answer yet: resync until it does.
    """
    deadline = time.monotonic() + transport.boot_timeout
    link = SerialLink(transport.port, transport.baudrate, device_id, trace=trace)
    vanished = False
    while True:
        try:
            link.open()
            break
        except InfraError as exc:
            vanished = True
            if time.monotonic() >= deadline:
                raise InfraError(f"{exc} ({transport.boot_timeout:.1f} s after {after})") from None
            time.sleep(PORT_POLL_S)  # polling for the device node to reappear: no event to wait for
    client = _dut(link, device_id, transport, log, timer_wrap_us)
    try:
        if transport.reset != "none":
            _pulse_reset(client, transport, f" after {after}")
        elif flashed and not vanished:
            log(f"device '{device_id}': waiting up to {transport.boot_timeout:.1f} s for the boot banner after {after}")
            try:
                client.wait_boot(after, deadline=deadline)
            except DeviceSilent:
                log(
                    f"device '{device_id}': no boot banner within {transport.boot_timeout:.1f} s after {after} "
                    f"(printed before the port was open again?); resyncing"
                )
        while True:
            try:
                client.resync()
                break
            except DeviceSilent:
                if time.monotonic() >= deadline:
                    last = link.last_line
                    raise DeviceSilent(
                        f"device '{device_id}': no answer to 'name%' on {transport.port} "
                        f"within {transport.boot_timeout:.1f} s (boot_timeout) after {after} "
                        f"({f'last line: {last[:120]!r}' if last else 'nothing received'})"
                    ) from None
        client.identify()
    except Exception:
        link.close()
        raise
    return client


# ---------------------------------------------------------------------------------- model checks


def verify_model(info: DeviceInfo, artifact_sha256: str) -> tuple[bool | None, str]:
    """(True, ...) when the device's model ID is the artifact's sha256 prefix; (None, why) when the ID
    cannot be checked (stock firmware: `ic01`, ...); raises InfraError on a mismatch."""
    mid = (info.model_id or "").strip()
    m = _SHA_ID.match(mid.lower())
    if m:
        if artifact_sha256.lower().startswith(m.group(1)):
            return True, f"model ID {mid} matches the artifact"
        raise InfraError(
            f"model ID {mid} (sha256 prefix of the model in the firmware) does not match "
            f"the artifact (sha256 {artifact_sha256[:16]}...): flash the firmware built "
            f"for this model"
        )
    what = f"model ID {mid!r}" if mid else "no model ID (m-model-[...])"
    return None, (
        f"{what} cannot be verified against the artifact (sha256 {artifact_sha256[:16]}...); "
        f"firmware generated by hilbench reports m-model-[sha256:<prefix>]"
    )


@dataclass
class TensorSpec:
    dtype: np.dtype
    shape: tuple
    scale: float | None
    zero_point: int | None

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.elements * self.dtype.itemsize

    def encode(self, x: np.ndarray) -> bytes:
        """Float sample -> the input tensor's bytes (quantised like the Linux runner, little-endian)."""
        x = np.asarray(x)
        if x.size != self.elements:
            raise ConfigError(
                f"eval sample has {x.size} values, the model input {list(self.shape)} needs {self.elements}"
            )
        dt = self.dtype
        if dt.kind in "iu":
            q: np.ndarray
            if self.scale:
                q = np.round(x.astype(np.float64) / self.scale + (self.zero_point or 0))
            else:
                q = np.round(x.astype(np.float64))
            info = np.iinfo(dt)
            arr = np.clip(q, info.min, info.max).astype(dt)
        else:
            arr = x.astype(dt)
        return arr.astype(dt.newbyteorder("<")).reshape(-1).tobytes()

    def random(self, seed: int = 0) -> bytes:
        """Deterministic input when there is no eval data (ranges as the Linux runner's)."""
        rng = np.random.default_rng(seed)
        dt = self.dtype
        if dt.kind == "f":
            arr = rng.uniform(-0.5, 0.5, self.elements).astype(dt)
        elif dt == np.int8:
            arr = rng.integers(-127, 128, self.elements).astype(dt)
        elif dt == np.uint8:
            arr = rng.integers(0, 255, self.elements).astype(dt)
        elif dt == np.int16:
            arr = rng.integers(-32767, 32768, self.elements).astype(dt)
        else:
            arr = rng.integers(0, 100, self.elements).astype(dt)
        return arr.astype(dt.newbyteorder("<")).tobytes()


def io_convention(setting: str, info: DeviceInfo) -> mlperf.Convention:
    """The device's I/O convention: the transport's ``io_convention``, or with ``auto`` the one the
    reported model ID implies (MLPerf Tiny IDs; anything else: the tensor's bytes)."""
    if setting == "auto":
        return mlperf.convention_for_model_id(info.model_id)
    return mlperf.convention(setting)


def wire_bytes(conv: mlperf.Convention, spec: TensorSpec) -> int:
    return conv.wire_bytes(spec.elements, spec.dtype.itemsize)


def encode_input(conv: mlperf.Convention, spec: TensorSpec, x: np.ndarray) -> bytes:
    """An eval sample (model-input floats) as the device expects it on the wire."""
    return mlperf.encode_sample(conv, x, spec.encode(x))


def random_input(conv: mlperf.Convention, spec: TensorSpec, seed: int = 0) -> bytes:
    """Deterministic input without eval data, in the device's convention."""
    q = spec.random(seed)
    if conv.name == "float32-mse" and spec.dtype.kind in "iu":
        x = (np.frombuffer(q, dtype=spec.dtype.newbyteorder("<")).astype(np.float64) - (spec.zero_point or 0)) * (
            spec.scale or 1.0
        )
        return mlperf.encode_sample(conv, x, q)
    return mlperf.encode_sample(conv, np.zeros(0), q)


def tensor_spec(io) -> TensorSpec:
    """From a harness.models.inspect.analysis IOTensor."""
    try:
        dtype = np.dtype(io.dtype)
    except TypeError:
        raise ConfigError(f"input tensor {io.name}: dtype {io.dtype} cannot be sent over serial") from None
    return TensorSpec(dtype, tuple(int(s) for s in io.shape), io.scale, io.zero_point)


# ---------------------------------------------------------------------------------- performance


@dataclass
class PerfPlan:
    windows: int
    window_s: float
    min_per_window: int
    max_seconds: float
    warmup_runs: int
    warmup_seconds: float
    timer_wrap_s: float = TIMER_WRAP / 1e6
    split_for_timer: bool = False  # --min-seconds asked for windows longer than the timer allows

    def config_doc(self, iterations: int, capped: bool) -> dict:
        """The plan as the result document's `config` records it (both timing modes)."""
        return {
            "windows": self.windows,
            "window_seconds": self.window_s,
            "iterations_per_window": iterations,
            "warmup_runs": self.warmup_runs,
            "warmup_seconds": self.warmup_seconds,
            "min_runs_per_window": self.min_per_window,
            "max_seconds": self.max_seconds,
            "capped_by_max_seconds": capped,
        }

    @property
    def max_window_s(self) -> float:
        """The longest window the firmware's timer measures without ambiguity (lab.config.TIMER_WINDOW_SHARE)."""
        return self.timer_wrap_s * TIMER_WINDOW_SHARE

    @classmethod
    def from_options(cls, options: RunOptions, profile: DeviceProfile) -> PerfPlan:
        b = profile.benchmark
        windows = b.windows
        wrap_s = profile.mcu.timer_wrap_s if profile.mcu is not None else TIMER_WRAP / 1e6
        limit = wrap_s * TIMER_WINDOW_SHARE
        split = False
        if options.min_seconds is not None and not math.isclose(options.min_seconds, b.windows * b.window_seconds):
            window_s = options.min_seconds / windows  # explicit --min-seconds: the total duration
            if window_s > limit:  # more, shorter windows: each must stay well inside the timer's period
                windows = math.ceil(options.min_seconds / limit)
                window_s = options.min_seconds / windows
                split = True
        else:
            window_s = b.window_seconds
            if window_s > limit:  # the profile validator refuses this; a profile built in code may not
                raise ConfigError(
                    f"{profile.source or profile.name}: benchmark.window_seconds {window_s:g} s "
                    f"does not fit the firmware timer, which wraps every {wrap_s:g} s "
                    f"(mcu.timer_wrap_s); at most {limit:g} s per window"
                )
        min_runs = options.min_runs if options.min_runs is not None else b.min_runs
        return cls(
            windows=windows,
            window_s=window_s,
            min_per_window=max(1, math.ceil(min_runs / windows)),
            max_seconds=options.max_seconds if options.max_seconds is not None else b.max_seconds,
            warmup_runs=options.warmup_runs if options.warmup_runs is not None else b.warmup_runs,
            warmup_seconds=(options.warmup_seconds if options.warmup_seconds is not None else b.warmup_seconds),
            timer_wrap_s=wrap_s,
            split_for_timer=split,
        )

    def per_window(self, est_us: float, target_s: float) -> int:
        """Inferences for a window of `target_s`, never more than the timer measures unambiguously."""
        n = iterations_for(target_s, est_us, floor=self.min_per_window)
        return max(1, min(n, int(self.max_window_s * 1e6 / max(est_us, 1e-3))))


def _runner_stats():
    """The Linux runner's `summarize`, so serial statistics are defined exactly like everyone else's."""
    from harness.device.linux_runner import summarize

    return summarize


def performance(
    client: ProtocolClient, input_bytes: bytes, plan: PerfPlan, n_outputs: int | None, say: Callable[[str], None]
) -> dict:
    load_method = client.load(input_bytes)
    if plan.split_for_timer:
        say(
            f"--min-seconds: {plan.windows} windows of {plan.window_s:.3f} s, each under half the firmware "
            f"timer's wrap period ({plan.timer_wrap_s:g} s, mcu.timer_wrap_s)"
        )
    first = client.infer(1, 0)
    if n_outputs is not None and len(first.results) != n_outputs:
        raise InfraError(
            f"device '{client.device_id}' returns {len(first.results)} output value(s) but the "
            f"model has {n_outputs}: the firmware runs a different model"
        )
    first_us = float(first.elapsed_us)
    if first_us > plan.max_window_s * 1e6:
        raise ConfigError(
            f"device '{client.device_id}': one inference takes {first_us / 1e6:.3f} s, more than "
            f"half the firmware timer's wrap period ({plan.timer_wrap_s:g} s, mcu.timer_wrap_s): "
            f"it cannot be timed unambiguously"
        )
    probe_s = min(PROBE_MAX_S, max(plan.window_s / 10.0, 0.005), plan.max_window_s)
    probe_n = iterations_for(probe_s, first_us)
    probe_w = max(plan.warmup_runs, math.ceil(plan.warmup_seconds * 1e6 / max(first_us, 1.0)))
    probe = client.infer(probe_n, probe_w, expected_s=(probe_n + probe_w) * first_us / 1e6)
    est_us = probe.per_inference_us
    n = plan.per_window(est_us, plan.window_s * WINDOW_MARGIN)
    capped = False
    if plan.windows * n * est_us > plan.max_seconds * 1e6:
        n = max(1, int(plan.max_seconds * 1e6 / (plan.windows * max(est_us, 1e-3))))
        capped = True
    say(
        f"calibrated: first inference {first_us:.0f} us, probe {probe_n} x {est_us:.1f} us -> "
        f"{plan.windows} window(s) of {n} inference(s) (~{n * est_us / 1e6:.2f} s each"
        f"{', capped by --max-seconds' if capped else ''})"
    )
    windows = []
    outputs = None
    consistent = True
    recalibrations = 0
    i = 0
    with progress.task(f"{client.device_id}: windows", plan.windows) as bar:
        while i < plan.windows:
            r = client.infer(n, plan.warmup_runs, expected_s=(n + plan.warmup_runs) * est_us / 1e6)
            if i == 0 and not capped and recalibrations < 3 and r.elapsed_us < plan.window_s * 1e6:
                # the probe overestimated the latency: every window must last window_seconds (MLPerf)
                est_us = r.per_inference_us
                n = plan.per_window(est_us, plan.window_s * WINDOW_MARGIN)
                recalibrations += 1
                say(
                    f"window 1 lasted {r.elapsed_us / 1e6:.3f} s < {plan.window_s:.3f} s; "
                    f"recalibrated to {n} inferences per window"
                )
                continue
            i += 1
            windows.append(
                {
                    "n": n,
                    "warmup": plan.warmup_runs,
                    "latency_us": r.per_inference_us,
                    "elapsed_us": r.elapsed_us,
                    "t0": r.t0,
                    "t1": r.t1,
                    "host_seconds": round(r.host_seconds, 6),
                }
            )
            if outputs is None:
                outputs = r.results
            elif r.results != outputs:
                consistent = False
            say(f"window {i}/{plan.windows}: {n} inferences, {r.per_inference_us:.2f} us/inference")
            bar.advance()
    if not consistent:
        say("warning: the outputs differ between windows for the same input (non-deterministic firmware?)")
    stats = _runner_stats()([w["latency_us"] for w in windows])
    stats["method"] = "lap windows: (T1 - T0) / N per window"
    stats["inferences"] = n * plan.windows
    return {
        "first_inference_us": first_us,
        "warmup": {"count": probe_n + probe_w, "samples_us": [probe.per_inference_us]},
        "latency_us": stats,
        "windows": windows,
        "config": {
            **plan.config_doc(n, capped),
            "timer_wrap_s": plan.timer_wrap_s,
            "windows_split_for_timer": plan.split_for_timer,
            "recalibrations": recalibrations,
            "input_transfer": load_method,
            "outputs_consistent": consistent,
        },
    }


# ---------------------------------------------------------------------------------- per-operator profile

NO_PROFILER = "firmware has no per-operator profiler (build with hil build --op-profiler)"


def op_profile(
    client: ProtocolClient, runs: int, say: Callable[[str], None], expected_s: float = 0.0, analysis=None
) -> dict | None:
    """The per-operator profile document (harness.profile.document) of `runs` single inferences on the
    input loaded for the timed windows, or None (with a warning) when the firmware has no profiler.

    Each `infer 1 0` is followed by `hb-profile%`, which reports that command's last, untimed
    inference: the timed windows are over and never recorded. Every run must list the same operators.
    `analysis` (the artifact's ModelAnalysis) adds shapes and MACs and checks the op types; a profile
    that does not match the artifact is dropped with a warning, the measurement stands."""
    if "profile" not in client.info.caps:
        say(f"warning: device '{client.device_id}': {NO_PROFILER}")
        return None
    layout: list[tuple[int, str]] | None = None
    times: list[list[float]] = []
    invoke: list[float] = []
    first: OpTicks | None = None
    for k in range(runs):
        if client.info.timestamp_mode == "energy":
            client.infer_marked(1, 0, expected_s=expected_s)
        else:
            client.infer(1, 0, expected_s=expected_s)
        got = client.op_profile()
        assert got is not None  # the capability was checked above
        ops = [(i, tag) for i, tag, _ in got.ops]
        if first is None or layout is None:
            layout, times, first = ops, [[] for _ in ops], got
            if got.lost:
                say(
                    f"warning: device '{client.device_id}': the firmware's profiler had no room for "
                    f"{got.lost} operator(s) (HB_PROFILE_MAX_OPS); the profile lists the first {len(ops)}"
                )
        elif ops != layout or (got.hz, got.clock) != (first.hz, first.clock):
            raise BadResponse(
                f"device '{client.device_id}': hb-profile run {k + 1} of {runs} lists other operators or "
                f"another clock than run 1 ({len(ops)} vs {len(layout)} ops)"
            )
        for slot, (_, _, ticks) in zip(times, got.ops):
            slot.append(float(ticks))
        invoke.append(float(got.invoke))
    assert first is not None and layout is not None  # runs >= 1
    profile = OpProfile(
        source="tflm-sim" if first.clock == "model" else "tflm-micro-profiler",
        unit="ticks",
        invocations=runs,
        ops=[OpTime(index=i, type=tag, times=t) for (i, tag), t in zip(layout, times)],
        ticks_per_us=first.hz / 1e6,
        cycles=first.clock == "cycles",
        invoke=invoke,
    )
    if analysis is not None:
        try:
            attach_analysis(profile, analysis)
        except ModelError as exc:
            say(f"warning: device '{client.device_id}': per-operator profile dropped: {exc}")
            return None
    total = profile.total
    top = sorted(profile.ops, key=lambda o: -o.mean)[:3]
    say(
        f"per-operator profile: {len(profile.ops)} ops x {runs} run(s), "
        + ", ".join(f"#{o.index} {o.type} {100 * profile.share(o):.0f} %" for o in top)
        + f" of {total:.0f} ticks"
    )
    return profile.to_dict()


def op_profile_or_warning(
    client: ProtocolClient, runs: int, say: Callable[[str], None], expected_s: float = 0.0, analysis=None
) -> dict | None:
    """`op_profile` inside a run: profile answers that stay malformed after the retries cost the
    profile (a warning naming the device and the line), never the timed windows measured before."""
    try:
        return op_profile(client, runs, say, expected_s, analysis)
    except BadResponse as exc:
        say(f"warning: no per-operator profile: {exc}")
        return None


# ---------------------------------------------------------------------------------- accuracy


def load_eval(path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        if "x" not in files:
            raise ConfigError(f"{path}: eval file has no array 'x'")
        x = np.asarray(npz["x"])
        y = np.asarray(npz["y"]).astype(np.int64) if "y" in files else None
        ref = np.asarray(npz["ref"]).astype(np.int64) if "ref" in files else None
    return x, y, ref


def load_perturbed(path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, samples, float model's classes or None) per perturbed copy in a prepared eval file."""
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        names = sorted(k[2:] for k in files if k.startswith("x@"))
        return [
            (
                n,
                np.asarray(npz[f"x@{n}"]),
                np.asarray(npz[f"ref@{n}"]).astype(np.int64) if f"ref@{n}" in files else None,
            )
            for n in names
        ]


def _predict(
    client: ProtocolClient,
    conv: mlperf.Convention,
    spec: TensorSpec,
    n_outputs: int | None,
    x: np.ndarray,
    idx: np.ndarray,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, first output) of the board for the samples `idx` of `x`, one inference each."""
    preds = np.empty(len(idx), dtype=np.int64)
    scores = np.empty(len(idx), dtype=np.float64)
    est = None
    with progress.task(f"{client.device_id}: {what}", len(idx)) as bar:
        for k, i in enumerate(idx):
            r = _infer_one(client, encode_input(conv, spec, x[i]), n_outputs, f"eval sample {int(i)}", est)
            est = r.elapsed_us / 1e6
            preds[k] = int(np.argmax(np.asarray(r.results)))
            scores[k] = r.results[0] if r.results else math.nan
            bar.advance()
    return preds, scores


def sample_indices(total: int, cap: int) -> np.ndarray:
    """At most `cap` indices spread evenly over the set (all of them when it is small enough)."""
    if cap >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, cap).round().astype(np.int64))


def _infer_one(client: ProtocolClient, data: bytes, n_outputs: int | None, what: str, est: float | None):
    client.load(data)
    if client.info.timestamp_mode == "energy":  # no laps in energy mode; accuracy needs none
        results, seconds = client.infer_marked(1, 0, expected_s=est or 0.0)
        r = InferResult(
            n=1, warmup=0, t0=0, t1=0, elapsed_us=round(seconds * 1e6), results=results, host_seconds=seconds
        )
    else:
        r = client.infer(1, 0, expected_s=est or 0.0)
    if n_outputs is not None and len(r.results) != n_outputs:
        raise InfraError(
            f"device '{client.device_id}' returned {len(r.results)} output value(s) for {what}, expected {n_outputs}"
        )
    return r


def first_dataset_input(path, conv: mlperf.Convention, spec: TensorSpec) -> bytes:
    """The first window of an MLPerf Tiny dataset's first file: the performance input."""
    ds = mlperf.read_dataset(path)
    data = ds.windows(ds.entries[0])[0]
    _check_window(ds, ds.entries[0], data, conv, spec)
    return data


def _check_window(
    ds: mlperf.Dataset, entry: mlperf.Entry, data: bytes, conv: mlperf.Convention, spec: TensorSpec
) -> None:
    want = wire_bytes(conv, spec)
    if len(data) != want:
        raise ConfigError(
            f"{ds.root / entry.file}: {len(data)} bytes per input ({ds.labels_path} line "
            f"{entry.line}), but the device takes {want} bytes (I/O convention {conv.name}, "
            f"input {list(spec.shape)} {spec.dtype.name})"
        )


def accuracy_mlperf(
    client: ProtocolClient,
    path,
    spec: TensorSpec,
    conv: mlperf.Convention,
    n_outputs: int | None,
    cap: int,
    say: Callable[[str], None],
) -> dict | None:
    """An MLPerf Tiny dataset, scored as the reference runner scores it: each file (or each of its
    windows) sent as it is; top-1 of the files' classes, or the AUC of the files' mean scores."""
    ds = mlperf.read_dataset(path)
    idx = sample_indices(len(ds.entries), cap)
    if len(idx) == 0:
        return None
    say(
        f"accuracy: {len(idx)} of {len(ds.entries)} files of MLPerf Tiny dataset {ds.root} over serial "
        f"(I/O convention {conv.name}, score {conv.score})"
    )
    t0 = time.monotonic()
    labels, preds, scores = [], [], []
    inferences = 0
    est = None
    with progress.task(f"{client.device_id}: accuracy", len(idx)) as bar:
        for i in idx:
            entry = ds.entries[int(i)]
            results = []
            for w, data in enumerate(ds.windows(entry)):
                _check_window(ds, entry, data, conv, spec)
                r = _infer_one(client, data, n_outputs, f"{entry.file} window {w}", est)
                est = r.elapsed_us / 1e6
                results.append(r.results)
                inferences += 1
            labels.append(entry.label)
            if conv.score == "auc":
                scores.append(mlperf.file_score(results))
            else:
                preds.append(mlperf.file_prediction(results))
            bar.advance()
    y = np.asarray(labels)
    doc: dict = {
        "n": int(len(idx)),
        "of": len(ds.entries),
        "path": str(ds.root),
        "dataset": "mlperf-tiny",
        "convention": conv.name,
        "score": conv.score,
        "inferences": inferences,
        "top1": None,
        "agreement": None,
        "auc": None,
        "seconds": round(time.monotonic() - t0, 3),
    }
    if conv.score == "auc":
        doc["auc"] = mlperf.roc_auc(y, scores)
        if doc["auc"] is None:
            say("accuracy: the files read hold only one class: no AUC")
    else:
        p = np.asarray(preds)
        doc.update(top1=float(np.mean(p == y)), correct=int(np.sum(p == y)))
    return doc


def accuracy(
    client: ProtocolClient,
    eval_path,
    spec: TensorSpec,
    n_outputs: int | None,
    cap: int,
    say: Callable[[str], None],
    conv: mlperf.Convention | None = None,
) -> dict | None:
    conv = conv or mlperf.CONVENTIONS["tensor"]
    if mlperf.is_dataset(eval_path):
        return accuracy_mlperf(client, eval_path, spec, conv, n_outputs, cap, say)
    x, y, ref = load_eval(eval_path)
    total = len(x)
    idx = sample_indices(total, cap)
    if len(idx) == 0:
        return None
    say(f"accuracy: {len(idx)} of {total} eval samples over serial")
    t0 = time.monotonic()
    preds, scores = _predict(client, conv, spec, n_outputs, x, idx, "accuracy")
    ys = y[idx] if y is not None else None
    refs = ref[idx] if ref is not None else None
    if conv.score == "auc":  # one anomaly score per sample: AUC against y (1 = anomalous)
        return {
            "n": int(len(idx)),
            "of": int(total),
            "top1": None,
            "agreement": None,
            "auc": mlperf.roc_auc(ys, scores) if ys is not None else None,
            "score": "auc",
            "convention": conv.name,
            "path": str(eval_path),
            "seconds": round(time.monotonic() - t0, 3),
        }
    perturbed = {}
    for name, xp, refp in load_perturbed(eval_path):  # the same samples, perturbed (harness/models/perturb.py)
        say(f"accuracy@{name}: {len(idx)} of {total} eval samples over serial")
        pp, _ = _predict(client, conv, spec, n_outputs, xp, idx, f"accuracy@{name}")
        rp = refp[idx] if refp is not None else None
        perturbed[name] = {
            "n": int(len(idx)),
            "of": int(total),
            "top1": float(np.mean(pp == ys)) if ys is not None else None,
            "agreement": float(np.mean(pp == rp)) if rp is not None else None,
        }
    return {
        "n": int(len(idx)),
        "of": int(total),
        "convention": conv.name,
        "score": "top1",
        **({"perturbed": perturbed} if perturbed else {}),
        "top1": float(np.mean(preds == ys)) if ys is not None else None,
        "agreement": float(np.mean(preds == refs)) if refs is not None else None,
        "correct": int(np.sum(preds == ys)) if ys is not None else None,
        "agree": int(np.sum(preds == refs)) if refs is not None else None,
        # per sample, for paired comparisons of two models on the same samples (hil sweep's ties)
        "indices": idx.tolist(),
        "predictions": preds.tolist(),
        "path": str(eval_path),
        "seconds": round(time.monotonic() - t0, 3),
    }
