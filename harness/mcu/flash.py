"""Build and flash a bundle with the profile's own commands (`mcu.build_cmd`, `mcu.flash_cmd`).

The commands are the user's toolchain (``pio run``, ``west build``, ``idf.py flash``): hilbench only
fills in placeholders, runs them in the bundle directory and keeps their output in
``<bundle>/logs/<step>.log``.

Placeholders: ``{bundle}`` (absolute bundle directory), ``{port}`` and ``{baudrate}`` (the device's
serial transport), ``{device}`` (device id), ``{profile}`` (profile name), ``{model_id}``.
Commands are split like a POSIX shell (``shlex``) and run without a shell; placeholders are filled
per word, so a value with spaces stays one argument. For shell syntax (``&&``, pipes, ``cd``) write
``sh -c '...'``.

``build_and_flash`` is the same for automatic flashing before a measurement (``hil run`` on a serial
device): the flash log is per device (``logs/flash-<device>.log``), and a build that already
succeeded in the (cached) bundle with the same command line is not run again when a flash_cmd
follows it.

After every successful build_cmd the firmware ELF (``mcu.firmware_elf``, else the one ``*.elf`` the
build wrote) is measured (``harness/mcu/footprint.py``: flash and static RAM) and recorded in
``logs/footprint.json``, where ``hil run`` picks it up as measured ``flash_bytes``/``ram_bytes``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, InfraError
from harness.lab.config import Device, DeviceProfile
from harness.mcu import footprint

_log = logging.getLogger(__name__)

PLACEHOLDERS = ("bundle", "port", "baudrate", "device", "profile", "model_id")
DEFAULT_TIMEOUT = 1800.0
LOG_TAIL_LINES = 15


@dataclass
class StepResult:
    step: str  # build | flash
    argv: list[str]
    returncode: int
    seconds: float
    log: Path
    started: float = 0.0  # time.time() when the command started
    footprint: footprint.Footprint | None = None  # build: the measured firmware ELF


def measure_build(
    profile: DeviceProfile,
    bundle: Path,
    values: dict[str, str],
    started: float | None,
    where: str,
    log: Callable[[str], None] = _log.info,
) -> footprint.Footprint | None:
    """Measure the ELF a build_cmd just wrote and record it in the bundle; None (logged) when the
    build left no single ELF to measure. A firmware_elf the profile names that is missing is an error."""
    pattern = profile.mcu.firmware_elf if profile.mcu is not None else None
    if pattern:
        try:
            pattern = pattern.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{where}: bad placeholder in mcu.firmware_elf {pattern!r}: {exc} "
                f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            ) from None
    elf, what = footprint.find_elf(bundle, pattern, since=started)
    if elf is None:
        if pattern:
            raise ConfigError(f"{where}: firmware ELF not found after the build: {what}")
        log(f"footprint: not measured: {what}")
        return None
    fp = footprint.measure_elf(elf)
    footprint.record(bundle, fp)
    log(
        f"footprint: {elf}: flash {fp.flash_bytes:,} bytes (text {fp.text_bytes:,} + rodata "
        f"{fp.rodata_bytes:,} + data {fp.data_bytes:,}), static RAM {fp.ram_bytes:,} bytes (data "
        f"{fp.data_bytes:,} + bss {fp.bss_bytes:,}), measured"
    )
    return fp


def placeholder_values(
    device: Device, profile: DeviceProfile, bundle: Path, manifest: dict | None = None
) -> dict[str, str]:
    tr = device.transport
    return {
        "bundle": str(Path(bundle).resolve()),
        "port": getattr(tr, "port", "") or "",
        "baudrate": str(getattr(tr, "baudrate", "") or (profile.mcu.baudrate if profile.mcu else "")),
        "device": device.id,
        "profile": profile.name,
        "model_id": ((manifest or {}).get("model") or {}).get("model_id", ""),
    }


def expand_command(template: str, values: dict[str, str], where: str) -> list[str]:
    """Split `template` into argv and fill the placeholders word by word."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot parse command {template!r}: {exc}") from None
    if not words:
        raise ConfigError(f"{where}: empty command")
    out = []
    for w in words:
        for _, field, _, _ in string.Formatter().parse(w):
            if field is not None and field not in values:
                raise ConfigError(
                    f"{where}: unknown placeholder {{{field}}} in {template!r} "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
        try:
            out.append(w.format(**values))
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"{where}: bad placeholder syntax in {template!r}: {exc}") from None
    return out


def run_step(
    step: str,
    argv: list[str],
    cwd: Path,
    log_path: Path,
    where: str,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = _log.info,
) -> StepResult:
    """Run one command with stdout+stderr into log_path; raise a clear error if it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = shlex.join(argv)
    log(f"{step}: {shown}  (log: {log_path})")
    t0 = time.monotonic()
    t_wall = time.time()
    with open(log_path, "w") as fh:
        fh.write(f"$ {shown}\n# cwd: {cwd}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env={**os.environ, "HILBENCH_BUNDLE": str(cwd)},
            )
        except FileNotFoundError:
            fh.write(f"# command not found: {argv[0]}\n")
            raise ConfigError(
                f"{where}: {step} command not found: {argv[0]!r} (in `{shown}`); "
                f"install it or fix the profile; log: {log_path}"
            ) from None
        except subprocess.TimeoutExpired:
            fh.write(f"\n# timed out after {timeout:.0f} s\n")
            raise InfraError(
                f"{where}: {step} command `{shown}` timed out after {timeout:.0f} s; log: {log_path}"
            ) from None
        except PermissionError as exc:
            raise ConfigError(
                f"{where}: {step} command {argv[0]!r} is not executable ({exc}); log: {log_path}"
            ) from None
    seconds = time.monotonic() - t0
    with open(log_path, "a") as fh:
        fh.write(f"\n# exit code {proc.returncode} after {seconds:.1f} s\n")
    res = StepResult(step, argv, proc.returncode, seconds, log_path, started=t_wall)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[2:-1][-LOG_TAIL_LINES:]
        for line in tail:
            log(f"  | {line}")
        raise InfraError(f"{where}: {step} command `{shown}` failed with exit code {proc.returncode}; log: {log_path}")
    log(f"{step}: ok in {seconds:.1f} s")
    return res


def deploy_bundle(
    device: Device,
    profile: DeviceProfile,
    bundle: Path,
    manifest: dict,
    *,
    build: bool = True,
    flash: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = _log.info,
) -> list[StepResult]:
    """Run build_cmd then flash_cmd of the device's profile in the bundle directory."""
    if profile.mcu is None:
        raise ConfigError(
            f"{profile.source or profile.name}: profile '{profile.name}' of device "
            f"'{device.id}' has no mcu: section (build_cmd / flash_cmd)"
        )
    built_for = (manifest.get("profile") or {}).get("name")
    if built_for and built_for != profile.name:
        raise ConfigError(
            f"{bundle}: bundle was built for profile '{built_for}' but device "
            f"'{device.id}' has profile '{profile.name}'; rebuild with "
            f"`hil build --device {device.id}`"
        )
    values = placeholder_values(device, profile, bundle, manifest)
    steps = []
    for step, enabled, template in (("build", build, profile.mcu.build_cmd), ("flash", flash, profile.mcu.flash_cmd)):
        if not enabled:
            continue
        where = f"{profile.source or profile.name}: mcu.{step}_cmd (device '{device.id}')"
        if not template:
            log(f"{step}: profile '{profile.name}' has no mcu.{step}_cmd; skipped")
            continue
        argv = expand_command(template, values, where)
        if step == "build":
            (Path(bundle).resolve() / "logs" / footprint.FOOTPRINT_FILE).unlink(missing_ok=True)
        res = run_step(
            step, argv, Path(bundle).resolve(), Path(bundle).resolve() / "logs" / f"{step}.log", where, timeout, log
        )
        if step == "build":
            res.footprint = measure_build(profile, Path(bundle).resolve(), values, res.started, where, log)
        steps.append(res)
    if not steps:
        raise ConfigError(
            f"{profile.source or profile.name}: profile '{profile.name}' sets neither "
            "mcu.build_cmd nor mcu.flash_cmd; nothing to deploy"
        )
    return steps


BUILD_STAMP = "build.ok"  # in <bundle>/logs/: the command line of the last successful build_cmd


def build_and_flash(
    device: Device,
    profile: DeviceProfile,
    bundle: Path,
    manifest: dict,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = _log.info,
) -> list[StepResult]:
    """Run build_cmd (unless it already succeeded here and a flash_cmd follows) then flash_cmd."""
    from harness.mcu.bundle import file_lock

    if profile.mcu is None or not (profile.mcu.build_cmd or profile.mcu.flash_cmd):
        raise ConfigError(
            f"{profile.source or profile.name}: profile '{profile.name}' sets neither "
            f"mcu.build_cmd nor mcu.flash_cmd; device '{device.id}' cannot be flashed"
        )
    bundle = Path(bundle).resolve()
    logs = bundle / "logs"
    values = placeholder_values(device, profile, bundle, manifest)
    steps = []
    if profile.mcu.build_cmd:
        where = f"{profile.source or profile.name}: mcu.build_cmd (device '{device.id}')"
        argv = expand_command(profile.mcu.build_cmd, values, where)
        stamp = logs / BUILD_STAMP
        with file_lock(logs / ".build.lock"):  # one build at a time in a bundle directory
            done = stamp.exists() and stamp.read_text() == json.dumps(argv)
            if done and profile.mcu.flash_cmd:
                log(f"build: already built in {bundle} (log: {logs / 'build.log'}), not rebuilding")
            else:
                stamp.unlink(missing_ok=True)
                (logs / footprint.FOOTPRINT_FILE).unlink(missing_ok=True)
                res = run_step("build", argv, bundle, logs / "build.log", where, timeout, log)
                res.footprint = measure_build(profile, bundle, values, res.started, where, log)
                steps.append(res)
                stamp.write_text(json.dumps(argv))
    if profile.mcu.flash_cmd:
        where = f"{profile.source or profile.name}: mcu.flash_cmd (device '{device.id}')"
        argv = expand_command(profile.mcu.flash_cmd, values, where)
        steps.append(run_step("flash", argv, bundle, logs / f"flash-{device.id}.log", where, timeout, log))
    return steps
