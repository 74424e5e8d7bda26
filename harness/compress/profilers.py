"""The per-operator profilers profile_prune can ask: an explicit cost model, or a sweep's target device.

`device_profiler` is the one place where a device's measured profile enters compression: one runner
process on the device (its transport, under its device lock, like any measurement) with the profiling
pass (`RunOptions.profile_runs`: the Linux runner's LiteRT profiler, the MCU firmware's or `hil
mcu-sim`'s `hb-profile`). With XNNPACK the built-in kernels' twin (`op_profile_builtin`) is the one
read: its ops are the model's own, which is what pruning maps back to layers. A device that gives no
profile (firmware built without the profiler, an older runtime) makes the recipe "not applicable" for
that board, with the reason; a device that fails is an infrastructure error.
"""

from __future__ import annotations

from pathlib import Path

from harness.compress.cost_model import cost_profile
from harness.compress.profile_prune import OpProfiler
from harness.compress.recipes import CostModel
from harness.errors import InfraError, NotApplicable
from harness.models.inspect.analysis import analyze
from harness.profile.document import OpProfile, attach_analysis, from_dict


def cost_model_profiler(spec: CostModel) -> OpProfiler:
    params = spec.model_dump(mode="json")

    def fn(path: Path) -> OpProfile:
        return cost_profile(path, spec.per_mac, spec.per_element, spec.per_op, dict(spec.op_weights))

    return OpProfiler("cost-model", {"cost_model": params}, fn)


PROFILE_RUNS = 20  # profiled invocations per profile_prune iteration on a device


def device_profiler(
    device, inventory, runs: int = PROFILE_RUNS, cache_root: Path | None = None, wait: bool = True
) -> OpProfiler:
    """The profiler of a sweep's target device: `fn(tflite) -> OpProfile` must run the .tflite on
    `device` with a profiling pass and return the device's `op_profile` document (`from_dict`), with
    `attach_analysis` of that .tflite. The lineage key is the board type (its profile's name, runtime
    and threads), so boards of one type share the pruned model."""
    prof = inventory.profile_of(device)
    key = {"device_profile": prof.name, "runtime": prof.runtime, "num_threads": prof.num_threads}

    def fn(path: Path) -> OpProfile:
        doc = _profile_on_device(device, prof, Path(path), runs, cache_root, wait)
        found = doc.get("op_profile_builtin") or doc.get("op_profile")
        if not found:
            why = "; ".join(str(w) for w in doc.get("warnings") or []) or "no profiler on the device"
            raise NotApplicable(f"device '{device.id}' ({prof.name}) gave no per-operator profile: {why}")
        try:
            return attach_analysis(from_dict(found, f"device '{device.id}': op_profile"), analyze(path))
        except (KeyError, TypeError, ValueError) as exc:  # a device document from_dict let through
            raise NotApplicable(
                f"device '{device.id}': its per-operator profile does not fit the model: {exc!r}"
            ) from None

    return OpProfiler(prof.name, key, fn)


def _profile_on_device(device, profile, path: Path, runs: int, cache_root: Path | None, wait: bool) -> dict:
    """One runner process on the device: a short timed part (warm-up only) and `runs` profiled
    invocations of the .tflite at `path`."""
    import hashlib
    import logging

    from harness.core.jobs import Job, RunOptions
    from harness.models.convert import ModelVariant
    from harness.run.one_process import measure_once

    blob = path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    mv = ModelVariant(path.stem, sha, "asis", "", sha, path, sha, len(blob))
    options = RunOptions(
        min_runs=runs, min_seconds=0.0, warmup_runs=1, warmup_seconds=0.0, repeats=1, profile_runs=runs
    ).resolved(profile)
    job = Job(mv, device, profile, options)
    doc = measure_once(job, cache_root, wait, logging.getLogger(__name__).info, command="profile_prune")
    if doc.get("status") != "ok":
        raise InfraError(f"device '{device.id}': the profile pass for profile_prune failed: {doc.get('error')}")
    return doc
