"""`hil run`: convert, fan jobs out to devices (parallel across devices, serial per device), store.

Failures are classified where they happen: a device that cannot be reached or a runner that crashes
is an infrastructure failure recorded as such, and never stops the other devices or loses results
already written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import __version__, progress
from harness.core.jobs import Job, RunOptions
from harness.errors import ConfigError, HilError, InfraError, ModelError, StorageError
from harness.lab.config import Device, Inventory, link_type
from harness.log import DETAIL
from harness.meters.select import on_device
from harness.models.convert import (
    NEEDS_CALIBRATION,
    Calibration,
    Converter,
    ModelSource,
    ModelVariant,
    check_variant_names,
)
from harness.models.evaldata import check_eval_file, prepare_eval
from harness.models.perturb import Perturbation
from harness.models.shapes import resolve_input_shapes
from harness.profile.complete import KEYS as profile_keys
from harness.profile.complete import MAIN as MAIN_PROFILE
from harness.profile.complete import complete, of_paired
from harness.run.device_lock import DeviceLock
from harness.run.reference import with_references
from harness.run.rows import flatten, model_rows
from harness.store.results import ClaimOwner, ResultRecord, ResultStore
from harness.store.schema import USER_RUN
from harness.store.spool import Spool, spool_dir
from harness.transports import transport_for

_log = logging.getLogger(__name__)

# Jobs one run may plan (models x variants x devices x repeats): every job is a row in the store and a
# claim, and planning a bigger run would take minutes and gigabytes before the first measurement
MAX_PLANNED_JOBS = 100_000


@dataclass
class ModelSpec:
    """A model to benchmark and the data that belongs to it (sidecar files found automatically)."""

    source: ModelSource
    calibration: Calibration | None = None
    eval_file: Path | None = None

    @classmethod
    def from_args(cls, path: str, calibration: str | None, eval_file: str | None, name: str | None = None) -> ModelSpec:
        """`name`: the model's name in results (harness.models.naming.unique_model_names), default its stem."""
        src = ModelSource.open(path)
        if name is not None:
            src = replace(src, name=name)
        stem = src.path.parent / src.path.stem if src.kind != "savedmodel" else src.path
        if calibration is None:
            for cand in (f"{stem}.calibration.npz", f"{stem}.calibration.npy"):
                if Path(cand).exists():
                    calibration = cand
                    break
        if eval_file is None and Path(f"{stem}.eval.npz").exists():
            eval_file = f"{stem}.eval.npz"
        if eval_file is not None and not Path(eval_file).exists():
            raise ConfigError(f"{eval_file}: evaluation data file not found")
        return cls(src, Calibration.from_arg(calibration), Path(eval_file) if eval_file else None)


@dataclass
class BrokenJob:
    """A planned measurement whose model could not be prepared; stored as an `error` row."""

    model: str
    sha256: str
    variant: str
    device: Device
    profile: str
    error: str

    @property
    def key(self) -> str:
        ident = json.dumps([self.model, self.sha256, self.variant, self.device.id])
        return "broken-" + hashlib.sha256(ident.encode()).hexdigest()[:20]


@dataclass
class RunSummary:
    run_id: str
    ok: int = 0
    infra_errors: int = 0
    errors: int = 0
    skipped: int = 0
    spooled: int = 0  # results kept in the spool: the database could not take them
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """2 when the lab failed (the picture is incomplete; a result only in the spool is not in the
        database a gate reads), else 3 when inputs were bad, else 0."""
        if self.infra_errors or self.spooled:
            return 2
        return 3 if self.errors else 0


def git_commit_of(path: Path) -> str | None:
    """Commit of the repository holding the model (with +dirty), for provenance."""
    directory = path if path.is_dir() else path.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def hardware_lane(device: Device) -> str:
    """Devices that share hardware (every `local` device is this host) are measured one after the
    other; distinct boards run in parallel."""
    t = device.transport
    if t.type == "local":
        return "local"
    if t.type == "ssh":
        return f"ssh:{t.host}:{t.port}"
    if t.type == "labgrid":  # a place is one board, whatever it exports
        return f"labgrid:{t.coordinator}/{t.place}"
    return f"serial:{t.port}"


class Orchestrator:
    def __init__(
        self, inventory: Inventory, store: ResultStore, converter: Converter, log: Callable[[str], None] = _log.info
    ):
        self.inventory = inventory
        self.store = store
        self.converter = converter
        self.log = log
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self._convert_bar = self._measure_bar = progress.NO_BAR  # progress bars (terminal only)
        self.broken: list[BrokenJob] = []
        self.broken_sources: list[str] = []
        self.owner = ClaimOwner.this_process()  # claims this session's jobs (concurrent --resume)
        self._device_locks: dict[str, DeviceLock] = {}
        # results the store cannot take go here (next to the artifact cache), never into the void
        self.spool = Spool(spool_dir(converter.cache_dir.parent), store.location)
        self._spooled: list[str] = []  # labels of this session's spooled results
        self._lost: list[str] = []  # neither stored nor spooled
        self._store_down: str | None = None  # why claims are not possible (said once)
        # --resume: an unfinished run started with this same command line (harness.commands.run_resume)
        self.resume_candidate: str | None = None
        # --resume: why the newest unfinished run of these models is not this command (refused when
        # the plan finds nothing to resume, before a run is created)
        self.resume_mismatch: str | None = None
        # --robustness: perturbed copies of every model's eval set, scored beside it (perturb.py)
        self.robustness: tuple[Perturbation, ...] = ()
        self.robustness_seed = 0

    def _say(self, msg: str) -> None:
        with self._log_lock:
            self.log(msg)

    def _detail(self, msg: str) -> None:
        """A step of the run (shown with `hil -v`): by default a job is one `done`/`FAILED` line."""
        with self._log_lock:
            _log.log(DETAIL, msg)

    def convert_all(self, specs: list[ModelSpec], variants: list[str] | None) -> list[tuple[ModelSpec, ModelVariant]]:
        out = []
        for spec in specs:
            for v in self.converter.variants_for(spec.source, variants):
                mv = self.converter.convert(spec.source, v, spec.calibration)
                mv.extra["source_path"] = str(spec.source.path)
                out.append((spec, mv))
        return out

    def plan(
        self,
        specs: list[ModelSpec],
        variants: list[str] | None,
        devices: list[Device],
        options: RunOptions,
        pair: bool = True,
    ) -> list[Job]:
        """Convert every model; with several models, one that cannot be converted becomes `error`
        rows of the run (see `broken`) instead of stopping the others from being measured. `pair`:
        time each changed artifact with its series' reference in the same processes (see
        `harness.run.reference`; profiles can turn it off with `benchmark.pair_reference`)."""
        check_variant_names(variants)  # a typo is the whole command's fault, not one model's
        self.check_plan_size(len(specs), variants, devices, options)
        names = [s.source.name for s in specs] + self.broken_sources
        shared = sorted({n for n in names if names.count(n) > 1})
        if shared:  # never mix two models up in results, reports and the gate
            raise ConfigError(f"two models would share the name '{shared[0]}' in results; rename one of the files")
        if options.input_shapes:
            mcu = [d.id for d in devices if link_type(d, self.inventory.profile_of(d)) == "serial"]
            if mcu:
                raise ConfigError(
                    f"--input-shape applies to Linux devices (local, ssh); TFLM on {', '.join(mcu)} "
                    "cannot resize a model's inputs"
                )
        ready = []
        for spec in specs:  # every model's data before any conversion (TensorFlow takes seconds to load)
            try:
                self._check_data(spec, variants)
                ready.append(spec)
            except HilError as exc:
                if len(specs) + len(self.broken_sources) == 1:
                    raise
                self.add_broken(spec.source.name, spec.source.sha256, variants, devices, str(exc))
        jobs: list[Job] = []
        with progress.task("converting", len(ready) * len(variants or ["fp32"])) as self._convert_bar:
            for spec in ready:
                try:
                    jobs += self._plan_model(spec, variants, devices, options)
                except HilError as exc:
                    if len(specs) + len(self.broken_sources) == 1:
                        raise
                    self.add_broken(spec.source.name, spec.source.sha256, variants, devices, str(exc))
        if not jobs and self.broken:
            raise ModelError("no model could be prepared: " + "; ".join(sorted({b.error for b in self.broken})))
        jobs = self.with_repeats(jobs)
        if pair:
            jobs, notes = with_references(jobs, self.store, self.converter)
            for note in notes:
                self._say(note)
            paired = {(j.variant.model_name, j.variant.variant, j.device.id) for j in jobs if j.paired is not None}
            if paired:
                self._detail(f"{len(paired)} changed artifact(s) timed together with their reference artifact")
        return jobs

    def check_plan_size(
        self, models: int, variants: list[str] | None, devices: list[Device], options: RunOptions
    ) -> None:
        """Refuse a plan of more than MAX_PLANNED_JOBS jobs before anything is converted (an upper
        bound: variants that turn out not to apply are counted)."""
        per_model = len(variants or ["fp32"]) * sum(
            options.resolved(self.inventory.profile_of(d)).repeats or 1 for d in devices
        )
        planned = models * per_model
        if planned > MAX_PLANNED_JOBS:
            repeats = sorted({options.resolved(self.inventory.profile_of(d)).repeats or 1 for d in devices})
            raise ConfigError(
                f"the run would plan {planned:,} jobs ({models} model(s) x {len(variants or ['fp32'])} "
                f"variant(s) x {len(devices)} device(s) x {'/'.join(map(str, repeats))} repeat(s)); at "
                f"most {MAX_PLANNED_JOBS:,} in one run: use fewer --repeats, or split it by --devices"
            )

    def _check_data(self, spec: ModelSpec, variants: list[str] | None) -> None:
        """The model's calibration data (when a requested variant needs it) and eval data, as far as
        they can be checked without the model."""
        needs = NEEDS_CALIBRATION & set(self.converter.variants_for(spec.source, variants))
        if spec.calibration is not None and needs:
            spec.calibration.check()
        if spec.eval_file is not None:
            check_eval_file(spec.eval_file)

    def add_broken(self, name: str, sha256: str, variants: list[str] | None, devices: list[Device], error: str) -> None:
        """Jobs that cannot run because their model could not be opened or converted."""
        self.broken_sources.append(name)
        for v in variants or ["fp32"]:
            for dev in devices:
                self.broken.append(BrokenJob(name, sha256, v, dev, self.inventory.profile_of(dev).name, error))
        self._say(f"SKIPPED {name}: {error}")

    def _plan_model(
        self, spec: ModelSpec, variants: list[str] | None, devices: list[Device], options: RunOptions
    ) -> list[Job]:
        """Jobs of one model. A variant that cannot be built (int8 without calibration data, a failed
        conversion, input shapes that do not fit it) becomes `error` rows of its own and the model's
        other variants are measured; a failure shared by every variant is the model's (raised)."""
        src = spec.source
        eval_file = None
        if self.robustness and not spec.eval_file:
            raise ConfigError(
                f"--robustness: model {src.name} has no evaluation data (--eval, or {src.name}.eval.npz beside it)"
            )
        if spec.eval_file:  # the data belongs to the model: checked once, before any variant
            if src.kind == "tflite":
                ref_path, reference = src.path, False
            else:
                ref_path = self.converter.convert(src, "fp32", spec.calibration, quiet=True).artifact
                reference = True
            shapes = resolve_input_shapes(ref_path, options.input_shapes, src.path)
            eval_file = prepare_eval(
                spec.eval_file,
                ref_path,
                self.converter.cache_dir.parent,
                reference=reference,
                input_shape=shapes[0] if len(shapes) == 1 else None,
                robustness=self.robustness,
                seed=self.robustness_seed,
            )
            not_serial = [d.id for d in devices if link_type(d, self.inventory.profile_of(d)) != "serial"]
            if eval_file.is_dir() and not_serial:
                raise ConfigError(
                    f"{spec.eval_file}: an MLPerf Tiny dataset (y_labels.csv + .bin files) is sent "
                    f"as raw bytes to MCU firmware over serial; device(s) {', '.join(not_serial)} "
                    f"need an .npz (x, y)"
                )
        jobs: list[Job] = []
        failed: list[tuple[str, HilError]] = []
        for v in self.converter.variants_for(src, variants):
            try:
                mv = self.converter.convert(src, v, spec.calibration)
                resolve_input_shapes(mv.artifact, options.input_shapes, src.path)
            except HilError as exc:
                failed.append((v, exc))
                continue
            finally:
                self._convert_bar.advance()
            mv.extra["source_path"] = str(src.path)
            for dev in devices:
                prof = self.inventory.profile_of(dev)
                jobs.append(Job(mv, dev, prof, options.resolved(prof), eval_file))
        if failed and not jobs and len({str(e) for _, e in failed}) == 1:
            raise failed[0][1]
        for v, err in failed:
            self._say(f"SKIPPED {src.name}/{v}: {err}")
            for dev in devices:
                self.broken.append(
                    BrokenJob(src.name, src.sha256, v, dev, self.inventory.profile_of(dev).name, str(err))
                )
        return jobs

    @staticmethod
    def with_repeats(jobs: list[Job]) -> list[Job]:
        """Each job's R fresh processes, round-robin: all jobs once, then all again, ... so that a
        disturbance (a neighbour, a heat spike) hits different jobs in different repeats."""
        rounds = max((j.options.repeats or 1) for j in jobs) if jobs else 1
        return [replace(j, repeat=r) for r in range(rounds) for j in jobs if r < (j.options.repeats or 1)]

    def run(
        self,
        jobs: list[Job],
        argv: list[str],
        resume: bool = False,
        label: str | None = None,
        wait: bool = True,
        kind: str = USER_RUN,
    ) -> RunSummary:
        """Measure `jobs` as a new run of `kind` (`hil calibrate`: calibrate), or (`resume`) the missing
        jobs of the newest unfinished run of the same plan and kind. Each device is measured under its
        cross-process lock (busy: wait with a message, or with `wait=False` fail before anything is
        written); each job is claimed in the store before it is measured, so concurrent sessions of
        one run never measure a job twice."""
        keys = [j.key for j in jobs] + [b.key for b in self.broken]
        plan_hash = hashlib.sha256(json.dumps(sorted(keys)).encode()).hexdigest()[:16]
        run_id, done = None, set()
        if resume:
            run_id = self.store.resumable_run(plan_hash, kind)
            if run_id:
                done = self.store.done_jobs(run_id)
            elif self.resume_mismatch:
                raise ConfigError(self.resume_mismatch)
        todo = [j for j in jobs if j.key not in done]
        if not wait:  # --no-wait: every device now, or one error line before the run is touched
            try:
                for j in todo:
                    if j.device.id not in self._device_locks:
                        dev_lock = DeviceLock(j.device, run_id)
                        dev_lock.acquire(wait=False, log=self._say)
                        self._device_locks[j.device.id] = dev_lock
            except BaseException:
                self._release_locks()
                raise
        try:
            return self._run(jobs, todo, keys, plan_hash, run_id, done, argv, resume, label, kind)
        finally:
            self._release_locks()

    def _release_locks(self) -> None:
        for dev_lock in self._device_locks.values():
            dev_lock.release()
        self._device_locks.clear()

    def _run(
        self,
        jobs: list[Job],
        todo: list[Job],
        keys: list[str],
        plan_hash: str,
        run_id: str | None,
        done: set[str],
        argv: list[str],
        resume: bool,
        label: str | None,
        kind: str,
    ) -> RunSummary:
        if run_id:
            self.store.reopen_run(run_id, self.owner)
            self._say(f"resuming run {run_id}: {len(done)} of {len(jobs)} jobs already measured")
        elif resume:
            hint = ""
            if self.resume_candidate:
                hint = (
                    f" (run {self.resume_candidate} had this command line but planned other jobs: a model "
                    "file, its data, the inventory or a device profile changed since)"
                )
            self._say(f"nothing to resume for this plan; starting a new run{hint}")
        commits = {}
        by_source: dict[Path, str | None] = {}  # two `git` processes per model file, not per job
        for j in jobs:
            src_path = Path(j.variant.extra.get("source_path", "")) if j.variant.extra else None
            if src_path and src_path not in by_source:
                by_source[src_path] = git_commit_of(src_path)
            commits[j.key] = by_source[src_path] if src_path else None
        if run_id is None:
            first_commit = next((c for c in commits.values() if c), None)
            run_id = self.store.start_run(
                keys, plan_hash, argv, __version__, platform.node(), first_commit, label, kind, self.owner
            )
        for dev_lock in self._device_locks.values():
            dev_lock.set_run(run_id)
        summary = RunSummary(run_id)
        summary.skipped = len(jobs) - len(todo)
        lanes: dict[str, dict[str, list[Job]]] = {}
        for j in todo:
            lanes.setdefault(hardware_lane(j.device), {}).setdefault(j.device.id, []).append(j)
        lock = threading.Lock()
        status = "interrupted"

        def lane_worker(devices: dict[str, list[Job]]) -> None:
            for dev_jobs in devices.values():
                if self._stop.is_set():
                    return
                dev = dev_jobs[0].device
                held = dev.id in self._device_locks
                dev_lock = self._device_locks[dev.id] if held else DeviceLock(dev, run_id)
                if not dev_lock.acquire(wait=True, log=self._say, stop=self._stop):
                    return  # interrupted while waiting for the device
                try:
                    self._device_worker(run_id, dev_jobs, summary, lock, commits)
                finally:
                    if not held:
                        dev_lock.release()  # the next session waiting for this device may start

        pool = ThreadPoolExecutor(max_workers=max(1, len(lanes)))
        try:
            for b in self.broken:
                if b.key in done:
                    continue
                why = self._claim(run_id, b.key)
                if why is not None:
                    summary.skipped += 1
                    continue
                self._keep(
                    f"{b.model}/{b.variant}@{b.device.id}",
                    ResultRecord(
                        run_id=run_id,
                        job_key=b.key,
                        model=b.model,
                        model_sha256=b.sha256,
                        variant=b.variant,
                        device_id=b.device.id,
                        profile=b.profile,
                        status="error",
                        transport=link_type(b.device, self.inventory.profile_of(b.device)),
                        harness_version=__version__,
                        host=platform.node(),
                        error=b.error,
                    ),
                    [],
                    {},
                )
                summary.errors += 1
                summary.failures.append(f"{b.model}/{b.variant}@{b.device.id}: {b.error}")
            with progress.task("measuring", len(todo)) as self._measure_bar:
                futures = [pool.submit(lane_worker, devices) for devices in lanes.values()]
                for f in futures:
                    f.result()
            status = "complete" if not (summary.infra_errors or summary.errors) else "incomplete"
        except BaseException:
            self._stop.set()  # Ctrl-C: workers stop after the job in flight (the runner got SIGINT too)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._close_run(run_id, status, keys, summary)
        if self._lost:
            raise StorageError(
                f"{len(self._lost)} measured result(s) could be neither stored nor kept in {self.spool.directory} "
                f"({self._lost[0]}): free space, then measure them again with `hil run --resume`"
            )
        return summary

    def _claim(self, run_id: str, key: str) -> str | None:
        """claim_job, or None (measure it) when the store cannot be written: a claim only keeps two
        sessions of a run from measuring one job twice, and the result will be spooled."""
        try:
            return self.store.claim_job(run_id, key, self.owner)
        except StorageError as exc:
            with self._log_lock:
                if self._store_down is None:
                    self._store_down = str(exc)
                    self.log(f"{exc}: measuring on, results go to the spool {self.spool.directory}")
            return None

    def _keep(
        self,
        label: str,
        rec: ResultRecord,
        measurements: list[tuple[str, float | None, str]],
        samples: dict[str, list[float]],
    ) -> None:
        """Store one result; when the store cannot take it, spool it (saying so); when the spool
        cannot either, stop measuring (every further result would be lost too)."""
        stamp = time.time()
        try:
            self.store.record(rec, measurements, samples, timestamp=stamp)
            return
        except StorageError as exc:
            why = str(exc)
        try:
            path = self.spool.keep_result(rec, measurements, samples, stamp)
        except OSError as exc:
            self._stop.set()
            with self._log_lock:
                self._lost.append(f"{self.spool.directory}: {exc.strerror or exc}")
                self.log(f"LOST {label}: {why}; the spool cannot be written either ({exc.strerror or exc}); stopping")
            return
        with self._log_lock:
            self._spooled.append(label)
            self.log(f"{why}: result of {label} kept in {path}; stored when the database can be written again")

    def _close_run(self, run_id: str, status: str, keys: list[str], summary: RunSummary) -> None:
        """End the run in the store. Spooled results first get another chance (the disk may have room
        again); with results still spooled, or when the end cannot be written, the end is spooled after
        them too, so that the run is judged again once they are stored."""
        if self._spooled:
            replayed = self.spool.replay(self.store)
            if replayed.stored:
                self._say(f"stored {replayed.stored} spooled result(s) into {self.store.path}")
        summary.spooled = sum(1 for p in self.spool.pending() if _is_result(p, run_id))
        try:
            # the session ends with the status it leaves (never a `running` run without a session),
            # then its claims: jobs not finished here stay missing for --resume
            self.store.finish_run(run_id, status, planned=keys, owner=self.owner)
            self.store.release_claims(self.owner)
            stored = True
        except StorageError as exc:
            self._say(f"{exc}: the end of run {run_id} ({status}) will be stored with the spooled results")
            stored = False
        if summary.spooled or not stored:  # judged again once its spooled results are stored
            try:
                self.spool.keep_finish(run_id, status, keys)
            except OSError:
                pass  # the run stays as it is; `hil run --resume` measures what it misses all the same
        if summary.spooled:
            self._say(
                f"{summary.spooled} result(s) of run {run_id} are in the spool {self.spool.directory}: they are "
                "stored by the next command that can write the database, or by `hil db recover`"
            )

    def _device_worker(
        self, run_id: str, jobs: list[Job], summary: RunSummary, lock: threading.Lock, commits: dict
    ) -> None:
        dev, prof = jobs[0].device, jobs[0].profile
        backend = transport_for(dev, prof, self._say)
        backend.cache_root = self.converter.cache_dir.parent  # MCU bundles live next to the artifacts
        opened = False
        unreachable: HilError | None = None  # (re)connecting failed: the device's other jobs fail fast
        for job in jobs:
            if self._stop.is_set():
                break  # interrupted: the job stays missing and `hil run --resume` measures it
            why_not = self._claim(run_id, job.key)
            if why_not is not None:  # another session resuming this run has it (or had it)
                self._say(f"skipped {job.label}: {why_not}")
                with lock:
                    summary.skipped += 1
                self._measure_bar.advance()
                continue
            if unreachable is not None:
                infra = isinstance(unreachable, InfraError)
                msg = f"{unreachable} (not attempted: device could not be reached earlier in this run)"
                self._fail(run_id, job, "infra_error" if infra else "error", msg, commits, summary, lock)
                continue
            try:
                if not opened:
                    try:
                        backend.open()
                    except HilError as exc:
                        unreachable = exc
                        raise
                    opened = True
                self._detail(f"measuring {job.label} ...")
                doc = backend.benchmark(job)
                if doc.get("status") != "ok":
                    if self._stop.is_set() or doc.get("error_kind") == "interrupted":
                        break
                    raise _RunnerError(
                        doc.get("error") or "runner reported failure without a message", doc.get("error_kind")
                    )
                self._record(run_id, job, "ok", doc, None, commits)
                p50 = (doc.get("latency_us") or {}).get("p50")
                self._say(f"done {job.label}: p50 {p50:.1f} us" if p50 is not None else f"done {job.label}")
                with lock:
                    summary.ok += 1
                self._measure_bar.advance()
            except _RunnerError as exc:
                # the runner rejected the model/data/arguments: the user's to fix, not the lab's
                status = "error" if exc.kind in USER_ERROR_KINDS else "infra_error"
                self._fail(run_id, job, status, str(exc), commits, summary, lock)
            except InfraError as exc:
                if self._stop.is_set():
                    break
                self._fail(run_id, job, "infra_error", str(exc), commits, summary, lock)
                if opened:
                    backend.close()
                    opened = False
            except HilError as exc:
                self._fail(run_id, job, "error", str(exc), commits, summary, lock)
            except Exception as exc:
                self._fail(
                    run_id, job, "infra_error", f"unexpected {type(exc).__name__}: {exc}", commits, summary, lock
                )
                if opened:
                    backend.close()
                    opened = False
        if opened:
            backend.close()

    def _fail(
        self, run_id: str, job: Job, status: str, msg: str, commits: dict, summary: RunSummary, lock: threading.Lock
    ) -> None:
        self._record(run_id, job, status, None, msg, commits)
        kind = " (infrastructure)" if status == "infra_error" else ""
        self._say(f"FAILED {job.label}{kind}: {msg}")
        with lock:
            if status == "infra_error":
                summary.infra_errors += 1
            else:
                summary.errors += 1
            summary.failures.append(f"{job.label}: {msg}")
        self._measure_bar.advance()

    def _record(self, run_id: str, job: Job, status: str, doc: dict | None, error: str | None, commits: dict) -> None:
        mv = job.variant
        runtime = (doc or {}).get("runtime") or {}
        rec = ResultRecord(
            run_id=run_id,
            job_key=job.key,
            model=mv.model_name,
            model_sha256=mv.source_sha256,
            variant=mv.variant,
            device_id=job.device.id,
            profile=job.profile.name,
            status=status,
            converter_version=mv.converter_version,
            artifact_sha256=mv.artifact_sha256,
            transport=link_type(job.device, job.profile),
            runtime=runtime.get("name"),
            runtime_version=runtime.get("version"),
            harness_version=__version__,
            git_commit=commits.get(job.key),
            host=platform.node(),
            error=error,
            raw=doc,
        )
        if doc and not doc.get("energy"):
            doc["energy"] = on_device(job.profile).from_runner(doc)
        measurements, samples = flatten(doc) if doc else ([], {})
        if doc and not any(m[0] == "model_size_bytes" for m in measurements):
            measurements.append(("model_size_bytes", float(mv.size_bytes), "B"))
        if doc:
            measurements += model_rows(mv.artifact)  # MACs and parameters, for the reports
        if doc:
            for key in profile_keys:
                if doc.get(key) is not None:
                    self._complete_profile(job, doc, key)
        if doc and job.paired is not None and isinstance(doc.get("paired"), dict):
            ref = job.paired  # which artifact the in-process ratio is against (the gate checks it)
            doc["paired"].update(artifact_sha256=ref.artifact_sha256, model=ref.model_name, variant=ref.variant)
        if doc:  # raw samples live in the samples table; keep the stored document small
            doc = json.loads(json.dumps(doc))
            doc.get("latency_us", {}).pop("samples", None)
            ((doc.get("paired") or {}).get("latency_us") or {}).pop("samples", None)
            (doc.get("warmup") or {}).pop("samples_us", None)
            rec.raw = doc
        self._keep(job.label, rec, measurements, samples)

    def _complete_profile(self, job: Job, doc: dict, key: str) -> None:
        """Shapes and MACs from the artifact it profiled (the job's, or the paired reference's) into a
        per-operator profile of the device. A profile that is malformed or not of that artifact is a
        warning naming the device; the result is stored without it (kept in the document as
        `<key>_rejected`), never lost over it."""
        where = f"device '{job.device.id}': {key}"
        try:
            if of_paired(key) and job.paired is None:
                raise ModelError(f"{where}: a profile of a paired artifact, but this job timed none")
            artifact = job.paired.artifact if of_paired(key) and job.paired is not None else job.variant.artifact
            doc[key] = complete(doc[key], artifact, where)
        except Exception as exc:  # whatever it is, the measured result is stored
            why = str(exc) if isinstance(exc, HilError) else f"{where}: {exc!r}"
            with self._log_lock:
                what = "its per-operator profile" if key == MAIN_PROFILE else f"its {key}"
                _log.warning(f"warning: {why}; {job.label} stored without {what}")
            doc[f"{key}_rejected"] = {"error": why, key: doc.pop(key)}


class _RunnerError(Exception):
    """The runner answered, but with a failure document."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


USER_ERROR_KINDS = {"model", "usage", "eval"}  # runner error kinds caused by the input, not the lab


def _is_result(path: Path, run_id: str) -> bool:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return entry.get("kind") == "result" and (entry.get("record") or {}).get("run_id") == run_id
