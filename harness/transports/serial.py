"""MCU boards over a serial port: the MLPerf Tiny protocol mapped onto the runner JSON schema.

The firmware on the board (stock MLPerf Tiny, hilbench-generated, or `hil mcu-sim`) already holds
the model, so before measuring, the backend checks that it is the job's artifact: hilbench firmware
reports ``m-model-[sha256:<prefix>]``; other IDs (``ic01``...) cannot be verified and are warned
about, and a device answering with a different number of outputs than the model has is refused.

Automatic flashing (transport ``flash: auto``, the default): when the board reports another model
and the profile has ``mcu.build_cmd``/``mcu.flash_cmd``, the job's artifact is turned into a TFLM
bundle (cached by artifact sha256 + profile, ``harness/mcu/bundle.py``), built and flashed with the
profile's commands (``harness/mcu/deploy.py``, port closed meanwhile), and the board is reconnected
and checked again. ``never`` refuses the job instead; ``always`` flashes before every job. The time
spent is in the result document's ``flash`` entry, never in the latency.
"""

from __future__ import annotations

import platform
import time

from harness.core.jobs import Job
from harness.errors import ConfigError, InfraError
from harness.lab.config import EXTERNAL_METERS, SerialSettings
from harness.mcu.serial import energy_mode, session
from harness.mcu.serial.protocol import ProtocolClient
from harness.meters.base import Meter
from harness.meters.select import meter_for
from harness.models import mlperf
from harness.models.inspect.analysis import ModelAnalysis, analyze
from harness.transports.base import RUNNER_SCHEMA, Transport, transport_settings

RUNTIME_NAME = "tflm-serial"


class SerialTransport(Transport):
    client: ProtocolClient | None = None
    meter: Meter | None = None  # opened on the first job that needs it, closed with the transport
    _said_no_energy = False
    _said_no_profiler = False

    @property
    def settings(self) -> SerialSettings:
        return transport_settings(self.device, SerialSettings, "serial")

    def _connected(self) -> ProtocolClient:
        assert self.client is not None, "open() (or the reconnect after flashing) sets the client"
        return self.client

    def open(self) -> None:
        t = self.settings
        if self.profile.energy_meter.type in EXTERNAL_METERS and self.device.meter is not None and self.meter is None:
            self._meter()  # the meter powers the board: open it before the board is reached
        try:
            self.client = client = session.connect(
                self.device.id, t, self._say, timer_wrap_us=session.timer_wrap_us(self.profile)
            )
        except BaseException:
            if self.meter is not None:
                self.meter.close()
                self.meter = None
            raise
        info = client.info
        caps = ",".join(sorted(info.caps)) or "none (stock firmware)"
        self._say(
            f"connected on {t.port}: {info.name or '?'}, firmware {info.profile or '?'}, "
            f"model {info.model_id or '?'}, extensions {caps}"
        )

    def _meter(self) -> Meter:
        if self.meter is None:
            meter = meter_for(self.profile, self.device)
            if not meter.external:
                raise ConfigError(
                    f"device '{self.device.id}': the firmware runs in energy mode (no laps; its "
                    f"timestamp pin marks the inferences), but profile '{self.profile.name}' has no "
                    f"external energy meter (energy_meter: type ppk2, lpm01a or joulescope) to "
                    f"time them; flash a performance-mode firmware or configure the meter"
                )
            meter.open()
            self.meter = meter
        return self.meter

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
            self.meter = None
        if self.client is not None:
            self.client.link.close()
            self.client = None

    def benchmark(self, job: Job) -> dict:
        if self.client is None:
            self.open()
        t = self.settings
        artifact = job.variant.artifact
        a = analyze(artifact)
        if len(a.inputs) != 1:
            raise InfraError(f"{artifact}: the serial protocol feeds one input tensor, the model has {len(a.inputs)}")
        spec = session.tensor_spec(a.inputs[0])
        out_elements = session.tensor_spec(a.outputs[0]).elements if a.outputs else None
        flash = self._ensure_model(job, a)
        client = self._connected()
        before = (client.resyncs, client.retried, client.noise, client.dbbin_fallbacks)
        try:
            verified, note = session.verify_model(client.info, a.sha256)
        except InfraError as exc:
            raise InfraError(f"device '{self.device.id}' on {t.port}: {exc}") from None
        if verified is None:
            self._say(f"warning: {note}")
        conv = self._convention(client, a)
        n_outputs = conv.outputs(out_elements) if out_elements is not None else None
        if job.eval_file and mlperf.is_dataset(job.eval_file):
            perf_input = session.first_dataset_input(job.eval_file, conv, spec)
        elif job.eval_file:
            x, _, _ = session.load_eval(job.eval_file)
            perf_input = session.encode_input(conv, spec, x[0])
        else:
            perf_input = session.random_input(conv, spec)
        if len(perf_input) != session.wire_bytes(conv, spec):  # pragma: no cover - the encoders guarantee it
            raise InfraError(
                f"{artifact}: input encoding produced {len(perf_input)} bytes, expected "
                f"{session.wire_bytes(conv, spec)}"
            )
        plan = session.PerfPlan.from_options(job.options, job.profile)
        external = self.profile.energy_meter.type in EXTERNAL_METERS
        if (client.probe_timestamp_mode() if external else client.info.timestamp_mode) == "energy":
            perf = energy_mode.performance(
                client, self._meter(), self.profile.energy_meter, perf_input, plan, n_outputs, self._job_line
            )
        else:
            perf = session.performance(client, perf_input, plan, n_outputs, self._job_line)
            if external and not self._said_no_energy:
                self._said_no_energy = True
                self._say(
                    f"warning: the firmware runs in performance mode, so the {self.profile.energy_meter.type} "
                    f"cannot tell its inferences apart: no energy (build the firmware in energy mode)"
                )
        arena = client.arena()
        op_profile = None
        if job.options.profile_runs and "profile" not in client.info.caps:
            if not self._said_no_profiler:  # once per device, the run goes on without a profile
                self._said_no_profiler = True
                self._say(f"warning: device '{self.device.id}': {session.NO_PROFILER}")
        elif job.options.profile_runs:  # a pass of its own after the timed windows (harness.profile)
            op_profile = session.op_profile_or_warning(
                client,
                job.options.profile_runs,
                self._job_line,
                expected_s=(perf.get("first_inference_us") or 0.0) / 1e6,
                analysis=a,
            )
        acc = None
        if job.eval_file and t.accuracy_samples > 0:
            acc = session.accuracy(client, job.eval_file, spec, n_outputs, t.accuracy_samples, self._job_line, conv)
            if acc:
                pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"
                if acc.get("score") == "auc":
                    auc = acc.get("auc")
                    self._detail(f"accuracy on {acc['n']} samples: AUC {'-' if auc is None else f'{auc:.4f}'}")
                else:
                    self._detail(
                        f"accuracy on {acc['n']} samples: top-1 {pct(acc['top1'])}, agreement {pct(acc['agreement'])}"
                    )
        info = client.info
        fp = flash.get("footprint") or {}
        memory = {
            "arena_bytes": arena.get("used") if arena else None,
            "arena_size_bytes": arena.get("size") if arena else None,
            # measured from the firmware ELF the profile's build_cmd wrote (never an estimate)
            "flash_bytes": fp.get("flash_bytes"),
            "ram_bytes": fp.get("ram_bytes"),
        }
        doc = {
            "schema": RUNNER_SCHEMA,
            "status": "ok",
            "runtime": {"name": RUNTIME_NAME, "version": info.profile or info.name or "unknown"},
            "python": None,
            "platform": {"machine": self.profile.arch, "system": "mcu", "release": info.profile, "node": info.name},
            "host": {"node": platform.node(), "port": t.port, "baudrate": t.baudrate},
            "device": {
                "name": info.name,
                "role": info.role,
                "firmware": info.profile,
                "model_id": info.model_id,
                "model_verified": verified,
                "model_check": note,
                "extensions": sorted(info.caps),
                "timestamp_mode": info.timestamp_mode,
                "io_convention": conv.name,
            },
            "model": {"path": str(artifact), "size_bytes": a.size_bytes, "sha256": a.sha256},
            "config": perf["config"],
            "init_us": None,
            "first_inference_us": perf["first_inference_us"],
            "warmup": perf["warmup"],
            "latency_us": perf["latency_us"],
            "windows": perf["windows"],
            "memory": memory,
            "telemetry": None,
            "energy": perf.get("energy"),
            "accuracy": acc,
            "flash": flash,
            "link": dict(
                zip(
                    ("resyncs", "retries", "noise_lines", "dbbin_fallbacks"),
                    (
                        now - then
                        for now, then in zip(
                            (client.resyncs, client.retried, client.noise, client.dbbin_fallbacks), before
                        )
                    ),
                )
            ),
        }
        if op_profile is not None:  # --profile (the key is absent otherwise, as in a Linux runner's document)
            doc["op_profile"] = op_profile
        return doc

    def _job_line(self, msg: str) -> None:
        """A line of the measurement itself (calibration, each window, accuracy): with `hil -v`; its
        warnings always."""
        (self._say if msg.startswith("warning:") else self._detail)(msg)

    def _convention(self, client: ProtocolClient, a: ModelAnalysis) -> mlperf.Convention:
        """The device's I/O convention (transport io_convention, or auto from its model ID), checked
        against the job's model."""
        t = self.settings
        conv = session.io_convention(t.io_convention, client.info)
        if conv.name != "tensor":
            how = "transport io_convention" if t.io_convention != "auto" else f"model ID {client.info.model_id}"
            self._say(f"I/O convention {conv.name} ({how}): {conv.summary}")
            ios = [{"dtype": i.dtype, "elements": session.tensor_spec(i).elements, "scale": i.scale} for i in a.inputs]
            outs = [{"dtype": o.dtype, "elements": session.tensor_spec(o).elements} for o in a.outputs]
            try:
                mlperf.check_model(conv, ios, outs, f"{a.path}")
            except ConfigError as exc:
                raise InfraError(
                    f"device '{self.device.id}' on {t.port}: {exc} (the firmware runs another "
                    f"model, or set the device's transport io_convention)"
                ) from None
        return conv

    # ------------------------------------------------------------------ automatic flashing

    def _ensure_model(self, job: Job, a: ModelAnalysis) -> dict:
        """Flash the job's model when the transport's `flash` mode asks for it; the `flash` entry of
        the result document."""
        t = self.settings
        mcu = self.profile.mcu
        entry = {"mode": t.flash, "flashed": False, "seconds": 0.0, "bundle": None, "log": None}
        if t.flash == "never" or mcu is None or not (mcu.build_cmd or mcu.flash_cmd):
            return entry  # the model check below refuses a board running another model
        client = self._connected()
        board = client.info.model_id
        if t.flash == "auto":
            try:
                verified, _ = session.verify_model(client.info, a.sha256)
            except InfraError:
                verified = False
            if verified is not False:  # the right model, or firmware that cannot tell (warned below)
                if verified:
                    self._say(f"flash: board already runs {board}, not flashing")
                    entry.update(self._cached_footprint(a))
                return entry
        return {**entry, **self._flash(job, a, board)}

    def _cached_footprint(self, a: ModelAnalysis) -> dict:
        """The footprint measured when this artifact's bundle was last built here (the board reports
        its model ID, so it runs that build's firmware); {} when there is none."""
        from harness.mcu import footprint
        from harness.mcu.bundle import bundle_cache_dir
        from harness.models.convert import default_cache_dir

        root = self.cache_root or default_cache_dir().parent
        fp = footprint.recorded(bundle_cache_dir(root, a.sha256, self.profile))
        return {"footprint": fp.to_json(), "footprint_source": "cached build"} if fp else {}

    def _flash(self, job: Job, a: ModelAnalysis, board: str | None) -> dict:
        from harness.mcu import footprint
        from harness.mcu.bundle import CACHE_STAMP, bundle_cache_dir, cached_bundle
        from harness.mcu.flash import build_and_flash
        from harness.models.convert import default_cache_dir

        t = self.settings
        mv = job.variant
        want = f"sha256:{a.sha256[:16]}"
        t0 = time.monotonic()
        what = f"{mv.model_name} {mv.variant} (sha256 {a.sha256[:16]}...)"
        root = self.cache_root or default_cache_dir().parent
        if not (bundle_cache_dir(root, a.sha256, self.profile) / CACHE_STAMP).exists():
            self._say(f"flash: building bundle for {what}")
        source = {
            "path": str((mv.extra or {}).get("source_path") or mv.artifact),
            "variant": mv.variant,
            "sha256": mv.source_sha256,
        }
        bundle, manifest, hit = cached_bundle(
            mv.artifact, a.sha256, self.profile, root, model_name=mv.model_name, source=source, log=self._say
        )
        if hit:
            self._say(f"flash: bundle for {what} cached in {bundle}, not rebuilding")
        self._say(f"flash: board runs {board or 'an unknown model'}, flashing {want}")
        self.close()  # flash tools need the port
        steps = build_and_flash(self.device, self.profile, bundle, manifest, log=self._say)
        log_path = steps[-1].log if steps else bundle / "logs"
        t_reset = time.monotonic()
        try:
            self.client = client = session.reconnect(
                self.device.id,
                t,
                self._say,
                after=f"flashing {want}",
                timer_wrap_us=session.timer_wrap_us(self.profile),
                flashed=any(s.step == "flash" for s in steps),
            )
        except InfraError as exc:
            raise InfraError(f"{exc} (see {log_path})") from None
        info = client.info
        try:
            verified, _ = session.verify_model(info, a.sha256)
        except InfraError:
            raise InfraError(
                f"device '{self.device.id}' still reports model {info.model_id} after flashing {want} (see {log_path})"
            ) from None
        seconds = time.monotonic() - t0
        self._say(
            f"flash: {want} flashed in {seconds:.1f} s; board reports model {info.model_id or '?'}"
            f"{'' if verified else ' (cannot be verified)'}"
        )
        fp = footprint.recorded(bundle)
        return {
            "flashed": True,
            "seconds": round(seconds, 3),
            "bundle": str(bundle),
            "footprint": fp.to_json() if fp else None,
            "footprint_source": "build" if fp else None,
            "bundle_cached": hit,
            "log": str(log_path),
            "steps": {s.step: round(s.seconds, 3) for s in steps},
            "reconnect_seconds": round(time.monotonic() - t_reset, 3),
            "previous_model_id": board,
        }
