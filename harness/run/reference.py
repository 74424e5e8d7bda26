"""The reference artifact a nightly job is timed against, in the same runner process.

Why: on a shared or virtual CPU the speed of the machine drifts between processes and between
nights by several per cent (the latency floor of one unchanged model differs by 4-5 % from night to
night on the 2-core CI VM, its p50 by 7-12 %), so a nightly comparison of process levels cannot
resolve a 3-5 % slowdown. Two artifacts timed in alternating blocks of a few milliseconds inside one
process see the same machine: their ratio varies by well under 1 % between processes. So every job
of a Linux device whose artifact differs from its series' reference is measured together with that
reference (runner ``--paired-model``), and the gate decides a changed artifact on the in-process
ratio (`harness.gate.paired`).

Which reference: the artifact of the *oldest* of the series' last ``K`` accepted runs (the gate's
default ``last-pass:K`` window), the one the gate's confirmation re-measures as well. The oldest,
not the newest, because accepted runs move the window: against the newest, a model that slows by
1 % per night is 1 % slower than its reference every night and never fails; against the oldest it
is K % slower after K nights. An unchanged artifact is not paired (its in-process ratio is 1 by
construction; its nightly levels still catch a changed device or runtime).
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.jobs import Job, series_key
from harness.lab.config import link_type
from harness.models.convert import Converter, ModelVariant
from harness.store import verdicts as db
from harness.store.results import ResultStore

PAIRED_TRANSPORTS = ("local", "ssh")  # runner processes on Linux; an MCU holds one model at a time
REFERENCE_WINDOW = 5  # accepted runs; the gate's default last-pass window (harness.gate.baselines)


def reference_sha256(store: ResultStore, model: str, variant: str, device_id: str) -> str | None:
    """sha256 of the artifact of the oldest of the last accepted runs of a series, or None."""
    runs = db.accepted_run_ids(store, series_key(model, variant, device_id), "", float("inf"), REFERENCE_WINDOW)
    results = db.ok_results_in_runs(store, runs, model, variant, device_id)
    if not results:
        return None
    return db.artifact_of(store, results[0][0])  # by result id: the oldest run's first process


def with_references(jobs: list[Job], store: ResultStore, converter: Converter) -> tuple[list[Job], list[str]]:
    """`jobs` with their reference artifact attached where one applies, and one note per series
    whose reference could not be used (e.g. its artifact left the conversion cache)."""
    out, notes = [], []
    found: dict[tuple[str, str, str], ModelVariant | None] = {}
    for job in jobs:
        mv = job.variant
        ident = (mv.model_name, mv.variant, job.device.id)
        if link_type(job.device, job.profile) not in PAIRED_TRANSPORTS or not job.profile.benchmark.pair_reference:
            out.append(job)
            continue
        if ident not in found:
            sha = reference_sha256(store, *ident)
            ref = None
            if sha and sha != mv.artifact_sha256:
                ref = converter.find_artifact(sha)
                if ref is None:
                    notes.append(
                        f"{series_key(*ident)}: reference artifact {sha[:12]} is not in the conversion cache; "
                        "measured without it (the gate compares nightly levels)"
                    )
            found[ident] = ref
        ref = found[ident]
        out.append(job if ref is None else replace(job, paired=ref))
    return out, notes
