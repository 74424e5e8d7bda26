"""The meter object for a device: the profile says which kind, the inventory says where it is."""

from __future__ import annotations

from harness.errors import ConfigError
from harness.lab.config import EXTERNAL_METERS, Device, DeviceProfile
from harness.meters.base import Meter
from harness.meters.ondevice import EstimateMeter, HwmonMeter, NoMeter, PmicMeter, RaplMeter


def on_device(profile: DeviceProfile) -> Meter:
    """The meter the device runner reads (or the estimate); NoMeter when the profile's meter is external."""
    spec = profile.energy_meter
    kinds: dict[str, type[Meter]] = {
        "rapl": RaplMeter,
        "hwmon": HwmonMeter,
        "pmic": PmicMeter,
        "estimate": EstimateMeter,
    }
    kind = kinds.get(spec.type, NoMeter)
    return kind(spec, f"profile '{profile.name}'")


def meter_for(profile: DeviceProfile, device: Device | None = None) -> Meter:
    spec = profile.energy_meter
    who = f"device '{device.id}'" if device is not None else f"profile '{profile.name}'"
    if spec.type in EXTERNAL_METERS:
        if device is None or device.meter is None:
            raise ConfigError(
                f"{who}: profile '{profile.name}' measures energy with a {spec.type}, but the "
                f"inventory does not say where it is attached (devices: - id: ... meter: "
                f"{{port: /dev/ttyACM1}})"
            )
        if spec.type == "ppk2":
            from harness.meters.ppk2 import Ppk2Meter

            return Ppk2Meter(spec, who, device.meter)
        if spec.type == "lpm01a":
            from harness.meters.lpm01a import Lpm01aMeter

            return Lpm01aMeter(spec, who, device.meter)
        from harness.meters.joulescope import JoulescopeMeter

        return JoulescopeMeter(spec, who, device.meter)
    return on_device(profile)
