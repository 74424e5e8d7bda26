"""The per-operator profilers profile_prune can ask: an explicit cost model, or a sweep's target device.

`device_profiler` is the one place where a device's measured profile enters compression: the lead
wires the device runners' profiling pass into it (the Linux runner's `--profile-runs N` -> `op_profile`,
`hil mcu-sim`'s `hb-profile`, the MCU boards' MicroProfiler). Until then its profiler refuses with one
line, so a device-targeted recipe is listed as "not applicable" by the sweep and the rest goes on.
"""

from __future__ import annotations

from pathlib import Path

from harness.compress.cost_model import cost_profile
from harness.compress.profile_prune import OpProfiler
from harness.compress.recipes import CostModel
from harness.errors import NotApplicable
from harness.profile.document import OpProfile


def cost_model_profiler(spec: CostModel) -> OpProfiler:
    params = spec.model_dump(mode="json")

    def fn(path: Path) -> OpProfile:
        return cost_profile(path, spec.per_mac, spec.per_element, spec.per_op, dict(spec.op_weights))

    return OpProfiler("cost-model", {"cost_model": params}, fn)


def device_profiler(device, inventory) -> OpProfiler:
    """The profiler of a sweep's target device: `fn(tflite) -> OpProfile` must run the .tflite on
    `device` with a profiling pass and return the device's `op_profile` document (`from_dict`), with
    `attach_analysis` of that .tflite. The lineage key is the board type (its profile's name, runtime
    and threads), so boards of one type share the pruned model."""
    prof = inventory.profile_of(device)
    key = {"device_profile": prof.name, "runtime": prof.runtime, "num_threads": prof.num_threads}

    def fn(path: Path) -> OpProfile:
        raise NotApplicable(
            f"device '{device.id}' ({prof.name}): per-operator profiles from devices do not reach "
            "profile_prune yet (give the step a cost_model to prune for an assumed board)"
        )

    return OpProfiler(prof.name, key, fn)
