"""Shared plumbing for sub-commands: loading the lab, the store and the converter from global flags."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import Inventory, load_inventory
from ..convert import Converter
from ..store import ResultStore


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def inventory(args) -> Inventory:
    return load_inventory(Path(args.inventory), Path(args.profiles) if args.profiles else None)


def store(args, create: bool = True) -> ResultStore:
    """The results database; read-only commands pass create=False so a typo in --db is an error."""
    return ResultStore(Path(args.db), create=create)


def converter(args) -> Converter:
    return Converter(Path(args.cache) / "artifacts" if args.cache else None, log=log)


def split_csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]
