"""Where the time goes: per-operator profiles (issue 22).

A profile is measured in its own pass after the timed windows (never mixed into the gated latency),
by LiteRT's profiler on Linux devices and by TFLite Micro's MicroProfiler on MCU boards. Every device
kind hands the host the same document (``harness.profile.document``); the host completes it from its
own analysis of the artifact (op shapes, MACs), stores it per operator and reads it in tables, diffs,
reports and the gate.
"""
