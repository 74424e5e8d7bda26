"""Model names in results, reports and the gate: one per model file of a command, never shared.

A model is named after its file (`net.keras` -> `net`). When two models of one command would get
the same name (`a/net.tflite b/net.tflite`, or `net.keras net.tflite`), each gets the shortest
readable name that tells them apart, the same way every time the same files are given: the
parent directories that differ (`a/net`, `b/net`), else the file suffix (`net.keras`,
`net.tflite`), else both. The same file given twice is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ConfigError


def _stem_and_suffix(p: Path) -> tuple[str, str]:
    if p.suffix.lower() in (".keras", ".tflite"):
        return p.stem, p.suffix
    return p.name, ""  # a SavedModel directory (or an unsupported file, refused later)


def unique_model_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One name per path (same order): the plain stem unless another path of the list shares it."""
    resolved = [Path(os.path.abspath(p)) for p in paths]
    seen: dict[Path, str] = {}
    for given, r in zip(paths, resolved):
        if r in seen:
            raise ConfigError(f"{given}: model given twice (also as {seen[r]}); give each model once")
        seen[r] = str(given)
    names = [_stem_and_suffix(r)[0] for r in resolved]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n, []).append(i)
    for stem, members in groups.items():
        if len(members) < 2:
            continue
        depth = max(len(resolved[i].parent.parts) for i in members)
        chosen = None
        for with_suffix in (False, True):
            for k in range(0, depth + 1):
                cand = []
                for i in members:
                    parents = list(resolved[i].parent.parts[1:])  # without the root '/'
                    leaf = stem + (_stem_and_suffix(resolved[i])[1] if with_suffix else "")
                    cand.append("/".join([*parents[max(0, len(parents) - k) :], leaf] if k else [leaf]))
                if len(set(cand)) == len(cand):
                    chosen = cand
                    break
            if chosen:
                break
        if chosen is None:  # unreachable for distinct paths; refuse rather than mix results up
            raise ConfigError(
                f"models {', '.join(str(paths[i]) for i in members)} cannot be told apart by name; rename one of them"
            )
        for i, n in zip(members, chosen):
            names[i] = n
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # a disambiguated name met another model's plain name (e.g. 'a/net' vs a file 'a/net'...)
        clash = [str(paths[i]) for i, n in enumerate(names) if n == dup[0]]
        raise ConfigError(f"models {', '.join(clash)} would share the name '{dup[0]}' in results; rename one of them")
    return names
