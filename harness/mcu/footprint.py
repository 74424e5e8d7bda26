"""Measured flash and static RAM of a built firmware, read from its ELF file with pyelftools.

Sections are classified by their ELF flags, the way ``size`` (Berkeley format) of binutils does it:

- ``text``: allocated, read-only, executable (code, vector table);
- ``rodata``: allocated, read-only, not executable (constants, the model array, ``.ARM.exidx``);
- ``data``: allocated, writable, with contents in the file (initialised variables: stored in flash,
  copied to RAM at boot);
- ``bss``: allocated, writable, no contents (zero-initialised variables, the tensor arena, stacks and
  heaps the linker script reserves).

flash = text + rodata + data; static RAM = data + bss. Sections that are not allocated (debug
information, symbol tables, comments) are not on the device. ``text`` + ``rodata`` is what
``size`` calls ``text``. Caveat: on chips that run code from RAM (ESP32 ``.iram0.text``) such code is
counted as flash only; the ELF is what the build produced, before any image conversion (``esptool``).

pyelftools is in the public domain (the Unlicense; its bundled ``construct`` is MIT), compatible
with hilbench's Apache-2.0 licence.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import ConfigError

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
FOOTPRINT_FILE = "footprint.json"  # in <bundle>/logs/, next to the build log


@dataclass
class Footprint:
    elf: str
    sha256: str
    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    sections: dict[str, dict] = field(default_factory=dict)
    machine: str = ""
    measured: bool = True  # read from a built ELF (never an estimate)

    @property
    def flash_bytes(self) -> int:
        return self.text_bytes + self.rodata_bytes + self.data_bytes

    @property
    def ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes

    def to_json(self) -> dict:
        d = asdict(self)
        d["flash_bytes"] = self.flash_bytes
        d["ram_bytes"] = self.ram_bytes
        return d

    @classmethod
    def from_json(cls, d: dict) -> Footprint:
        keys = ("elf", "sha256", "text_bytes", "rodata_bytes", "data_bytes", "bss_bytes", "sections", "machine")
        return cls(**{k: d[k] for k in keys if k in d})


def measure_elf(path: Path | str) -> Footprint:
    """Flash/RAM of an ELF file; ConfigError naming the file when it is missing or not an ELF."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    assert SH_FLAGS.SHF_ALLOC == SHF_ALLOC and SH_FLAGS.SHF_WRITE == SHF_WRITE  # the flags used below
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the firmware ELF ({exc.strerror or exc})") from None
    if raw[:4] != b"\x7fELF":
        raise ConfigError(
            f"{path}: not an ELF file (the firmware image the build wrote must be an ELF; set mcu.firmware_elf to it)"
        )
    import io

    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    sections: dict[str, dict] = {}
    try:
        elf = ELFFile(io.BytesIO(raw))
        machine = str(elf["e_machine"])
        for sec in elf.iter_sections():
            flags = int(sec["sh_flags"])
            size = int(sec["sh_size"])
            if not flags & SHF_ALLOC or size == 0:
                continue
            if sec["sh_type"] == "SHT_NOBITS":
                if not flags & SHF_WRITE:
                    continue  # reserved address space, neither flash nor writable RAM
                kind = "bss"
            elif flags & SHF_WRITE:
                kind = "data"
            elif flags & SHF_EXECINSTR:
                kind = "text"
            else:
                kind = "rodata"
            sizes[kind] += size
            sections[sec.name] = {"kind": kind, "bytes": size, "address": int(sec["sh_addr"])}
    except Exception as exc:  # pyelftools raises ELFError and its parser's own errors on a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(f"{path}: malformed ELF file ({reason})") from None
    return Footprint(
        elf=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        text_bytes=sizes["text"],
        rodata_bytes=sizes["rodata"],
        data_bytes=sizes["data"],
        bss_bytes=sizes["bss"],
        sections=sections,
        machine=machine,
    )


def find_elf(bundle: Path, pattern: str | None, since: float | None = None) -> tuple[Path | None, str]:
    """The firmware ELF of a build in `bundle`: `pattern` (mcu.firmware_elf, relative to the bundle,
    glob characters allowed), else the one ``*.elf`` in the bundle (of several, the one modified since
    `since`, when the build started).
    Returns (path or None, what was looked for - for the message when nothing is found)."""
    bundle = Path(bundle)
    if pattern:
        candidate = Path(pattern)
        if candidate.is_absolute():
            found = [candidate] if candidate.is_file() else []
        else:
            found = sorted(p for p in bundle.glob(pattern) if p.is_file())
        what = f"mcu.firmware_elf {pattern!r}"
        if len(found) == 1:
            return found[0], what
        if len(found) > 1:
            return None, f"{what} matches {len(found)} files ({', '.join(str(p) for p in found[:4])})"
        return None, f"{what}: no such file in {bundle}"
    elves = [p for p in bundle.rglob("*.elf") if p.is_file() and "logs" not in p.relative_to(bundle).parts]
    if len(elves) > 1 and since is not None:  # several: the one this build (re)wrote
        elves = [p for p in elves if p.stat().st_mtime >= since - 1.0] or elves
    if len(elves) == 1:
        return elves[0], "the build's *.elf"
    if not elves:
        return None, f"no *.elf written by the build in {bundle} (set mcu.firmware_elf)"
    return None, (
        f"{len(elves)} *.elf files in {bundle} ({', '.join(str(p) for p in sorted(elves)[:4])}); "
        f"set mcu.firmware_elf to the firmware's"
    )


def record(bundle: Path, fp: Footprint) -> Path:
    """Keep the footprint next to the build log (reused when a cached build is flashed again)."""
    out = Path(bundle) / "logs" / FOOTPRINT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**fp.to_json(), "recorded": time.time()}, indent=1) + "\n")
    return out


def recorded(bundle: Path) -> Footprint | None:
    """The footprint of the bundle's last successful build, if it was measured and the ELF is unchanged."""
    path = Path(bundle) / "logs" / FOOTPRINT_FILE
    try:
        d = json.loads(path.read_text())
        fp = Footprint.from_json(d)
        elf = Path(fp.elf)
        if not elf.is_file() or hashlib.sha256(elf.read_bytes()).hexdigest() != fp.sha256:
            return None
        return fp
    except (OSError, ValueError, TypeError, KeyError):
        return None
