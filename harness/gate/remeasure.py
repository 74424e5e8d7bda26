"""Confirm before failing: re-measure the reference artifact and the candidate, interleaved, on the
same device in the same session, and let the paired levels decide.

A nightly comparison sets today's processes against levels from other nights; whatever changed in
between (heat, frequency, neighbours, the OS) looks like a change of the model. Interleaving
A B A B ... on one device removes the nights from the comparison: both artifacts see the same
conditions, and a paired test on the process levels asks only "is B slower than A, now?".
On a Linux device (local, SSH) both artifacts are timed in the same runner process, in blocks of a
few milliseconds (A B B A ...): on a shared or virtual CPU the speed differs by several per cent
between two processes started back to back, but not within milliseconds, so the per-process ratio
is what pairing should compare (measured on the 2-core CI VM: the +5 % twin of the gate benchmark
read +7.3 to +9.4 % in separate processes that differed by up to 10 % among themselves; within one
process the ratio spread was under 1 %). MCU boards alternate flashed processes (A B A B ...).
Artifacts are content-addressed, so the reference's artifact is found in the conversion cache by
its sha256. Every confirmation process is stored as a result of its own run (kind `confirm`, label
`confirm:<run id>`), so the evidence behind a verdict stays inspectable; such a run is never the
latest run, a reference or part of a series' history.

A latency regression that the re-measurement confirms is then profiled per operator, reference and
candidate in one more runner process (`profile_runs`), and the gate names the operators that account
for the added time (harness.profile.diff.explain). That process comes after the timed ones and none
of its numbers enter a decision: the verdict is the same with or without a profiler on the device.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, field

from harness import __version__
from harness.core.jobs import Job, RunOptions
from harness.errors import HilError
from harness.gate.confirm import Confirmation, confirm
from harness.gate.evaluate import Check, GateResult, KeyResult
from harness.gate.family import holm_adjust
from harness.gate.levels import fmt_pct
from harness.gate.process_checks import direction_of
from harness.gate.steps import SUSTAIN_RUNS
from harness.lab.config import Inventory, link_type
from harness.log import DETAIL
from harness.models.convert import Converter
from harness.models.inspect.analysis import analyze
from harness.profile.diff import explain
from harness.profile.document import attach_analysis, from_dict
from harness.run.device_lock import DeviceLock
from harness.run.rows import flatten
from harness.store.results import ClaimOwner, ResultRecord, ResultStore
from harness.store.verdicts import artifact_of
from harness.transports import transport_for

_log = logging.getLogger(__name__)

DEFAULT_PAIRS = 5  # A B A B ... processes per artifact (MCU boards: each one a flash)
IN_PROCESS_PAIRS = 8  # runner processes timing both artifacts (cheaper than 5 + 5, and more pairs)
RUNNER_TRANSPORTS = ("local", "ssh")  # devices whose runner can time two models in one process
PAIRED_METRICS = ("latency_min_us", "latency_p50_us", "latency_p90_us")
PROFILE_RUNS = 20  # profiled invocations of each artifact when a latency regression is confirmed
NO_PROFILER = "no per-operator profile (device/firmware has no profiler)"


@dataclass
class ConfirmationRun:
    """The interleaved re-measurement of one key: levels per artifact, the decision per metric."""

    key: str
    baseline_sha256: str
    candidate_sha256: str
    levels_a: dict[str, list[float]] = field(default_factory=dict)
    levels_b: dict[str, list[float]] = field(default_factory=dict)
    decisions: dict[str, Confirmation] = field(default_factory=dict)
    run_id: str | None = None
    impossible: str | None = None  # why no confirmation could be made
    method: str = ""  # in-process (A and B in one runner process) or interleaved processes
    operators: str | None = None  # where the added time went (explain), or why no profile says it


def confirm_key(
    store: ResultStore,
    inventory: Inventory,
    converter: Converter,
    run_id: str,
    key: str,
    model: str,
    variant: str,
    device_id: str,
    baseline_sha256: str | None,
    candidate_sha256: str | None,
    metrics: dict[str, tuple[float, int]],
    pairs: int | None = None,
    alpha: float = 0.05,
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] | None = None,
    log: Callable[[str], None] = _log.info,
    wait: bool = True,
    *,
    options: RunOptions | None = None,
    kind: str = "confirm",
    label: str | None = None,
    argv: list[str] | None = None,
    git_commit: str | None = None,
) -> ConfirmationRun:
    """Measure A B A B ... (`pairs` of each) and test every metric in `metrics` (metric -> threshold,
    direction); `confirm_regressions` makes the gate-wide decision. `options`: measurement settings
    (default the profile's); `kind`, `label`, `argv`, `git_commit`: the run the processes are stored
    as (`hil bisect` stores each step as a run of kind `bisect`, the commit it measured)."""
    out = ConfirmationRun(key, baseline_sha256 or "", candidate_sha256 or "")
    try:
        device = inventory.device(device_id)
    except HilError as exc:
        out.impossible = f"device not in the inventory ({exc})"
        return out
    profile = inventory.profile_of(device)
    flash = getattr(device.transport, "flash", None) or getattr(getattr(device.transport, "serial", None), "flash", "")
    if link_type(device, profile) == "serial" and flash == "never":
        out.impossible = "the board is set to `flash: never`, so the reference model cannot be loaded"
        return out
    if not baseline_sha256 or not candidate_sha256:
        out.impossible = "the artifact of the reference or of this run is not recorded"
        return out
    variants = {}
    for role, sha in (("reference", baseline_sha256), ("candidate", candidate_sha256)):
        mv = converter.find_artifact(sha)
        if mv is None:
            out.impossible = f"the {role} artifact sha256 {sha[:12]} is not in the conversion cache"
            return out
        variants[role] = mv
    asked = options or RunOptions()
    options = (dataclasses.replace(asked, input_shapes=input_shapes) if input_shapes else asked).resolved(profile)
    jobs = {role: Job(mv, device, profile, options) for role, mv in variants.items()}
    transport = transport_for(device, profile, log)
    transport.cache_root = converter.cache_dir.parent
    owner = ClaimOwner.this_process()
    confirm_run = (
        None
        if store.read_only
        else store.start_run(  # `gate --no-record` stores nothing
            [f"{kind}:{key}"],
            kind,
            argv or ["gate", "--confirm", run_id],
            __version__,
            platform.node(),
            git_commit,
            label or f"confirm:{run_id}",
            kind=kind,  # never a "latest" run, a reference or a series' history
            owner=owner,
        )
    )
    out.run_id = confirm_run
    status = "complete"
    dev_lock = DeviceLock(device, confirm_run or run_id)
    in_process = link_type(device, profile) in RUNNER_TRANSPORTS and set(metrics) <= set(PAIRED_METRICS)
    out.method = "in-process" if in_process else "interleaved processes"
    processes = (pairs or IN_PROCESS_PAIRS) if in_process else 2 * (pairs or DEFAULT_PAIRS)
    how = "reference and candidate in each" if in_process else "reference and candidate in turn"
    log(f"confirming {key} on {device_id}: {processes} runner processes, {how}")
    where = (model, variant, device_id, profile.name, link_type(device, profile))
    try:
        dev_lock.acquire(wait=wait, log=log)  # nobody else measures on the device meanwhile
        transport.open()
        if in_process:
            _paired_in_process(
                store,
                transport,
                jobs,
                variants,
                out,
                metrics,
                pairs or IN_PROCESS_PAIRS,
                confirm_run,
                where,
                log,
            )
        pairs = pairs or DEFAULT_PAIRS
        for i in range(0 if in_process else pairs):
            for role, levels in (("reference", out.levels_a), ("candidate", out.levels_b)):
                _log.log(DETAIL, f"confirming {key}: {role} {i + 1}/{pairs}")
                doc = transport.benchmark(jobs[role])
                if doc.get("status") != "ok":
                    raise HilError(doc.get("error") or "runner failed")
                _keep(store, doc, levels, metrics, variants[role], f"confirm-{role}-{i}", confirm_run, where)
        _decide(out, metrics, alpha)
        if any(d.confirmed for m, d in out.decisions.items() if m.startswith("latency")):
            out.operators = _profile_pass(transport, jobs, variants, in_process, device_id)
    except HilError as exc:
        out.impossible = f"re-measurement failed: {exc}"
        status = "incomplete"
    finally:
        transport.close()
        dev_lock.release()
        if confirm_run is not None:
            store.finish_run(confirm_run, status, owner=owner)
    return out


def _decide(out: ConfirmationRun, metrics: dict[str, tuple[float, int]], alpha: float) -> None:
    for metric, (threshold, direction) in metrics.items():
        a, b = out.levels_a.get(metric, []), out.levels_b.get(metric, [])
        if len(a) == len(b) and a:
            out.decisions[metric] = confirm(a, b, threshold, direction, alpha=alpha)


def _profile_pass(transport, jobs: dict, variants: dict, in_process: bool, device_id: str) -> str:
    """Where the added time went: reference and candidate profiled per operator (in one runner process
    on a Linux device, so both see the same conditions), matched op by op, and the operators that
    account for 80 % of the change named. Asked for only once the paired levels show a confirmed
    latency regression (a Holm rejection needs the uncorrected test to reject too), and after them:
    nothing measured here enters a decision. A device without a profiler (MCU firmware built without
    one, an older runner) or a failed profile pass only says so; it never fails the gate."""
    _log.log(DETAIL, f"profiling reference and candidate per operator ({PROFILE_RUNS} invocations each)")
    try:
        if in_process:
            ref = jobs["reference"]
            options = dataclasses.replace(  # the timed part only warms up: its levels are not kept
                ref.options, profile_runs=PROFILE_RUNS, min_runs=PROFILE_RUNS, min_seconds=0.0
            )
            doc = transport.benchmark(dataclasses.replace(ref, paired=variants["candidate"], options=options))
            _ok(doc)
            docs = (_op_profile(doc, "op_profile"), _op_profile(doc, "paired_op_profile"))
        else:
            pair = []
            for role in ("reference", "candidate"):
                job = jobs[role]
                doc = transport.benchmark(
                    dataclasses.replace(job, options=dataclasses.replace(job.options, profile_runs=PROFILE_RUNS))
                )
                _ok(doc)
                pair.append(_op_profile(doc, "op_profile"))
            docs = (pair[0], pair[1])
        if not docs[0] or not docs[1]:
            return NO_PROFILER
        ref_p, cand_p = (
            attach_analysis(from_dict(d, f"{device_id}: {role} op_profile"), analyze(variants[role].artifact))
            for d, role in zip(docs, ("reference", "candidate"))
        )
        return explain(ref_p, cand_p).text
    except HilError as exc:
        return f"no per-operator profile ({exc})"
    except (KeyError, TypeError, ValueError) as exc:  # a device's document that from_dict let through
        return f"no per-operator profile (the device's op_profile does not fit its artifact: {exc!r})"


def _op_profile(doc: dict, key: str) -> dict | None:
    """The profile that names the model's own ops: with XNNPACK the runner profiles XNNPACK's operators
    (`op_profile`, delegated, not model ops) and the built-in kernels too (`op_profile_builtin`);
    a candidate's inserted layer is named by the latter (as FULLY_CONNECTED #n, not as XNNPACK's n-th
    fully connected operator), which is what a reader of a regression can act on."""
    return doc.get(key + "_builtin") or doc.get(key)


def _ok(doc: dict) -> None:
    if doc.get("status") != "ok":
        raise HilError("the profile pass failed: " + (doc.get("error") or "runner failed"))


def _paired_in_process(
    store: ResultStore,
    transport,
    jobs: dict,
    variants: dict,
    out: ConfirmationRun,
    metrics: dict,
    processes: int,
    confirm_run: str | None,
    where: tuple,
    log,
) -> None:
    """`processes` runner processes, each timing the reference and the candidate interleaved in blocks
    of a few milliseconds (runner --paired-model): each process gives one pair of levels measured under
    the same conditions. Between processes started back to back the speed of a shared or virtual CPU
    differs by several per cent; within one process, A and B a few milliseconds apart do not."""
    job = dataclasses.replace(jobs["reference"], paired=variants["candidate"])
    for i in range(processes):
        _log.log(DETAIL, f"confirming {out.key}: reference and candidate in one process {i + 1}/{processes}")
        doc = transport.benchmark(job)
        if doc.get("status") != "ok":
            raise HilError(doc.get("error") or "runner failed")
        lat_b = (doc.get("paired") or {}).get("latency_us")
        if not lat_b:
            raise HilError("the device runner did not time the paired model (an older runner on the device?)")
        docs = {"reference": doc, "candidate": {"latency_us": lat_b, "model": doc.get("paired")}}
        for role, levels in (("reference", out.levels_a), ("candidate", out.levels_b)):
            _keep(store, docs[role], levels, metrics, variants[role], f"confirm-{role}-{i}", confirm_run, where)


def _keep(
    store: ResultStore,
    doc: dict,
    levels: dict[str, list[float]],
    metrics: dict,
    mv,
    job_key: str,
    confirm_run: str | None,
    where: tuple,
) -> None:
    """One re-measured process of one artifact: its levels of the metrics being decided, and (unless
    `gate --no-record`) the process stored as a result of the confirmation run, so that the evidence
    behind the verdict can be inspected like any other result."""
    measurements, samples = flatten(doc)
    values = {m: v for m, v, _ in measurements if v is not None}
    for metric in metrics:
        if metric in values:
            levels.setdefault(metric, []).append(values[metric])
    if confirm_run is None:
        return
    model, variant, device_id, profile_name, transport_type = where
    record = ResultRecord(
        run_id=confirm_run,
        job_key=job_key,
        model=model,
        model_sha256=mv.source_sha256,
        variant=variant,
        device_id=device_id,
        profile=profile_name,
        status="ok",
        artifact_sha256=mv.artifact_sha256,
        transport=transport_type,
        harness_version=__version__,
        host=platform.node(),
    )
    store.record(record, measurements, samples)


def measured_input_shapes(store: ResultStore, result_id: int | None) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """The input shapes the night was measured at (`hil run --input-shape`, recorded by the runner),
    so that a dynamic-shape model is re-measured at the same shapes."""
    raw = store.raw(result_id) if result_id is not None else None
    shapes = ((raw or {}).get("config") or {}).get("input_shapes")
    if not isinstance(shapes, dict) or not shapes:
        return None
    return tuple((str(name), tuple(int(x) for x in dims)) for name, dims in shapes.items())


FLOOR = "latency_min_us"
FLOOR_SHARE = 0.5  # of a lasting p50/p90 change that the floor must show for it to be the device's


def _floor_disagrees(c: Check, checks: list[Check]) -> str | None:
    """Why a lasting change of a median or tail latency is the nights' and not the device's: noise can
    only add time, so contention (a busy neighbour, several nights in a row) lifts the median and the
    tail of a process and leaves its fastest inference alone, while a device or runtime that really got
    slower (a clock, a kernel, a LiteRT build) is slower on every inference, floor included. The gate
    benchmark saw it: three nights under a parallel test suite read p50 +12 %, +13 %, +8 % with the
    floor at +0 %, +3 %, +0 %. None when the floor agrees or is not measured."""
    if c.metric == FLOOR or c.effect is None or c.effect <= 0:
        return None
    moved = next((f.effect for f in checks if f.metric == FLOOR and f.effect is not None), None)
    if moved is None or moved >= FLOOR_SHARE * c.effect:
        return None
    return (
        f"the latency floor of the same processes moved {fmt_pct(moved)}, less than half of it: "
        "contention, not a slower device"
    )


def _unchanged_artifact(tripped: list[Check], sha: str, checks: list[Check]) -> None:
    """A tripped, screened or creeping series whose artifact is the reference's own. Re-measuring would
    time one file against itself, which can only say "no change" (or, at rate alpha, a false alarm)
    and costs 8 runner processes per key (the gate benchmark re-measured 1-18 such keys a night, all
    unconfirmed). The model did not change, so its level speaks of the device, the runtime or the
    night, and one night is no evidence of a lasting change: the nightly comparison of an unchanged
    artifact tripped a Holm bar on 3 of 11 nights of the gate benchmark with nothing changed. Such a
    night passes, but is recorded as `level-off` instead of being accepted, so that the reference
    does not follow a level that may be the night's. A level that stays off is found by step
    detection over the series' history (`creep`, which never lets a lone night decide): a lasting
    change of the device or runtime (a LiteRT upgrade, a new kernel, a board that runs hot), which
    fails as such; `hil baseline accept` takes the new level. Lasting means off on each of the latest
    nights (`steps.Creep.sustained`): a median over them can be pulled up by a run of disturbed nights
    (the gate benchmark's busy host: 2 of 3 nights with a CPU burner read +27 % on p50, the third was
    at the reference), and with no re-measurement to tell, such a window is the night's, not a change."""
    for c in tripped:
        c.confirmation = {"impossible": f"artifact {sha[:12]} unchanged since the reference", "run_id": None}
        c.screened, c.same_artifact = False, True
        contention = _floor_disagrees(c, checks)
        if c.creep_effect is not None and c.regression and c.creep_sustained and contention is None:
            c.note = (
                f"lasting level change of an unchanged artifact ({sha[:12]}): the device or runtime changed, "
                f"not the model; not re-measured; {c.note}"
            )
            continue
        if c.creep_effect is not None and c.regression:
            c.creep_effect = None
            why = contention or f"not off on each of the last {SUSTAIN_RUNS} nights"
            c.note = f"{why}, so not lasting; {c.note}"
        was = "tripped" if c.regression else "screened"
        c.verdict, c.level_off = "pass", True
        c.note = (
            f"nightly comparison {was} on an unchanged artifact ({sha[:12]}): not re-measured (timing the file "
            f"against itself proves nothing); recorded as level-off, not a reference; nightly: {c.note}"
        )


def confirm_regressions(
    store: ResultStore,
    result: GateResult,
    inventory: Inventory | None,
    converter: Converter,
    pairs: int | None = None,
    log: Callable[[str], None] = _log.info,
    wait: bool = True,
) -> None:
    """Re-measure every key of `result` with a process-level regression or a screened comparison
    (`Check.screened`), then decide all re-measured comparisons of the gate together.

    The re-measurements are fresh data, independent of the nightly comparison that selected them, so
    Holm over the selected comparisons at the gate's alpha keeps P(any false regression) <= alpha for
    the gate however lenient the selection was. A comparison is a regression when Holm rejects its
    paired test AND the paired effect exceeds the threshold; otherwise it passes, with the evidence in
    its note (`Check.confirmation`). Where no re-measurement is possible (`flash: never`, artifact gone,
    device unreachable) the nightly verdict stands and the note says why."""
    measured: list[tuple[KeyResult, Check, Confirmation | None, ConfirmationRun]] = []
    for k in result.keys:
        tripped = [
            c for c in k.checks if (c.regression or c.screened) and c.test.startswith(("process levels", "in-process"))
        ]
        if not tripped or k.baseline is None:
            continue
        metrics = {c.metric: (c.threshold or 0.0, direction_of(c.metric)) for c in tripped}
        base_sha = artifact_of(store, k.baseline.result_ids[0])
        cand_sha = artifact_of(store, k.result_id) if k.result_id is not None else None
        if base_sha and base_sha == cand_sha:
            _unchanged_artifact(tripped, base_sha, k.checks)
            k.status = "fail" if any(c.failed for c in k.checks) else "pass"
            continue
        if inventory is None:
            out = ConfirmationRun(k.key, "", "", impossible="no lab inventory to reach the device")
        else:
            out = confirm_key(
                store,
                inventory,
                converter,
                result.run_id,
                k.key,
                k.model,
                k.variant,
                k.device_id,
                base_sha,
                cand_sha,
                metrics,
                pairs=pairs,
                alpha=result.alpha,
                log=log,
                wait=wait,
                input_shapes=measured_input_shapes(store, k.result_id),
            )
        measured += [(k, c, out.decisions.get(c.metric), out) for c in tripped]
    decided = [(k, c, d, out) for k, c, d, out in measured if d is not None and d.n > 0 and math.isfinite(d.p)]
    rejected, p_adj = holm_adjust([d.p for _, _, d, _ in decided], result.alpha)
    holm_of = {id(c): (rej, pa) for (_, c, _, _), rej, pa in zip(decided, rejected, p_adj)}
    explained: dict[str, tuple[list[str], str]] = {}
    for k, c, d, out in measured:
        was = "tripped" if c.regression else "screened"
        if d is None:
            why = out.impossible or "no paired data"
            c.confirmation = {"impossible": why, "run_id": out.run_id}
            c.note = (c.note + "; " if c.note else "") + "confirmation not possible: " + why
            continue
        rej, pa = holm_of.get(id(c), (False, math.nan))
        confirmed = rej and d.effect > (c.threshold or 0.0)
        c.confirmation = {
            "confirmed": confirmed,
            "effect": d.effect,
            "p": d.p,
            "p_holm": pa,
            "n": d.n,
            "ci": [d.ci_low, d.ci_high],
            "run_id": out.run_id,
            "method": out.method,
            "reference": out.levels_a.get(c.metric),
            "candidate": out.levels_b.get(c.metric),
        }
        paired = f"paired effect {fmt_pct(d.effect)}, p={d.p:.2g} (Holm {pa:.2g} over {len(decided)} re-measured)"
        if confirmed:
            c.verdict = "regression"
            c.screened = False
            ops = ""
            if c.metric.startswith("latency"):  # where the time went (the profile pass, `_profile_pass`)
                c.confirmation["operators"] = out.operators or NO_PROFILER
                ops = f"; per-operator profile: {c.confirmation['operators']}"
                explained.setdefault(k.key, ([], ops))[0].append(c.metric)
            c.note = f"confirmed on re-measurement: {paired} > {fmt_pct(c.threshold or 0.0)}{ops}; nightly: {c.note}"
        else:
            c.verdict = "pass"
            c.note = f"nightly comparison {was}, not confirmed on re-measurement ({paired})"
    for key, (confirmed_metrics, ops) in explained.items():  # one line per key: one profile pass per key
        log(f"{key}: latency regression confirmed ({', '.join(confirmed_metrics)}){ops}")
    for k in {id(k): k for k, _, _, _ in measured}.values():
        if not k.infra:
            k.status = "fail" if any(c.failed for c in k.checks) else "pass"
