"""The report: one self-contained HTML page (figures inline) and report.json, from the store.

Both are built from the same rows, so the page and the JSON always agree. Files are
written to a temporary name and renamed, so a report is never half-written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from bindbench.core.claims import judge
from bindbench.core.config import get_path
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.store import open_store

BASE_COLUMNS = ("run", "status")


def format_cell(value: Any) -> str:
    """How a table cell is shown: 4 significant digits for floats, '' for missing."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _lookup(spec: dict, key: str) -> Any:
    """The spec's value at a dotted key (None where absent); a list value as a tuple, so that
    list-valued settings (e.g. a grid of penalties) can be grouped on."""
    try:
        value = get_path(spec, key)
    except (KeyError, TypeError):
        return None
    return tuple(value) if isinstance(value, list) else value


def experiment_table(name: str, runs: list[dict], swept: list[str]) -> dict:
    """Returns the table of one experiment: its columns and one row per run."""
    experiment = EXPERIMENTS.get(name)
    settings = list(dict.fromkeys([*swept, *(experiment.columns if experiment else ())]))
    metrics = list(experiment.metrics) if experiment else sorted({k for run in runs for k in run["metrics"]})
    columns = [*BASE_COLUMNS, *settings, *metrics, "seconds"]
    rows = []
    for run in runs:
        row = [run["id"][:8], run["status"]]
        row += [_lookup(run["spec"], key) for key in settings]
        row += [run["metrics"].get(key) for key in metrics]
        row.append(round(run["seconds"], 1) if run["seconds"] is not None else None)
        rows.append(row)
    return {"columns": columns, "rows": rows, "settings": settings, "metrics": metrics}


def _label(run: dict, keys: list[str], fallback: str = "") -> str:
    return ", ".join(f"{k.split('.')[-1]}={_lookup(run['spec'], k)}" for k in keys) or fallback


@dataclass(frozen=True)
class Plot:
    """A report figure and the numbers it draws (which go to report.json), optionally with a
    summary table shown under the runs table: {"columns": [...], "rows": [[...], ...]}."""

    title: str
    figure: Figure
    data: Any
    table: dict | None = None


def bars(
    ax, groups: list[str], series: dict[str, list[list[float]]], dots: float = 6
) -> dict[str, np.ndarray]:
    """Grouped bars with every value drawn: for each group (a tick on x) one bar per series at
    the mean of `series[name][group index]`, and each value (a seed, a run) as a dot on it.

    Returns each series' bar positions, for marks a figure adds (a published value, ...)."""
    width = 0.8 / len(series)
    positions = {}
    for j, (name, per_group) in enumerate(series.items()):
        x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
        means = [float(np.mean(v)) if len(v) else np.nan for v in per_group]
        ax.bar(x, means, width, color=f"C{j}", label=name)
        for xi, values in zip(x, per_group):
            ax.scatter([xi] * len(values), values, color="k", s=dots, zorder=3)
        positions[name] = x
    ax.set_xticks(range(len(groups)), groups)
    return positions


def spread(values: list[float], signed: bool = False) -> str:
    """A table cell 'mean ± std' of the values ('' when there are none)."""
    if not len(values):
        return ""
    return f"{np.mean(values):{'+' if signed else ''}.3f} ± {np.std(values):.3f}"


LABEL_COLOURS = {  # label maps: objects 1.. in the cycle colours, 0 black (true) or a colour (slots)
    "objects": ListedColormap(["black", *[f"C{i}" for i in range(10)]]),
    "slots": ListedColormap([f"C{i}" for i in range(10)]),
}


def picture_grid(
    rows: list[list[tuple[list, str | None]]], columns: list[str], row_labels: list[str]
) -> Figure:
    """A grid of small pictures, one row per scene: each cell (picture, kind) is 8-bit colours
    (h, w, 3) when kind is None, else a label map (h, w) drawn in LABEL_COLOURS[kind]."""
    fig = Figure(figsize=(1.05 * len(columns), 1.15 * len(rows) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(columns)))
    for i, (row, label) in enumerate(zip(rows, row_labels)):
        for ax, (picture, kind) in zip(axes[i], row):
            if kind is None:
                ax.imshow(np.asarray(picture) / 255, interpolation="nearest")
            else:
                cmap = LABEL_COLOURS[kind]
                ax.imshow(np.asarray(picture), cmap=cmap, vmin=0, vmax=cmap.N - 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=7)
    for ax, title in zip(axes[0], columns):
        ax.set_title(title, fontsize=7)
    return fig


def curves_plot(runs: list[dict], metrics: list[str], swept: list[str]) -> Plot | None:
    """Learning curves: one panel per metric, one line per run."""
    shown = [m for m in metrics if any(m in p for r in runs for p in r["curve"])]
    if not shown:
        return None
    fig = Figure(figsize=(4.2 * len(shown), 3.2), layout="constrained")
    data: dict[str, dict] = {}
    for ax, metric in zip(np.atleast_1d(fig.subplots(1, len(shown))), shown):
        for run in runs:
            points = [[p["step"], p[metric]] for p in run["curve"] if metric in p]
            if points:
                label = _label(run, swept, run["id"][:8])
                data.setdefault(run["id"][:8], {"label": label})[metric] = points
                ax.plot(*zip(*points), label=label, lw=1.2)
        ax.set_xlabel("step")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if metric.endswith("r2"):
            ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.02)
    if len(runs) <= 12:
        fig.axes[-1].legend(fontsize=7)
    return Plot("learning curves", fig, data)


def sweep_plots(runs: list[dict], headline: str, swept: list[str]) -> list[Plot]:
    """The headline metric against each swept setting; other settings are separate lines,
    seeds are averaged (mean line, every seed as a point)."""
    plots = []
    done = [r for r in runs if headline in r["metrics"]]
    for key in swept:
        if key == "seed":
            continue
        values = sorted({_lookup(r["spec"], key) for r in done}, key=_sort_key)
        if len(values) < 2:
            continue
        others = [k for k in swept if k not in (key, "seed")]
        groups: dict[str, dict] = defaultdict(lambda: defaultdict(list))
        for run in done:
            groups[_label(run, others)][_lookup(run["spec"], key)].append(run["metrics"][headline])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        fig = Figure(figsize=(5, 3.4), layout="constrained")
        ax = fig.subplots()
        data = {}
        for label, by_value in groups.items():
            xs = [v for v in values if v in by_value]
            means = [float(np.mean(by_value[v])) for v in xs]
            data[label or "all"] = [{key: v, "mean": m, "values": by_value[v]} for v, m in zip(xs, means)]
            positions = xs if numeric else [values.index(v) for v in xs]
            ax.plot(positions, means, marker="o", label=label)
            for x, v in zip(positions, xs):
                ax.scatter([x] * len(by_value[v]), by_value[v], s=10, alpha=0.4, color="k")
        if numeric and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
        ax.set_xticks(values if numeric else range(len(values)), [str(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel(headline)
        ax.grid(alpha=0.3)
        if len(groups) > 1 or next(iter(groups)):
            ax.legend(fontsize=7)
        plots.append(Plot(f"{headline} against {key}", fig, data))
    return plots


def _sort_key(value: Any):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_report(folder: str | Path, figures: str | Path | None = None) -> tuple[Path, Path]:
    """Writes `report.html` and `report.json` in `folder` from its store; returns both paths.
    With `figures`, also every figure as `<figures>/<experiment>-<n>.png` (n from 1, in the
    report's order), for a README or a paper."""
    folder = Path(folder)
    with open_store(folder) as store:
        meta = store.meta()
        runs = store.runs()
        for run in runs:
            run["curve"] = store.curve(run["id"])
    sweeps = meta.get("sweeps", {})
    report: dict[str, Any] = {
        "title": f"BindBench: {meta.get('target', folder.name)} ({meta.get('profile', '?')})",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "meta": meta,
        "claims": [],
        "experiments": [],
    }
    sections = []
    for name in dict.fromkeys(run["experiment"] for run in runs):
        mine = [r for r in runs if r["experiment"] == name]
        swept = sweeps.get(name, [])
        table = experiment_table(name, mine, swept)
        plots: list[Plot] = []
        curves = curves_plot(mine, table["metrics"], swept)
        if curves is not None:
            plots.append(curves)
        if table["metrics"]:
            plots += sweep_plots(mine, table["metrics"][0], swept)
        experiment = EXPERIMENTS.get(name)
        if experiment is not None and experiment.plots is not None:
            plots += experiment.plots(mine)
        counts = {s: sum(r["status"] == s for r in mine) for s in ("done", "diverged", "failed", "running")}
        claims = [judge(claim, mine) for claim in (experiment.claims if experiment else ())]
        report["claims"] += [{"experiment": name, **claim} for claim in claims]
        entry = {
            "name": name,
            "title": experiment.title if experiment else name,
            "swept": swept,
            "counts": counts,
            "claims": claims,
            "columns": table["columns"],
            "rows": table["rows"],
            "figures": [
                {"title": p.title, "data": p.data, **({"table": p.table} if p.table else {})} for p in plots
            ],
        }
        report["experiments"].append(entry)
        sections.append((entry, [(p.title, _png(p.figure)) for p in plots]))
    if figures is not None:
        Path(figures).mkdir(parents=True, exist_ok=True)
        for entry, pngs in sections:
            for n, (_, png) in enumerate(pngs, 1):
                (Path(figures) / f"{entry['name']}-{n}.png").write_bytes(base64.b64decode(png))
    json_path, html_path = folder / "report.json", folder / "report.html"
    _write_atomic(json_path, json.dumps(report, indent=1, default=str))
    _write_atomic(html_path, render_html(report, sections))
    return html_path, json_path


def _markdown_table(columns: list, rows: list) -> list[str]:
    def cell(value: Any) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def markdown(report: dict) -> str:
    """The report's claims and each experiment's summary tables (its runs table where it has
    none) as Markdown, for a README: the numbers the page shows, cell for cell."""
    lines = [f"# {report['title']}", "", f"`{report['meta'].get('command', '')}`", ""]
    if report.get("claims"):
        lines += ["## Claims", ""]
        rows = [[c["experiment"], c["claim"], c["verdict"], c["detail"]] for c in report["claims"]]
        lines += _markdown_table(["experiment", "claim", "verdict", "measured"], rows)
    for entry in report["experiments"]:
        lines += [f"## {entry['title']} (`{entry['name']}`)", ""]
        tables = [(f["title"], f["table"]) for f in entry["figures"] if "table" in f]
        for title, table in tables or [("runs", {"columns": entry["columns"], "rows": entry["rows"]})]:
            lines += [f"{title}:", ""] + _markdown_table(table["columns"], table["rows"])
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td.text{text-align:left}
.status-failed,.status-diverged{color:#b00}.status-running{color:#a60}
.verdict-held{color:#070;font-weight:600}.verdict-not-held{color:#b00;font-weight:600}
.verdict-not-measured{color:#777}
table.claims td{max-width:28em}
figure{display:inline-block;margin:0.5em}figcaption{font-size:13px;color:#555}
code{background:#f3f3f3;padding:1px 4px}
"""


def _table_html(columns: list, rows: list, css_class: str) -> list[str]:
    esc = html.escape
    parts = [
        f"<table class='{css_class}'><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in columns) + "</tr>"
    ]
    for row in rows:
        cells = []
        for column, value in zip(columns, row):
            css = "text" if isinstance(value, str) else ""
            if column == "status":
                css += f" status-{value}"
            cells.append(f"<td class='{css.strip()}'>{esc(format_cell(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


def _claims_html(claims: list[dict], link: bool) -> list[str]:
    """A table of claims: the sentence, its anchor, the verdict and the numbers behind it (with
    `link`, the experiment's name linking to its section)."""
    esc = html.escape
    head = ["experiment"] if link else []
    parts = [
        "<table class='claims'><tr>"
        + "".join(f"<th>{c}</th>" for c in [*head, "claim", "anchor", "verdict", "measured"])
        + "</tr>"
    ]
    for claim in claims:
        cells = [f"<a href='#{esc(claim['experiment'])}'>{esc(claim['experiment'])}</a>"] if link else []
        verdict = claim["verdict"]
        cells += [
            esc(claim["sentence"]),
            esc(claim["anchor"]),
            f"<span class='verdict-{'-'.join(verdict.split()[:2])}'>{esc(verdict)}</span>",
            esc(claim["detail"]),
        ]
        parts.append("<tr>" + "".join(f"<td class='text'>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    return parts


def render_html(report: dict, sections: list[tuple[dict, list[tuple[str, str]]]]) -> str:
    esc = html.escape
    meta = report["meta"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(report['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report['title'])}</h1>",
        f"<p>Command: <code>{esc(meta.get('command', ''))}</code><br>",
        f"Device: {esc(str(meta.get('device', '')))} &middot; created {esc(report['created'])}</p>",
    ]
    if report.get("claims"):
        parts.append("<h2>Claims</h2>")
        parts += _claims_html(report["claims"], link=True)
    for entry, figures in sections:
        counts = ", ".join(f"{n} {s}" for s, n in entry["counts"].items() if n)
        parts.append(
            f"<h2 id='{esc(entry['name'])}'>{esc(entry['title'])}</h2>"
            f"<p>experiment <code>{esc(entry['name'])}</code>: {counts}</p>"
        )
        if entry.get("claims"):
            parts += _claims_html(entry["claims"], link=False)
        parts += _table_html(entry["columns"], entry["rows"], "runs")
        for figure in entry["figures"]:
            if "table" in figure:
                parts.append(f"<p>{esc(figure['title'])}:</p>")
                parts += _table_html(figure["table"]["columns"], figure["table"]["rows"], "summary")
        for title, png in figures:
            parts.append(
                f"<figure><img alt='{esc(title)}' src='data:image/png;base64,{png}'>"
                f"<figcaption>{esc(title)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
