"""What `hil devices check` finds out about one device: a row of its table and its problems.

A module of its own because both the checks of directly wired devices (`harness.transports.check`)
and those of labgrid places (`harness.transports.labgrid.check`) fill it in, and the first hands
labgrid devices to the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADERS = [
    "device",
    "transport",
    "reach",
    "host key",
    "python",
    "runtime",
    "numpy",
    "disk free",
    "RAM free",
    "governor",
    "temp",
    "throttled",
    "energy",
    "verdict",
]


@dataclass
class CheckResult:
    device: str
    transport: str
    reach: str = "-"
    host_key: str = "-"
    python: str | None = None
    probe: dict | None = None
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    energy: str = "-"  # the profile's energy meter as found on the device

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "SKIP"
        return "FAIL" if self.problems else "OK"

    def row(self) -> list[str]:
        p = self.probe or {}
        rt = p.get("runtime") or {}
        npy = p.get("numpy") or {}
        py = p.get("python") or {}
        thr = p.get("throttle") or {}
        if not thr.get("available"):
            throttled = "-"
        elif thr.get("now"):
            throttled = "NOW: " + ",".join(thr["now"])
        elif thr.get("since_boot"):
            throttled = "since boot: " + ",".join(thr["since_boot"])
        else:
            throttled = "no" if thr.get("now") is not None else "?"
        if p:
            runtime = f"{rt['name']} {rt['version']}" if rt.get("name") else "MISSING"
            numpy = npy.get("version") or "MISSING"
            python = py.get("version", "?") + ("" if py.get("ok", True) else " (too old)")
        else:
            runtime = numpy = python = "-"
        temp = p.get("cpu_temp_c")
        return [
            self.device,
            self.transport,
            self.reach,
            self.host_key,
            python,
            runtime,
            numpy,
            size_text((p.get("disk") or {}).get("free_bytes")),
            size_text(((p.get("memory") or {}).get("available_kb") or 0) * 1024 or None),
            p.get("governor") or "-",
            f"{temp:.1f} C" if isinstance(temp, (int, float)) else "-",
            throttled,
            self.energy,
            self.verdict,
        ]


def size_text(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"
