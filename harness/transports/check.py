"""`hil devices check`: can each device run the benchmark right now, and if not, what to do about it.

The device runner's probe (`linux_runner.py --probe`) runs on every Linux device: as a subprocess for
`local`, fed on stdin to the device's python for `ssh`. Serial (MCU) devices are asked who they are over the
MLPerf Tiny protocol (name, profile, model id, negotiated extensions, arena), the only probe a stock
firmware answers.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

from harness.core.resources import runner_file
from harness.errors import ConfigError, InfraError
from harness.lab.config import EXTERNAL_METERS, Device, DeviceProfile, SerialSettings
from harness.meters.ondevice import HwmonMeter
from harness.transports.base import transport_settings
from harness.transports.check_result import CheckResult, size_text

PROBE_SCHEMA = "hilbench.probe/1"
MIN_FREE_BYTES = 100 * 1024 * 1024
PACKAGES = "numpy ai-edge-litert"


def parse_probe(stdout: str, returncode: int, stderr_tail: str) -> dict | None:
    text = stdout.strip()
    try:
        doc = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or doc.get("schema") != PROBE_SCHEMA:
        return None
    return doc


def _python_missing(res: CheckResult, returncode: int, tail: str, where: str) -> None:
    last = tail.strip().splitlines()[-1] if tail.strip() else f"exit code {returncode}"
    if returncode == 127 or "not found" in last or "No such file" in last:
        res.problems.append(f"python '{res.python}' not found {where} ({last})")
    elif "SyntaxError" in last:
        res.problems.append(f"python '{res.python}' is too old to run the device runner (needs 3.9+): {last}")
    else:
        res.problems.append(f"python '{res.python}' could not run the probe: {last}")


def assess(res: CheckResult, remote: bool) -> None:
    p = res.probe
    assert p is not None, "assess() is only called once the probe has parsed"
    exe = (p.get("python") or {}).get("executable") or res.python
    py = p.get("python") or {}
    if not py.get("ok", False):
        res.problems.append(f"python {py.get('version')} at {exe} is too old (the runner needs 3.9+)")
    missing = []
    if (p.get("numpy") or {}).get("error"):
        missing.append(f"numpy ({p['numpy']['error']})")
    rt = p.get("runtime") or {}
    if not rt.get("name"):
        missing.append("a TFLite runtime (" + "; ".join(rt.get("errors") or []) + ")")
    if missing:
        res.problems.append(f"not importable by {exe}: " + ", ".join(missing))
        where = "into the device's Python" if remote else "into this Python"
        res.hints.append(
            f"install {where}: `{exe} -m pip install {PACKAGES}` (tflite-runtime on older "
            f"systems); or make a venv: `python3 -m venv ~/hilbench-venv && "
            f"~/hilbench-venv/bin/pip install {PACKAGES}` and set `python: "
            f"~/hilbench-venv/bin/python` in the device's transport"
        )
    disk = p.get("disk") or {}
    free = disk.get("free_bytes")
    if free is not None and free < MIN_FREE_BYTES:
        res.problems.append(f"only {size_text(free)} free in {disk.get('workdir')} (need {size_text(MIN_FREE_BYTES)})")
        res.hints.append("free some space or point the transport's workdir at a larger file system")
    thr = p.get("throttle") or {}
    if thr.get("now"):
        res.notes.append(
            f"throttling now ({', '.join(thr['now'])}, raw {thr.get('raw')}): results will be "
            "flagged; check the power supply and cooling"
        )
    if p.get("governor") and p["governor"] != "performance":
        res.notes.append(f"CPU governor is '{p['governor']}'; 'performance' gives steadier latencies")


def assess_energy(res: CheckResult, prof: DeviceProfile) -> None:
    """Is the profile's energy meter on the device? Without it every result lacks energy (the runner
    warns and measures the rest), so a configured hwmon sensor that is missing fails the check."""
    meter = prof.energy_meter
    info = (res.probe or {}).get("energy")
    if meter.type in ("none", "estimate"):
        res.energy = meter.type
        return
    if meter.type in EXTERNAL_METERS:
        res.energy = f"{meter.type} (external, not checked)"
        return
    if not isinstance(info, dict):
        res.energy = f"{meter.type} ?"
        res.notes.append("the device runner did not report its energy meters; the profile's meter is unchecked")
        return
    if meter.type == "rapl":
        rapl = info.get("rapl") or {}
        if rapl.get("readable"):
            res.energy = "rapl ok"
        else:
            res.energy = "rapl MISSING"
            res.notes.append(
                f"energy meter rapl: {rapl.get('path')} is not readable here (no RAPL, or readable "
                f"by root only), so results have no energy; profile '{prof.name}' can say "
                f"energy_meter: {{type: none}}"
            )
        return
    if meter.type == "pmic":
        _assess_pmic(res, prof, info.get("pmic"))
        return
    want = HwmonMeter(meter, f"profile '{prof.name}'").power_file()
    folder, name = posixpath.split(want)
    sensors = [s for s in info.get("hwmon") or [] if isinstance(s, dict)]
    sensor = next((s for s in sensors if folder in (s.get("path"), s.get("real_path"))), None)
    power = (sensor or {}).get("power") or {}
    if sensor is not None and name in power and power[name] is None:
        res.energy = f"hwmon ok ({sensor.get('name') or '?'})"
        return
    if sensor is None and not folder.startswith("/sys/class/hwmon/"):
        res.energy = "hwmon ?"
        res.notes.append(
            f"energy meter: cannot check {want} (not a /sys/class/hwmon path); a missing meter "
            "gives results without energy"
        )
        return
    res.energy = "hwmon MISSING"
    if sensor is None:
        why = "does not exist on the device"
    elif name not in power:
        why = (
            f"does not exist ({folder} is sensor '{sensor.get('name') or '?'}' with "
            f"{', '.join(power) or 'no power inputs'})"
        )
    else:
        why = f"is not usable ({power[name]})"
    res.problems.append(
        f"energy meter {want} (profile '{prof.name}', energy_meter.path) {why}; results would have no energy"
    )
    candidates = [
        f"{s.get('path')}/{p} ('{s.get('name') or '?'}')"
        for s in sensors
        for p, err in (s.get("power") or {}).items()
        if err is None
    ]
    where = f"set energy_meter.path in {prof.source or 'profile ' + repr(prof.name)}"
    if candidates:
        res.hints.append(
            f"power sensors on the device: {', '.join(candidates)}; {where} to one of them "
            "(hwmon numbers can change between boots)"
        )
    else:
        res.hints.append(
            f"the device has no readable hwmon power sensor: {where}, or use energy_meter: "
            "{type: none} (or type: estimate with datasheet powers, reported as an estimate)"
        )


def _assess_pmic(res: CheckResult, prof: DeviceProfile, pmic: object) -> None:
    """A Raspberry Pi 5's PMIC, read once by the probe: a board without it (any other board, or a Pi 5
    whose firmware predates `pmic_read_adc`) would give results without energy."""
    if not isinstance(pmic, dict):
        res.energy = "pmic ?"
        res.notes.append(
            "the device runner did not report the PMIC (an older runner?); the profile's meter is unchecked"
        )
        return
    if pmic.get("error") is None and isinstance(pmic.get("power_mw"), (int, float)):
        res.energy = f"pmic ok ({pmic['power_mw']:.0f} mW)"
        return
    res.energy = "pmic MISSING"
    res.problems.append(
        f"energy meter pmic (profile '{prof.name}'): {pmic.get('error') or 'no reading'}; results would have no energy"
    )
    res.hints.append(
        f"the pmic meter is a Raspberry Pi 5's own; for another board set energy_meter in "
        f"{prof.source or 'profile ' + repr(prof.name)} to {{type: hwmon, path: ...}}, {{type: none}} or "
        "{type: estimate, ...} (reported as an estimate)"
    )


def _check_local(dev: Device, prof: DeviceProfile) -> CheckResult:
    res = CheckResult(dev.id, "local", reach="local")
    res.python = getattr(dev.transport, "python", None) or sys.executable
    workdir = os.environ.get("HILBENCH_CACHE") or os.path.join("~", ".cache", "hilbench")
    try:
        proc = subprocess.run(
            [res.python, str(runner_file()), "--probe", "--workdir", workdir],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        res.problems.append(f"python '{res.python}' cannot run: {exc}")
        res.hints.append("set `python:` in the device's transport to an existing interpreter")
        return res
    res.probe = parse_probe(proc.stdout, proc.returncode, proc.stderr)
    if res.probe is None:
        _python_missing(res, proc.returncode, proc.stderr, "on this host")
        return res
    assess(res, remote=False)
    assess_energy(res, prof)
    return res


def _check_ssh(dev: Device, prof: DeviceProfile, log: Callable[[str], None]) -> CheckResult:
    from harness.transports.ssh import hostkeys
    from harness.transports.ssh.connect import SshAuthError, SshUnreachable, ssh_settings
    from harness.transports.ssh.transport import SshTransport

    t = ssh_settings(dev)
    res = CheckResult(dev.id, "ssh")
    backend = SshTransport(dev, prof, log)
    res.python = t.python or prof.python
    prefix = f"device '{dev.id}': "
    try:
        try:
            backend.open()
        except hostkeys.HostKeyError as exc:
            res.reach, res.host_key = "ok", exc.status.upper()
            res.problems.append(str(exc).removeprefix(prefix))
            if exc.status == "unknown":
                res.hints.append(
                    f"compare {exc.fingerprint} with `ssh-keygen -lf /etc/ssh/ssh_host_"
                    f"{_keyfile(exc.key)}_key.pub` on the device, then `hil devices trust "
                    f"{dev.id}` (or set trust_on_first_use: true)"
                )
            elif exc.status == "revoked":
                res.hints.append(
                    "a revoked key is never accepted: give the device new host keys (and find out "
                    f"why the old one was revoked), then `hil devices trust {dev.id}`"
                )
            else:
                res.hints.append(
                    "find out why the key changed before trusting anything; if the device was "
                    f"reinstalled remove the old entry and run `hil devices trust {dev.id}`"
                )
            return res
        except SshAuthError as exc:
            res.reach, res.host_key = "auth FAIL", "known"
            res.problems.append(str(exc).removeprefix(prefix))
            user = t.user or "USER"
            res.hints.append(
                f"authorize your public key on the device: `ssh-copy-id -i KEY.pub -p {t.port} "
                f"{user}@{t.host}`, or set key_file / use_agent in the inventory"
            )
            return res
        except SshUnreachable as exc:
            res.reach = "FAIL"
            res.problems.append(str(exc).removeprefix(prefix))
            res.hints.append(
                f"is {t.host}:{t.port} powered, on the network and running sshd? "
                f"(`ssh -p {t.port} {t.user + '@' if t.user else ''}{t.host}`)"
            )
            return res
        except InfraError as exc:  # connected, but e.g. the work dir cannot be created
            res.reach = "ok"
            res.problems.append(str(exc).removeprefix(prefix))
            return res
        except ConfigError as exc:
            res.problems.append(str(exc).removeprefix(prefix))
            return res
        conn = backend.connection
        assert conn is not None, "open() returned without raising, so it connected"
        res.reach = "ok"
        res.host_key = "trusted now" if conn.trusted_now else "known"
        res.python = backend.python()
        try:
            rc, out, tail = backend.probe(runner_file().read_bytes())
        except Exception as exc:
            res.problems.append(f"probe failed: {exc or type(exc).__name__}")
            return res
        res.probe = parse_probe(out.decode("utf-8", "replace"), rc, tail)
        if res.probe is None:
            _python_missing(res, rc, tail, "on the device")
            res.hints.append(
                f"set `python:` in the device's transport (or the profile '{prof.name}') to the "
                f"device venv's interpreter, e.g. ~/hilbench-venv/bin/python"
            )
            return res
        assess(res, remote=True)
        assess_energy(res, prof)
        return res
    finally:
        backend.close()


def _keyfile(key) -> str:
    name = key.get_name()
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(name, "ecdsa" if "ecdsa" in name else name)


def check_device(
    dev: Device, prof: DeviceProfile, log: Callable[[str], None], acquire_places: bool = False
) -> CheckResult:
    """`acquire_places`: hold a labgrid device's place and probe its board (default: look at the place
    through the coordinator only)."""
    kind = dev.transport.type
    if kind == "local":
        return _check_local(dev, prof)
    if kind == "ssh":
        return _check_ssh(dev, prof, log)
    if kind == "labgrid":
        from harness.transports.labgrid.check import check_place

        return check_place(dev, prof, log, acquire=acquire_places, check_board=check_device)
    return _check_serial(dev, prof, log)


def _check_serial(dev: Device, prof: DeviceProfile, log: Callable[[str], None]) -> CheckResult:
    t = transport_settings(dev, SerialSettings, "serial")
    res = CheckResult(dev.id, "serial", reach="-")
    meter = _open_external_meter(dev, prof, res)  # it powers the board: before the board is reached
    try:
        _check_board(dev, t, res, meter is not None)
    finally:
        if meter is not None:
            meter.close()
    return res


def _open_external_meter(dev: Device, prof: DeviceProfile, res: CheckResult):
    """A profile's external energy meter, opened (identity read, board powered); None without one."""
    from harness.errors import HilError
    from harness.meters.select import meter_for

    kind = prof.energy_meter.type
    if kind not in EXTERNAL_METERS:
        res.energy = kind
        return None
    if dev.meter is None:  # the board may be powered otherwise: measurable, just without energy
        res.energy = f"{kind} (not attached)"
        res.notes.append(
            f"profile '{prof.name}' measures energy with a {kind}, but the inventory does not say "
            f"where it is attached (meter: {{port: ...}}): results of this device have no energy"
        )
        return None
    try:
        meter = meter_for(prof, dev)
        meter.open()
    except HilError as exc:
        res.energy = f"{kind} MISSING"
        res.problems.append(str(exc))
        return None
    p = meter.provenance()
    ident = ", ".join(f"{k} {p[k]}" for k in ("hardware", "board_id", "firmware", "device") if p.get(k))
    res.energy = f"{kind} ok"
    res.notes.append(
        f"energy meter {kind} on {p.get('port') or p.get('device')}: {ident or 'answered'}; supplies "
        f"{prof.energy_meter.supply_mv:g} mV; the firmware's timestamp pin goes to {meter.marker_name()}"
    )
    return meter


def _check_board(dev: Device, t: SerialSettings, res: CheckResult, metered: bool) -> None:
    from harness.errors import HilError
    from harness.mcu.serial.session import connect

    try:
        client = connect(dev.id, t, lambda m: None)
    except HilError as exc:
        res.reach = "no"
        res.problems.append(str(exc))
        res.hints.append(
            f"check the cable/port {t.port} and baudrate {t.baudrate}; is the board flashed "
            f"(`hil build` + `hil deploy --device {dev.id}`) and not held by another program?"
        )
        return
    try:
        info = client.info
        arena = client.arena()
        mode = client.probe_timestamp_mode() if metered else info.timestamp_mode
    except HilError as exc:
        res.reach = "yes"
        res.problems.append(str(exc))
        return
    finally:
        client.link.close()
    res.reach = "yes"
    fw = f"{info.name or '?'} ({info.model_id or 'no model id'})"
    res.probe = {
        "runtime": {"name": "firmware", "version": fw},
        "numpy": {"version": "-"},
        "python": {"version": "-", "ok": True},
    }
    caps = ", ".join(sorted(info.caps)) or "none (stock MLPerf Tiny firmware)"
    res.notes.append(
        f"firmware '{info.name}', profile {info.profile or '-'}, model {info.model_id or '-'}, "
        f"extensions: {caps}" + (f", arena used {arena['used']} B" if arena else "")
    )
    if metered:
        res.notes.append(
            "firmware in energy mode: latency and energy come from the meter"
            if mode == "energy"
            else "firmware in performance mode: latency from its laps, no energy (build it in energy mode "
            "to measure energy)"
        )


def check_all(
    devices: list[tuple[Device, DeviceProfile]],
    log: Callable[[str], None],
    guard: Callable[[Device], AbstractContextManager] | None = None,
    acquire_places: bool = False,
) -> list[CheckResult]:
    """Check every device (concurrently). `guard(device)` is entered around a device's check (the CLI
    passes the device lock: a board being measured is not touched; InfraError from it = skipped)."""

    def one(dp: tuple[Device, DeviceProfile]) -> CheckResult:
        dev, prof = dp
        if guard is None:
            return check_device(dev, prof, log, acquire_places)
        try:
            ctx = guard(dev)
            ctx.__enter__()
        except InfraError as exc:
            return CheckResult(dev.id, dev.transport.type, skipped=str(exc))
        try:
            return check_device(dev, prof, log, acquire_places)
        finally:
            ctx.__exit__(None, None, None)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(devices)))) as pool:
        return list(pool.map(one, devices))
