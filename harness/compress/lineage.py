"""Lineage: an ID for every produced model, derived from exactly what can change it, and its cache.

A node's ID is the sha256 of a canonical JSON document of its inputs:
- `parent`: the parent node's ID (the root is the user's model file: `file:<sha256 of its bytes>`);
- `step` and `params`: the step type and all of its parameters, defaults filled in (so writing a default
  out or leaving it away gives one ID; files a step names, a student or a teacher, enter as their
  sha256, not their path);
- `data`: the sha256 of the training data arrays (or of the calibration data for post-training steps);
- `seed`; and `versions`: the libraries that produce the bytes (TensorFlow, Keras, NumPy,
  ai-edge-quantizer for its methods, and this module's STEP_VERSION).
The recipe's name, its description, its file's location and YAML formatting are not inputs: renaming
a recipe reuses its models. A node lives in `<cache>/lineage/<id[:2]>/<id>/` (its model file and
`node.json`), written atomically like a conversion; a node whose file is present and intact is never
computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.core.hashing import sha256_file

STEP_VERSION = "2"  # bump when a step's implementation changes the models it produces


def library_versions(*extra: str) -> dict[str, str]:
    out = {}
    for pkg in ("tensorflow", "keras", "numpy", *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "none"
    out["hilbench-steps"] = STEP_VERSION
    return out


def root_id(model_sha256: str) -> str:
    return f"file:{model_sha256}"


def node_id(
    parent: str, step: str, params: dict[str, Any], data: str | None, seed: int, versions: dict[str, str]
) -> str:
    doc = {"parent": parent, "step": step, "params": params, "data": data, "seed": seed, "versions": versions}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Node:
    """One produced model and everything its ID was made of (+ what it measured on the host)."""

    id: str
    parent: str
    step: str
    params: dict[str, Any]
    data: str | None
    seed: int
    versions: dict[str, str]
    kind: str  # keras | tflite
    file: str  # model.keras | model.tflite inside the node's directory
    sha256: str  # of that file
    root: str  # the root's ID (the user's model file)
    recipe: str = ""  # the recipe (label) that first produced it: informational, not an input
    created_at: float = 0.0
    seconds: float = 0.0  # time the step took
    metrics: dict[str, Any] = field(default_factory=dict)  # host accuracy, sparsity, MACs, ...
    path: Path | None = None  # the model file (not stored)
    cache_hit: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d.pop("cache_hit")
        return d


class NodeCache:
    """Nodes by ID under `<root>/lineage`."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "lineage"
        self.hits = 0
        self.misses = 0

    def entry(self, nid: str) -> Path:
        return self.dir / nid[:2] / nid

    def get(self, nid: str) -> Node | None:
        entry = self.entry(nid)
        try:
            meta = json.loads((entry / "node.json").read_text())
            node = Node(**meta)
        except (OSError, ValueError, TypeError):
            return None
        path = entry / node.file
        if not path.exists() or sha256_file(path) != node.sha256:
            return None
        node.path = path
        node.cache_hit = True
        return node

    def put(self, node: Node, produced: Path) -> Node:
        """Store `produced` (a file) as the node's model, atomically."""
        entry = self.entry(node.id)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        shutil.copyfile(produced, tmp / node.file)
        node.sha256 = sha256_file(tmp / node.file)
        node.created_at = node.created_at or time.time()
        (tmp / "node.json").write_text(json.dumps(node.to_json(), indent=1, sort_keys=True))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
        node.path = entry / node.file
        return node

    def update_metrics(self, node: Node, metrics: dict[str, Any]) -> None:
        node.metrics.update(metrics)
        meta = self.entry(node.id) / "node.json"
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(node.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, meta)

    def all(self) -> list[Node]:
        out = []
        for meta in sorted(self.dir.glob("*/*/node.json")):
            node = self.get(meta.parent.name)
            if node is not None:
                out.append(node)
        return out


def node_row(node: Node, model_name: str | None) -> dict[str, Any]:
    """The node as a row of the results database's `lineage` table."""
    return {
        "node_id": node.id,
        "parent_id": node.parent,
        "root_id": node.root,
        "step": node.step,
        "params": node.params,
        "data_hash": node.data,
        "seed": node.seed,
        "versions": node.versions,
        "kind": node.kind,
        "sha256": node.sha256,
        "recipe": node.recipe,
        "model_name": model_name,
        "created_at": node.created_at,
        "metrics": node.metrics,
    }


def store_nodes(store, candidates) -> int:
    """Record every node of the candidates (the leaf carries the candidate's name in results)."""
    rows: dict[str, dict[str, Any]] = {}
    for c in candidates:
        for n in c.nodes:
            rows[n.id] = node_row(n, c.name if n is c.nodes[-1] else rows.get(n.id, {}).get("model_name"))
    store.record_lineage(list(rows.values()))
    return len(rows)
