"""The SSH transport against a real OpenSSH server (tests/sshd.py) and a device-like python venv.

Everything real: sshd with its own host key and key-only auth, paramiko, SFTP, the device venv with
only numpy + ai-edge-litert (tests/device_venv.py), `hil` in a subprocess, SQLite.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import hil
from device_venv import device_python
from sshd import keygen, require_sshd

pytestmark = pytest.mark.sshd

FAST = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "0", "--warmup-seconds", "0", "--repeats", "1"]
PROFILE = {
    "description": "test box reached over ssh",
    "arch": "x86_64",
    "cores": 2,
    "ram_mb": 1024,
    "runtime": "litert",
    "num_threads": 1,
    "python": "python3",
}


@pytest.fixture(scope="module")
def dev_python() -> str:
    require_sshd()
    return device_python()


@pytest.fixture(scope="module")
def converted(tiny_model, tmp_path_factory) -> Path:
    """An artifact cache holding tiny fp32/dynamic/fp16, so `hil run` in the tests only gets cache hits."""
    require_sshd()
    from harness.models.convert import Calibration, Converter, ModelSource

    cache = tmp_path_factory.mktemp("ssh-cache")
    conv = Converter(cache / "artifacts", log=lambda m: None)
    src = ModelSource.open(tiny_model["path"])
    calib = Calibration.from_arg(str(tiny_model["dir"] / "tiny.calibration.npz"))
    for variant in ("fp32", "dynamic", "fp16"):
        conv.convert(src, variant, calib)
    return cache


def write_lab(
    workspace: Path,
    server,
    dev_py: str,
    *,
    workdir: Path,
    known_hosts: Path,
    tofu: bool = False,
    extra: list | None = None,
    local: bool = False,
    **transport,
) -> Path:
    (workspace / "device_profiles" / "sshbox.yaml").write_text(yaml.safe_dump(PROFILE))
    t = {
        "type": "ssh",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "key_file": str(server.client_key),
        "use_agent": False,
        "known_hosts": str(known_hosts),
        "trust_on_first_use": tofu,
        "python": dev_py,
        "workdir": str(workdir),
        "connect_timeout": 5,
        "retries": 1,
        "retry_backoff": 0.2,
        **transport,
    }
    devices = [{"id": "pi", "profile": "sshbox", "transport": t}]
    if local:
        devices.insert(0, {"id": "local", "profile": "localhost", "transport": {"type": "local"}})
    devices += extra or []
    inv = workspace / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"devices": devices}, sort_keys=False))
    return inv


def results(workspace: Path, run_id: str | None = None) -> list[dict]:
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    db.row_factory = sqlite3.Row
    q = "SELECT * FROM results" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY result_id"
    return [dict(r) for r in db.execute(q, (run_id,) if run_id else ())]


def no_tmp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".hil-tmp-" in p.name]


def test_run_over_ssh_tofu_deploy_cache_and_injection_safety(workspace, tiny_model, converted, dev_python, sshd_server):
    """Full `hil run` on local + ssh: same kind of rows; TOFU when asked; second run sends 0 bytes;
    a work dir and a model name full of shell metacharacters stay inert."""
    marker = f"PWNED-{uuid.uuid4().hex[:8]}"
    workdir = workspace / f"dev work; touch {marker}" / "w $(touch {marker}) `x`"
    known = workspace / "lab_known_hosts"
    write_lab(workspace, sshd_server, dev_python, workdir=workdir, known_hosts=known, tofu=True, local=True)
    env = {"HILBENCH_CACHE": str(converted)}

    p = hil("-v", "run", str(tiny_model["path"]), "--variants", "fp32,dynamic", *FAST, env=env)
    assert p.returncode == 0, p.stderr
    assert "conversion: 2 cache hit(s), 0 conversion(s)" in p.stderr
    # trust on first use, because the inventory asked for it: key written to the inventory's file
    assert f"trusted host key of [127.0.0.1]:{sshd_server.port} on first use" in p.stderr
    assert sshd_server.fingerprint() in p.stderr
    assert known.read_text() == sshd_server.known_hosts_line()
    assert re.search(r"\[pi\] deploy: tiny fp32 sent \(sha256 [0-9a-f]{12}\.\.\.\), [1-9]\d* bytes sent", p.stderr)
    assert "[pi] deploy: runner sent" in p.stderr and "[pi] deploy: eval data sent" in p.stderr
    assert "[pi] [linux_runner] runtime ai_edge_litert" in p.stderr  # remote stderr streamed to the log

    run_id = p.stdout.strip().splitlines()[-1]
    from harness.store.results import ResultStore

    store = ResultStore(workspace / "reports" / "results.sqlite")
    wide = store.wide(run_id)
    assert sorted(zip(wide["device_id"], wide["variant"])) == [
        ("local", "dynamic"),
        ("local", "fp32"),
        ("pi", "dynamic"),
        ("pi", "fp32"),
    ]
    assert set(wide["status"]) == {"ok"}
    assert dict(zip(wide["device_id"], wide["transport"])) == {"local": "local", "pi": "ssh"}
    long = store.dataframe(run_id)
    metrics = {d: set(long[long["device_id"] == d]["metric"]) for d in ("local", "pi")}
    assert metrics["pi"] == metrics["local"] and {"latency_p50_us", "accuracy_top1", "peak_rss_kb"} <= metrics["pi"]
    pi = wide[wide["device_id"] == "pi"].set_index("variant")
    assert pi.loc["fp32", "runtime"] == "ai_edge_litert" and pi.loc["fp32", "latency_count"] >= 5
    assert pi.loc["fp32", "agreement"] == 1.0 and pi.loc["fp32", "profile"] == "sshbox"
    assert len(store.samples(int(pi.loc["fp32", "result_id"]))) == pi.loc["fp32", "latency_count"]
    raw = json.loads(next(r["raw"] for r in results(workspace, run_id) if r["device_id"] == "pi"))
    assert raw["model"]["path"].startswith(str(workdir / "artifacts") + "/")  # content-addressed, not by name

    # the device work dir: content-addressed files, no temporaries, nothing injected
    arts = sorted(p.name for p in (workdir / "artifacts").iterdir())
    assert {f"{s}.tflite" for s in wide["artifact_sha256"]} <= set(arts)
    assert len([n for n in os.listdir(workdir) if re.fullmatch(r"runner-[0-9a-f]{64}\.py", n)]) == 1
    assert no_tmp_files(workdir) == []

    # second run: the artifacts are already there, verified by hash, nothing sent again
    p2 = hil("-v", "run", str(tiny_model["path"]), "--variants", "fp32,dynamic", *FAST, "--devices", "pi", env=env)
    assert p2.returncode == 0, p2.stderr
    assert re.search(
        r"\[pi\] deploy: tiny fp32 already on device \(sha256 [0-9a-f]{12}\.\.\.\), 0 bytes sent", p2.stderr
    )
    assert "deploy: tiny dynamic already on device" in p2.stderr
    assert " sent (sha256" not in p2.stderr, p2.stderr
    assert "trusted host key" not in p2.stderr  # known now

    # a model whose file name is a shell command: it never reaches a shell (remote names are hashes)
    evil = workspace / f"a b;touch {marker};'x'.tflite"
    evil.write_bytes(next((converted / "artifacts").rglob("model.tflite")).read_bytes())
    p3 = hil("run", str(evil), *FAST, "--devices", "pi", env=env)
    assert p3.returncode == 0, p3.stderr
    assert results(workspace, p3.stdout.strip().splitlines()[-1])[0]["status"] == "ok"

    for place in (Path.home(), workspace, workdir.parent, workdir, Path("/")):
        assert not (place / marker).exists(), place
    assert not list(workspace.rglob(marker))
    assert no_tmp_files(workdir) == []


def test_unknown_key_refused_then_trust_then_check(workspace, converted, tiny_model, dev_python, sshd_server):
    known = workspace / "known_hosts"
    nopy = {"id": "nopy", "profile": "sshbox", "transport": None}
    inv = write_lab(workspace, sshd_server, dev_python, workdir=workspace / "dev", known_hosts=known)
    lab = yaml.safe_load(inv.read_text())
    base = lab["devices"][0]["transport"]
    nopy["transport"] = {**base, "python": str(workspace / "no" / "such" / "python")}
    bare_python = "/usr/bin/python3"
    lacks = subprocess.run([bare_python, "-c", "import numpy, ai_edge_litert"], capture_output=True).returncode
    bare = {
        "id": "bare",
        "profile": "sshbox",
        "transport": {**base, "python": bare_python if lacks else str(workspace / "no" / "python3")},
    }
    lab["devices"] += [nopy, bare, {"id": "local", "profile": "localhost", "transport": {"type": "local"}}]
    inv.write_text(yaml.safe_dump(lab, sort_keys=False))
    fp = sshd_server.fingerprint()

    # unknown host key: refused, recorded as an infrastructure failure, says how to trust it
    p = hil("run", str(tiny_model["path"]), *FAST, "--devices", "pi", env={"HILBENCH_CACHE": str(converted)})
    assert p.returncode == 2, p.stderr
    assert "device 'pi'" in p.stderr and f"127.0.0.1:{sshd_server.port}" in p.stderr and fp in p.stderr
    assert "hil devices trust pi" in p.stderr and "trust_on_first_use: true" in p.stderr
    rows = results(workspace)
    assert [r["status"] for r in rows] == ["infra_error"] and "is not known" in rows[0]["error"]
    assert not known.exists()  # nothing was trusted silently

    c = hil("devices", "check", "pi")
    assert c.returncode == 2 and "UNKNOWN" in c.stdout and "hil devices trust pi" in c.stdout

    # explicit trust: shows the fingerprint and writes the inventory's known_hosts file
    bad = hil("devices", "trust", "pi", "--expect", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert bad.returncode == 2 and not known.exists()
    t = hil("devices", "trust", "pi", "--expect", fp)
    assert t.returncode == 0, t.stderr
    assert fp in t.stdout and f"added to {known}" in t.stdout
    assert known.read_text() == sshd_server.known_hosts_line()
    t2 = hil("devices", "trust", "pi")
    assert t2.returncode == 0 and "already trusted" in t2.stdout
    assert known.read_text() == sshd_server.known_hosts_line()

    # check: one table, a verdict per device, hints for the broken ones, exit 2
    c = hil("devices", "check", "pi", "nopy", "bare", "local")
    assert c.returncode == 2, c.stdout + c.stderr
    rows = {
        ln.split("|")[1].strip(): [x.strip() for x in ln.split("|")[1:-1]]
        for ln in c.stdout.splitlines()
        if ln.startswith("| ") and not ln.startswith("| device")
    }
    from device_venv import venv_dir

    info = json.loads((venv_dir() / ".hilbench-device-venv.json").read_text())
    assert rows["pi"][2:4] == ["ok", "known"] and rows["pi"][-1] == "OK"
    assert rows["pi"][5] == f"ai_edge_litert {info['ai_edge_litert']}" and rows["pi"][6] == info["numpy"]
    assert rows["local"][-1] == "OK" and rows["local"][5].startswith("ai_edge_litert")
    assert rows["nopy"][-1] == "FAIL" and rows["bare"][-1] == "FAIL"
    out = c.stdout
    assert "pi: OK" in out and "local: OK" in out
    assert re.search(r"nopy: FAIL: python '.*no/such/python' not found on the device", out)
    assert "~/hilbench-venv/bin/python" in out
    if lacks:
        assert rows["bare"][5] == "MISSING"
        assert re.search(r"bare: FAIL: not importable by /usr/bin/python3.*a TFLite runtime", out)
        assert "hint: install into the device's Python: `/usr/bin/python3 -m pip install numpy ai-edge-litert`" in out


def test_changed_host_key_refused_even_with_tofu(workspace, converted, tiny_model, dev_python, sshd_server):
    other = keygen(workspace / "impostor_key")
    known = workspace / "known_hosts"
    entry = f"[127.0.0.1]:{sshd_server.port} " + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n"
    known.write_text(entry)
    write_lab(workspace, sshd_server, dev_python, workdir=workspace / "dev", known_hosts=known, tofu=True)

    p = hil("run", str(tiny_model["path"]), *FAST, env={"HILBENCH_CACHE": str(converted)})
    assert p.returncode == 2, p.stderr
    assert "device 'pi'" in p.stderr and "HOST KEY CHANGED" in p.stderr and "man-in-the-middle" in p.stderr
    assert sshd_server.fingerprint() in p.stderr
    t = hil("devices", "trust", "pi")
    assert t.returncode == 2 and "HOST KEY CHANGED" in t.stderr
    assert known.read_text() == entry  # never overwritten
    assert [r["status"] for r in results(workspace)] == ["infra_error"]
    assert not (workspace / "dev").exists()  # refused before anything was sent


def test_sshd_killed_mid_run_keeps_results_and_records_infra_error(
    workspace, converted, tiny_model, dev_python, sshd_server
):
    known = workspace / "known_hosts"
    known.write_text(sshd_server.known_hosts_line())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")  # hashed entries are understood
    write_lab(workspace, sshd_server, dev_python, workdir=workspace / "dev", known_hosts=known)
    args = [sys.executable, "-m", "harness", "run", str(tiny_model["path"]), "--variants", "fp32,dynamic,fp16", *FAST]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HILBENCH_CACHE": str(converted)},
    )
    seen = []
    for line in proc.stderr:  # event-driven: the device "loses power" right after the first result
        seen.append(line)
        if line.startswith("done tiny/"):
            sshd_server.kill()
            break
    seen += proc.stderr.readlines()
    proc.wait(timeout=120)
    log = "".join(seen)
    assert proc.returncode == 2, log
    assert time.monotonic() - t0 < 60, log
    rows = results(workspace)
    assert [(r["variant"], r["status"]) for r in rows] == [
        ("fp32", "ok"),
        ("dynamic", "infra_error"),
        ("fp16", "infra_error"),
    ], log
    assert all("device 'pi'" in r["error"] for r in rows[1:]), rows
    assert "gave up after 2 attempt(s)" in rows[1]["error"] and "connection refused" in rows[1]["error"]
    assert "cannot reach" in rows[2]["error"] and "connection refused" in rows[2]["error"]
    assert "retrying in" in log
    db = sqlite3.connect(workspace / "reports" / "results.sqlite")
    assert db.execute("SELECT status FROM runs").fetchall() == [("incomplete",)]


def test_jump_host_quoting_and_temp_cleanup(workspace, dev_python, sshd_server):
    """In-process: through a jump host (direct-tcpip), remote argv stays literal, failed uploads leave
    no temporaries."""
    from harness.lab.config import load_inventory
    from harness.transports.ssh import transport as ssh_mod
    from harness.transports.ssh.transport import SshTransport, expand_home, quote_command, remote_workdir

    assert expand_home("~/x y", "/home/pi") == "/home/pi/x y" and expand_home("/a/~b", "/h") == "/a/~b"
    assert remote_workdir("rel dir", "/home/pi") == "/home/pi/rel dir"
    evil = ["a b", "x;touch PWN", "$(touch PWN)", "`id`", "it's", "new\nline", "*", ""]
    shown = subprocess.run(
        ["sh", "-c", quote_command([sys.executable, "-c", "import json,sys;print(json.dumps(sys.argv[1:]))", *evil])],
        capture_output=True,
        text=True,
        cwd=workspace,
    )
    assert json.loads(shown.stdout) == evil

    known = workspace / "known_hosts"
    known.write_text(sshd_server.known_hosts_line())
    workdir = workspace / "w d;touch PWN" / "$(touch PWN)"
    write_lab(
        workspace,
        sshd_server,
        dev_python,
        workdir=workdir,
        known_hosts=known,
        jump_host=f"{sshd_server.user}@127.0.0.1:{sshd_server.port}",
    )
    inv = load_inventory(workspace / "inventory.yaml")
    dev = inv.device("pi")
    logs: list[str] = []
    backend = SshTransport(dev, inv.profile_of(dev), logs.append)
    backend.open()
    try:
        assert backend.connection.jump is not None and backend.workdir == str(workdir)
        rc, out, _ = backend._exec(
            quote_command([dev_python, "-c", "import json,sys;print(json.dumps(sys.argv[1:]))", *evil]), 30
        )
        assert rc == 0 and json.loads(out) == evil
        local = workspace / "blob.bin"
        local.write_bytes(os.urandom(4096))
        dest = f"{backend.workdir}/artifacts/blob"
        with pytest.raises(ssh_mod._Corrupt):
            backend._upload(local, dest, "0" * 64)  # hash check fails -> temp removed, nothing placed
        assert no_tmp_files(workdir) == [] and not Path(dest).exists()
        from harness.core.hashing import sha256_file

        assert backend._upload(local, dest, sha256_file(local)) == 4096
        assert backend.remote_sha256([dest, dest + ".missing"]) == [sha256_file(local), None]
        assert no_tmp_files(workdir) == []
    finally:
        backend.close()
    assert not list(workspace.rglob("PWN")) and not (Path.home() / "PWN").exists()


def test_hung_runner_times_out_is_killed_and_not_retried(workspace, converted, tiny_model, sshd_server):
    """command_timeout: a runner that hangs (the link is fine) is killed on the device, not retried."""
    import psutil

    known = workspace / "known_hosts"
    known.write_text(sshd_server.known_hosts_line())
    naptime = f"{300 + uuid.uuid4().int % 1000}.25"
    fake = workspace / "fake python"
    fake.write_text(f"#!/bin/sh\nexec sleep {naptime}\n")
    fake.chmod(0o755)
    write_lab(workspace, sshd_server, str(fake), workdir=workspace / "dev", known_hosts=known, command_timeout=2)
    t0 = time.monotonic()
    p = hil("run", str(tiny_model["path"]), *FAST, env={"HILBENCH_CACHE": str(converted)})
    assert p.returncode == 2, p.stderr
    assert time.monotonic() - t0 < 30
    rows = results(workspace)
    assert [r["status"] for r in rows] == ["infra_error"]
    assert "runner did not finish within 2 s (command_timeout); killed it" in rows[0]["error"]
    assert "retrying" not in p.stderr
    assert not [q for q in psutil.process_iter(["cmdline"]) if q.info["cmdline"] == ["sleep", naptime]]
