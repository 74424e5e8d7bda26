"""Boards behind labgrid places (https://labgrid.readthedocs.io): only imported for `type: labgrid`
devices, so hilbench runs without labgrid installed (it is the `hilbench[labgrid]` extra)."""
