"""One runner process on a device outside a run: the device's transport, under its device lock.

`hil bisect`'s accuracy steps and profile_prune's device profiles each need a single measurement whose
result is theirs to judge (not a stored result of a run): the lock keeps any other hilbench process
off the device meanwhile, and the transport is closed and the lock released whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.core.jobs import Job
from harness.run.device_lock import DeviceLock
from harness.transports import transport_for


def measure_once(
    job: Job,
    cache_root: Path | None,
    wait: bool,
    log: Callable[[str], None],
    *,
    run_id: str | None = None,
    command: str | None = None,
    lock_log: Callable[[str], None] | None = None,
) -> dict:
    """The runner document of `job` (status not checked: the caller words its failure). `cache_root`:
    where MCU firmware is built (None: the default cache); busy device without `wait`: InfraError."""
    transport = transport_for(job.device, job.profile, log)
    transport.cache_root = cache_root
    lock = DeviceLock(job.device, run_id, command)  # who holds the device, for a waiting process
    lock.acquire(wait=wait, log=lock_log or log)
    try:
        transport.open()
        return transport.benchmark(job)
    finally:
        transport.close()
        lock.release()
