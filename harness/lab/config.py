"""Inventory and device-profile loading.

The lab description is hand-edited YAML, so validation must point at the exact spot to fix:
every error names the file, the device or profile, and the field path.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, HilError
from harness.lab.secrets import SECRETS_HINT, is_secret_key, secrets_in
from harness.lab.yaml_load import YamlDoc, read_yaml

PROFILE_SUFFIXES = (".yaml", ".yml")
INVENTORY_KEYS = ("devices",)  # top-level keys of inventory.yaml


class _Strict(BaseModel):
    # NaN and infinity are never a setting: a NaN threshold compares false with everything (never
    # fails), an infinite duration never ends
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- profiles


class Budgets(_Strict):
    """Absolute limits a result must meet regardless of history."""

    max_latency_p50_us: float | None = Field(None, gt=0)
    max_latency_p90_us: float | None = Field(None, gt=0)
    max_peak_rss_kb: float | None = Field(None, gt=0)
    max_flash_bytes: int | None = Field(None, gt=0)
    max_arena_bytes: int | None = Field(None, gt=0)
    max_energy_per_inference_uj: float | None = Field(None, gt=0)
    min_accuracy_top1: float | None = None
    min_accuracy_auc: float | None = None  # an anomaly detector's score (MLPerf Tiny ad01)

    # robustness budgets, written `min_accuracy_top1@noise_snr20db: 0.9` (or `min_agreement@...`)
    # beside the others; gathered here by name (harness/models/perturb.py)
    robust: dict[str, float] = Field(default_factory=dict)

    @field_validator("min_accuracy_top1", "min_accuracy_auc")
    @classmethod
    def _accuracy_is_a_fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{value:g} is not a fraction: accuracy is a fraction from 0 to 1 (0.97 for 97 %)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _gather_robust(cls, data: Any) -> Any:
        if isinstance(data, dict) and any("@" in str(k) for k in data):
            data = dict(data)
            robust = dict(data.get("robust") or {})
            for key in [k for k in data if "@" in str(k)]:
                robust[str(key)] = data.pop(key)
            data["robust"] = robust
        return data

    @field_validator("robust")
    @classmethod
    def _robust_names(cls, value: dict[str, float]) -> dict[str, float]:
        from harness.models.perturb import parse

        for name, limit in value.items():
            base, _, pert = name.partition("@")
            if base not in ROBUST_BUDGETS:
                raise ValueError(f"{name}: a robustness budget is {' or '.join(ROBUST_BUDGETS)}@<perturbation>")
            try:
                parse(pert, name)
            except HilError as exc:
                raise ValueError(str(exc)) from None
            if not 0 <= limit <= 1:
                raise ValueError(f"{name}: {limit:g} is not a fraction from 0 to 1 (0.97 for 97 %)")
        return value


# budget name before the "@" -> the metric it limits from below (the eval set under a perturbation)
ROBUST_BUDGETS = {"min_accuracy_top1": "accuracy_top1", "min_agreement": "agreement"}


EXTERNAL_METERS = ("ppk2", "lpm01a", "joulescope")  # powered + sampled by the host: harness/meters/


class EnergyMeter(_Strict):
    type: Literal["none", "rapl", "hwmon", "pmic", "ppk2", "lpm01a", "joulescope", "estimate"] = "none"
    path: str | None = None  # hwmon: the device's hwmon directory or its powerN_input file
    sample_rate_hz: float | None = Field(None, gt=0)
    idle_power_mw: float | None = Field(None, ge=0)
    typical_power_mw: float | None = Field(None, gt=0)
    # external meters (they power the board): supply voltage, the digital input the firmware's
    # timestamp pin is wired to, and how long the separate idle window lasts
    supply_mv: float | None = Field(None, gt=0)
    marker_input: int | None = Field(None, ge=0, le=7)
    idle_seconds: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> EnergyMeter:
        if self.type == "hwmon" and not self.path:
            raise ValueError("path: required for type hwmon (e.g. /sys/class/hwmon/hwmon2 or its power1_input)")
        if self.type == "hwmon" and self.path and not self.path.startswith("/"):
            raise ValueError("path: must be an absolute path on the device (e.g. /sys/class/hwmon/hwmon2)")
        if self.type == "estimate" and self.typical_power_mw is None:
            raise ValueError(
                "typical_power_mw: required for type estimate (the board's active power from its datasheet)"
            )
        if (
            self.typical_power_mw is not None
            and self.idle_power_mw is not None
            and self.typical_power_mw < self.idle_power_mw
        ):
            raise ValueError(
                f"typical_power_mw: {self.typical_power_mw:g} is below idle_power_mw "
                f"{self.idle_power_mw:g} (the estimate would be negative)"
            )
        if self.type in EXTERNAL_METERS and self.supply_mv is None:
            raise ValueError(
                f"supply_mv: required for type {self.type} (the voltage the meter supplies to the board, e.g. 3300)"
            )
        if self.type not in EXTERNAL_METERS:
            for key in ("supply_mv", "marker_input"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for meters that power the board ({', '.join(EXTERNAL_METERS)})")
        return self


class BenchmarkDefaults(_Strict):
    """Run-length defaults; mirror TFLite benchmark_model so numbers are comparable."""

    min_runs: int = Field(50, ge=1)
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(150.0, gt=0)
    warmup_runs: int = Field(1, ge=0)
    warmup_seconds: float = Field(0.5, ge=0)
    windows: int = Field(5, ge=1)
    window_seconds: float = Field(10.0, gt=0)
    # fresh runner processes per job and run: the gate's unit of comparison (most of the noise is
    # between processes and nights, not between the invocations of one process)
    repeats: int = Field(1, ge=1)
    # sigma of one process level (relative) assumed until a series has its own history
    noise_prior: float = Field(0.02, gt=0, le=1)
    # Linux devices: time a changed artifact together with its series' reference artifact in the same
    # runner processes, so that the gate decides on their in-process ratio (harness.run.reference)
    pair_reference: bool = True

    @model_validator(mode="after")
    def _durations_consistent(self) -> BenchmarkDefaults:
        if self.min_seconds > self.max_seconds:
            raise ValueError(
                f"min_seconds: {self.min_seconds:g} is more than max_seconds {self.max_seconds:g} "
                f"(the steady window stops at max_seconds)"
            )
        return self


# A measurement window may last at most this share of the firmware timer's wrap period (docs/MCU.md)
TIMER_WINDOW_SHARE = 0.5


class McuSettings(_Strict):
    arena_margin: float = Field(0.1, ge=0)
    arena_align: int = Field(16, ge=1)
    build_cmd: str | None = None
    flash_cmd: str | None = None
    baudrate: int = Field(115200, gt=0)
    # after how long the firmware's m-lap-us timer wraps: 2^32 us (71.6 min) for a 32-bit microsecond
    # counter; a stock firmware timing with DWT->CYCCNT / MHz wraps after 2^32 cycles (8.95 s at 480 MHz)
    timer_wrap_s: float = Field(2**32 / 1e6, gt=0)
    # the firmware ELF that build_cmd writes, relative to the bundle (placeholders as in the commands);
    # unset: the one *.elf file the build left in the bundle. Its flash/RAM are measured (docs/MCU.md)
    firmware_elf: str | None = None


class DeviceProfile(_Strict):
    """A board type: what every board of this kind has in common."""

    name: str
    description: str = ""
    arch: str
    cpu: str = ""
    cores: int = Field(ge=1)
    ram_mb: float = Field(gt=0)
    flash_mb: float | None = Field(None, gt=0)
    runtime: Literal["litert", "tflm"] = "litert"
    num_threads: int | None = Field(None, ge=1)
    xnnpack: bool = True
    python: str = "python3"
    energy_meter: EnergyMeter = EnergyMeter()
    budgets: Budgets = Budgets()
    thresholds: dict[str, float] = Field(default_factory=dict)
    benchmark: BenchmarkDefaults = BenchmarkDefaults()
    mcu: McuSettings | None = None
    source: str = ""  # set by load_profile to the file's path, never by the file itself

    @field_validator("thresholds")
    @classmethod
    def _known_threshold_names(cls, value: dict[str, float]) -> dict[str, float]:
        from harness.core.metrics import GATED_METRICS, RULES, SETTINGS

        for name, threshold in value.items():
            if name not in RULES and name not in SETTINGS:
                raise ValueError(
                    f"{name}: unknown metric (gated metrics: {', '.join(GATED_METRICS)}; "
                    f"settings: {', '.join(sorted(SETTINGS))})"
                )
            if not (math.isfinite(threshold) and threshold >= 0):
                raise ValueError(f"{name}: threshold must be a finite number >= 0")
        return value

    @model_validator(mode="after")
    def _mcu_needs_settings(self) -> DeviceProfile:
        if self.runtime == "tflm" and self.mcu is None:
            raise ValueError("mcu: required when runtime is tflm")
        return self

    @model_validator(mode="after")
    def _windows_fit_the_timer(self) -> DeviceProfile:
        if self.mcu is not None:
            limit = self.mcu.timer_wrap_s * TIMER_WINDOW_SHARE
            if self.benchmark.window_seconds > limit:
                raise ValueError(
                    f"benchmark.window_seconds: {self.benchmark.window_seconds:g} s windows do not "
                    f"fit the firmware timer, which wraps every {self.mcu.timer_wrap_s:g} s "
                    f"(mcu.timer_wrap_s); a window may last at most {limit:g} s (use more, "
                    f"shorter windows, or a firmware timer that does not wrap: docs/MCU.md)"
                )
        return self


# --------------------------------------------------------------------------- inventory


class LocalSettings(_Strict):
    type: Literal["local"]
    python: str | None = None


class SshOptions(_Strict):
    """How hilbench logs in over SSH, apart from where: a labgrid place supplies host and port."""

    user: str | None = None
    key_file: str | None = None
    key_passphrase_env: str | None = None  # name of an env var holding the key's passphrase
    use_agent: bool = True
    jump_host: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    connect_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(600.0, gt=0)
    retries: int = Field(2, ge=0)
    retry_backoff: float = Field(1.0, ge=0)
    python: str | None = None
    workdir: str = "~/.cache/hilbench-device"

    @field_validator("key_passphrase_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            # never echoed: this may be the passphrase itself pasted in the wrong place
            raise ValueError(
                "must be the name of an environment variable holding the passphrase "
                "(e.g. PI_KEY_PASSPHRASE), not the passphrase"
            )
        return value


class SshSettings(SshOptions):
    type: Literal["ssh"]
    host: str
    port: int = Field(22, ge=1, le=65535)


class SerialOptions(_Strict):
    """How hilbench talks to an MCU board, apart from where: a labgrid place supplies the port."""

    baudrate: int = Field(115200, gt=0)
    timeout: float = Field(5.0, gt=0)
    boot_timeout: float = Field(10.0, gt=0)
    infer_timeout: float = Field(120.0, gt=0)
    reset: Literal["none", "dtr", "rts"] = "none"
    retries: int = Field(2, ge=0)  # per command, after a resync or a malformed answer
    accuracy_samples: int = Field(200, ge=0)  # eval samples sent over the wire (evenly spread)
    # build + flash the job's model with the profile's mcu.build_cmd/flash_cmd: auto = when the board
    # reports another model; never = refuse the job; always = before every job (unverifiable firmware)
    flash: Literal["auto", "never", "always"] = "auto"
    # what `db load` carries and m-results reports (harness/models/mlperf.py): auto = what the model ID
    # the firmware reports implies (MLPerf Tiny kws01/vww01/ic01/ad01: its reference firmware's), else tensor
    io_convention: Literal["auto", "tensor", "uint8-minus-128", "float32-mse", "kws01", "vww01", "ic01", "ad01"] = (
        "auto"
    )


class SerialSettings(SerialOptions):
    type: Literal["serial"]
    port: str


LG_COORDINATOR_ENV = "LG_COORDINATOR"


class LabgridSettings(_Strict):
    """A board behind a labgrid place: the place's exported resources say where it is (a
    NetworkSerialPort for an MCU board, a NetworkService for a Linux board); `serial` and `ssh` hold
    hilbench's own settings for the link it then opens."""

    type: Literal["labgrid"]
    place: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    coordinator: str | None = None  # HOST:PORT; unset: $LG_COORDINATOR when the inventory is loaded
    acquire_timeout: float = Field(600.0, gt=0)  # how long to wait while someone else holds the place
    priority: float = 0.0  # in the coordinator's queue for the place: higher first, then first come
    resource_timeout: float = Field(30.0, gt=0)  # how long the place's resources may take to appear
    # a board that hangs: power-cycle it through the place's power port and try the job once more
    power_cycle: bool = True
    power_off_seconds: float = Field(2.0, ge=0)  # how long the supply stays cut (labgrid's default delay)
    # a Linux board after a power cycle: how long its sshd may take to come up (MCU: serial.boot_timeout)
    boot_timeout: float = Field(120.0, gt=0)
    serial: SerialOptions = SerialOptions()
    ssh: SshOptions = SshOptions()


TransportSettings = Annotated[
    LocalSettings | SshSettings | SerialSettings | LabgridSettings, Field(discriminator="type")
]


class MeterConnection(_Strict):
    """Where this board's external energy meter is attached to the controller (the profile says which
    kind of meter; which one is a property of the bench)."""

    port: str  # serial port (PPK2, LPM01A; rfc2217:// too) or the Joulescope driver's device path
    baudrate: int | None = Field(None, gt=0)  # default: the meter's own (LPM01A 3686400)


class Device(_Strict):
    """One physical board in the lab."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    profile: str
    transport: TransportSettings
    meter: MeterConnection | None = None
    tags: list[str] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("transport", mode="before")
    @classmethod
    def _transport_needs_type(cls, value: Any) -> Any:
        if isinstance(value, dict) and "type" not in value:
            raise ValueError("type: required (one of local, ssh, serial, labgrid)")
        if isinstance(value, dict) and value.get("type") == "serial" and "port" not in value:
            raise ValueError("port: required for serial")
        if isinstance(value, dict) and value.get("type") == "ssh" and "host" not in value:
            raise ValueError("host: required for ssh")
        if isinstance(value, dict) and value.get("type") == "labgrid" and "place" not in value:
            raise ValueError("place: required for labgrid (the name of the labgrid place)")
        return value


def link_type(device: Device, profile: DeviceProfile) -> str:
    """The link a device's jobs run over: its transport type, except that a labgrid place reaches an
    MCU board over serial and a Linux board over SSH. Results, pairing and the gate go by this, so a
    board measured through a place compares with the same board wired directly."""
    if device.transport.type == "labgrid":
        return "serial" if profile.runtime == "tflm" else "ssh"
    return device.transport.type


class Inventory(_Strict):
    devices: list[Device]
    profiles: dict[str, DeviceProfile] = Field(default_factory=dict)
    path: str = ""

    def device(self, device_id: str) -> Device:
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        known = ", ".join(d.id for d in self.devices) or "none"
        raise ConfigError(f"{self.path}: no device '{device_id}' (known: {known})")

    def profile_of(self, device: Device) -> DeviceProfile:
        return self.profiles[device.profile]

    def select(self, ids: list[str] | None = None, tags: list[str] | None = None) -> list[Device]:
        """Devices named by id, or carrying any of the tags, or all enabled ones."""
        if ids:
            return [self.device(i) for i in ids]
        chosen = [d for d in self.devices if d.enabled]
        if tags:
            chosen = [d for d in chosen if set(tags) & set(d.tags)]
            if not chosen:
                raise ConfigError(f"{self.path}: no enabled device has any of the tags {tags}")
        return chosen


# --------------------------------------------------------------------------- loading


def _format_loc(loc: tuple, data: Any, root: str) -> str:
    """Turn a pydantic location into `devices[2].transport.port`, dropping union-tag noise."""
    parts: list[str] = [root] if root else []
    node = data
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            if isinstance(node, dict) and item not in node and item in ("local", "ssh", "serial", "labgrid"):
                continue  # discriminator branch name, not a real key
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _messages(err: ValidationError, data: Any, root: str = "") -> list[str]:
    out = []
    for e in err.errors():
        where = _format_loc(tuple(e["loc"]), data, root)
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # our validators put the sub-field first: "port: required for serial"
            if ":" in msg.split(" ")[0]:
                field, _, rest = msg.partition(": ")
                where, msg = f"{where}.{field}" if where else field, rest
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
            if is_secret_key(str(e["loc"][-1])):
                msg = SECRETS_HINT
        out.append(f"{where}: {msg}")
    return out


def _refuse_secrets(path: Path, doc: YamlDoc, name_device: bool = False) -> None:
    """Anything secret-looking anywhere in the file stops loading, before a value can be echoed."""
    found = secrets_in(doc)
    if found:
        line, where, problem = found[0]
        message = f"{where}: {problem}"
        devices = doc.data.get("devices") if name_device and isinstance(doc.data, dict) else None
        if isinstance(devices, list):
            message = _name_device(message, devices)
        more = f" ({len(found) - 1} more in this file)" if len(found) > 1 else ""
        raise ConfigError(f"{path}: line {line}: {message}{more}")


def load_profile(path: Path) -> DeviceProfile:
    path = Path(path)
    doc = read_yaml(path, "device profile")
    _refuse_secrets(path, doc)
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: profile must be a mapping, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name: '{data['name']}' must match the file name '{path.stem}'")
    if "source" in data:
        raise ConfigError(
            f"{path}: profile '{path.stem}': source: unknown field (hilbench sets it to the profile's file path)"
        )
    try:
        return DeviceProfile.model_validate({**data, "source": str(path)})
    except ValidationError as err:
        msgs = _messages(err, data)
        raise ConfigError(f"{path}: profile '{data['name']}': " + "; ".join(msgs)) from None


def profile_files(directory: Path) -> list[Path]:
    """`*.yaml` and `*.yml` profiles; one board type defined by two files is refused."""
    if not directory.is_dir():
        if directory.exists():
            raise ConfigError(f"{directory}: is a file, not a device profile directory")
        raise ConfigError(f"{directory}: device profile directory not found")
    files = sorted(
        p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    by_name: dict[str, Path] = {}
    for p in files:
        if p.stem in by_name:
            raise ConfigError(
                f"{p}: profile '{p.stem}' is also defined by {by_name[p.stem]}; keep one of the two files"
            )
        by_name[p.stem] = p
    return files


def load_profiles(directory: Path) -> dict[str, DeviceProfile]:
    return {p.stem: load_profile(p) for p in profile_files(Path(directory))}


def _name_device(message: str, devices: list) -> str:
    """Add the device id to `devices[2].x: ...` so the user can find it without counting."""
    if message.startswith("devices["):
        idx = int(message[len("devices[") : message.index("]")])
        if idx < len(devices) and isinstance(devices[idx], dict) and devices[idx].get("id"):
            return f"{message} (device '{devices[idx]['id']}')"
    return message


def _resolve_ssh_paths(dev: Device, base: Path) -> Device:
    t = dev.transport
    opts = t.ssh if isinstance(t, LabgridSettings) else t
    update = {}
    for name in ("key_file", "known_hosts"):
        value = getattr(opts, name)
        if value and not value.startswith("~") and not Path(value).is_absolute():
            update[name] = str((base / value).resolve())
    if not update:
        return dev
    if isinstance(t, LabgridSettings):
        return dev.model_copy(update={"transport": t.model_copy(update={"ssh": t.ssh.model_copy(update=update)})})
    return dev.model_copy(update={"transport": t.model_copy(update=update)})


def _with_coordinator(dev: Device, where: str) -> Device:
    """Fix the coordinator when the inventory is loaded, so that the device lock, the connection and the
    result's provenance all name the same one even if the environment changes later."""
    t = dev.transport
    assert isinstance(t, LabgridSettings)
    if t.coordinator:
        return dev
    env = os.environ.get(LG_COORDINATOR_ENV, "").strip()
    if not env:
        raise ConfigError(
            f"{where}: device '{dev.id}' (labgrid place '{t.place}') names no coordinator: "
            f"set transport.coordinator: HOST:PORT or the environment variable {LG_COORDINATOR_ENV}"
        )
    return dev.model_copy(update={"transport": t.model_copy(update={"coordinator": env})})


DEFAULT_INVENTORY = {
    "devices": [{"id": "local", "profile": "localhost", "transport": {"type": "local"}, "tags": ["default", "nightly"]}]
}
"""The embedded default lab when there is no inventory.yaml: this machine as the only device (the
repository's inventory.yaml says the same; a test keeps the two equal)."""


def load_default_inventory() -> Inventory:
    """This machine as the only device, with the board types shipped in the package."""
    from harness.core.resources import shipped_profiles_dir

    return load_inventory(Path("inventory.yaml"), shipped_profiles_dir(), data=DEFAULT_INVENTORY)


def load_inventory(path: Path, profiles_dir: Path | None = None, data: Any = None) -> Inventory:
    """Parse and cross-check inventory.yaml against the profiles directory next to it (the profiles
    shipped with hilbench when the lab has no device_profiles/ of its own)."""
    path = Path(path)
    if profiles_dir is None:
        profiles_dir = path.parent / "device_profiles"
        if not profiles_dir.is_dir():
            from harness.core.resources import shipped_profiles_dir

            profiles_dir = shipped_profiles_dir()
    profiles_dir = Path(profiles_dir)
    if data is None:
        if path.is_dir():
            hint = f" (did you mean {path / 'inventory.yaml'}?)" if (path / "inventory.yaml").is_file() else ""
            raise ConfigError(f"{path}: is a directory; --inventory expects the inventory file{hint}")
        doc = read_yaml(path, "inventory file")
        _refuse_secrets(path, doc, name_device=True)
        data = doc.data
    if isinstance(data, dict):
        unknown = [str(k) for k in data if k not in INVENTORY_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], INVENTORY_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{path}: {unknown[0]}: unknown top-level key{hint}; an inventory has only "
                f"{', '.join(INVENTORY_KEYS)} (board types live in device_profiles/)"
            )
    if not isinstance(data, dict) or "devices" not in data:
        raise ConfigError(f"{path}: devices: required (a list of devices)")
    if not isinstance(data["devices"], list):
        raise ConfigError(f"{path}: devices: must be a list")
    try:
        inv = Inventory(devices=data["devices"], path=str(path))
    except ValidationError as err:
        msgs = [_name_device(m, data["devices"]) for m in _messages(err, data)]
        raise ConfigError(f"{path}: " + "; ".join(msgs)) from None
    profiles = load_profiles(profiles_dir)
    seen: set[str] = set()
    for i, dev in enumerate(inv.devices):
        if dev.id in seen:
            raise ConfigError(f"{path}: devices[{i}].id: duplicate device id '{dev.id}'")
        seen.add(dev.id)
        if dev.profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"{path}: devices[{i}].profile: device '{dev.id}' names unknown profile "
                f"'{dev.profile}' (known in {profiles_dir}: {known})"
            )
        prof = profiles[dev.profile]
        if dev.transport.type in ("ssh", "labgrid"):  # relative key/known_hosts paths: to the inventory
            inv.devices[i] = dev = _resolve_ssh_paths(dev, path.parent)
        if dev.transport.type == "labgrid":
            inv.devices[i] = dev = _with_coordinator(dev, f"{path}: devices[{i}].transport.coordinator")
        if prof.runtime == "tflm" and dev.transport.type not in ("serial", "labgrid"):
            raise ConfigError(
                f"{path}: devices[{i}].transport.type: device '{dev.id}' has MCU "
                f"profile '{prof.name}' and needs a serial (or labgrid) transport"
            )
        if (
            dev.transport.type == "serial"
            and dev.transport.flash == "always"
            and not (prof.mcu and (prof.mcu.build_cmd or prof.mcu.flash_cmd))
        ):
            raise ConfigError(
                f"{path}: devices[{i}].transport.flash: device '{dev.id}' has flash: always "
                f"but its profile '{prof.name}' sets neither mcu.build_cmd nor mcu.flash_cmd"
            )
    return Inventory(devices=inv.devices, profiles=profiles, path=str(path))
