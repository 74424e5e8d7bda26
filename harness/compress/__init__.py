"""Compression recipes: from a float Keras model to candidates that `hil sweep` measures.

A recipe (recipes.py) is a pipeline of steps; each step (pruning.py, structured.py, distill.py,
qat.py, ptq.py) turns its parent model into a child, and every child is a lineage node (lineage.py)
with an ID derived from its inputs and a cached file, so an unchanged step is never run twice.
`sweep.py` measures the candidates through the run path and pareto.py picks one per device.
See docs/COMPRESSION.md.
"""
