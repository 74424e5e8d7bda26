"""The site's pages as HTML text, and each series' chart data as a small JS file.

Every value that reaches HTML passes `html.escape` (labels and model names are user input); data for
the scripts is JSON with `<`, `>` and `&` written as \\u escapes, so no string can close a script. The
scripts put data into the page with textContent, never as markup. Pages link the one shared copy of
the chart library and the site's script and style under assets/ (no CDN: labs are often offline).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

from harness.report.site.op_profile import render_op_profile

TITLE = "hilbench results"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def js_json(value: Any) -> str:
    """JSON that no string inside can break out of a script with."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=_none)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def js_data(name: str, value: Any) -> str:
    """`window.NAME = <json>;` (a data file)."""
    return f"window.{name}={js_json(value)};\n"


def _none(value: Any) -> None:
    return None


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{100 * x:+.{digits}f} %"


def level_text(v: float | None) -> str:
    return "" if v is None else f"{v:,.1f}"


def _page(title: str, root: str, body: list[str], scripts: tuple[str, ...] = (), page: str = "") -> str:
    nav = " ".join(
        f'<a href="{root}{href}">{name}</a>'
        for href, name in (("index.html", "Series"), ("devices.html", "Devices"), ("sweeps.html", "Sweeps"))
    )
    tags = "".join(f'<script src="{esc(s)}"></script>' for s in scripts)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{root}assets/uPlot.min.css">'
        f'<link rel="stylesheet" href="{root}assets/site.css">'
        f'</head><body data-page="{esc(page)}"><nav>{nav}</nav><main>'
        + "\n".join(body)
        + f'</main>{tags}<script src="{root}assets/site.js"></script></body></html>\n'
    )


def _table(headers: list[str], rows: list[str], table_id: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"


def index_page(rows: list[dict[str, Any]], generated: str) -> str:
    verdicts = sorted({r["verdict"] for r in rows})
    options = '<option value="">every verdict</option>' + "".join(
        f'<option value="{esc(v)}">{esc(v)}</option>' for v in verdicts
    )
    body_rows = []
    for r in rows:
        body_rows.append(
            f'<tr data-verdict="{esc(r["verdict"])}" data-text="{esc((r["key"] + " " + r["profile"]).lower())}">'
            f'<td><a href="series/{esc(r["slug"])}.html">{esc(r["model"])}</a></td>'
            f"<td>{esc(r['variant'])}</td><td>{esc(r['device'])}</td><td>{esc(r['profile'])}</td>"
            f'<td class="verdict v-{esc(r["verdict"])}">{esc(r["verdict"])}</td>'
            f"<td>{esc(r['run_id'])}</td><td>{esc(when(r['at']))}</td>"
            f'<td class="num">{esc(level_text(r["level"]))}</td><td class="num">{r["runs"]}</td></tr>'
        )
    body = [
        f"<h1>{TITLE}</h1>",
        f'<p class="muted">{len(rows)} series; published {esc(generated)}. Newest regressions first.</p>',
        '<p class="filters"><input id="filter" type="search" placeholder="filter: model, device, profile">'
        f'<select id="verdict">{options}</select> <span id="shown">{len(rows)}</span> shown</p>',
        _table(
            ["model", "variant", "device", "profile", "latest verdict", "run", "date", "p50 (us)", "runs"],
            body_rows,
            "series",
        ),
    ]
    return _page(TITLE, "", body, page="index")


def series_page(
    doc: dict[str, Any], runs_file: str, data_file: str, runs: list[dict[str, Any]], op_profile=None
) -> str:
    """The page of one series: the chart is drawn by assets/site.js from the two data files; the tables
    (verdicts, confirmations, accepted baselines) are plain HTML so that they read without scripts."""
    title = f"{doc['model']}/{doc['variant']} on {doc['device']}"
    rid = lambda i: runs[i]["run_id"]
    verdict_rows = [
        f"<tr><td>{esc(rid(r))}</td><td>{esc(when(runs[r]['started_at']))}</td>"
        f'<td class="verdict v-{esc(v)}">{esc(v)}</td><td>{esc(b)}</td></tr>'
        for r, v, b in reversed(doc["verdicts"][-50:])
    ]
    confirm_rows = [
        f"<tr><td>{esc(c['gated_run'])}</td><td>{esc(c['run_id'])}</td><td>{esc(when(c['at']))}</td>"
        f'<td class="num">{c["pairs"]}</td><td class="num">'
        f"{esc(pct(c['effect']))}</td></tr>"
        for c in doc["confirmations"]
    ]
    pin_rows = [
        f"<tr><td>{esc(p['scope'])}</td><td>{esc(p['run_id'])}</td><td>{esc(p['result_id'])}</td>"
        f'<td class="num">{esc(level_text(p["level"]))}</td></tr>'
        for p in doc["pins"]
    ]
    steps = doc["analysis"]["steps"]
    step_rows = [
        f"<tr><td>{esc(rid(doc['run'][s['start']]))}</td><td>{esc(rid(doc['run'][s['end']]))}</td>"
        f'<td class="num">{s["end"] - s["start"] + 1}</td><td class="num">{esc(level_text(s["level"]))}</td></tr>'
        for s in steps
    ]
    creep = doc["analysis"]["creep"]
    budgets = ", ".join(f"{b['name']} = {b['limit']:g}" for b in doc["budgets"]) or "none"
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">profile {esc(doc["profile"])}; metric {esc(doc["metric"])} ({esc(doc["unit"])}); '
        f"{len(doc['run'])} runs; threshold {100 * doc['threshold']:.1f} %; budgets: {esc(budgets)}</p>",
        '<p class="muted">Drag across the chart to zoom, double-click to zoom out; hover a run for its provenance.</p>',
        '<div id="trend"></div>',
        '<pre id="hover" class="hover">hover a run</pre>',
        "<h2>Steps</h2>",
        f'<p class="muted">{esc(creep["reason"]) if creep else "fewer runs than step detection needs"}</p>',
        _table(["from run", "to run", "runs", "level"], step_rows, "steps"),
        "<h2>Confirmations</h2>",
        _table(["gated run", "confirmation run", "date", "pairs", "paired effect"], confirm_rows, "confirmations")
        if confirm_rows
        else '<p class="muted">no confirmation re-measured this series</p>',
        "<h2>Accepted baselines</h2>",
        _table(["scope", "run", "result", "level"], pin_rows, "pins")
        if pin_rows
        else '<p class="muted">no pinned baseline; the gate follows the accepted runs</p>',
        "<h2>Verdicts</h2>",
        _table(["run", "date", "verdict", "baseline"], verdict_rows, "verdicts")
        if verdict_rows
        else '<p class="muted">never gated</p>',
    ]
    if op_profile is not None:
        body += ["<h2>Per-operator profile (latest run)</h2>", render_op_profile(op_profile)]
    return _page(title, "../", body, ("../assets/uPlot.iife.min.js", runs_file, data_file), page="series")


def devices_page(comparison: dict[str, Any], drift: dict[str, list[dict[str, Any]]]) -> str:
    devices = comparison["devices"]
    head = ["model/variant"] + [f"{d} ({p})" for d, p in devices]
    rows = []
    for name, cells in comparison["rows"]:
        tds = []
        for d, _ in devices:
            c = cells.get(d)
            tds.append(
                "<td></td>"
                if c is None
                else f'<td class="num v-{esc(c["verdict"])}" title="{esc(c["verdict"])}">'
                f'<a href="series/{esc(c["slug"])}.html">{esc(level_text(c["level"]) or "-")}</a>'
                f' <span class="tag">{esc(c["verdict"])}</span></td>'
            )
        rows.append(f"<tr><td>{esc(name)}</td>{''.join(tds)}</tr>")
    body = [
        "<h1>Devices</h1>",
        '<p class="muted">Latest run level of latency_p50_us (us) of each model on each device, with its '
        "latest verdict.</p>",
        _table(head, rows, "comparison"),
        "<h2>Device drift</h2>",
        '<p class="muted">Runs where most of a device\'s gated series came out level-off with unchanged models: '
        "the device ran differently, not the models.</p>",
    ]
    if not drift:
        body.append('<p class="muted">no device drift recorded</p>')
    for device in sorted(drift):
        body.append(f"<h3>{esc(device)}</h3>")
        body.append(
            _table(
                ["run", "date", "level-off series", "gated", "median change"],
                [
                    f'<tr><td>{esc(w["run_id"])}</td><td>{esc(when(w["at"]))}</td><td class="num">{w["off"]}</td>'
                    f'<td class="num">{w["gated"]}</td><td class="num">'
                    f"{esc(pct(w['median_change'], 1))}</td></tr>"
                    for w in reversed(drift[device])
                ],
            )
        )
    return _page(f"{TITLE}: devices", "", body, page="devices")


def accuracy_text(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f} %"


def size_text(x: float | None) -> str:
    return "" if x is None else f"{x:,.0f}"


def _tree(nodes: list[dict[str, Any]]) -> str:
    items = []
    for n in nodes:
        name = f" = {esc(n['model_name'])}" if n.get("model_name") else ""
        acc = (n.get("metrics") or {}).get("host_accuracy")
        extra = f" (host accuracy {100 * acc:.2f} %)" if isinstance(acc, int | float) else ""
        items.append(
            f"<li><code>{esc(n['node_id'][:12])}</code> {esc(n['step'])} {esc(n.get('recipe') or '')}{name}{extra}"
            + (_tree(n["children"]) if n["children"] else "")
            + "</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def sweeps_page(sweeps: list[dict[str, Any]], trees: list[dict[str, Any]]) -> str:
    body = ["<h1>Sweeps</h1>"]
    if not sweeps:
        body.append('<p class="muted">no `hil sweep` run in this store</p>')
    for sw in reversed(sweeps):
        body.append(f'<h2 id="sweep-{esc(sw["run_id"])}">{esc(sw["run_id"])} {esc(sw["label"] or "")}</h2>')
        body.append(f'<p class="muted">{esc(when(sw["at"]))}</p>')
        for d in sw["devices"]:
            body.append(
                f"<h3>{esc(d['device'])} ({esc(d['profile'])}): choice {esc(d['choice'] or 'none within budgets')}</h3>"
            )
            rows = [
                f'<tr class="{"front" if p["front"] else ""}{" chosen" if p["name"] == d["choice"] else ""}">'
                f'<td>{esc(p["name"])}</td><td class="num">{esc(level_text(p["latency"]))}</td>'
                f'<td class="num">{esc(accuracy_text(p["accuracy"]))}</td>'
                f'<td class="num">{esc(size_text(p["size"]))}</td>'
                f"<td>{'yes' if p['front'] else ''}</td><td>{esc('; '.join(p['ruled_out']))}</td></tr>"
                for p in d["points"]
            ]
            body.append(_table(["candidate", "p50 (us)", "accuracy", "size (B)", "Pareto front", "ruled out by"], rows))
        if sw["roots"]:
            links = ", ".join(f'<a href="#lineage-{esc(r)}">{esc(r[:17])}</a>' for r in sw["roots"])
            body.append(f"<p>lineage: {links}</p>")
    body.append("<h2>Lineage</h2>")
    if not trees:
        body.append('<p class="muted">no lineage recorded</p>')
    for t in trees:
        body.append(f'<h3 id="lineage-{esc(t["root_id"])}"><code>{esc(t["root_id"])}</code></h3>{_tree(t["children"])}')
    return _page(f"{TITLE}: sweeps", "", body, page="sweeps")
