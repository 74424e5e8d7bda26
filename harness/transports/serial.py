"""MCU boards over a serial port: the MLPerf Tiny protocol mapped onto the runner JSON schema.

The firmware on the board (stock MLPerf Tiny, hilbench-generated, or `hil mcu-sim`) already holds
the model, so before measuring, the backend checks that it is the job's artifact: hilbench firmware
reports ``m-model-[sha256:<prefix>]``; other IDs (``ic01``...) cannot be verified and are warned
about, and a device answering with a different number of outputs than the model has is refused.
"""

from __future__ import annotations

import platform
from typing import Optional

from ..analysis import analyze
from ..errors import InfraError
from ..jobs import Job
from ..serial_host import session
from ..serial_host.protocol import Dut
from .base import RUNNER_SCHEMA, Backend

RUNTIME_NAME = "tflm-serial"


class SerialBackend(Backend):
    dut: Optional[Dut] = None

    def _say(self, msg: str) -> None:
        self.log(f"  [{self.device.id}] {msg}")

    def open(self) -> None:
        t = self.device.transport
        self.dut = session.connect(self.device.id, t, self._say)
        info = self.dut.info
        caps = ",".join(sorted(info.caps)) or "none (stock firmware)"
        self._say(f"connected on {t.port}: {info.name or '?'}, firmware {info.profile or '?'}, "
                  f"model {info.model_id or '?'}, extensions {caps}")

    def close(self) -> None:
        if self.dut is not None:
            self.dut.link.close()
            self.dut = None

    def benchmark(self, job: Job) -> dict:
        if self.dut is None:
            self.open()
        dut = self.dut
        t = self.device.transport
        before = (dut.resyncs, dut.retried, dut.noise, dut.dbbin_fallbacks)
        artifact = job.variant.artifact
        a = analyze(artifact)
        if len(a.inputs) != 1:
            raise InfraError(f"{artifact}: the serial protocol feeds one input tensor, the model has "
                             f"{len(a.inputs)}")
        spec = session.tensor_spec(a.inputs[0])
        n_outputs = None
        if a.outputs:
            n_outputs = session.tensor_spec(a.outputs[0]).elements
        try:
            verified, note = session.verify_model(dut.info, a.sha256)
        except InfraError as exc:
            raise InfraError(f"device '{self.device.id}' on {t.port}: {exc}") from None
        if verified is None:
            self._say(f"warning: {note}")
        if job.eval_file:
            x, _, _ = session.load_eval(job.eval_file)
            perf_input = spec.encode(x[0])
        else:
            perf_input = spec.random(0)
        if len(perf_input) != spec.nbytes:  # pragma: no cover - encode() guarantees it
            raise InfraError(f"{artifact}: input encoding produced {len(perf_input)} bytes, expected {spec.nbytes}")
        plan = session.PerfPlan.from_options(job.options, job.profile)
        perf = session.performance(dut, perf_input, plan, n_outputs, self._say)
        arena = dut.arena()
        acc = None
        if job.eval_file and t.accuracy_samples > 0:
            acc = session.accuracy(dut, job.eval_file, spec, n_outputs, t.accuracy_samples, self._say)
            if acc:
                self._say(f"accuracy: n={acc['n']} top1={acc['top1']} agreement={acc['agreement']}")
        info = dut.info
        memory = {"arena_bytes": arena.get("used") if arena else None,
                  "arena_size_bytes": arena.get("size") if arena else None}
        return {
            "schema": RUNNER_SCHEMA,
            "status": "ok",
            "runtime": {"name": RUNTIME_NAME, "version": info.profile or info.name or "unknown"},
            "python": None,
            "platform": {"machine": self.profile.arch, "system": "mcu", "release": info.profile,
                         "node": info.name},
            "host": {"node": platform.node(), "port": t.port, "baudrate": t.baudrate},
            "device": {"name": info.name, "role": info.role, "firmware": info.profile,
                       "model_id": info.model_id, "model_verified": verified, "model_check": note,
                       "extensions": sorted(info.caps), "timestamp_mode": info.timestamp_mode},
            "model": {"path": str(artifact), "size_bytes": a.size_bytes, "sha256": a.sha256},
            "config": perf["config"],
            "init_us": None,
            "first_inference_us": perf["first_inference_us"],
            "warmup": perf["warmup"],
            "latency_us": perf["latency_us"],
            "windows": perf["windows"],
            "memory": memory,
            "telemetry": None,
            "energy": None,
            "accuracy": acc,
            "link": dict(zip(("resyncs", "retries", "noise_lines", "dbbin_fallbacks"),
                             (now - then for now, then in zip((dut.resyncs, dut.retried, dut.noise,
                                                               dut.dbbin_fallbacks), before)))),
        }
