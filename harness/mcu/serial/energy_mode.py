"""Performance and energy of a board whose firmware runs in energy mode, timed by the meter.

MLPerf Tiny's energy track: the firmware prints no laps (the UART must stay quiet), it pulses its
timestamp pin before and after the N inferences, and the energy monitor that powers the board sees
those edges on a digital input. Every window is one meter capture around one `infer N W%`; energy per
inference is the integral of power between the edges / N, latency per inference is the time between
them / N. A separate idle window (no command, same supply) gives idle power, so a user can tell the
model's energy from the board's floor. Windows are sized like the performance mode's (the same
`PerfPlan`), except that the timer limit does not apply: the meter's clock does not wrap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from harness import progress
from harness.errors import InfraError
from harness.lab.config import EnergyMeter
from harness.mcu.serial.protocol import InputRefused, ProtocolClient, iterations_for
from harness.meters.base import Meter
from harness.meters.capture import MarkedWindow, marked_window, mean_power_mw

PROBE_MAX_S = 1.0
EDGE_WAIT_S = 5.0  # after the board answered, the meter's samples of the second edge must arrive by then
WINDOW_MARGIN = 1.05


def _measure(
    client: ProtocolClient, meter: Meter, n: int, warmup: int, expected_s: float, attempts: int
) -> tuple[MarkedWindow, list[float], dict]:
    """One captured `infer n warmup`; a failed capture (bad edges, a lost answer) is redone whole."""
    last: InfraError | None = None
    for attempt in range(attempts):
        if attempt:
            client.retried += 1
            client.log(f"{last}; measuring the window again")
        meter.start()
        try:
            results, _ = client.infer_marked(n, warmup, expected_s=expected_s)
        except InputRefused:  # the same input would be refused again: not measured again
            try:
                meter.stop()
            except InfraError:
                pass
            raise
        except InfraError as exc:
            try:
                meter.stop()  # end the capture; its samples are worthless without the answer
            except InfraError:
                pass
            last = exc
            client.resync()
            continue
        meter.wait_for_edges(2, EDGE_WAIT_S)  # the second edge may still be on its way from the meter
        capture = meter.stop()
        try:
            return marked_window(capture, n, client._who(), meter.marker_name()), results, capture.meter
        except InfraError as exc:
            last = exc
    assert last is not None
    raise last


def performance(
    client: ProtocolClient,
    meter: Meter,
    spec: EnergyMeter,
    input_bytes: bytes,
    plan,
    n_outputs: int | None,
    say: Callable[[str], None],
    idle: Callable[[float], None] = time.sleep,
) -> dict:
    """The energy-mode counterpart of `session.performance`: same plan, same result shape, plus energy.
    `idle` waits out the idle window (injectable so that a test's emulated meter can be stepped)."""
    attempts = 1 + client.retries
    load_method = client.load(input_bytes)
    first, results, provenance = _measure(client, meter, 1, 0, 0.0, attempts)
    if n_outputs is not None and len(results) != n_outputs:
        raise InfraError(
            f"device '{client.device_id}' returns {len(results)} output value(s) but the "
            f"model has {n_outputs}: the firmware runs a different model"
        )
    first_us = first.latency_us
    probe_s = min(PROBE_MAX_S, max(plan.window_s / 10.0, 0.005))
    probe_n = iterations_for(probe_s, first_us)
    probe_w = max(plan.warmup_runs, math.ceil(plan.warmup_seconds * 1e6 / max(first_us, 1.0)))
    probe, _, _ = _measure(client, meter, probe_n, probe_w, (probe_n + probe_w) * first_us / 1e6, attempts)
    est_us = probe.latency_us
    n = iterations_for(plan.window_s * WINDOW_MARGIN, est_us, floor=plan.min_per_window)
    capped = False
    if plan.windows * n * est_us > plan.max_seconds * 1e6:
        n = max(1, int(plan.max_seconds * 1e6 / (plan.windows * max(est_us, 1e-3))))
        capped = True
    say(
        f"energy mode ({provenance.get('meter', meter.type)} at {provenance.get('sample_rate_hz', 0):g} Hz, "
        f"{spec.supply_mv:g} mV): first inference {first_us:.0f} us, probe {probe_n} x {est_us:.1f} us -> "
        f"{plan.windows} window(s) of {n} inference(s)"
    )
    windows = []
    outputs = None
    consistent = True
    with progress.task(f"{client.device_id}: energy windows", plan.windows) as bar:
        for i in range(plan.windows):
            w, res, _ = _measure(client, meter, n, plan.warmup_runs, (n + plan.warmup_runs) * est_us / 1e6, attempts)
            windows.append(
                {
                    "n": n,
                    "warmup": plan.warmup_runs,
                    "latency_us": w.latency_us,
                    "elapsed_us": w.latency_us * n,
                    "energy_uj": w.energy_uj,
                    "mean_power_mw": w.mean_power_mw,
                    "samples": w.samples,
                }
            )
            if outputs is None:
                outputs = res
            elif res != outputs:
                consistent = False
            say(
                f"window {i + 1}/{plan.windows}: {n} inferences, {w.latency_us:.2f} us and "
                f"{w.energy_uj:.3f} uJ per inference, {w.mean_power_mw:.2f} mW"
            )
            bar.advance()
    if not consistent:
        say("warning: the outputs differ between windows for the same input (non-deterministic firmware?)")
    meter.start()
    idle(spec.idle_seconds)
    idle_capture = meter.stop()
    idle_mw = mean_power_mw(idle_capture)
    say(f"idle: {idle_mw:.3f} mW over {idle_capture.seconds:.2f} s")
    from harness.device.linux_runner import summarize  # the statistics everyone else uses

    stats = summarize([w["latency_us"] for w in windows])
    stats["method"] = "meter timestamps: (falling edge 2 - falling edge 1) / N per window"
    stats["inferences"] = n * plan.windows
    per_window_uj = [w["energy_uj"] for w in windows]
    energy = {
        **provenance,
        "estimate": False,
        "supply_mv": spec.supply_mv,
        "marker": meter.marker_name(),
        "energy_per_inference_uj": float(sum(per_window_uj) / len(per_window_uj)),
        "windows_uj": per_window_uj,
        "mean_power_mw": float(sum(w["mean_power_mw"] for w in windows) / len(windows)),
        "idle_power_mw": idle_mw,
        "idle_seconds": round(idle_capture.seconds, 6),
        "includes_idle": True,
        "method": "integral of supply power between the timestamp edges / N (MLPerf Tiny energy mode)",
    }
    return {
        "first_inference_us": first_us,
        "warmup": {"count": probe_n + probe_w, "samples_us": [est_us]},
        "latency_us": stats,
        "windows": windows,
        "energy": energy,
        "config": {
            **plan.config_doc(n, capped),
            "timing": "energy-meter",
            "input_transfer": load_method,
            "outputs_consistent": consistent,
        },
    }
