"""Misbehaviour on demand, so the serial host's recovery paths are tested against real bytes.

Specs (``hil mcu-sim --fault SPEC``, repeatable):
- ``drop-bytes:P``          every byte the device sends is lost with probability P (0..1).
- ``garbage-every:K``       every K-th line the device sends comes with line noise, in rotation:
                            an extra noise line, noise in front of the line, noise inside the line
                            (the last one corrupts the line: the host has to notice and recover).
- ``stall-after:CMD``       on the first command whose name is CMD (``infer``, ``db``, ``name``...)
                            the device sends the first line of its answer and then hangs for good.
- ``reboot-during-infer:K`` on the K-th ``infer`` command (counted from start) the device reboots
                            mid-response: boot banner, and the loaded input is forgotten.
- ``stall-from-infer:K``    from the K-th ``infer`` command on (counted from start, across resets
                            and power cycles) every ``infer`` sends the first line of its answer and
                            hangs: a board that hangs again after a power cycle.

``stall-after`` and ``stall-from-infer`` hang until the board is reset: with ``--power-signals`` a
power cycle (SIGUSR1, SIGUSR2) does that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.errors import ConfigError

# Line noise never contains protocol characters (letters, digits, '-', '[', ']', '%', CR, LF), so it
# can corrupt a line but never forge one.
NOISE = bytes(b for b in b"#@!~^&*?<>{}|;:=+_$" + bytes(range(0x80, 0xFF)))

KINDS = ("drop-bytes", "garbage-every", "stall-after", "reboot-during-infer", "stall-from-infer")


@dataclass
class Faults:
    drop_p: float = 0.0
    garbage_every: int = 0
    stall_after: str | None = None
    reboot_on_infer: int = 0
    stall_from_infer: int = 0
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _lines: int = 0

    @classmethod
    def parse(cls, specs: list[str], seed: int = 0) -> Faults:
        f = cls(seed=seed, rng=random.Random(seed))
        for spec in specs or []:
            kind, _, arg = spec.partition(":")
            try:
                if kind == "drop-bytes":
                    f.drop_p = float(arg)
                    if not 0.0 <= f.drop_p < 1.0:
                        raise ValueError
                elif kind == "garbage-every":
                    f.garbage_every = int(arg)
                    if f.garbage_every < 1:
                        raise ValueError
                elif kind == "stall-after":
                    if not arg or " " in arg:
                        raise ValueError
                    f.stall_after = arg
                elif kind == "reboot-during-infer":
                    f.reboot_on_infer = int(arg)
                    if f.reboot_on_infer < 1:
                        raise ValueError
                elif kind == "stall-from-infer":
                    f.stall_from_infer = int(arg)
                    if f.stall_from_infer < 1:
                        raise ValueError
                else:
                    raise ConfigError(f"--fault {spec}: unknown fault '{kind}' (known: {', '.join(KINDS)})")
            except ValueError:
                raise ConfigError(
                    f"--fault {spec}: bad argument '{arg}' (drop-bytes:P with 0<=P<1, "
                    f"garbage-every:K, stall-after:CMD, reboot-during-infer:K and stall-from-infer:K with K>=1)"
                ) from None
        return f

    @property
    def active(self) -> list[str]:
        out = []
        if self.drop_p:
            out.append(f"drop-bytes:{self.drop_p}")
        if self.garbage_every:
            out.append(f"garbage-every:{self.garbage_every}")
        if self.stall_after:
            out.append(f"stall-after:{self.stall_after}")
        if self.reboot_on_infer:
            out.append(f"reboot-during-infer:{self.reboot_on_infer}")
        if self.stall_from_infer:
            out.append(f"stall-from-infer:{self.stall_from_infer}")
        return out

    def _noise(self) -> bytes:
        return bytes(self.rng.choice(NOISE) for _ in range(self.rng.randint(3, 12)))

    def line(self, payload: bytes) -> bytes:
        """One outgoing line (without CRLF) -> the bytes that actually leave, CRLF included."""
        out = payload + b"\r\n"
        if self.garbage_every:
            self._lines += 1
            if self._lines % self.garbage_every == 0:
                kind = (self._lines // self.garbage_every) % 3
                if kind == 0:
                    out = self._noise() + b"\r\n" + out
                elif kind == 1:
                    out = self._noise() + out
                else:
                    cut = self.rng.randint(1, max(1, len(payload) - 1))
                    out = payload[:cut] + self._noise() + payload[cut:] + b"\r\n"
        return self.drop(out)

    def drop(self, data: bytes) -> bytes:
        if not self.drop_p:
            return data
        return bytes(b for b in data if self.rng.random() >= self.drop_p)
