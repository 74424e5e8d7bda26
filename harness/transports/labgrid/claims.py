"""Which labgrid places this controller's hilbench processes hold, so that a place left acquired by a
hilbench that died (`kill -9`, OOM killer, power loss of the controller) is taken back by the next run
instead of blocking the board until someone runs `labgrid-client release`.

labgrid gives a place to an identity `host/user`, not to a process, so from the coordinator's view a
dead hilbench and a person working on the board under the same identity look alike. The difference
is known only on the controller: hilbench writes a claim file (pid and that process's start time) next
to its device locks right after acquiring a place and removes it after releasing. A later run, which
already holds the board's device lock (no live hilbench with the same lock directory is using it), that
finds the place acquired by its own identity releases it only when a claim names a process that no
longer exists; without a claim, the place is a person's and is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import psutil

from harness.run.device_lock import lock_dir


def _path(coordinator: str, place: str) -> Path:
    name = f"{coordinator}/{place}"
    return lock_dir() / "labgrid-claims" / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def write(coordinator: str, place: str, identity: str) -> None:
    path = _path(coordinator, place)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    doc = {"coordinator": coordinator, "place": place, "identity": identity, "pid": me.pid}
    doc["started"] = me.create_time()
    tmp = path.with_suffix(f".{me.pid}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # whole or not at all, even if this process dies right here


def remove(coordinator: str, place: str) -> None:
    _path(coordinator, place).unlink(missing_ok=True)


def dead_claim(coordinator: str, place: str, identity: str) -> dict | None:
    """The claim of a hilbench process that held this place under `identity` and is gone; None when
    there is no claim (a person holds it) or its process still runs."""
    try:
        doc = json.loads(_path(coordinator, place).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("identity") != identity or not isinstance(doc.get("pid"), int):
        return None
    try:
        alive = abs(psutil.Process(doc["pid"]).create_time() - float(doc.get("started", 0))) < 1.0
    except psutil.NoSuchProcess:
        alive = False
    except psutil.Error:
        alive = True  # cannot tell (another user's process): never take a place on a guess
    return None if alive else doc
