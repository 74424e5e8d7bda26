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
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


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
                _style(ax.violinplot([_clip(_thin(base))], positions=[i - 0.18], widths=0.34, showmedians=True),
                       "#7f7f7f")
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
    """One panel per key: p50 per run over time, the gate's acceptance band, this run highlighted.

    Each series: label, x (run start datetimes), y (p50 us), failed (bools), current (index or None),
    band (lo, hi) or None, baseline (value or None).
    """
    n = max(1, len(series))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(4.6 * cols, 2.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, s in zip(axes, series):
        x = list(range(len(s["y"])))
        ax.plot(x, s["y"], "-o", color="#1f77b4", markersize=4, label="p50 per run")
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
            ax.plot([c], [s["y"][c]], "D", color="#d62728" if bad else "black", markeredgecolor="black",
                    markersize=7, label="this run")
        ax.set_title(s["label"], fontsize=9)
        ax.set_xticks(x, [d.strftime("%m-%d\n%H:%M") for d in s["x"]], fontsize=6)
        ax.set_ylabel("p50 (us)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("latency p50 over the last runs")
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


def pareto(points, quality_label: str):
    """Accuracy vs latency (marker area ~ model size) per model and device; the Pareto front joined."""
    groups = list(points.groupby(["model", "device_id"], sort=True))
    n = max(1, len(groups))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(max(7.0, 4.8 * cols), 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, ((model, dev), g) in zip(axes, groups):
        g = g.sort_values("latency")
        front = np.array(pareto_front(g["latency"], g["quality"]))
        size = g["size"].to_numpy(dtype=float)
        area = 40 + 400 * size / max(size.max(), 1.0)
        ax.scatter(g["latency"], g["quality"], s=area, c=np.where(front, "#d62728", "#7f7f7f"), alpha=0.7,
                   edgecolors="black")
        fr = g[front]
        ax.step(fr["latency"], fr["quality"], where="post", color="#d62728", lw=1.2, label="Pareto front")
        for _, r in g.iterrows():
            ax.annotate(f"{r['variant']} ({r['size'] / 1024:.0f} KiB)", (r["latency"], r["quality"]),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("latency p50 (us)")
        ax.set_ylabel(quality_label)
        ax.set_title(f"{model} on {dev}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("marker area ~ model size; red = Pareto-optimal variants", fontsize=10)
    return fig
