"""Resolution stages of a Keras graph, and the teacher/student layer pairs of `features: auto`.

Hand-written feature pairs need layer names of both models, which a derived student (width/depth of
the teacher) or a student file rarely shares. The stages align them without names: a *stage* is the
run of layers whose outputs have the same spatial size (feature maps (h, w, c): (h, w); series
(t, c): t); what a stage hands to the next one is the output of its last layer in topological order.
Teacher and student stages of the same spatial size are paired (FitNets-style hints at every
resolution); the student's channel width may differ (distill.py adds an adapter). A stage without a
weighted layer (the padded size before a strided conv, a pooled 1x1 map) is none; vectors (after
pooling/flattening), model outputs and layers called more than once take no part.
"""

from __future__ import annotations

from harness.compress.depth import weighted
from harness.compress.recipes import FeaturePair
from harness.compress.train import graph_nodes, graph_outputs
from harness.errors import NotApplicable


def stage_ends(model) -> dict[tuple, str]:
    """Spatial size -> the name of the stage's last layer, in the order the stages come."""
    outputs = {id(t) for t in graph_outputs(model)}
    ends: dict[tuple, str] = {}
    learned: set[tuple] = set()  # sizes a weighted layer produces
    for node in graph_nodes(model):
        if len(node.outputs) != 1 or id(node.outputs[0]) in outputs:
            continue
        shape = tuple(node.outputs[0].shape[1:])
        if len(shape) < 2 or len(getattr(node.operation, "_inbound_nodes", [])) > 1:
            continue
        spatial = shape[:-1]
        if weighted(node):
            learned.add(spatial)
        ends.pop(spatial, None)  # re-insert: dict order follows each stage's last layer
        ends[spatial] = node.operation.name
    return {size: name for size, name in ends.items() if size in learned}


def auto_pairs(student, teacher, where: str) -> list[FeaturePair]:
    """One pair per spatial size both models have, each weighing 1 / pairs."""
    s_ends, t_ends = stage_ends(student), stage_ends(teacher)
    common = [size for size in t_ends if size in s_ends]
    if not common:
        raise NotApplicable(
            f"{where}: auto: the student and the teacher share no resolution stage (teacher "
            f"{[list(s) for s in t_ends] or 'none'}, student {[list(s) for s in s_ends] or 'none'}); "
            "name the layers as features: [{student: ..., teacher: ...}]"
        )
    return [FeaturePair(student=s_ends[size], teacher=t_ends[size], weight=1.0 / len(common)) for size in common]
