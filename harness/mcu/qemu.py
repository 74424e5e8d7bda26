#!/usr/bin/env python3
"""An independent MLPerf Tiny-protocol device: the hilbench firmware on QEMU mps2-an386 (Cortex-M4).

The firmware links the real protocol layer (``harness/mcu/templates/hb_protocol.c``) with the QEMU
porting layer and a stand-in model in plain C (``runners/mcu/qemu_mps2/``): one fixed int8 fully
connected layer, so ``infer`` does real work and ``m-results`` can be checked with numpy.

Stdlib only and independent of the rest of hilbench, so it also works as a script::

    python3 -m harness.mcu.qemu build -o build/qemu        # -> build/qemu/fw.elf
    python3 -m harness.mcu.qemu run build/qemu/fw.elf      # prints socket://127.0.0.1:PORT
    python3 -m harness.mcu.qemu run --serial pty ...       # prints /dev/pts/N
    python3 -m harness.mcu.qemu gen-params                 # rewrite standin_params.h

Serial: ``tcp`` (default) starts QEMU with ``-serial tcp:127.0.0.1:0,server=on,wait=on``; the guest
starts when the first client connects, so the boot banner is never lost; pyserial opens the
``socket://`` URL. ``pty`` starts QEMU paused (``-S``) with a pseudo-terminal; open it, then call
``resume()`` (``cont`` on the monitor) so the banner arrives after the port is open.
Timing: ``-icount shift=5`` by default (one instruction = 32 ns of virtual time, ~31 MIPS, close to
the 25 MHz board), which makes lap times depend on the instructions executed, not on host load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.core.resources import qemu_firmware_dir
from harness.errors import InfraError

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
MACHINE = "mps2-an386"
CC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"

SOURCES = ("startup.c", "main.c", "port_mps2.c", "standin_model.c")
CFLAGS = [
    "-mcpu=cortex-m4",
    "-mthumb",
    "-Os",
    "-g",
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffunction-sections",
    "-fdata-sections",
]
LDFLAGS = ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections"]
DEFAULT_ICOUNT_SHIFT = 5


class QemuError(InfraError):
    pass


def toolchain() -> str | None:
    return shutil.which(CC)


def qemu_binary() -> str | None:
    return shutil.which(QEMU)


# ------------------------------------------------------------------------------------------ build


def build_firmware(
    out_dir: Path, defines: dict[str, str] | None = None, cc: str | None = None, params: str | None = None
) -> Path:
    """Compile and link fw.elf into out_dir; returns its path. `params`: the text of another
    standin_params.h (``render_params``), written to out_dir and compiled in instead of the shipped one."""
    cc = cc or toolchain()
    if not cc:
        raise QemuError(f"{CC} not found (apt-get install gcc-arm-none-eabi)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / "fw.elf"
    srcs = [str(qemu_firmware_dir() / s) for s in SOURCES] + [str(TEMPLATES / "hb_protocol.c")]
    defines = dict(defines or {})
    if defines.get("HB_PROFILE", "0") != "0":  # the per-operator recorder (hb-profile%)
        srcs.append(str(TEMPLATES / "hb_profile.c"))
    if params is not None:
        header = (out_dir / "standin_params.h").resolve()
        header.write_text(params)
        defines["STANDIN_PARAMS_FILE"] = f'"{header}"'
    defs = [f"-D{k}={v}" for k, v in defines.items()]
    cmd = [
        cc,
        *CFLAGS,
        *defs,
        f"-I{qemu_firmware_dir()}",
        f"-I{TEMPLATES}",
        *srcs,
        *LDFLAGS,
        "-T",
        str(qemu_firmware_dir() / "mps2_an386.ld"),
        f"-Wl,-Map={out_dir / 'fw.map'}",
        "-o",
        str(elf),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise QemuError(f"firmware build failed ({proc.returncode}):\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


# ------------------------------------------------------------------------------------------ run


class QemuDevice:
    """qemu-system-arm running a firmware with its UART0 on a TCP socket or a pty."""

    def __init__(
        self,
        elf: Path,
        serial: str = "tcp",
        icount_shift: int | None = DEFAULT_ICOUNT_SHIFT,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 20.0,
    ):
        if serial not in ("tcp", "pty"):
            raise ValueError("serial must be 'tcp' or 'pty'")
        self.elf = Path(elf)
        self.serial = serial
        self.icount_shift = icount_shift
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None  # socket://127.0.0.1:PORT or /dev/pts/N
        self.output: list[str] = []  # QEMU's own stdout/stderr lines
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        qemu = qemu_binary()
        if not qemu:
            raise QemuError(f"{QEMU} not found (apt-get install qemu-system-arm)")
        cmd = [qemu, "-M", MACHINE, "-display", "none", "-kernel", str(self.elf)]
        if self.icount_shift is not None:
            cmd += ["-icount", f"shift={self.icount_shift}"]
        if self.serial == "tcp":
            cmd += ["-monitor", "none", "-serial", "tcp:127.0.0.1:0,server=on,wait=on"]
        else:
            cmd += ["-monitor", "stdio", "-serial", "pty", "-S"]
        return cmd + list(self.extra_args)

    def start(self) -> str:
        """Start QEMU and return the serial URL/path once it can be opened."""
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        found = threading.Event()
        pattern = (
            re.compile(r"disconnected:tcp:([\d.]+):(\d+)")
            if self.serial == "tcp"
            else re.compile(r"redirected to (/dev/pts/\d+)")
        )

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                m = pattern.search(line)
                if m and not found.is_set():
                    self.url = f"socket://{m.group(1)}:{m.group(2)}" if self.serial == "tcp" else m.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise QemuError("QEMU did not open its serial port: " + " | ".join(self.output[-5:]))
        assert self.url is not None
        return self.url

    def resume(self) -> None:
        """pty mode: let the (paused) guest run; call after opening the pty."""
        if self.serial == "pty" and self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write("cont\n")
            self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.proc = None

    def __enter__(self) -> QemuDevice:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------ model


def parse_params(path: Path | None = None) -> dict:
    """The stand-in model's parameters, read back from standin_params.h."""
    text = (path or qemu_firmware_dir() / "standin_params.h").read_text()
    out: dict = {}
    for name, value in re.findall(r"#define STANDIN_(\w+) (\S+)", text):
        value = value.strip("()")
        if value.startswith('"'):
            out[name.lower()] = value.strip('"')
        elif value.endswith("f"):
            out[name.lower()] = float(value[:-1])
        else:
            out[name.lower()] = int(value)
    body = text[text.index("standin_weights") :]
    w = [int(v) for v in re.findall(r"-?\d+", body[body.index("{") : body.index("};")])]
    bias_body = text[text.index("standin_bias") :]
    b = [int(v) for v in re.findall(r"-?\d+", bias_body[bias_body.index("{") : bias_body.index("};")])]
    n_in, n_out = out["inputs"], out["outputs"]
    if len(w) != n_in * n_out or len(b) != n_out:
        raise ValueError("standin_params.h: array sizes do not match STANDIN_INPUTS/OUTPUTS")
    out["weights"] = [w[o * n_in : (o + 1) * n_in] for o in range(n_out)]
    out["bias"] = b
    return out


def render_params(seed: int = 20240611, n_in: int = 64, n_out: int = 10) -> str:
    rng = random.Random(seed)
    weights = [[rng.randint(-8, 8) for _ in range(n_in)] for _ in range(n_out)]
    bias = [rng.randint(-500, 500) for _ in range(n_out)]
    consts = {"INPUT_ZERO_POINT": -3, "MULT": 3, "SHIFT": 7, "OUTPUT_ZERO_POINT": -5, "INPUT_SCALE": "0.05f"}
    digest = hashlib.sha256(repr((weights, bias, sorted(consts.items()), n_in, n_out)).encode())
    rows = ",\n".join("    {" + ", ".join(str(v) for v in row) + "}" for row in weights)
    return f"""/* standin_params.h - parameters of the stand-in model (standin_model.c).
 * Generated by `python3 -m harness.mcu.qemu gen-params` (seed {seed}); tests read it back. */
#ifndef STANDIN_PARAMS_H
#define STANDIN_PARAMS_H

#include <stdint.h>

#define STANDIN_MODEL_ID "standin-{digest.hexdigest()[:12]}"
#define STANDIN_INPUTS {n_in}
#define STANDIN_OUTPUTS {n_out}
#define STANDIN_INPUT_ZERO_POINT ({consts["INPUT_ZERO_POINT"]})
#define STANDIN_MULT {consts["MULT"]}
#define STANDIN_SHIFT {consts["SHIFT"]}
#define STANDIN_OUTPUT_ZERO_POINT ({consts["OUTPUT_ZERO_POINT"]})
#define STANDIN_OUTPUT_SCALE 0.25f
#define STANDIN_INPUT_SCALE {consts["INPUT_SCALE"]}

static const int8_t standin_weights[STANDIN_OUTPUTS][STANDIN_INPUTS] = {{
{rows}
}};

static const int32_t standin_bias[STANDIN_OUTPUTS] = {{{", ".join(str(v) for v in bias)}}};

#endif /* STANDIN_PARAMS_H */
"""


# ------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qemu.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build fw.elf")
    b.add_argument("-o", "--out", default="build/qemu_mps2")
    r = sub.add_parser("run", help="run a firmware until Ctrl-C")
    r.add_argument("elf")
    r.add_argument("--serial", choices=("tcp", "pty"), default="tcp")
    r.add_argument("--icount", type=int, default=DEFAULT_ICOUNT_SHIFT)
    sub.add_parser("gen-params", help="rewrite runners/mcu/qemu_mps2/standin_params.h")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            print(build_firmware(Path(args.out)))
        elif args.cmd == "gen-params":
            (qemu_firmware_dir() / "standin_params.h").write_text(render_params())
            print(qemu_firmware_dir() / "standin_params.h")
        else:
            dev = QemuDevice(Path(args.elf), serial=args.serial, icount_shift=args.icount)
            print(dev.start(), flush=True)
            dev.resume()
            try:
                if dev.proc is not None:
                    dev.proc.wait()
            except KeyboardInterrupt:
                pass
            finally:
                dev.stop()
    except QemuError as exc:
        print(f"qemu.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
