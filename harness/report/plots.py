"""Matplotlib figures for the HTML reports, rendered off-screen (Agg) to PNG bytes.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot state), so rendering is safe
in a CLI, a test or a thread, and never opens a window.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

MAX_POINTS = 4000  # samples per violin: enough for the shape, small enough to render in a blink


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with (label placement), not only to save PNGs
    return fig


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _thin(samples: Sequence[float]) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.size > MAX_POINTS:
        x = x[:: int(np.ceil(x.size / MAX_POINTS))]
    return x


def _clip(x: np.ndarray) -> np.ndarray:
    """Drop the top 0.5 % so one 10x outlier does not flatten the whole violin."""
    if x.size < 20:
        return x
    return x[x <= np.quantile(x, 0.995)]


def _style(parts: dict, color: str) -> None:
    for body in parts["bodies"]:
        body.set_facecolor(color)
        body.set_edgecolor(color)
        body.set_alpha(0.55)
    for name in ("cmedians", "cmins", "cmaxes", "cbars"):
        if name in parts:
            parts[name].set_color(color)


def latency_distribution(groups: dict[str, list[tuple[str, Sequence[float], Sequence[float] | None]]]):
    """Per device: one violin per model/variant (current run), the baseline's violin beside it."""
    n = max(1, len(groups))
    width = max(8.0, min(14.0, 2.0 + 1.4 * max((len(v) for v in groups.values()), default=1)))
    fig = _figure(width, 3.2 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (device, items) in zip(axes, sorted(groups.items())):
        labels = []
        for i, (label, cur, base) in enumerate(items):
            labels.append(label)
            cur_x = _clip(_thin(cur))
            if cur_x.size:
                _style(ax.violinplot([cur_x], positions=[i + 0.18], widths=0.34, showmedians=True), "#1f77b4")
            if base is not None and len(base):
                _style(
                    ax.violinplot([_clip(_thin(base))], positions=[i - 0.18], widths=0.34, showmedians=True), "#7f7f7f"
                )
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel("latency (us)")
        ax.set_title(f"{device}: this run (blue) vs baseline (grey), top 0.5 % clipped", fontsize=10)
        lo = [np.min(_clip(_thin(c))) for _, c, _ in items if len(c)]
        hi = [np.max(_clip(_thin(c))) for _, c, _ in items if len(c)]
        if lo and hi and max(hi) / max(min(lo), 1e-9) > 20:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    return fig


def trend(series: list[dict]):
    """One panel per key: the p50 level of each run over time, the gate's acceptance band, this run
    highlighted; the run's processes as faint dots, so a run whose processes disagree shows as such.

    Each series: label, x (run start datetimes), y (the run's p50 level, us), processes (optional: the
    p50 of each of its processes), failed (bools), current (index or None), band (lo, hi) or None,
    baseline (value or None).
    """
    n = max(1, len(series))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(4.6 * cols, 2.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, s in zip(axes, series):
        x = list(range(len(s["y"])))
        procs = s.get("processes") or []
        px = [i for i, p in enumerate(procs) for _ in p]
        if px:
            py = [v for p in procs for v in p]
            ax.plot(px, py, ".", color="#7f7f7f", alpha=0.35, markersize=3, label="processes")
        ax.plot(x, s["y"], "-o", color="#1f77b4", markersize=4, label="run level (median of its processes)")
        failed = [i for i, f in enumerate(s.get("failed", [])) if f]
        if failed:
            ax.plot(failed, [s["y"][i] for i in failed], "o", color="#d62728", markersize=7, label="gate failed")
        if s.get("band"):
            lo, hi = s["band"]
            ax.axhspan(lo, hi, color="#2ca02c", alpha=0.15, label="baseline +- threshold")
            ax.axhline(s["baseline"], color="#2ca02c", lw=1)
        if s.get("current") is not None:
            c = s["current"]
            bad = bool(s.get("failed") and s["failed"][c])
            ax.plot(
                [c],
                [s["y"][c]],
                "D",
                color="#d62728" if bad else "black",
                markeredgecolor="black",
                markersize=7,
                label="this run",
            )
        ax.set_title(s["label"], fontsize=9)
        ax.set_xticks(x, [d.strftime("%m-%d\n%H:%M") for d in s["x"]], fontsize=6)
        ax.set_ylabel("p50 (us)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("latency p50 level per run over the last runs")
    return fig


def device_comparison(table, reference: str):
    """Grouped bars: latency p50 per model/variant for each device, and the speed-up vs reference."""
    devices = list(dict.fromkeys(table["device_id"]))
    labels = list(dict.fromkeys(table["label"]))
    fig = _figure(max(6.0, 1.6 + 1.2 * len(labels) * max(1, len(devices)) / 2), 6.4)
    ax1, ax2 = fig.subplots(2, 1)
    width = 0.8 / max(1, len(devices))
    for j, dev in enumerate(devices):
        sub = table[table["device_id"] == dev].set_index("label")
        xs = np.arange(len(labels)) + (j - (len(devices) - 1) / 2) * width
        p50 = [sub["latency_p50_us"].get(lab, np.nan) for lab in labels]
        spd = [sub["speedup"].get(lab, np.nan) for lab in labels]
        prof = sub["profile"].iloc[0] if len(sub) else ""
        ax1.bar(xs, p50, width, label=f"{dev} ({prof})")
        ax2.bar(xs, spd, width, label=f"{dev} ({prof})")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right")
        ax.grid(axis="y", alpha=0.3)
    ax1.set_ylabel("latency p50 (us)")
    ax1.set_title("device profiles: latency p50")
    ax1.legend(fontsize=8)
    ax2.axhline(1.0, color="black", lw=1)
    ax2.set_ylabel(f"speed-up vs {reference}")
    ax2.set_title(f"speed-up relative to {reference} (>1 = faster)")
    return fig


def pareto_front(latency: Sequence[float], quality: Sequence[float]) -> list[bool]:
    """True for points no other point beats (lower-or-equal latency and higher-or-equal quality, one strictly)."""
    lat = np.asarray(latency, dtype=float)
    q = np.asarray(quality, dtype=float)
    out = []
    for i in range(lat.size):
        dominated = np.any((lat <= lat[i]) & (q >= q[i]) & ((lat < lat[i]) | (q > q[i])))
        out.append(not dominated)
    return out


# label offsets tried in turn (points from the marker): beside, above, below, then further out on rings of
# 12 directions, so that even a crowd of five variants within 5 % of each other finds free places
_OFFSETS = [(7, 5), (7, -13), (-7, 5), (-7, -13), (0, 14), (0, -22)] + [
    (round(r * np.cos(a), 1), round(r * np.sin(a), 1))
    for r in (22, 34, 48, 64, 82, 104, 130)
    for a in np.deg2rad([60, -60, 120, -120, 90, -90, 30, -30, 150, -150, 0, 180])
]


def _overlaps(box, others) -> bool:
    return any(box.overlaps(o) for o in others)


def place_labels(fig, ax, items: list[tuple[float, float, str, float]]) -> list:
    """Annotate (x, y, text, marker size in points) so that no label covers another label, a marker or
    the legend: each label takes the first offset in `_OFFSETS` that is free and inside the figure
    (far ones get a thin leader line). Call after the figure's layout is final."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0
    markers = []
    for x, y, _, size in items:
        cx, cy = ax.transData.transform((x, y))
        r = size * px / 2 + 1
        markers.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    legend = ax.get_legend()
    fixed = [legend.get_window_extent(renderer)] if legend is not None else []
    labels: list = []
    frame = ax.get_window_extent(renderer)  # a label stays in its own panel
    texts = []
    for x, y, text, _ in items:
        chosen = None
        # first a place clear of labels, markers and the legend; if the crowd leaves none, one clear of
        # the other labels and the legend (covering a marker edge beats covering a label)
        for avoid in (labels + markers + fixed, labels + fixed):
            for dx, dy in _OFFSETS:
                far = abs(dx) > 10 or abs(dy) > 14
                ann = ax.annotate(
                    text,
                    (x, y),
                    xytext=(dx, dy),
                    textcoords="offset points",
                    fontsize=7,
                    ha="left" if dx > 0 else "right" if dx < 0 else "center",
                    va="bottom" if dy >= 0 else "top",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#555"} if far else None,
                )
                box = ann.get_window_extent(renderer).padded(1)
                if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) and not _overlaps(box, avoid):
                    chosen = ann
                    labels.append(box)
                    break
                ann.remove()
            if chosen is not None:
                break
        if chosen is None:  # crowded beyond every offset: keep the first place rather than lose the label
            chosen = ax.annotate(text, (x, y), xytext=_OFFSETS[0], textcoords="offset points", fontsize=7)
        texts.append(chosen)
    return texts


def _log_ticks(ax) -> None:
    """Readable log-axis ticks: 1-2-5 steps as plain numbers (10, 20, 50, 100), no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def pareto(points, quality_label: str):
    """Accuracy vs latency (log axis; marker area ~ model size) per model and device; the Pareto front
    joined; every point labelled with its variant and size, labels placed so that none overlap."""
    groups = list(points.groupby(["model", "device_id"], sort=True))
    n = max(1, len(groups))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(max(7.0, 4.8 * cols), 3.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    pending = []
    for ax, ((model, dev), g) in zip(axes, groups):
        g = g.sort_values("latency")
        front = np.array(pareto_front(g["latency"], g["quality"]))
        size = g["size"].to_numpy(dtype=float)
        area = 40 + 400 * size / max(size.max(), 1.0)
        ax.scatter(
            g["latency"],
            g["quality"],
            s=area,
            c=np.where(front, "#d62728", "#7f7f7f"),
            alpha=0.7,
            edgecolors="black",
            zorder=3,
        )
        fr = g[front]
        ax.step(fr["latency"], fr["quality"], where="post", color="#d62728", lw=1.2, label="Pareto front")
        ax.set_xscale("log")  # variants of one model can differ by 10x in latency
        _log_ticks(ax)
        lo, hi = float(g["latency"].min()), float(g["latency"].max())
        ax.set_xlim(lo / 1.6, hi * 1.6)  # room for the labels beside the outermost points
        qlo, qhi = float(g["quality"].min()), float(g["quality"].max())
        label = str(g["quality_label"].iloc[0]) if "quality_label" in g else quality_label
        pad = max((qhi - qlo) * 0.25, 1.0 if label.endswith("(%)") else 0.01)  # percent, or an AUC in 0..1
        ax.set_ylim(qlo - pad, qhi + pad)
        ax.set_xlabel("latency p50 (us, log scale)")
        ax.set_ylabel(label)
        ax.set_title(f"{model} on {dev}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
        pending.append(
            (
                ax,
                [
                    (
                        float(r["latency"]),
                        float(r["quality"]),
                        f"{r['variant']} ({r['size'] / 1024:.0f} KiB)",
                        float(np.sqrt(a)),
                    )
                    for (_, r), a in zip(g.iterrows(), area)
                ],
            )
        )
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("marker area ~ model size; red = Pareto-optimal variants", fontsize=10)
    fig.canvas.draw()  # settle the layout, then freeze it: label places are measured on the final axes
    fig.set_layout_engine("none")
    for ax, items in pending:
        place_labels(fig, ax, items)
    return fig


def robustness(frame):
    """Per model x device: top-1 of each variant on the clean set and under each perturbation, in the
    order of the frame's columns (clean first, mild to harsh)."""
    groups = list(frame.groupby(["model", "device_id"], sort=False))
    cols = [c for c in frame.columns if c not in ("model", "device_id", "variant")]
    fig = _figure(max(5.0, 1.3 * len(cols)), 3.2 * len(groups))
    for i, ((model, device), g) in enumerate(groups):
        ax = fig.add_subplot(len(groups), 1, i + 1)
        xs = np.arange(len(cols))
        for _, r in g.iterrows():
            ys = [np.nan if r[c] is None else 100.0 * float(r[c]) for c in cols]
            ax.plot(xs, ys, marker="o", label=_plain(r["variant"]))
        ax.set_xticks(xs, [_plain(c) for c in cols], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("top-1 %")
        ax.set_title(_plain(f"{model} on {device}"), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _plain(text: str) -> str:
    """Text matplotlib draws as given: a `$` would start mathtext (a model name is not a formula)."""
    return str(text).replace("$", r"\$")


def op_time_bars(panels: list[dict]):
    """One panel per profiled model/variant@device: a horizontal bar per operator (its mean time per
    invocation), the operators of one type side by side in one colour, the types in order of their
    total time, so the chart reads both "which op" and "which kind of op".

    Each panel: title, unit (axis label), bars: [(label, op type, value)] (slowest types first)."""
    n = max(1, len(panels))
    heights = [max(1.6, 0.28 * len(p["bars"]) + 0.9) for p in panels] or [1.6]
    fig = _figure(9.0, sum(heights) + 0.4)
    axes = fig.subplots(n, 1, squeeze=False, height_ratios=heights)[:, 0]
    palette = [f"C{i}" for i in range(10)]
    colours: dict[str, str] = {}
    for ax, p in zip(axes, panels):
        bars = p["bars"]
        ys = np.arange(len(bars))[::-1]
        for y, (label, op_type, value) in zip(ys, bars):
            colour = colours.setdefault(op_type, palette[len(colours) % len(palette)])
            ax.barh(y, value, color=colour, label=_plain(op_type))
        ax.set_yticks(ys, [_plain(b[0]) for b in bars], fontsize=7)
        ax.set_xlabel(_plain(p["unit"]), fontsize=8)
        ax.set_title(_plain(p["title"]), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # one legend entry per op type
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    return fig
