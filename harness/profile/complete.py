"""A device's per-operator profile completed on the host before it is stored.

The device knows op indices, types and times; the artifact it ran knows the shapes and MACs. Joining
them here, where the job's artifact is at hand, means the store, the spool and every reader get the
whole profile, and a profile that does not belong to the artifact is refused before anything reads it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from harness.errors import ModelError
from harness.profile.document import attach_analysis, from_dict

# The runner document's keys that hold a profile (runners/linux_runner.py): what ran (`op_profile`;
# with XNNPACK its own fused operators), the same artifact on the built-in kernels (`_builtin`: the
# model's ops, so shapes and MACs attach), and the same two of the `--paired-model` artifact timed in
# that process. The first is THE profile of a result; all are stored (op_times.profile_key).
MAIN = "op_profile"
KEYS = (MAIN, "op_profile_builtin", "paired_op_profile", "paired_op_profile_builtin")


def of_paired(key: str) -> bool:
    """A profile of the artifact paired in the process (the job's reference), not of the job's own."""
    return key.startswith("paired_")


def complete(doc: Any, artifact: Path | str, where: str) -> dict[str, Any]:
    """The wire document with shapes and MACs of `artifact` added; a ModelError starting with `where`
    (e.g. "device 'pi4': op_profile") when it is malformed or is not a profile of this artifact."""
    profile = from_dict(doc, where)
    try:
        mtime = os.stat(artifact).st_mtime_ns
    except OSError as exc:
        raise ModelError(f"{where}: cannot read the artifact {artifact} ({exc.strerror or exc})") from None
    try:
        return attach_analysis(profile, _analysis(str(artifact), mtime)).to_dict()
    except ModelError as exc:
        text = str(exc)
        raise ModelError(
            where + text[len("op_profile") :] if text.startswith("op_profile") else f"{where}: {text}"
        ) from None


@functools.lru_cache(maxsize=16)
def _analysis(artifact: str, mtime_ns: int) -> Any:
    """One analysis per artifact file version: every repeat of a job profiles the same artifact."""
    from harness.models.inspect.analysis import analyze

    return analyze(artifact)
