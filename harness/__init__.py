"""hilbench: hardware-in-the-loop benchmarking of compressed ML models."""

__version__ = "0.1.0"
