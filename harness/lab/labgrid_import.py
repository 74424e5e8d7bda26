"""Inventory entries from a labgrid coordinator's places (`hil devices import --labgrid`).

A lab that already describes its boards in labgrid should not have to describe them again: each place
becomes a device of the same name, `transport: {type: labgrid, place: NAME, coordinator: ...}`. What
labgrid cannot know is the board type, so the place says it in a tag (`hilbench-profile=stm32h7`, set
with `labgrid-client -p NAME set-tags`); `hilbench-tags=nightly,ci` adds device tags. Nothing else of a
place is copied (its comment, other tags and resource parameters, which may carry switch passwords).

Existing inventories are edited as text: new entries are appended to the `devices:` list, so comments
and layout stay as the lab wrote them, and a device id or place already in the file is left alone
and reported, never replaced.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.transports.labgrid.transport import link_classes

PROFILE_TAG = "hilbench-profile"
TAGS_TAG = "hilbench-tags"
_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class PlaceView:
    """What the import needs of a place (harness.transports.labgrid.session.PlaceInfo, or a test's)."""

    name: str
    tags: dict[str, str]
    resource_classes: list[str]


@dataclass
class Outcome:
    """One place: the entry made for it, or why none was."""

    place: str
    entry: dict[str, Any] | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def parse_matches(specs: Sequence[str]) -> dict[str, str]:
    """`--match TAG=VALUE` (repeatable) -> {TAG: VALUE}; VALUE may use shell wildcards."""
    out: dict[str, str] = {}
    for spec in specs:
        tag, sep, value = spec.partition("=")
        if not sep or not tag.strip():
            raise ConfigError(f"--match {spec}: expected TAG=VALUE (e.g. --match lab=berlin)")
        out[tag.strip()] = value.strip()
    return out


def selected(place: PlaceView, matches: dict[str, str]) -> bool:
    return all(tag in place.tags and fnmatch.fnmatchcase(place.tags[tag], want) for tag, want in matches.items())


def device_id(place: str) -> str:
    """Place names may hold ':' (and device ids may not): ':' and anything else becomes '-'."""
    return _ID_BAD.sub("-", place)


def entries(
    places: Sequence[PlaceView],
    coordinator: str,
    profiles: dict[str, Any],
    matches: dict[str, str],
    default_profile: str | None = None,
) -> list[Outcome]:
    """An outcome per place that `matches` selects; `profiles` maps profile names to their runtime."""
    out = []
    for place in places:
        if not selected(place, matches):
            continue
        o = Outcome(place.name)
        out.append(o)
        profile = place.tags.get(PROFILE_TAG) or default_profile
        if not profile:
            o.skipped = (
                f"no tag {PROFILE_TAG} (set it with `labgrid-client -p {place.name} set-tags "
                f"{PROFILE_TAG}=PROFILE`, or give --profile)"
            )
            continue
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            o.skipped = f"profile '{profile}' ({PROFILE_TAG}) is not a known profile (known: {known})"
            continue
        entry: dict[str, Any] = {
            "id": device_id(place.name),
            "profile": profile,
            "transport": {"type": "labgrid", "place": place.name, "coordinator": coordinator},
        }
        tags = [t.strip() for t in place.tags.get(TAGS_TAG, "").split(",") if t.strip()]
        if tags:
            entry["tags"] = tags
        o.entry = entry
        if entry["id"] != place.name:
            o.notes.append(f"device id '{entry['id']}' (a device id cannot hold the place name's characters)")
        want, kind = link_classes(profiles[profile])
        if not place.resource_classes:
            o.notes.append("no exporter publishes its resources now: check that they are what the profile needs")
        elif not set(want) & set(place.resource_classes):
            o.notes.append(
                f"profile '{profile}' is {'an' if kind == 'MCU' else 'a'} {kind} profile and needs a {want[0]}, "
                f"the place has "
                f"{', '.join(sorted(set(place.resource_classes)))}"
            )
    return out


def existing(data: Any) -> tuple[set[str], dict[tuple[str | None, str], str]]:
    """Device ids, and labgrid (coordinator, place) -> device id, of an inventory's parsed YAML."""
    ids: set[str] = set()
    places: dict[tuple[str | None, str], str] = {}
    devices = data.get("devices") if isinstance(data, dict) else None
    for d in devices if isinstance(devices, list) else []:
        if not isinstance(d, dict):
            continue
        if isinstance(d.get("id"), str):
            ids.add(d["id"])
        t = d.get("transport")
        if isinstance(t, dict) and t.get("type") == "labgrid" and isinstance(t.get("place"), str):
            places[(t.get("coordinator"), t["place"])] = str(d.get("id"))
    return ids, places


def leave_existing(outcomes: list[Outcome], data: Any, path: Path, env_coordinator: str | None) -> None:
    """Mark entries whose id or place the inventory already has as skipped (never replaced)."""
    ids, places = existing(data)
    for o in outcomes:
        if o.entry is None:
            continue
        t = o.entry["transport"]
        holder = places.get((t["coordinator"], t["place"]))
        if holder is None and t["coordinator"] == env_coordinator:
            holder = places.get((None, t["place"]))  # an entry relying on LG_COORDINATOR
        if holder is not None:
            o.skipped = f"{path} already has it as device '{holder}' (left as is)"
        elif o.entry["id"] in ids:
            o.skipped = f"{path} already has a device '{o.entry['id']}' (left as is; rename one of the two)"
        if o.skipped:
            o.entry = None


def render(new: list[dict[str, Any]], indent: int = 2) -> str:
    """Entries as YAML list items at `indent` columns."""
    text = yaml.safe_dump(new, default_flow_style=False, sort_keys=False)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def append_to(text: str, new: list[dict[str, Any]], path: Path) -> str:
    """The inventory text with `new` appended to its block list `devices:` (comments and layout kept)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix it before importing") from None
    devices = None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "devices":
                devices = value
    if devices is None:
        raise ConfigError(f"{path}: devices: missing; not an inventory to add devices to")
    if not isinstance(devices, yaml.SequenceNode) or devices.flow_style or not devices.value:
        raise ConfigError(
            f"{path}: devices: is not a block list of `- id: ...` entries; add the entries that "
            f"`hil devices import --labgrid` prints (without -o) by hand"
        )
    mark = devices.value[0].start_mark
    before = text.splitlines()[mark.line][: mark.column].rstrip()
    indent = len(before) - 1 if before.endswith("-") else mark.column - 2  # the column of the items' '-'
    if not text.endswith("\n"):
        text += "\n"
    return text + render(new, max(indent, 0))
