"""The host itself as a device: the runner in a fresh subprocess, exactly as on a remote board."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque

from harness.core.jobs import Job
from harness.core.resources import runner_file
from harness.errors import InfraError
from harness.lab.config import LocalSettings
from harness.transports.base import Transport, parse_runner_output, runner_args


class LocalTransport(Transport):
    """Fresh process per job so one model's memory (peak RSS) never leaks into the next."""

    def python(self) -> str:
        t = self.device.transport
        return (t.python if isinstance(t, LocalSettings) else None) or sys.executable

    def benchmark(self, job: Job) -> dict:
        eval_path = str(job.eval_file) if job.eval_file else None
        paired = str(job.paired.artifact) if job.paired is not None else None
        argv = [self.python(), str(runner_file())] + runner_args(job, str(job.variant.artifact), eval_path, paired)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise InfraError(f"device '{self.device.id}': cannot start {argv[0]}: {exc}") from None
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None  # both are PIPE
        tail: deque[str] = deque(maxlen=20)

        def pump() -> None:
            for line in stderr:
                tail.append(line)
                self.runner_line(line)

        out: list[str] = []
        threads = [
            threading.Thread(target=pump, daemon=True),
            threading.Thread(target=lambda: out.append(stdout.read()), daemon=True),
        ]
        for t in threads:
            t.start()
        budget = (job.options.max_seconds or 150) * 2 + 120
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise InfraError(f"device '{self.device.id}': runner did not finish within {budget:.0f} s") from None
        for t in threads:
            t.join()
        return parse_runner_output("".join(out), self.device.id, proc.returncode, "".join(tail))
