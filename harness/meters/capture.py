"""What an external meter hands back, and energy per inference computed from it the MLPerf Tiny way.

The firmware in energy mode pulls its timestamp GPIO low once before the N timed inferences and once
after them (EEMBC EnergyRunner convention, `hb_protocol.c: timestamp()`); the meter samples current on
the supply it provides and that GPIO on a digital input. Energy per inference is the integral of
power from the first falling edge to the second, divided by N; latency per inference is the time
between the two edges divided by N, so an energy-mode board is timed by the meter's clock (the
firmware prints no laps in that mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.errors import InfraError


@dataclass
class Capture:
    """Samples between a meter's start and stop: power per sample and where the marker fell.

    Each driver turns its instrument's stream into these: the PPK2 delivers current (power = I x the
    voltage it supplies) and a logic byte per sample, the LPM01A energy per sample period and event
    lines at the D7 edges, the Joulescope current, voltage and a GPI bit stream."""

    power_w: np.ndarray
    rate_hz: float
    edges: np.ndarray  # sample indices of the marker's falling edges (first sample after the edge)
    lost_samples: int = 0  # gaps the meter's own counter revealed
    meter: dict = field(default_factory=dict)  # provenance: name, serial, firmware, rate, supply

    @property
    def seconds(self) -> float:
        return len(self.power_w) / self.rate_hz


@dataclass
class MarkedWindow:
    """One timed window measured by the meter between the firmware's two timestamp edges."""

    n: int
    edges: tuple[int, int]  # sample indices of the two falling edges
    latency_us: float  # per inference, from the meter's clock
    energy_uj: float  # per inference: integral of power between the edges / n
    mean_power_mw: float
    samples: int


def falling_edges(logic: np.ndarray, bit: int) -> np.ndarray:
    """Indices of the first low sample of every high->low transition of digital input `bit`."""
    level = (np.asarray(logic) >> bit) & 1
    return np.flatnonzero((level[1:] == 0) & (level[:-1] == 1)) + 1


def marked_window(capture: Capture, n: int, who: str, marker: str = "the marker input") -> MarkedWindow:
    """The energy window of `infer n w` from a capture that spans the whole command.

    Exactly two falling edges are expected (stock MLPerf firmware and hilbench firmware both pulse
    once before and once after the timed inferences); anything else means the marker wire is missing,
    another input is wired, or the firmware is not in energy mode: refused, never guessed."""
    edges = capture.edges
    if len(edges) != 2:
        hint = (
            "is the firmware built in energy mode and its timestamp pin wired to " + marker + "?"
            if len(edges) == 0
            else "expected one edge before and one after the inferences"
        )
        raise InfraError(
            f"{who}: {len(edges)} falling edge(s) of the timestamp marker in "
            f"{capture.seconds:.3f} s of meter samples; {hint}"
        )
    if capture.lost_samples:
        raise InfraError(
            f"{who}: the meter lost {capture.lost_samples} sample(s) during the window; the "
            f"energy integral would be short (USB too busy? lower the sample rate)"
        )
    i0, i1 = int(edges[0]), int(edges[1])
    power = capture.power_w[i0:i1]
    joules = float(np.sum(power)) / capture.rate_hz
    seconds = (i1 - i0) / capture.rate_hz
    return MarkedWindow(
        n=n,
        edges=(i0, i1),
        latency_us=seconds * 1e6 / n,
        energy_uj=joules * 1e6 / n,
        mean_power_mw=float(np.mean(power)) * 1e3 if len(power) else 0.0,
        samples=i1 - i0,
    )


def mean_power_mw(capture: Capture) -> float:
    """Mean power of a whole capture (the idle window)."""
    if not len(capture.power_w):
        return float("nan")
    return float(np.mean(capture.power_w)) * 1e3
