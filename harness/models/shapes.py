"""Input shapes of dynamic models: `hil run --input-shape NAME:1,224,224,3` (like benchmark_model's
--input_layer_shape).

A TFLite input whose shape signature holds -1 has an unknown dimension. An unknown *batch*
dimension (the first) is measured at 1, as TFLite stores it; any other unknown dimension must be
given, because the stored placeholder (1) would benchmark a different network than the user means
(and XNNPACK often cannot even prepare it). The runner applies the shapes with
`resize_tensor_input` before `allocate_tensors` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError

#: ((input name, or "" for a single-input model's only input), dims) in the order given
InputShapes = tuple[tuple[str, tuple[int, ...]], ...]


def parse_input_shapes(values: list[str] | None) -> InputShapes | None:
    """`NAME:D1,D2,...` per value, several per value separated by commas (a new entry starts at each
    element holding ':'), or just `D1,D2,...` for a single-input model. Names may contain ':' (TFLite
    tensor names often end in ':0'): the dims follow the last one."""
    if not values:
        return None
    out: list[tuple[str, list[str]]] = []
    for value in values:
        tokens = [t.strip() for t in value.split(",")]
        if not any(":" in t for t in tokens):
            out.append(("", tokens))
            continue
        if ":" not in tokens[0]:
            raise ConfigError(
                f"--input-shape {value!r}: expected NAME:D1,D2,... (dimensions before the first input name)"
            )
        for token in tokens:
            if ":" in token:
                name, _, first = token.rpartition(":")
                if not name.strip():
                    raise ConfigError(f"--input-shape {value!r}: empty input name before ':'")
                out.append((name.strip(), [first]))
            else:
                out[-1][1].append(token)
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for name, dims in out:
        try:
            parsed = tuple(int(d) for d in dims)
        except ValueError:
            raise ConfigError(
                f"--input-shape {name + ':' if name else ''}{','.join(dims)}: dimensions must be "
                "whole numbers (e.g. NAME:1,224,224,3)"
            ) from None
        if not parsed or min(parsed) < 1:
            raise ConfigError(
                f"--input-shape {name + ':' if name else ''}{','.join(dims)}: every dimension must be at least 1"
            )
        shapes.append((name, parsed))
    names = [n for n, _ in shapes]
    if "" in names and len(names) > 1:
        raise ConfigError(
            "--input-shape without an input name applies to a single-input model only; name each input (NAME:D1,D2,...)"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--input-shape gives input '{dup[0]}' more than once")
    return tuple(shapes)


def format_input_shape(name: str, dims: tuple[int, ...]) -> str:
    d = ",".join(str(x) for x in dims)
    return f"{name}:{d}" if name else d


def _sig(dims: list[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def resolve_input_shapes(model_path: Path, given: InputShapes | None, shown: Path | str) -> list[tuple[int, ...]]:
    """The shape each input of the .tflite at `model_path` is measured at; errors name `shown` (the
    user's file, not a cache copy). Raises ConfigError for unknown names, wrong ranks, dims that
    contradict the model, and unknown non-batch dims that --input-shape does not give."""
    from harness.models.inspect.analysis import analyze

    inputs = analyze(model_path).inputs
    names = ", ".join(f"'{t.name}'" for t in inputs)
    by_name: dict[int, tuple[int, ...]] = {}
    for name, dims in given or ():
        if name == "":
            if len(inputs) != 1:
                raise ConfigError(
                    f"{shown}: --input-shape {format_input_shape(name, dims)} has no input name, "
                    f"but the model has {len(inputs)} inputs ({names})"
                )
            pos = 0
        else:
            pos = next((i for i, t in enumerate(inputs) if t.name == name), -1)
            if pos < 0:
                raise ConfigError(f"{shown}: --input-shape names input '{name}', but the model's inputs are {names}")
        by_name[pos] = dims
    out: list[tuple[int, ...]] = []
    for i, t in enumerate(inputs):
        sig = list(t.shape_signature if t.shape_signature is not None else t.shape)
        if i in by_name:
            dims = by_name[i]
            if len(dims) != len(sig):
                raise ConfigError(
                    f"{shown}: --input-shape {format_input_shape(t.name, dims)} has {len(dims)} "
                    f"dimensions, input '{t.name}' has {len(sig)} (shape signature {_sig(sig)})"
                )
            for k, (want, got) in enumerate(zip(sig, dims)):
                if want >= 0 and want != got:
                    raise ConfigError(
                        f"{shown}: --input-shape {format_input_shape(t.name, dims)}: dimension {k} "
                        f"of input '{t.name}' is fixed at {want} (shape signature {_sig(sig)})"
                    )
            out.append(dims)
            continue
        unknown = [k for k, d in enumerate(sig) if d < 0]
        if any(k > 0 for k in unknown):
            hint = ",".join("1" if (k == 0 and d < 0) else ("?" if d < 0 else str(d)) for k, d in enumerate(sig))
            raise ConfigError(
                f"{shown}: input '{t.name}' has unknown dimensions (shape signature {_sig(sig)}); "
                f"give the shape to measure with --input-shape {t.name}:{hint} (each ? a size)"
            )
        out.append(tuple(max(1, int(d)) for d in t.shape))
    return out
