"""A clean console: TensorFlow's chatter captured at the descriptor level, progress bars only on a
terminal, every option documented.

Real parts only: `hil` in a subprocess, real TF conversion of a tiny Keras model, a real pseudo-terminal
for the bars (rich renders a frame whenever a log line is printed, so what the tests look for does not
depend on timing).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from conftest import FAST, REPO, hil
from gate_helpers import add_run

from harness.store.results import ResultStore

# all hilbench prints on stderr by default during `hil run` of a local device: one line per job and
# the run's summary (everything else is detail for -v, or chatter)
OWN_LINES = re.compile(
    "|".join(
        [
            r"done \S+( \[\d+/\d+\])?: p50 [\d.]+ us",
            r"run \S+: \d+ ok, .+",
        ]
    )
)
# what -v adds: each stage's steps, the device runner's lines
DETAIL_LINES = re.compile(
    "|".join(
        [
            r"converting: \S+ -> \w+",
            r"converted: \S+ \w+ -> \d+ bytes in [\d.]+ s",
            r"cache hit: \S+ \w+ \(key \w+, [\d.]+ ms\)",
            r"conversion: \d+ cache hit\(s\), \d+ conversion\(s\), [\d.]+ s",
            r"measuring \S+( \[\d+/\d+\])? \.\.\.",
            r"  \[local\] \[linux_runner\] .+",
        ]
    )
)
CHATTER = (
    "TensorSpec",
    "Captures:",
    "cuInit",
    "fully_quantize",
    "W0000",
    "I0000",
    "absl",
    "Saved artifact",
    "XNNPACK delegate",
    "UserWarning",
    "warnings.warn",
    "tensorflow",
    "Logging error",
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("console-cache")


SNIPPET = r"""
import os, sys
from harness import log
from harness.models import tf_quiet
log.setup(verbose=2 if sys.argv[1] == "verbose" else 0)
with tf_quiet.captured("conversion of net to fp16"):
    os.write(2, b"C++ chatter on fd 2\n")
    os.write(1, b"C++ chatter on fd 1\n")
    print("python chatter on stderr", file=sys.stderr)
    print("python chatter on stdout")
print("own line", file=sys.stderr, flush=True)
try:
    with tf_quiet.captured("conversion of net to int8"):
        os.write(2, b"Captures:\n  140594073602384: TensorSpec(shape=(), dtype=tf.resource, name=None)\n")
        os.write(2, b"E0000 converter.cc:12] op FANCY_OP is not supported\n")
        print("fully_quantize: 0, inference_type: 6", file=sys.stderr)
        raise ValueError("boom")
except ValueError:
    print("error surfaced", file=sys.stderr)
print("result on stdout")
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_tf_output_is_captured_at_the_descriptor_level(mode):
    p = subprocess.run([sys.executable, "-c", SNIPPET, mode], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr
    if mode == "verbose":  # --verbose: everything flows as TensorFlow wrote it
        assert "C++ chatter on fd 2" in p.stderr and "python chatter on stderr" in p.stderr
        assert "C++ chatter on fd 1" in p.stdout and "TensorSpec" in p.stderr
        return
    assert p.stdout == "result on stdout\n"  # nothing of TF's reached stdout (a run id is read from there)
    lines = p.stderr.splitlines()
    assert lines[0] == "own line" and lines[-1] == "error surfaced"
    # a failure shows the relevant tail: the error line, not the export listing or quantiser settings
    assert "conversion of net to int8 failed" in lines[1]
    assert "  | E0000 converter.cc:12] op FANCY_OP is not supported" in lines
    assert not any(w in p.stderr for w in ("chatter", "TensorSpec", "Captures:", "fully_quantize"))


TRAINING_THEN_LOGS = r"""
import sys
import numpy as np
from harness import log
from harness.models import tf_quiet
log.setup()
with tf_quiet.captured("training net"):  # TensorFlow's logger meets sys.stderr first here
    import keras
    import tensorflow as tf
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
    tf.get_logger().warning("during the training")
tf.get_logger().warning("after the capture was closed")
try:
    with tf_quiet.captured("training net again"):
        tf.get_logger().warning("in a later capture")
        raise ValueError("boom")
except ValueError:
    pass
print("end", file=sys.stderr)
"""


def test_tensorflow_logging_after_a_capture_is_closed_is_no_logging_error():
    """Issue 20: distillation and QAT sweeps printed "--- Logging error --- ValueError: I/O operation on
    closed file" (4 per sweep): TensorFlow's logger kept the capture's stream, closed after it."""
    p = subprocess.run(
        [sys.executable, "-c", TRAINING_THEN_LOGS], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Logging error" not in p.stderr and "closed file" not in p.stderr, p.stderr[-3000:]
    assert "during the training" not in p.stderr  # captured, and the capture succeeded
    assert "after the capture was closed" not in p.stderr  # TensorFlow's own output: -vv only
    # the later capture got the warning: its failure tail shows it
    assert "training net again failed" in p.stderr and "in a later capture" in p.stderr
    assert p.stderr.splitlines()[-1] == "end"


def test_five_variant_run_prints_no_tensorflow_chatter(workspace, tiny_model, shared_cache):
    """The issue's check: a 5-variant `hil run` of a Keras model, real conversion, no --verbose."""
    p = hil(
        "run",
        str(tiny_model["path"]),
        "--variants",
        "fp32,fp16,dynamic,int8,int16x8",
        *FAST,
        env={"HILBENCH_CACHE": str(shared_cache)},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}\n", p.stdout), p.stdout
    foreign = [ln for ln in p.stderr.splitlines() if not OWN_LINES.fullmatch(ln)]
    assert foreign == [], "\n".join(foreign[:40])
    assert not any(w in p.stderr for w in CHATTER)
    assert len(p.stderr.splitlines()) == 6  # 5 jobs and the summary
    assert "━" not in p.stderr  # no progress bars into a pipe


RUN = ["--variants", "fp32,int8", *FAST[:-2], "--repeats", "3"]


def test_a_run_says_one_line_per_job_and_a_summary_and_the_detail_with_v(workspace, tiny_model, tmp_path):
    """Issue 20: fp32 + int8, 3 repeats was 52 lines on stderr, 36 of them the runner's (6 per process,
    with full cache paths). By default: each job's `done` line and the summary; the runner's lines,
    conversions and `measuring ...` with -v; TensorFlow's and LiteRT's own output (cuInit errors, the
    XNNPACK delegate) with neither."""
    env = {"HILBENCH_CACHE": str(tmp_path / "cache")}  # real conversions: TensorFlow starts up in this run
    p = hil("run", str(tiny_model["path"]), *RUN, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stderr.splitlines()
    jobs = [f"tiny/{v}@local [{r}/3]" for r in (1, 2, 3) for v in ("fp32", "int8")]
    assert [ln.split(":")[0] for ln in lines[:-1]] == [f"done {j}" for j in jobs], p.stderr
    assert re.fullmatch(r"run \S+: 6 ok, 0 infrastructure failure\(s\), 0 error\(s\), 0 already measured", lines[-1])
    assert not any(w in p.stderr for w in CHATTER)

    v = hil("-v", "run", str(tiny_model["path"]), *RUN, env=env)
    assert v.returncode == 0, v.stderr[-3000:]
    foreign = [ln for ln in v.stderr.splitlines() if not (OWN_LINES.fullmatch(ln) or DETAIL_LINES.fullmatch(ln))]
    assert foreign == [], "\n".join(foreign[:40])
    assert not any(w in v.stderr for w in CHATTER)  # -v is hilbench's detail, not TensorFlow's (-vv)
    runner = [ln for ln in v.stderr.splitlines() if "[linux_runner]" in ln]
    assert len(runner) == 6 * 6  # six lines from each of the six runner processes
    # the runner's lines read as words, not as key=value dumps or identifiers
    assert not [ln for ln in runner if "=" in ln or "min_reached" in ln]
    assert re.search(r"accuracy on 70 samples: top-1 \d+\.\d\d %, agreement \d+\.\d\d %", v.stderr)
    assert "(stopped after the minimum runs and time)" in v.stderr and "1 thread, XNNPACK on)" in v.stderr
    assert v.stderr.count("measuring tiny/") == 6
    assert "conversion: 2 cache hit(s), 0 conversion(s)" in v.stderr


def _on_terminal(args: list[str], cwd: Path, env: dict) -> tuple[int, str, str]:
    """`hil ARGS` with stderr on a pseudo-terminal (120 x 40), stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", **env},
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=600)
    reader.join(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bars_on_a_terminal_not_with_quiet(workspace, tiny_model, shared_cache):
    env = {"HILBENCH_CACHE": str(shared_cache)}
    args = ["run", str(tiny_model["path"]), "--variants", "fp32,int8", *FAST]
    code, out, term = _on_terminal(args, workspace, env)
    assert code == 0, term[-3000:]
    assert "━" in term  # rich's bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term)  # without colours and cursor moves
    assert re.search(r"converting ━+ [0-2]/2 ", plain) and re.search(r"measuring ━+.* 1/2 ", plain), plain[-3000:]
    # the per-job summary lines stay, and stdout carries only the run id
    assert "done tiny/fp32@local: p50" in term and "done tiny/int8@local: p50" in term
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}\n", out)

    code, out, term = _on_terminal(["--quiet", *args], workspace, env)
    assert code == 0, term[-3000:]
    assert "━" not in term and "measuring" not in term and "done tiny" not in term


def test_a_reader_that_leaves_early_leaves_the_exit_code_alone(workspace):
    """`hil gate | head -1`: the reader leaves while the gate prints its summary of a failing run; the
    exit code is still the verdict's, with no traceback. The pipe is shrunk to one page, so the
    summary (~40 KB) cannot fit in it: the gate is still writing when the reader leaves, however fast
    either side runs."""
    prof = workspace / "device_profiles" / "localhost.yaml"
    prof.write_text(prof.read_text().replace("budgets: {}", "budgets: {min_accuracy_top1: 0.95}"))
    store = ResultStore(workspace / "reports" / "results.sqlite")
    add_run(store, [{"model": f"m{i:03d}"} for i in range(100)])  # top-1 0.90 each: over budget
    store.close()
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "gate", "--no-confirm"],
        cwd=workspace,
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as reader:  # unbuffered: reads exactly the first line
        first = reader.readline()
    _, err = proc.communicate(timeout=600)
    stderr = err.decode()
    assert first == b"# hilbench gate: FAIL (exit 1)\n"
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert (
        stderr.splitlines()[-1] == "gate FAIL: 0 regression(s), 100 over budget, 0 infrastructure failure(s) -> exit 1"
    )


def _actions(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_of_every_command_has_help():
    from harness.cli import build_parser

    actions = list(_actions(build_parser(), "hil"))
    assert len({path for path, _ in actions}) > 10  # every sub-command was visited
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in actions
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert missing == []
    p = hil("run", "--help")
    assert p.returncode == 0
    for path, a in actions:
        if path == "hil run" and a.option_strings:
            # each option is listed with the first words of its help text
            words = " ".join(a.help.split()[:3]).replace("%%", "%")
            assert re.search(re.escape(a.option_strings[-1]) + r".*", p.stdout) and words.split("%(")[0][
                :20
            ] in " ".join(p.stdout.split()), (a.option_strings, words)
