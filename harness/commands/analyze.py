"""`hil analyze`: what is inside a .tflite (ops, shapes, quantisation, MACs), no TensorFlow needed."""

from __future__ import annotations

import json

from harness.models.inspect.analysis import analyze, format_table, to_dict


def register(sub) -> None:
    p = sub.add_parser("analyze", help="show operators, tensors, quantisation and MACs of a .tflite")
    p.add_argument("model", help=".tflite file (a .keras model: `hil convert` it first)")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    a = analyze(args.model)
    print(json.dumps(to_dict(a), indent=1) if args.json else format_table(a))
    return 0
