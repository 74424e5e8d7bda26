"""`hil convert`: produce (or fetch from cache) TFLite variants without benchmarking."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.commands import common
from harness.errors import ConfigError
from harness.run.orchestrate import ModelSpec


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to TFLite variants (cached)")
    p.add_argument("model", help=".keras file or SavedModel directory")
    p.add_argument("--variants", default="fp32", help="comma list (default: %(default)s)")
    p.add_argument("--calibration", help="representative data .npy/.npz, or 'random'")
    p.add_argument(
        "-o",
        "--output",
        help="also write each variant to this folder as <model>_<variant>.tflite (default: only the cache)",
    )
    p.set_defaults(func=cmd_convert)


def _output_dir(path: str) -> Path:
    """Checked before converting: a file standing where the folder should be is a one-line error now,
    not after minutes of quantisation."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is not a directory; give a folder for the converted models")
    return out


def cmd_convert(args) -> int:
    out = _output_dir(args.output) if args.output else None
    spec = ModelSpec.from_args(args.model, args.calibration, None)
    conv = common.converter(args)
    for v in conv.variants_for(spec.source, common.split_csv(args.variants)):
        mv = conv.convert(spec.source, v, spec.calibration)
        path = mv.artifact
        if out is not None:
            path = out / f"{mv.model_name}_{mv.variant}.tflite"
            common.write_output(path, "converted model", lambda dst: shutil.copyfile(mv.artifact, dst))
        print(f"{mv.variant}\t{mv.size_bytes}\t{path}")
    return 0
