"""The per-operator profile section of a series page: where the latest run's time went, op by op.

`hil publish` asks the store for the profile of each series' latest result through a hook
(`ResultStore.op_profile(result_id) -> OpProfile | None`, harness/profile/document.py) when the store
has one; this module only renders an `OpProfile`, so it works the day profiles are stored.
"""

from __future__ import annotations

import html

from harness.profile.document import OpProfile

TOP_OPS = 12


def render_op_profile(profile: OpProfile, top: int = TOP_OPS) -> str:
    """The `top` slowest ops as a table with a bar for each op's share of the invocation."""
    ops = sorted(profile.ops, key=lambda o: o.mean, reverse=True)[:top]
    unit = profile.unit
    rows = []
    for op in ops:
        share = profile.share(op)
        us = profile.to_us(op.mean)
        time = f"{us:,.1f} us" if us is not None and unit == "ticks" else f"{op.mean:,.1f} {unit}"
        name = html.escape(op.name or "")
        rows.append(
            f'<tr><td class="num">{op.index}</td><td>{html.escape(op.type)}</td><td>{name}</td>'
            f'<td class="num">{html.escape(time)}</td><td class="num">{100 * share:.1f} %</td>'
            f'<td class="barcell"><span class="bar" style="width:{100 * share:.1f}%"></span></td></tr>'
        )
    more = len(profile.ops) - len(ops)
    note = f"{len(ops)} slowest of {len(profile.ops)} ops" if more > 0 else f"{len(ops)} ops"
    return (
        f'<p class="muted">{html.escape(profile.source)}, {profile.invocations} profiled invocation(s); {note}</p>'
        '<table id="op-profile"><thead><tr><th>#</th><th>op</th><th>name</th><th>mean</th><th>share</th>'
        "<th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
