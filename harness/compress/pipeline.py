"""Run a recipe on a model: one lineage node per step, each computed only when it is not cached.

The result is a `Candidate`: the `.tflite` that the run path measures, how the run path gets it (the
Keras node plus a converter variant, so results carry `int8`, `fp16`, ...; or a `.tflite` node that is
measured as-is: QAT and ai-edge-quantizer outputs), its lineage chain, and what the host knows about it
without a device (accuracy on the evaluation data with the LiteRT interpreter, MACs, parameters, size).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compress import data as training_data
from harness.compress.lineage import Node, NodeCache, library_versions, node_id, root_id
from harness.compress.recipes import (
    TRAINING,
    DistillStep,
    ProfilePruneStep,
    PruneStep,
    QatStep,
    QuantizeStep,
    Recipe,
    Step,
    StructuredPruneStep,
)
from harness.core.hashing import sha256_file
from harness.errors import ConfigError, InfraError, ModelError, NotApplicable
from harness.models.convert import NEEDS_CALIBRATION, Calibration, Converter, ModelSource, converter_version
from harness.models.inspect.analysis import analyze

if TYPE_CHECKING:
    from harness.compress.profile_prune import OpProfiler

_log = logging.getLogger(__name__)


@dataclass
class EvalData:
    path: Path
    x: np.ndarray
    y: np.ndarray | None  # None: no labels, scored by reconstruction error (autoencoders only, recon.py)
    sha256: str

    @classmethod
    def load(cls, path: Path) -> EvalData:
        from harness.models.arrays import class_labels, input_samples, load_array, optional_array

        x = input_samples(path, "x", load_array(path, "x"))
        y_raw = optional_array(path, "y")
        y = class_labels(path, "y", y_raw, len(x), None) if y_raw is not None else None
        return cls(path, x, y, sha256_file(path))

    def missing_labels(self) -> ConfigError:
        return ConfigError(f"{self.path}: evaluation data needs labels 'y' for accuracy")


@dataclass
class Candidate:
    name: str  # the model name in results
    label: str  # recipe label ("" for the uncompressed model)
    recipe: Recipe | None
    nodes: list[Node]  # the chain from the root, root excluded
    spec_path: Path  # what the run path opens
    variant: str  # converter variant, or "asis" for a .tflite node
    artifact: Path  # the .tflite measured
    artifact_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)  # host_accuracy | host_mse, macs, params, size_bytes
    host_correct: np.ndarray | None = None  # per evaluation sample: top-1 right on the host
    target: str | None = None  # pruned for this device profile (profile_prune): measured on its boards only

    @property
    def leaf(self) -> str:
        return self.nodes[-1].id if self.nodes else ""


NOT_APPLICABLE = "not applicable"
FAILED = "failed"


@dataclass
class Refused:
    """A recipe that gave no candidate: its steps refuse this model (NOT_APPLICABLE: a ConfigError or
    ModelError while building, e.g. no block for a depth multiplier, an op the int8 converter cannot
    take) or its training/conversion crashed (FAILED). The sweep lists it and goes on."""

    name: str
    label: str
    recipe: Recipe
    status: str  # NOT_APPLICABLE | FAILED
    reason: str

    def describe(self) -> str:
        return f"{self.status}: {self.reason}"


class Compressor:
    """Produces the candidates of one base model (see the module doc)."""

    def __init__(
        self,
        base: ModelSource,
        converter: Converter,
        calibration: Calibration | None,
        eval_data: EvalData | None,
        data_ref: str | None,
        log: Callable[[str], None] = _log.info,
    ):
        self.base = base
        self.converter = converter
        self.calibration = calibration
        self.eval = eval_data
        self.data_ref = data_ref
        self.log = log
        self.cache = NodeCache(converter.cache_dir.parent)
        self.trained = 0
        self._data: training_data.TrainingData | None = None
        self._fitted: dict[tuple, training_data.TrainingData] = {}
        self._calib_x: np.ndarray | None = None
        self._rankings: dict[str, Any] = {}  # float model sha256 -> its sensitivity ranking (mixed precision)
        self._autoencoder: bool | None = None
        if eval_data is not None and eval_data.y is None and not self.autoencoder():
            raise eval_data.missing_labels()

    def autoencoder(self) -> bool:
        """Whether the base model's output has its input's shape (recon.py): unlabelled data is then a
        reconstruction task."""
        if self._autoencoder is None:
            from harness.compress.recon import artifact_is_autoencoder, is_autoencoder

            if self.base.kind == "tflite":
                self._autoencoder = artifact_is_autoencoder(self.base.path)
            else:
                from harness.compress.train import load_model

                self._autoencoder = is_autoencoder(load_model(self.base.path))
        return self._autoencoder

    # ------------------------------------------------------------------ inputs

    def training_data(self, recipe: Recipe, step: Step, model) -> training_data.TrainingData:
        where = f"{recipe.path}: {step.field}"
        if self.data_ref is None:
            raise ConfigError(
                f"{where}: needs training data: pass --data FILE.npz|module:function, or put "
                f"{self.base.path.with_suffix('')}.train.npz beside the model"
            )
        if self._data is None:
            self._data = training_data.load(self.data_ref)
        from harness.compress.recon import is_autoencoder
        from harness.compress.train import classes_of, io_shapes

        if self._data.y is None and not is_autoencoder(model):
            raise self._data.missing_labels()
        key = (io_shapes(model)[0], classes_of(model))
        if key not in self._fitted:
            self._fitted[key] = self._data.fit_to(key[0], key[1], where)
        return self._fitted[key]

    def data_hash(self) -> str:
        if self.data_ref is None:
            return "none"
        if self._data is None:
            self._data = training_data.load(self.data_ref)
            if self._data.y is None and not self.autoencoder():
                raise self._data.missing_labels()  # before anything trains, as for a missing file
        return self._data.sha256

    def calibration_x(self) -> np.ndarray | None:
        if self.calibration is None:
            return None
        if self._calib_x is None:
            samples = self.calibration.arrays([(None, *self.input_shape()[1:])])
            self._calib_x = np.concatenate([s[0] for s in samples])
        return self._calib_x

    def input_shape(self) -> tuple:
        if self.base.kind == "tflite":
            a = analyze(self.base.path)
            return tuple(a.inputs[0].shape) if hasattr(a.inputs[0], "shape") else (1,)
        from harness.compress.train import io_shapes, load_model

        return io_shapes(load_model(self.base.path))[0]

    # ------------------------------------------------------------------ recipes

    def baseline(self) -> Candidate:
        """The uncompressed model as the converter's fp32 (as-is for a .tflite): the sweep's reference."""
        variant = "asis" if self.base.kind == "tflite" else "fp32"
        mv = self.converter.convert(self.base, variant, self.calibration, quiet=True)
        cand = Candidate(self.base.name, "", None, [], self.base.path, variant, mv.artifact, mv.artifact_sha256)
        cand.metrics, cand.host_correct = self._artifact_metrics(mv.artifact, None)
        return cand

    def run(self, recipe: Recipe, target: OpProfiler | None = None) -> Candidate:
        """The recipe's candidate; `target`: the device profiler a `profile_prune` step without a cost
        model measures with (the candidate is then named `<model>+<recipe>@<target>`)."""
        target = target if recipe.needs_target() else None
        parent_id = root_id(self.base.sha256)
        parent_path, parent_kind = self.base.path, self.base.kind
        nodes: list[Node] = []
        model = None  # the parent as a Keras model, loaded on the first cache miss
        spec_path, variant = parent_path, "asis"
        for step in recipe.steps:
            where = f"{recipe.path}: {step.field}"
            if step.type != "quantize" and parent_kind != "keras":
                raise NotApplicable(
                    f"{where}: needs a Keras model (.keras) to train; {self.base.path} is a {self.base.kind}"
                )
            params, data, extra = self._inputs(recipe, step, where, target)
            nid = node_id(parent_id, step.type, params, data, recipe.seed, library_versions(*extra))
            node = self.cache.get(nid)
            if node is not None:
                self.cache.hits += 1
                self.log(f"lineage: {recipe.label} {step.type}: cached ({nid[:12]})")
                model = None
            else:
                self.cache.misses += 1
                if parent_kind == "keras" and model is None and step.type != "quantize":
                    from harness.compress.train import load_model

                    model = load_model(parent_path)
                t0 = time.perf_counter()
                node = self._compute(
                    recipe,
                    step,
                    where,
                    model,
                    parent_path,
                    target,
                    Node(
                        id=nid,
                        parent=parent_id,
                        step=step.type,
                        params=params,
                        data=data,
                        seed=recipe.seed,
                        versions=library_versions(*extra),
                        kind="",
                        file="",
                        sha256="",
                        root=root_id(self.base.sha256),
                        recipe=recipe.label,
                    ),
                )
                node.seconds = time.perf_counter() - t0
                self.cache.update_metrics(node, {})
                model = None  # the next step loads the node's file (what a cache hit would give)
            if step.type == "quantize" and isinstance(step.params, QuantizeStep) and step.params.variant:
                spec_path, variant = parent_path, step.params.variant
            else:
                spec_path, variant = node.path or parent_path, "asis" if node.kind == "tflite" else "fp32"
            nodes.append(node)
            parent_id, parent_path, parent_kind = node.id, node.path or parent_path, node.kind
        leaf = nodes[-1]
        assert leaf.path is not None
        label = recipe.label + (f"@{target.name}" if target else "")
        cand = Candidate(f"{self.base.name}+{label}", label, recipe, nodes, spec_path, variant, leaf.path, leaf.sha256)
        cand.target = target.name if target else None
        cand.metrics, cand.host_correct = self._artifact_metrics(leaf.path, leaf)
        for n in nodes:
            for k in ("sparsity", "reduction", "keras_accuracy", "keras_mse"):
                if k in n.metrics:
                    cand.metrics[k] = n.metrics[k]
        return cand

    def preflight(self, recipe: Recipe) -> None:
        """What the invocation must provide for the recipe (training data, calibration, student and
        teacher files), checked before anything trains: a missing input is a usage error (exit 3) of the
        whole sweep, not a refusal of one recipe."""
        if self.data_ref is None:
            for step in recipe.steps:
                if step.type in TRAINING:
                    self.training_data(recipe, step, None)  # raises: where the data should come from
        self.chain_ids(recipe)

    def try_run(self, recipe: Recipe, target: OpProfiler | None = None) -> Candidate | Refused:
        """`run`, with a refusal or a crash of this recipe turned into a `Refused` (the log keeps the
        traceback at debug level)."""
        name = f"{self.base.name}+{recipe.label}" + (f"@{target.name}" if target and recipe.needs_target() else "")
        try:
            return self.run(recipe, target)
        except ModelError as exc:  # the model's structure (NotApplicable) or a conversion it cannot take
            self.log(f"{name}: {NOT_APPLICABLE}: {exc}")
            return Refused(name, recipe.label, recipe, NOT_APPLICABLE, str(exc))
        except ConfigError as exc:  # the user's input (data, layer names): a failure, exit 3, others go on
            self.log(f"{name}: {FAILED}: {exc}")
            return Refused(name, recipe.label, recipe, FAILED, str(exc))
        except InfraError:
            raise  # the store or the lab: exit 2 as anywhere else
        except Exception as exc:
            _log.debug("%s failed", name, exc_info=True)
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            self.log(f"{name}: {FAILED}: {reason}")
            return Refused(name, recipe.label, recipe, FAILED, reason)

    def chain_ids(self, recipe: Recipe, target: OpProfiler | None = None) -> list[str]:
        """The lineage IDs the recipe's steps will have (IDs depend on inputs only: nothing is run)."""
        ids, parent = [], root_id(self.base.sha256)
        target = target if recipe.needs_target() else None
        for step in recipe.steps:
            params, data, extra = self._inputs(recipe, step, f"{recipe.path}: {step.field}", target)
            parent = node_id(parent, step.type, params, data, recipe.seed, library_versions(*extra))
            ids.append(parent)
        return ids

    def _inputs(
        self, recipe: Recipe, step: Step, where: str, target: OpProfiler | None = None
    ) -> tuple[dict[str, Any], str | None, tuple[str, ...]]:
        """The step's lineage inputs: parameters (files by hash, training settings), data hash, libraries;
        a profile_prune step's profiler (the board type or the cost model) and the variant it profiles."""
        params = step.dump()
        extra: tuple[str, ...] = ()
        if step.type == "quantize":
            q = step.params
            assert isinstance(q, QuantizeStep)
            needs_calib = q.variant in ("int8", "int16x8") or (q.aeq or "").startswith("static")
            data = (
                self.calibration.sha256 + f":{self.calibration.samples}" if needs_calib and self.calibration else None
            )
            if q.variant:
                params["converter"] = converter_version()
            else:
                extra = ("ai-edge-quantizer",)
            return params, data, extra
        for key in ("epochs", "batch_size", "learning_rate"):
            params[key] = recipe.train_value(step, key)
        params["validation_split"] = recipe.train.validation_split
        if isinstance(step.params, ProfilePruneStep):
            profiler = self._profiler(step.params, target)
            params["profiler"] = profiler.key if profiler else None
            params["variant"] = self._profile_variant(recipe, step.params)
            if params["variant"] in NEEDS_CALIBRATION:
                if self.calibration is None:
                    raise ConfigError(
                        f"{where}: profiles the {params['variant']} conversion, which needs representative "
                        "data (a <model>.calibration.npz sidecar or --calibration), or set variant: fp32"
                    )
                params["calibration"] = f"{self.calibration.sha256}:{self.calibration.samples}"
        data = self.data_hash()
        if isinstance(step.params, DistillStep):
            from harness.compress.distill import teacher_files

            d = step.params
            if d.student is not None:
                sp = Path(d.student) if Path(d.student).is_absolute() else recipe.path.parent / d.student
                if not sp.is_file():
                    raise ConfigError(f"{where}.student: {sp}: student model file not found")
                params["student"] = "sha256:" + sha256_file(sp)
            params["teachers"] = [
                dict(t, model=("parent" if f is None else "sha256:" + sha256_file(f)))
                for t, f in zip(params["teachers"], teacher_files(d, recipe.path.parent, where))
            ]
        if isinstance(step.params, QatStep):
            if self.calibration is None:
                raise ConfigError(
                    f"{where}: needs representative data for the int8 conversion (a "
                    "<model>.calibration.npz sidecar or --calibration)"
                )
            data = hashlib.sha256(f"{data}|{self.calibration.sha256}:{self.calibration.samples}".encode()).hexdigest()
        return params, data, extra

    @staticmethod
    def _profiler(p: ProfilePruneStep, target: OpProfiler | None) -> OpProfiler | None:
        if p.cost_model is not None:
            from harness.compress.profilers import cost_model_profiler

            return cost_model_profiler(p.cost_model)
        return target

    def _profile_variant(self, recipe: Recipe, p: ProfilePruneStep) -> str:
        return recipe.profile_variant() if p.variant == "auto" else p.variant

    def _compute(
        self,
        recipe: Recipe,
        step: Step,
        where: str,
        model,
        parent_path: Path,
        target: OpProfiler | None,
        node: Node,
    ) -> Node:
        label = f"{self.base.name}+{recipe.label} {step.type}"
        p = step.params
        with tempfile.TemporaryDirectory(prefix="hil-step-") as tmp:
            out = Path(tmp)
            if isinstance(p, QuantizeStep):
                blob_path = self._quantize(p, parent_path, out, where, f"{self.base.name}+{recipe.label}")
                node.kind, node.file = "tflite", "model.tflite"
                return self.cache.put(node, blob_path)
            self.trained += 1
            self.log(f"training: {label} ({step.field} of {recipe.path.name})")
            epochs, batch, lr = (recipe.train_value(step, k) for k in ("epochs", "batch_size", "learning_rate"))
            td = self.training_data(recipe, step, model)
            (x, y), val = td.split(recipe.train.validation_split, recipe.seed)
            recon = td.y is None  # y is x: reconstruction (recon.py)
            loss = "mse" if recon else None
            metrics: dict[str, Any] = {}
            if isinstance(p, PruneStep):
                from harness.compress.pruning import prune

                logs = prune(
                    model,
                    p,
                    x,
                    y,
                    label=label,
                    epochs=epochs,
                    batch_size=batch,
                    learning_rate=lr,
                    seed=recipe.seed,
                    validation=val,
                    loss=loss,
                )
                metrics["sparsity"] = logs["sparsity"]
                result = model
            elif isinstance(p, StructuredPruneStep):
                from harness.compress.structured import prune_filters
                from harness.compress.train import compile_classifier, fit

                result, achieved = prune_filters(
                    model, p.reduction, p.target, p.criterion, where, log=self.log, align=p.align
                )
                metrics["reduction"] = {"target": p.target, "achieved": achieved}
                compile_classifier(result, lr, loss=loss, metrics=[] if recon else None)
                logs = fit(result, x, y, label=label, epochs=epochs, batch_size=batch, seed=recipe.seed, validation=val)
            elif isinstance(p, ProfilePruneStep):
                result, metrics["reduction"] = self._profile_prune(
                    recipe, p, where, label, model, target, (x, y), val, recon, epochs, batch, lr
                )
                logs = metrics["reduction"].pop("final_logs")
            elif isinstance(p, DistillStep):
                from harness.compress.distill import distill

                result, logs = distill(
                    model,
                    p,
                    x,
                    None if recon else y,
                    recipe_dir=recipe.path.parent,
                    where=where,
                    label=label,
                    epochs=epochs,
                    batch_size=batch,
                    learning_rate=lr,
                    seed=recipe.seed,
                )
            elif isinstance(p, QatStep):
                from harness.compress.qat import convert_int8, train_qat

                q, logs = train_qat(
                    model,
                    p,
                    x,
                    y,
                    label=label,
                    epochs=epochs,
                    batch_size=batch,
                    learning_rate=lr,
                    seed=recipe.seed,
                    validation=val,
                    where=where,
                    loss=loss,
                )
                calib = self.calibration_x()
                assert calib is not None
                (out / "model.tflite").write_bytes(convert_int8(q, calib, f"{self.base.name}+{recipe.label}"))
                node.kind, node.file = "tflite", "model.tflite"
                node.metrics = {"train": logs}
                return self.cache.put(node, out / "model.tflite")
            else:  # pragma: no cover - the schema admits no other step
                raise ConfigError(f"{where}: unknown step")
            metrics["train"] = logs
            if val is not None and recon:
                from harness.compress.recon import keras_mse

                metrics["keras_mse"] = keras_mse(result, val[0])
            elif val is not None:
                from harness.compress.train import accuracy

                metrics["keras_accuracy"] = accuracy(result, val[0], val[1])
            from harness.compress.train import save_model

            save_model(result, out / "model.keras")
            node.kind, node.file, node.metrics = "keras", "model.keras", metrics
            return self.cache.put(node, out / "model.keras")

    def _profile_prune(
        self,
        recipe: Recipe,
        p: ProfilePruneStep,
        where: str,
        label: str,
        model,
        target: OpProfiler | None,
        train: tuple,
        val: tuple | None,
        recon: bool,
        epochs: int,
        batch: int,
        lr: float,
    ) -> tuple[Any, dict[str, Any]]:
        """profile_prune.py with this compressor's converter (the profiled variant) and fine-tuning."""
        from harness.compress.profile_prune import Settings, converter_for, profile_prune
        from harness.compress.train import accuracy, compile_classifier, fit

        profiler = self._profiler(p, target)
        if profiler is None:
            raise NotApplicable(
                f"{where}: prunes for the target device's measured profile: run it in `hil sweep` with "
                "devices, or give the step a cost_model"
            )
        variant = self._profile_variant(recipe, p)
        x, y = train
        last: dict[str, Any] = {}

        def finetune(m, n_epochs: int) -> float:
            compile_classifier(m, lr, loss="mse" if recon else None, metrics=[] if recon else None)
            last.clear()
            last.update(fit(m, x, y, label=label, epochs=n_epochs, batch_size=batch, seed=recipe.seed, validation=val))
            if val is not None and recon:
                from harness.compress.recon import keras_mse

                return -keras_mse(m, val[0])
            if val is not None:
                return accuracy(m, val[0], val[1])
            return float(last.get("accuracy", -last.get("loss", 0.0)))

        settings = Settings(
            p.latency_reduction, p.step, p.candidates, p.max_iterations, p.iteration_epochs, p.criterion, p.align
        )
        out = profile_prune(
            model,
            settings,
            profiler,
            converter_for(self.converter, variant, self.calibration),
            finetune,
            epochs,
            where,
            self.log,
        )
        report = out.report(p.latency_reduction)
        report["profiler"] = profiler.name
        report["variant"] = variant
        if not out.iterations:  # nothing narrowed: the model is fine-tuned as the other steps do
            finetune(out.model, epochs)
        report["final_logs"] = dict(last)
        return out.model, report

    def _quantize(self, q: QuantizeStep, parent_path: Path, out: Path, where: str, name: str) -> Path:
        parent = replace(ModelSource.open(parent_path), name=name)
        if q.variant:
            if parent.kind == "tflite":
                raise ConfigError(
                    f"{where}.variant: converter variants need a Keras model; {parent_path} is a "
                    ".tflite (use an 'aeq' method)"
                )
            mv = self.converter.convert(parent, q.variant, self.calibration)
            return Path(mv.artifact)
        assert q.aeq is not None
        from harness.compress.ptq import aeq_quantize

        if parent.kind == "tflite":
            float_blob = parent.path.read_bytes()
        else:
            float_blob = Path(self.converter.convert(parent, "fp32", None, quiet=True).artifact).read_bytes()
        if q.keep:
            blob = self._mixed(float_blob, q, where)
        else:
            blob = aeq_quantize(float_blob, q.aeq, q.granularity, self.calibration_x(), f"{where}.aeq")
        (out / "model.tflite").write_bytes(blob)
        return out / "model.tflite"

    def _mixed(self, float_blob: bytes, q: QuantizeStep, where: str) -> bytes:
        """Mixed precision: the sensitivity ranking of this float model (once per model, whatever the
        grid asks of `keep`), then int8 with the top `keep` operators kept."""
        from harness.compress.sensitivity import mixed_quantize, rank

        calib = self.calibration_x()
        if calib is None:
            raise ConfigError(
                f"{where}.keep: mixed precision needs calibration data (a <model>.calibration.npz "
                "sidecar or --calibration)"
            )
        key = hashlib.sha256(float_blob).hexdigest()
        if key not in self._rankings:
            self._rankings[key] = rank(float_blob, calib)
        blob, kept = mixed_quantize(float_blob, q.keep, q.keep_as, calib, q.granularity, self._rankings[key])
        self.log(f"{where}: mixed precision keeps operator(s) {', '.join(f'#{i}' for i in kept)} as {q.keep_as}")
        return blob

    # ------------------------------------------------------------------ host metrics

    def _artifact_metrics(self, artifact: Path, node: Node | None) -> tuple[dict[str, Any], np.ndarray | None]:
        """Host metrics, and per evaluation sample whether the host's top-1 is right (kept in the node's
        metrics as packed bits, so a cached candidate needs no interpreter run)."""
        a = analyze(artifact)
        m: dict[str, Any] = {"macs": a.total_macs, "params": a.param_count, "size_bytes": artifact.stat().st_size}
        if self.eval is None:
            return m, None
        if self.eval.y is None:
            m["host_mse"] = self._host_mse(artifact, node)
            return m, None
        n = len(self.eval.y)
        cached = (node.metrics.get("host_accuracy") or {}) if node else {}
        if cached.get("eval") == self.eval.sha256 and "correct" in cached:
            correct = np.unpackbits(np.frombuffer(bytes.fromhex(cached["correct"]), dtype=np.uint8))[:n].astype(bool)
        else:
            from harness.compress.ptq import tflite_correct

            correct = tflite_correct(artifact, self.eval.x, self.eval.y)
            if node is not None:
                doc = {"eval": self.eval.sha256, "top1": float(correct.mean()) if n else None}
                doc["correct"] = np.packbits(correct).tobytes().hex()
                self.cache.update_metrics(node, {"host_accuracy": doc})
        m["host_accuracy"] = float(correct.mean()) if n else None
        return m, correct

    def _host_mse(self, artifact: Path, node: Node | None) -> float:
        """Reconstruction error on the evaluation inputs (recon.py), cached in the node's metrics."""
        assert self.eval is not None
        cached = (node.metrics.get("host_mse") or {}) if node else {}
        if cached.get("eval") == self.eval.sha256 and "mse" in cached:
            return float(cached["mse"])
        from harness.compress.recon import tflite_mse

        mse = tflite_mse(artifact, self.eval.x)
        if node is not None:
            self.cache.update_metrics(node, {"host_mse": {"eval": self.eval.sha256, "mse": mse}})
        return mse
