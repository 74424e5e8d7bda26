"""`hil compare --ops`: two stored per-operator profiles side by side, op by op.

Two artifacts on one device (what changed in the model) or one artifact on two devices (where one
board is slow) read the same way: each op's median time in both, the change, its share of the total
change, and the ops that account for 80 % of it. Profiles with the built-in kernels' twin of an XNNPACK
profile are compared on that twin (its ops are the model's, so they match across artifacts; XNNPACK's
fused ops do not).
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.profile.diff import ProfileDiff, diff, explain_diff, fmt_time
from harness.profile.document import OpProfile

BUILTIN_KEY, MAIN_KEY = "op_profile_builtin", "op_profile"


def parse_series(spec: str) -> tuple[str, str, str]:
    """`MODEL/VARIANT@DEVICE` (model names may hold '/': the variant is the part after the last one)."""
    model_variant, at, device = spec.rpartition("@")
    model, slash, variant = model_variant.rpartition("/")
    if not at or not slash or not model or not variant or not device:
        raise ConfigError(f"--ops {spec}: expected MODEL/VARIANT@DEVICE (e.g. net/int8@pi4)")
    return model, variant, device


def find(store, spec: str, run_id: str | None) -> tuple[dict[str, Any], OpProfile, str]:
    """The newest stored profile of a series, `[RUN:]MODEL/VARIANT@DEVICE` (of that run, else of
    `run_id` when given): (result row, profile, key). The run prefix tells apart two nights of one
    series (the model changed under the same name)."""
    head, colon, rest = spec.partition(":")
    if colon and "/" not in head and "@" not in head:
        run_id, spec = head, rest
    model, variant, device = parse_series(spec)
    for key in (BUILTIN_KEY, MAIN_KEY):
        found = store.op_profiles(run_id=run_id, model=model, device=device, variant=variant, key=key)
        if found:
            row, prof = found[-1]
            return row, prof, key
    where = f" in run {run_id}" if run_id else ""
    raise ConfigError(
        f"{store.path}: no per-operator profile of {spec}{where} "
        "(measure one with `hil profile` or `hil run --profile`)"
    )


def render(spec_a: str, spec_b: str, a: tuple, b: tuple, min_share: float = 0.8) -> str:
    (row_a, prof_a, key_a), (row_b, prof_b, key_b) = a, b
    if key_a != key_b:  # one side has only XNNPACK's fused ops: compare what ran on both sides
        raise ConfigError(
            f"--ops: {spec_a} has a {key_a} profile, {spec_b} only {key_b}; profile both the same way "
            "(e.g. both with --no-xnnpack)"
        )
    d: ProfileDiff = diff(prof_a, prof_b)
    lines = [
        f"Per-operator profiles: {spec_a} (run {row_a['run_id']}, {prof_a.source}) -> "
        f"{spec_b} (run {row_b['run_id']}, {prof_b.source}); ops matched: {d.matching}",
        "",
        f"{'op':<34} {'reference':>12} {'candidate':>12} {'change':>12} {'share':>7}",
    ]
    for o in sorted(d.ops, key=lambda o: -abs(o.delta)):
        ref = "-" if o.ref is None else f"{o.ref:.2f}"
        cand = "-" if o.cand is None else f"{o.cand:.2f}"
        lines.append(f"{o.label:<34} {ref:>12} {cand:>12} {fmt_time(o.delta, d.unit):>12} {o.share * 100:>6.0f}%")
    lines += [
        f"{'total':<34} {d.ref_total:>12.2f} {d.cand_total:>12.2f} {fmt_time(d.change, d.unit):>12}",
        "",
        f"{int(min_share * 100)} % of the change: {explain_diff(d, min_share).text}",
        f"(times: median per invocation, {d.unit})",
    ]
    return "\n".join(lines)
