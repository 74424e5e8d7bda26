"""`hil convert`: produce (or fetch from cache) TFLite variants without benchmarking."""

from __future__ import annotations

from harness.commands import common
from harness.run.orchestrate import ModelSpec


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to TFLite variants (cached)")
    p.add_argument("model", help=".keras file or SavedModel directory")
    p.add_argument("--variants", default="fp32", help="comma list (default: %(default)s)")
    p.add_argument("--calibration", help="representative data .npy/.npz, or 'random'")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    spec = ModelSpec.from_args(args.model, args.calibration, None)
    conv = common.converter(args)
    for v in conv.variants_for(spec.source, common.split_csv(args.variants)):
        mv = conv.convert(spec.source, v, spec.calibration)
        print(f"{mv.variant}\t{mv.size_bytes}\t{mv.artifact}")
    return 0
