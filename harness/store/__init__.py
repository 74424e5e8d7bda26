"""The result store: the only package that runs SQL (see results.py, schema.py, verdicts.py)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`from harness.store import open_results, ResultStore` (the README's Python API) without
    importing pandas for every user of the package."""
    if name in ("open_results", "ResultStore"):
        from harness.store import results

        return getattr(results, name)
    raise AttributeError(f"module 'harness.store' has no attribute {name!r}")
