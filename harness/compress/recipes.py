"""Recipe files: a named pipeline of compression steps with parameters, validated before any work.

```yaml
name: prune-80-int8
description: 80 % magnitude sparsity, fine-tuned, then full-integer PTQ
seed: 0                                   # training seed (default 0)
train: {epochs: 4, batch_size: 32, learning_rate: 0.001, validation_split: 0.1}
steps:
  - prune: {sparsity: 0.8, schedule: polynomial}
  - quantize: {variant: int8}
```

Every step is one single-key mapping `{type: {params}}`. `quantize` (post-training) and `qat`
(quantization-aware training, ending in full int8) produce the `.tflite`; one of them may stand last,
without one the recipe ends in `quantize: {variant: fp32}`. Files named by a step (a student model,
a teacher) are relative to the recipe file. Every problem is one line naming the recipe file and
the field (`ConfigError`, exit 3).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError
from harness.lab.yaml_load import read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TrainSettings(_Strict):
    """Fine-tuning defaults of a recipe; each training step may override epochs/learning_rate/batch_size."""

    epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    validation_split: float = Field(0.1, ge=0, lt=1)


class _TrainStep(_Strict):
    epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0, lt=1)


AEQ_METHODS = ("weight_only_int8", "weight_only_int4", "dynamic_int8", "dynamic_int4", "static_int8", "static_int16")


class QuantizeStep(_Strict):
    """Post-training quantization: a converter variant, or an ai-edge-quantizer method on the fp32 .tflite."""

    variant: Literal["fp32", "fp16", "dynamic", "int8", "int16x8"] | None = None
    aeq: Literal[AEQ_METHODS] | None = None  # type: ignore[valid-type]
    granularity: Literal["channel", "tensor"] = "channel"  # aeq only: weight scales per channel or per tensor
    # mixed precision (aeq static_int8 only; harness/compress/sensitivity.py): the `keep` operators whose
    # int8 quantization costs the most, with the readers of their outputs, stay int16 (int16
    # activations, int8 weights: TFLite Micro has the kernels) or float (devices with an FPU)
    keep: int = Field(0, ge=0, le=1000)
    keep_as: Literal["int16", "float"] = "int16"

    @model_validator(mode="after")
    def _one_method(self) -> QuantizeStep:
        if (self.variant is None) == (self.aeq is None):
            raise ValueError("give exactly one of 'variant' (converter) or 'aeq' (ai-edge-quantizer)")
        if self.variant is not None and self.granularity != "channel":
            raise ValueError("'granularity' applies to 'aeq' methods only")
        if self.keep and self.aeq != "static_int8":
            raise ValueError("'keep' (mixed precision) applies to aeq: static_int8 only")
        return self


class QatStep(_TrainStep):
    """Fine-tune with fake-quant (per-channel conv weights, running min/max activations), then full int8."""

    learning_rate: float | None = Field(1e-4, gt=0, lt=1)
    epochs: int | None = Field(2, ge=1, le=1000)
    ema_decay: float = Field(0.99, gt=0, lt=1)


class PruneStep(_TrainStep):
    """Magnitude pruning of Conv/Dense kernels to `sparsity`, with a gradual schedule during fine-tuning."""

    sparsity: float = Field(gt=0, lt=1)
    schedule: Literal["polynomial", "constant"] = "polynomial"
    begin: float = Field(0.0, ge=0, lt=1)  # fraction of the fine-tuning steps where pruning starts
    end: float = Field(0.7, gt=0, le=1)  # ... and where the target sparsity is reached
    frequency: int = Field(10, ge=1)  # masks are recomputed every `frequency` steps
    power: float = Field(3.0, gt=0)  # polynomial schedule exponent

    @model_validator(mode="after")
    def _order(self) -> PruneStep:
        if self.end <= self.begin:
            raise ValueError(f"end ({self.end:g}) must come after begin ({self.begin:g})")
        return self


class StructuredPruneStep(_TrainStep):
    """Remove whole filters/units (lowest norm first) so the dense model gets smaller and faster."""

    reduction: float = Field(gt=0, lt=1)  # fraction of MACs (or parameters) to remove
    target: Literal["macs", "params"] = "macs"
    criterion: Literal["l1", "l2", "bn_gamma"] = "l1"
    align: int = Field(8, ge=1)  # groups of a multiple of `align` channels keep a multiple of it


class CostModel(_Strict):
    """An explicit per-op cost (cost_model.py): ticks = per_op + MACs x per_mac x op_weights[type] +
    output elements x per_element."""

    per_mac: float = Field(1.0, ge=0)
    per_element: float = Field(1.0, ge=0)
    per_op: float = Field(100.0, ge=0)
    op_weights: dict[str, float] = Field(default_factory=dict)  # e.g. {DEPTHWISE_CONV_2D: 10}

    @field_validator("op_weights")
    @classmethod
    def _weights(cls, w: dict[str, float]) -> dict[str, float]:
        for op, v in w.items():
            if not op or op.upper() != op or v < 0:
                raise ValueError(f"{op!r}: give TFLite op names (CONV_2D, ...) with weights >= 0")
        return w


class ProfilePruneStep(_TrainStep):
    """Remove channels from the layers that take the most measured time on the target (NetAdapt-like,
    profile_prune.py), until its per-operator profile is `latency_reduction` faster."""

    latency_reduction: float = Field(gt=0, lt=1)  # share of the measured time to remove
    step: float = Field(0.1, gt=0, le=1)  # measured time removed per iteration, share of the first total
    candidates: int = Field(1, ge=1, le=16)  # groups tried per iteration (1: the slowest, deterministic)
    max_iterations: int = Field(20, ge=1, le=500)
    iteration_epochs: int = Field(1, ge=1, le=1000)  # short fine-tuning after each narrowing
    criterion: Literal["l1", "l2", "bn_gamma"] = "l1"
    align: int = Field(8, ge=1)  # groups of a multiple of `align` channels keep a multiple of it
    variant: Literal["auto", "fp32", "fp16", "dynamic", "int8", "int16x8"] = "auto"  # what is profiled
    cost_model: CostModel | None = None  # None: the sweep's target device profiles


class TeacherRef(_Strict):
    model: str = "parent"  # "parent" (the model the step gets) or a .keras file
    weight: float = Field(1.0, gt=0)


class FeaturePair(_Strict):
    student: str  # layer name in the student
    teacher: str  # layer name in the teacher (the first teacher)
    weight: float = Field(1.0, gt=0)


class DistillStep(_TrainStep):
    """Train a student from teacher soft labels (logits), optionally matching intermediate features."""

    student: str | None = None  # a .keras file (fresh weights are trained)
    width: float | None = Field(None, gt=0, le=1)  # or: the teacher with this width multiplier
    depth: float | None = Field(None, gt=0, le=1)  # and/or: this share of its shape-keeping blocks
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)  # weight of the soft (teacher) loss; 1 - alpha: labels
    teachers: list[TeacherRef] = Field(default_factory=lambda: [TeacherRef()], min_length=1)
    features: list[FeaturePair] | Literal["auto"] = Field(default_factory=list)  # auto: stages.py
    epochs: int | None = Field(None, ge=1, le=1000)

    @model_validator(mode="after")
    def _student(self) -> DistillStep:
        derived = self.width is not None or self.depth is not None
        if (self.student is None) == (not derived):
            raise ValueError(
                "give either 'student' (a .keras file) or 'width' and/or 'depth' (multipliers of the teacher)"
            )
        return self


STEP_TYPES: dict[str, type[_Strict]] = {
    "quantize": QuantizeStep,
    "qat": QatStep,
    "prune": PruneStep,
    "structured_prune": StructuredPruneStep,
    "profile_prune": ProfilePruneStep,
    "distill": DistillStep,
}
TERMINAL = {"quantize", "qat"}
TRAINING = {"qat", "prune", "structured_prune", "profile_prune", "distill"}


@dataclass(frozen=True)
class Step:
    type: str
    params: _Strict
    field: str  # where it sits in its recipe file, for messages: steps[1].prune

    def dump(self) -> dict[str, Any]:
        """Every parameter, defaults included (what the lineage ID covers)."""
        return self.params.model_dump(mode="json")


class _RecipeFile(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    seed: int = Field(0, ge=0)
    train: TrainSettings = TrainSettings()
    steps: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _single_keys(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, s in enumerate(steps):
            if not isinstance(s, dict) or len(s) != 1:
                raise ValueError(
                    f"steps[{i}] must be one mapping {{type: {{params}}}}, e.g. {{prune: {{sparsity: 0.8}}}}"
                )
        return steps


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    description: str
    seed: int
    train: TrainSettings
    steps: tuple[Step, ...]
    grid: dict[str, Any] = field(default_factory=dict)  # grid values substituted into this copy

    @property
    def label(self) -> str:
        """The candidate's suffix: recipe name plus the grid point, e.g. prune-80-int8[sparsity=0.5]."""
        if not self.grid:
            return self.name
        return self.name + "[" + ",".join(f"{k.split('.')[-1]}={v}" for k, v in self.grid.items()) + "]"

    def needs_target(self) -> bool:
        """A profile_prune step without a cost model: its profiles come from the target device, so the
        sweep builds one candidate per device profile."""
        return any(isinstance(s.params, ProfilePruneStep) and s.params.cost_model is None for s in self.steps)

    def profile_variant(self) -> str:
        """The variant a profile_prune step profiles by default: the one the recipe ends in (int8 for
        QAT; fp32 when ai-edge-quantizer makes the .tflite)."""
        last = self.steps[-1].params
        if isinstance(last, QuantizeStep) and last.variant:
            return last.variant
        return "int8" if isinstance(last, QatStep) else "fp32"

    def needs_training(self) -> bool:
        return any(s.type in TRAINING for s in self.steps)

    def train_value(self, step: Step, key: str) -> Any:
        own = getattr(step.params, key, None)
        return own if own is not None else getattr(self.train, key)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    errors = exc.errors()
    # a misspelt key also makes the right one missing: the unknown key is the cause, so it comes first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _loc(tuple(err["loc"]))
    where = ".".join(p for p in (prefix, loc) if p)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown parameter"
    return f"{where}: {msg}" if where else msg


def parse(data: Any, path: Path, grid: dict[str, Any] | None = None) -> Recipe:
    """Validate one recipe document (already loaded from YAML); `grid` values override step params."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping with name and steps")
    data = copy.deepcopy(data)
    if grid:
        _apply_grid(data, grid, path)
    try:
        doc = _RecipeFile(**data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    steps = []
    for i, raw in enumerate(doc.steps):
        ((kind, params),) = raw.items()
        where = f"steps[{i}].{kind}"
        if kind not in STEP_TYPES:
            raise ConfigError(f"{path}: steps[{i}]: unknown step '{kind}' (choose from {', '.join(STEP_TYPES)})")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: {where}: parameters must be a mapping")
        try:
            steps.append(Step(kind, STEP_TYPES[kind](**params), where))
        except ValidationError as exc:
            raise ConfigError(f"{path}: {_first_error(exc, where)}") from None
    for s in steps[:-1]:
        if s.type in TERMINAL:
            raise ConfigError(f"{path}: {s.field}: '{s.type}' produces the .tflite and must be the last step")
    if not steps or steps[-1].type not in TERMINAL:
        steps.append(Step("quantize", QuantizeStep(variant="fp32"), f"steps[{len(steps)}].quantize"))
    return Recipe(doc.name, path, doc.description, doc.seed, doc.train, tuple(steps), dict(grid or {}))


MIXED = "mixed"  # grid name of a mixed-precision quantize step's parameters: --grid mixed.keep=1,2,4


def _is_mixed(step: Step) -> bool:
    return isinstance(step.params, QuantizeStep) and step.params.keep > 0


def _is_mixed_raw(step: dict) -> bool:
    q = step.get("quantize")
    return isinstance(q, dict) and bool(q.get("keep"))


def _apply_grid(data: dict, grid: dict[str, Any], path: Path) -> None:
    """`prune.sparsity` sets the parameter of the recipe's (first) prune step; `seed`, `train.epochs` the
    recipe's own fields."""
    for key, value in grid.items():
        head, _, tail = key.partition(".")
        if head == "seed" and not tail:
            data["seed"] = value
            continue
        if head == "train" and tail:
            data.setdefault("train", {})[tail] = value
            continue
        if head == MIXED:  # mixed.keep: the keep of a mixed-precision quantize step (sensitivity.py)
            step = next((s for s in data.get("steps") or [] if isinstance(s, dict) and _is_mixed_raw(s)), None)
            if step is None:
                raise ConfigError(f"{path}: --grid {key}: the recipe has no mixed-precision quantize step")
            step["quantize"][tail] = value
            continue
        for s in data.get("steps") or []:
            if isinstance(s, dict) and head in s:
                if not isinstance(s[head], dict):
                    s[head] = {}
                s[head][tail] = value
                break
        else:
            if head == "quantize":  # the implicit last step (fp32) may be swept too
                data.setdefault("steps", []).append({"quantize": {tail: value}})
                continue
            raise ConfigError(f"{path}: --grid {key}: the recipe has no '{head}' step")


def load(path: Path, grid: dict[str, Any] | None = None) -> Recipe:
    return parse(read_recipe(path), path, grid)


def read_recipe(path: Path) -> Any:
    """The recipe's YAML, read strictly like the lab files: with two `steps:` keys the last would win
    silently and build another candidate than the file seems to say, so a duplicate is an error."""
    return read_yaml(path, "recipe").data


def library_dir() -> Path:
    return Path(str(resources.files("harness.compress") / "recipes"))


def library() -> dict[str, Path]:
    """Recipes shipped with hilbench, by name (the file stem)."""
    return {p.stem: p for p in sorted(library_dir().glob("*.yaml"))}


def resolve(ref: str) -> Path:
    """A recipe given on the command line: a file path, or the name of a shipped recipe."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found")
        return p
    lib = library()
    if ref in lib:
        return lib[ref]
    raise ConfigError(f"recipe '{ref}': no such file and no shipped recipe of that name (shipped: {', '.join(lib)})")


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """`--grid prune.sparsity=0.5,0.8` (repeatable) -> {"prune.sparsity": [0.5, 0.8]}."""
    out: dict[str, list[Any]] = {}
    for item in items or []:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise ConfigError(f"--grid {item}: expected STEP.PARAM=V1,V2,... (e.g. prune.sparsity=0.5,0.8)")
        if "." not in key and key != "seed":
            raise ConfigError(f"--grid {item}: name the step and its parameter, e.g. prune.sparsity")
        out[key] = [yaml.safe_load(v.strip()) for v in values.split(",") if v.strip()]
    return out


def expand(refs: list[str], grid: dict[str, list[Any]]) -> list[Recipe]:
    """Every recipe at every point of the grid that applies to it (a grid key for a step the recipe
    lacks leaves that recipe as it is; a key no recipe has is an error)."""
    out: list[Recipe] = []
    used: set[str] = set()
    for ref in refs:
        path = resolve(ref)
        raw = read_recipe(path)
        base = parse(raw, path)
        keys = [k for k in grid if _grid_applies(base, k)]
        used.update(keys)
        if not keys:
            out.append(base)
            continue
        for values in itertools.product(*(grid[k] for k in keys)):
            out.append(parse(raw, path, dict(zip(keys, values))))
    unused = [k for k in grid if k not in used]
    if unused:
        raise ConfigError(f"--grid {unused[0]}: none of the recipes has a '{unused[0].split('.')[0]}' step")
    labels = [r.label for r in out]
    dup = next((n for n in labels if labels.count(n) > 1), None)
    if dup:
        raise ConfigError(f"recipe '{dup}' given twice (recipe names must differ)")
    return out


def _grid_applies(recipe: Recipe, key: str) -> bool:
    head = key.split(".")[0]
    if head == MIXED:
        return any(_is_mixed(s) for s in recipe.steps)
    return head in ("seed", "train") or any(s.type == head for s in recipe.steps)
