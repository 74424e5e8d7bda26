"""`hil lineage MODEL`: the tree of models compressed from MODEL, with accuracy and per-device results."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from harness.commands import common
from harness.errors import ConfigError

SHOWN_PARAMS = {  # per step: the parameters worth a glance in the tree (all of them are in --json)
    "quantize": ("variant", "aeq", "granularity"),
    "qat": ("epochs", "learning_rate"),
    "prune": ("sparsity", "schedule", "epochs"),
    "structured_prune": ("reduction", "target", "epochs"),
    "profile_prune": ("latency_reduction", "variant", "epochs"),
    "distill": ("width", "student", "temperature", "alpha", "epochs"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "lineage",
        help="show the tree of compressed models derived from a model",
        description="Every model `hil sweep` produced from MODEL, as a tree of lineage nodes (step, "
        "parameters, ID), with host accuracy and the newest results per device. "
        "--export rolls back to any node: it copies that node's model file out.",
    )
    p.add_argument("model", help="the original model file (.keras or .tflite)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument(
        "--export",
        nargs=2,
        metavar=("NODE", "OUT"),
        help="copy the model file of lineage node NODE (an ID or its unique prefix) to OUT",
    )
    p.set_defaults(func=cmd_lineage)


def cmd_lineage(args) -> int:
    from harness.compress.lineage import NodeCache, root_id
    from harness.models.convert import ModelSource

    src = ModelSource.open(args.model)
    store = common.store(args, create=False, read_only=True)
    root = root_id(src.sha256)
    nodes = store.lineage(root)
    if args.export:
        prefix, out = args.export
        match = [n for n in nodes if n["node_id"].startswith(prefix)]
        if len(match) != 1:
            raise ConfigError(
                f"lineage node '{prefix}': {'no' if not match else 'more than one'} node of "
                f"{src.path} has this ID prefix"
            )
        cache = NodeCache(common.converter(args).cache_dir.parent)
        node = cache.get(match[0]["node_id"])
        if node is None or node.path is None:
            raise ConfigError(
                f"lineage node {match[0]['node_id'][:12]}: not in the cache at {cache.dir}; run its "
                f"recipe again with hil sweep (an unchanged recipe rebuilds the same ID)"
            )
        dest = Path(out)
        if dest.is_dir():
            dest = dest / f"{match[0].get('model_name') or node.id[:12]}{Path(node.file).suffix}"
        shutil.copyfile(node.path, dest)
        common.log(f"node {node.id[:12]} ({node.step}, {node.kind}) copied to {dest}")
        print(dest)
        return 0
    if not nodes:
        raise ConfigError(f"{src.path}: no lineage recorded in {store.path} (run `hil sweep {src.path} ...` first)")
    results = _results(store, src.sha256, nodes)
    tree = _tree(root, src, nodes, results)
    if args.json:
        print(json.dumps(tree, indent=1, default=float))
    else:
        print("\n".join(_render(tree)))
    return 0


def _results(store, root_sha: str, nodes: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """node id (or 'root') -> device -> newest ok measurements of the node's artifact."""
    wide = store.wide()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if wide.empty:
        return out
    ok = wide[wide["status"] == "ok"].sort_values("timestamp")
    keys = {"root": ok[ok["model_sha256"] == root_sha]}
    for n in nodes:  # a Keras node is measured through its quantize child: shown there
        if n["kind"] == "tflite":
            keys[n["node_id"]] = ok[ok["artifact_sha256"] == n["sha256"]]
    for key, rows in keys.items():
        for _, r in rows.iterrows():
            vals = {
                m: _num(r.get(m))
                for m in (
                    "latency_p50_us",
                    "model_size_bytes",
                    "energy_per_inference_uj",
                    "arena_bytes",
                    "accuracy_top1",
                    "accuracy_auc",
                )
            }
            label = r["device_id"] + (f" {r['variant']}" if key == "root" or r["variant"] != "asis" else "")
            out.setdefault(key, {})[label] = {**vals, "run_id": r["run_id"], "model": r["model"]}
    return out


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _tree(root: str, src, nodes: list[dict], results: dict) -> dict[str, Any]:
    children: dict[str, list[dict]] = {}
    for n in nodes:
        children.setdefault(n["parent_id"], []).append(n)

    def build(n: dict) -> dict[str, Any]:
        kids = sorted(children.get(n["node_id"], []), key=lambda c: (c["step"], c["recipe"] or "", c["node_id"]))
        return {**n, "results": results.get(n["node_id"], {}), "children": [build(k) for k in kids]}

    top = sorted(children.get(root, []), key=lambda c: (c["step"], c["recipe"] or "", c["node_id"]))
    return {
        "node_id": root,
        "model": str(src.path),
        "results": results.get("root", {}),
        "children": [build(k) for k in top],
    }


def _describe(n: dict) -> str:
    params = n.get("params") or {}
    shown = [
        f"{k}={params[k]}"
        for k in SHOWN_PARAMS.get(n["step"], ())
        if params.get(k) is not None and not (k == "granularity" and params.get("variant"))
    ]
    metrics = n.get("metrics") or {}
    bits = [f"{n['step']} {n['node_id'][:12]}", f"[{n['recipe']}]" if n.get("recipe") else "", " ".join(shown)]
    host = (metrics.get("host_accuracy") or {}).get("top1")
    if host is not None:
        bits.append(f"acc {host * 100:.2f} % (host)")
    if metrics.get("sparsity") is not None:
        bits.append(f"sparsity {metrics['sparsity'] * 100:.1f} %")
    red = metrics.get("reduction")
    if isinstance(red, dict):
        bits.append(f"{red['target']} -{red['achieved'] * 100:.1f} %")
    if n.get("model_name"):
        bits.append(f"-> {n['model_name']}")
    return "  ".join(b for b in bits if b)


def _result_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for dev, v in sorted(results.items()):
        parts = []
        if v.get("accuracy_top1") is not None:
            parts.append(f"acc {v['accuracy_top1'] * 100:.2f} %")
        if v.get("accuracy_auc") is not None:  # an anomaly detector's score instead of top-1
            parts.append(f"AUC {v['accuracy_auc']:.3f}")
        if v.get("latency_p50_us") is not None:
            parts.append(f"p50 {v['latency_p50_us']:.1f} us")
        if v.get("model_size_bytes") is not None:
            parts.append(f"size {int(v['model_size_bytes']):,} B")
        if v.get("energy_per_inference_uj") is not None:
            parts.append(f"energy {v['energy_per_inference_uj']:.2f} uJ")
        if v.get("arena_bytes") is not None:
            parts.append(f"arena {int(v['arena_bytes']):,} B")
        out.append(f"{dev}: " + ", ".join(parts or ["measured"]))
    return out


def _render(tree: dict[str, Any]) -> list[str]:
    lines = [f"{tree['model']} ({tree['node_id'][:17]})"]
    lines += [f"    {r}" for r in _result_lines(tree["results"])]

    def walk(node: dict, prefix: str, last: bool) -> None:
        lines.append(prefix + ("└── " if last else "├── ") + _describe(node))
        inner = prefix + ("    " if last else "│   ")
        lines.extend(inner + "      " + r for r in _result_lines(node["results"]))
        for i, c in enumerate(node["children"]):
            walk(c, inner, i == len(node["children"]) - 1)

    for i, c in enumerate(tree["children"]):
        walk(c, "", i == len(tree["children"]) - 1)
    return lines
