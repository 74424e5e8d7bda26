"""The hilbench firmware's protocol layer on an emulated Cortex-M4 (QEMU mps2-an386).

The firmware links the same hb_protocol.c that `hil build` bundles with a stand-in model in plain C
(one fixed int8 fully connected layer), so results are checked exactly against numpy. This is an
MLPerf Tiny-protocol device independent of the Python simulator: the serial host is run against it.
"""

from __future__ import annotations

import re
import time
import zlib

import numpy as np
import pytest

from harness.mcu import qemu

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    return qemu.build_firmware(tmp_path_factory.mktemp("qemu_fw"))


@pytest.fixture(scope="module")
def params():
    return qemu.parse_params()


def reference(params: dict, x: np.ndarray) -> np.ndarray:
    """The stand-in layer in numpy: int8 outputs."""
    w = np.array(params["weights"], dtype=np.int64)
    b = np.array(params["bias"], dtype=np.int64)
    acc = b + w @ (x.astype(np.int64) - params["input_zero_point"])
    q = ((acc * params["mult"] + (1 << (params["shift"] - 1))) >> params["shift"]) + params["output_zero_point"]
    return np.clip(q, -128, 127)


def expected_results(params: dict, x: np.ndarray) -> list[str]:
    q = reference(params, x)
    return [f"{(v - params['output_zero_point']) * params['output_scale']:.3f}" for v in q]


class Port:
    """Minimal protocol exchange over pyserial (no dependency on harness.mcu.serial)."""

    def __init__(self, url: str):
        import serial

        self.ser = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
        self.buf = b""

    def lines_until_ready(self, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while b"m-ready\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no m-ready; got {self.buf!r}")
            self.buf += self.ser.read(self.ser.in_waiting or 1)
        head, _, self.buf = self.buf.partition(b"m-ready\r\n")
        assert head == b"" or head.endswith(b"\r\n"), head
        return head.decode().split("\r\n")[:-1]

    def cmd(self, command: str | bytes, timeout: float = 10.0) -> list[str]:
        self.ser.write(command if isinstance(command, bytes) else (command + "%").encode())
        return self.lines_until_ready(timeout)

    def close(self):
        self.ser.close()


@pytest.fixture()
def port(firmware):
    with qemu.QemuDevice(firmware) as dev:
        p = Port(dev.url)
        try:
            yield p
        finally:
            p.close()


def _load(port: Port, data: bytes) -> None:
    assert port.cmd(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]"]
    chunks = [data[i : i + 31] for i in range(0, len(data), 31)]
    for i, chunk in enumerate(chunks):
        answer = port.cmd("db " + chunk.hex())
        assert answer == (["m-load-done"] if i == len(chunks) - 1 else []), answer


def _infer(port: Port, n: int, w: int) -> tuple[int, int, list[str]]:
    lines = port.cmd(f"infer {n} {w}")
    assert lines[:3] == [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}"], lines
    t0, t1 = (int(re.fullmatch(r"m-lap-us-(\d+)", ln).group(1)) for ln in lines[3:5])
    assert lines[5] == "m-infer-done"
    m = re.fullmatch(r"m-results-\[(.*)\]", lines[6])
    assert m and len(lines) == 7, lines
    return t0, t1, m.group(1).split(",")


def test_banner_identity_and_extensions(port, params):
    assert port.lines_until_ready() == ["m-timestamp-mode-performance", "m-init-done"]
    assert port.cmd("name") == ["m-name-dut-[qemu-mps2-an386]"]
    assert port.cmd("profile") == ["m-profile-[hilbench-standin/1 qemu-mps2-an386]", f"m-model-[{params['model_id']}]"]
    assert port.cmd("hb-caps") == ["m-hb-caps-[arena,dbbin]"]
    assert port.cmd("hb-arena") == ["m-hb-arena-[used=40,size=40]"]
    assert port.cmd("bogus 1") == ["e-[Unknown command: bogus]"]
    assert port.cmd("x" * 81) == ["e-[Command too long (max 80 chars)]"]
    assert port.cmd("results") == ["e-[no results (run infer first)]"]
    assert port.cmd("infer 1 0")[0].startswith("e-[input incomplete: have 0 of 64 bytes")
    assert port.cmd("db load 9999")[0].startswith("e-[db load 9999 bytes exceeds")


def test_infer_results_match_numpy_and_laps_increase(port, params):
    port.lines_until_ready()
    rng = np.random.default_rng(7)
    last_t1 = -1
    for trial in range(2):
        x = rng.integers(-128, 128, params["inputs"], dtype=np.int64).astype(np.int8)
        _load(port, x.tobytes())
        assert port.cmd("db print")[0] == "m-buffer-" + "-".join(f"{b:02x}" for b in x.tobytes()[:8])
        t0, t1, results = _infer(port, 200, 3)
        assert results == expected_results(params, x)
        assert last_t1 < t0 < t1
        last_t1 = t1
        per_inference = (t1 - t0) / 200
        assert 1 < per_inference < 100_000
        assert port.cmd("results") == ["m-results-[" + ",".join(results) + "]"]
    # the timestamp command and a second window keep counting upwards
    lap = port.cmd("timestamp")
    assert int(re.fullmatch(r"m-lap-us-(\d+)", lap[0]).group(1)) > last_t1


def test_binary_input_transfer(port, params):
    port.lines_until_ready()
    x = ((np.arange(params["inputs"]) * 3) % 256 - 128).astype(np.int8)
    data = x.tobytes()
    port.ser.write(f"hb-dbbin {len(data)} {zlib.crc32(data):08x}%".encode())
    deadline = time.monotonic() + 5
    while b"m-hb-dbbin-go\r\n" not in port.buf and time.monotonic() < deadline:
        port.buf += port.ser.read(port.ser.in_waiting or 1)
    port.buf = port.buf.replace(b"m-hb-dbbin-go\r\n", b"", 1)
    port.ser.write(data)
    assert port.lines_until_ready() == ["m-hb-dbbin-ok"]
    assert _infer(port, 5, 0)[2] == expected_results(params, x)
    # a wrong CRC is refused and leaves no input behind
    port.ser.write(f"hb-dbbin {len(data)} {zlib.crc32(data) ^ 1:08x}%".encode())
    while b"m-hb-dbbin-go\r\n" not in port.buf:
        port.buf += port.ser.read(port.ser.in_waiting or 1)
    port.buf = port.buf.replace(b"m-hb-dbbin-go\r\n", b"", 1)
    port.ser.write(data)
    assert port.lines_until_ready() == ["e-[hb-dbbin crc mismatch]"]
    assert port.cmd("infer 1 0")[0].startswith("e-[input incomplete")
    assert port.cmd("hb-dbbin 0 00000000")[0].startswith("e-[hb-dbbin bad arguments")


def test_pty_serial(firmware):
    import serial

    dev = qemu.QemuDevice(firmware, serial="pty")
    try:
        path = dev.start()
        assert path.startswith("/dev/pts/")
        ser = serial.Serial(path, 115200, timeout=0.05)
        p = Port.__new__(Port)
        p.ser, p.buf = ser, b""
        dev.resume()
        assert p.lines_until_ready() == ["m-timestamp-mode-performance", "m-init-done"]
        assert p.cmd("name") == ["m-name-dut-[qemu-mps2-an386]"]
        ser.close()
    finally:
        dev.stop()


def test_serial_host_against_the_qemu_device(firmware, params):
    """The host in harness/mcu/serial passes against an independent MLPerf Tiny-protocol device."""
    session = pytest.importorskip("harness.mcu.serial.session")
    from harness.lab.config import SerialSettings

    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, params["inputs"], dtype=np.int64).astype(np.int8)
    want = [float(v) for v in expected_results(params, x)]
    with qemu.QemuDevice(firmware) as dev:
        client = session.connect("qemu-m4", SerialSettings(type="serial", port=dev.url), log=lambda m: None)
        boot_banners = client.reboots  # the connect-time resync may see the boot banner
        try:
            assert client.info.name == "qemu-mps2-an386" and client.info.role == "dut"
            assert client.info.model_id == params["model_id"]
            assert {"arena", "dbbin"} <= client.info.caps
            assert client.arena() == {"used": 40, "size": 40}
            assert client.load(x.tobytes()) == "dbbin"
            r = client.infer(50, 2)
            assert r.results == want and r.t1 > r.t0 and r.per_inference_us > 0
            client.info.caps.discard("dbbin")  # the base protocol's hex chunks
            y = (x.astype(np.int64) * -1).clip(-128, 127).astype(np.int8)
            assert client.load(y.tobytes()) == "hex"
            r2 = client.infer(50, 2)
            assert r2.results == [float(v) for v in expected_results(params, y)]
            assert r2.t0 > r.t1
            assert client.retried == 0 and client.resyncs <= 1 and client.reboots == boot_banners
        finally:
            client.link.close()
