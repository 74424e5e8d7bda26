"""The spool: measured results that the results database could not take, kept as files until it can.

A full disk, a write-protected file or a lost PostgreSQL server must not cost a measurement that took
minutes of a board's time. When `hil run` cannot store a result it writes the whole of it (the record,
its measurements and samples, the time it was measured) as one JSON file in `$HILBENCH_CACHE/spool/`,
a different place from the database and often a different disk. The next command that opens that
database for writing stores the spooled results (`replay`), as does `hil db recover`. A replayed
result keeps its measurement time, and a result already stored with that time (a replay interrupted
between its commit and the file's removal) is not stored twice. Each file names the database it
belongs to, so a spool shared by several databases never mixes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness.errors import HilError, StorageError
from harness.store.location import Location
from harness.store.results import ResultRecord, ResultStore

_log = logging.getLogger(__name__)


def spool_dir(cache_root: Path) -> Path:
    return cache_root / "spool"


@dataclass
class Replayed:
    """What a replay did: results stored, run endings applied, files left (still failing or another
    database's) and why some could not be stored."""

    stored: int = 0
    finished: int = 0
    left: int = 0
    other_databases: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Spool:
    def __init__(self, directory: Path, location: Location):
        self.directory = directory
        self.target = location.key

    def keep_result(
        self,
        rec: ResultRecord,
        measurements: list[tuple[str, float | None, str]],
        samples: dict[str, list[float]],
        timestamp: float,
    ) -> Path:
        """Write one result; OSError when the spool cannot be written either."""
        return self._write(
            {
                "kind": "result",
                "record": dataclasses.asdict(rec),
                "measurements": [list(m) for m in measurements],
                "samples": samples,
                "timestamp": timestamp,
            }
        )

    def keep_finish(self, run_id: str, status: str, planned: list[str]) -> Path:
        """The end of a run whose status could not be written (applied after its results)."""
        return self._write({"kind": "finish", "run_id": run_id, "status": status, "planned": planned})

    def _write(self, entry: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = {"db": self.target, **entry}
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{name}.tmp"
        path = self.directory / f"{name}.json"
        try:
            with open(tmp, "w") as f:  # a file is whole or absent: written aside, then renamed
                json.dump(entry, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def pending(self) -> list[Path]:
        """Spooled files, oldest first (a run's results before its ending)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"))

    def replay(self, store: ResultStore) -> Replayed:
        """Store this database's spooled entries; stop at the first storage failure (the database
        still cannot be written: everything stays spooled)."""
        out = Replayed()
        files = self.pending()
        for i, path in enumerate(files):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                out.left += 1
                out.problems.append(f"{path}: unreadable ({exc})")
                continue
            if entry.get("db") != self.target:
                db = str(entry.get("db"))
                out.other_databases[db] = out.other_databases.get(db, 0) + 1
                continue
            try:
                if entry["kind"] == "result":
                    store.record(
                        ResultRecord(**entry["record"]),
                        [(m[0], m[1], m[2]) for m in entry["measurements"]],
                        entry["samples"],
                        timestamp=entry["timestamp"],
                        once=True,
                    )
                    out.stored += 1
                else:
                    store.finish_run(entry["run_id"], entry["status"], planned=entry["planned"])
                    out.finished += 1
            except StorageError as exc:
                out.left += sum(1 for p in files[i:] if _belongs(p, self.target))
                out.problems.append(str(exc))
                break
            except (HilError, sa.exc.DBAPIError, KeyError, TypeError) as exc:
                out.left += 1
                out.problems.append(f"{path}: cannot be stored ({' '.join(str(exc).split())[:300]})")
                continue
            path.unlink(missing_ok=True)
        return out


def _belongs(path: Path, target: str) -> bool:
    try:
        return json.loads(path.read_text()).get("db") == target
    except (OSError, ValueError):
        return False
