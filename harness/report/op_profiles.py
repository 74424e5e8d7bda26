"""Which per-operator profiles a run's reports show, and their Markdown section.

A run's report shows, per model x variant x device, the profile measured in that run (`hil run
--profile`); a series the run measured without one shows the series' newest profile from another run
(usually a `hil profile` quick look), saying which run, when it is of the very same artifact. A
profile of another artifact never stands in: it would be the time of other ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.profile.document import OpProfile
from harness.profile.tables import describe, source_name, top_rows
from harness.report.run_markdown import markdown_table, md_rows, md_text, variant_rank
from harness.store.results import ResultStore

TOP = 5  # operators per series in the run reports (`hil profile` prints them all)


@dataclass
class SeriesProfile:
    model: str
    variant: str
    device_id: str
    profile: OpProfile
    run_id: str  # the run that measured the profile
    from_other_run: bool

    @property
    def label(self) -> str:
        return f"{self.model}/{self.variant}@{self.device_id}"


def run_profiles(store: ResultStore, run_id: str) -> list[SeriesProfile]:
    """The profile to show for each series of `run_id` that has one (see the module's docstring)."""
    if store.schema_version < 6:
        return []
    own: dict[tuple[str, str, str], SeriesProfile] = {}
    for row, prof in store.op_profiles(run_id=run_id):  # by result id: a repeat's newest wins
        key = (row["model"], row["variant"], row["device_id"])
        own[key] = SeriesProfile(*key, prof, row["run_id"], False)
    wide = store.wide(run_id)
    if not wide.empty:
        ok = wide[wide["status"] == "ok"]
        wanted = {
            (r.model, r.variant, r.device_id): r.artifact_sha256
            for r in ok.itertuples()
            if (r.model, r.variant, r.device_id) not in own and isinstance(r.artifact_sha256, str)
        }
        for model, variant, device in wanted:
            found = store.op_profiles(model=model, device=device, variant=variant)
            for row, prof in found:
                if row["artifact_sha256"] == wanted[(model, variant, device)]:
                    own[(model, variant, device)] = SeriesProfile(model, variant, device, prof, row["run_id"], True)
    return sorted(own.values(), key=lambda s: (s.model, s.device_id, variant_rank(s.variant)))


def markdown_section(profiles: list[SeriesProfile], top: int = TOP) -> list[str]:
    """`## Where the time goes`: the slowest operators of each profiled series (none: no section)."""
    if not profiles:
        return []
    out = ["## Where the time goes", ""]
    for s in profiles:
        where = f" (profiled in run `{md_text(s.run_id)}`)" if s.from_other_run else ""
        out += [f"### {md_text(s.label)}{where}", "", md_text(describe(s.profile)), ""]
        if not s.profile.ops:
            out += ["The device profiled no operators.", ""]
            continue
        headers, rows = top_rows(s.profile, top)
        out += [markdown_table(headers, md_rows(rows)), ""]
    out += [
        f"The {top} slowest operators of each profiled model x variant x device (`hil profile MODEL --device D` "
        "prints every operator): the mean time per invocation of each operator in a pass of its own after "
        "the timed windows (never part of the latency above), its share of the sum of all operators, and MACs "
        "from the model file.",
        "",
    ]
    return out


def chart_panels(profiles: list[SeriesProfile], top: int = TOP) -> list[dict]:
    """plots.op_time_bars panels: each series' `top` slowest ops, grouped by op type (types by their
    total among them, slowest first), in us where the profile's time converts, else its own unit."""
    panels = []
    for s in profiles:
        prof = s.profile
        if not prof.ops:
            continue
        slowest = sorted(prof.ops, key=lambda op: (-op.mean, op.subgraph, op.index))[:top]
        in_us = prof.to_us(1.0) is not None
        value = lambda op: (prof.to_us(op.mean) or 0.0) if in_us else op.mean
        totals: dict[str, float] = {}
        for op in slowest:
            totals[op.type] = totals.get(op.type, 0.0) + value(op)
        slowest.sort(key=lambda op: (-totals[op.type], op.type, -value(op)))
        unit = "us" if in_us else prof.unit
        panels.append(
            {
                "title": f"{s.label}: {top_label(len(slowest))} ({source_name(prof)})",
                "unit": f"mean time per invocation ({unit})",
                "bars": [(f"#{op.index} {op.type}", op.type, value(op)) for op in slowest],
            }
        )
    return panels


def top_label(n: int) -> str:
    return f"the {n} slowest operator{'s' if n != 1 else ''}"
