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
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bindbench.core.claims import judge
from bindbench.core.config import get_path, varying
from bindbench.core.files import publish
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.store import open_store, strict_dumps

BASE_COLUMNS = ("run", "status")


def format_cell(value: Any) -> str:
    """How a table cell is shown: 4 significant digits for floats, '' for missing."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_cell(v) for v in value) + "]"
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
    settings = [k for k in settings if any(_lookup(run["spec"], k) is not None for run in runs)]  # used
    columns = [*BASE_COLUMNS, *settings, *metrics, "seconds"]
    rows = []
    for run in runs:
        row = [run["id"][:8], run["status"]]
        row += [_lookup(run["spec"], key) for key in settings]
        row += [run["metrics"].get(key) for key in metrics]
        row.append(round(run["seconds"], 1) if run["seconds"] is not None else None)
        rows.append(row)
    return {"columns": columns, "rows": rows, "settings": settings, "metrics": metrics}


def headline_table(runs: list[dict], settings: list[str], metric: str) -> dict | None:
    """The headline metric as a paper prints it: a column per value of the setting with the
    most values, a row per combination of the other settings that vary (seeds aside), each
    cell the mean over the finished runs there ('± std' where several seeds). None where no
    setting varies."""
    done = [r for r in runs if r["status"] == "done" and metric in r["metrics"]]
    distinct = {
        key: list(dict.fromkeys(_lookup(r["spec"], key) for r in done)) for key in settings if key != "seed"
    }
    keys = [key for key, values in distinct.items() if len(values) > 1]
    if not keys:
        return None
    across = max(keys, key=lambda key: len(distinct[key]))  # the first of the widest
    down = [key for key in keys if key != across]
    values = sorted(distinct[across], key=_sort_key)
    cells: dict[tuple, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in done:
        row = tuple(_lookup(run["spec"], key) for key in down)
        cells[row][_lookup(run["spec"], across)].append(run["metrics"][metric])

    corner = f"{', '.join(down)} \\ {across}" if down else across
    rows = [
        [", ".join(_cell(v) for v in row) or metric, *(spread(cells[row].get(v, [])) for v in values)]
        for row in sorted(cells, key=lambda row: [_sort_key(v) for v in row])
    ]
    seeds = max(len(found) for row in cells.values() for found in row.values())
    title = f"{metric}{', mean ± std over seeds' if seeds > 1 else ''}"
    return {"title": title, "columns": [corner, *map(_cell, values)], "rows": rows}


NONE = "—"  # a setting the run does not have (a user's model has no width)


def _cell(value: Any) -> str:
    """A setting's value as a row or column name: NONE where the run has no such setting."""
    return NONE if value is None else format_cell(value)


def _label(run: dict, keys: list[str], fallback: str = "") -> str:
    """`name=value` for each key the run has; keys it lacks are left out."""
    values = [(k.split(".")[-1], _lookup(run["spec"], k)) for k in keys]
    return ", ".join(f"{name}={format_cell(v)}" for name, v in values if v is not None) or fallback


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
    """A table cell 'mean ± std' of the values (the value alone when there is one, '' when
    there are none)."""
    if not len(values):
        return ""
    mean = f"{np.mean(values):{'+' if signed else ''}.3f}"
    return mean if len(values) == 1 else f"{mean} ± {np.std(values):.3f}"


DPI = 110  # the page's PNGs
COLUMN_INCHES = 1100 / DPI  # the page's column (max-width 1100 px): no figure is wider
PANELS_PER_ROW = 3
FEW_POINTS = 5  # a line with at most this many points gets markers
MANY_LINES = 12  # more runs than this: a line per setting; more settings: colour and style apart
DASHES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2))]


def column_width(width: float) -> float:
    """A figure width in inches that the page's column holds."""
    return min(width, COLUMN_INCHES)


LABEL_COLOURS = {  # label maps: objects 1.. in the cycle colours, 0 black (true) or a colour (slots)
    "objects": ListedColormap(["black", *[f"C{i}" for i in range(10)]]),
    "slots": ListedColormap([f"C{i}" for i in range(10)]),
}


def picture_grid(
    rows: list[list[tuple[list, str | None]]], columns: list[str], row_labels: list[str]
) -> Figure:
    """A grid of small pictures, one row per scene: each cell (picture, kind) is 8-bit colours
    (h, w, 3) when kind is None, else a label map (h, w) drawn in LABEL_COLOURS[kind]."""
    fig = Figure(figsize=(column_width(1.05 * len(columns)), 1.15 * len(rows) + 0.4), layout="constrained")
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


def panels(count: int, height: float = 2.9) -> tuple[Figure, list]:
    """A figure of `count` panels wrapped into rows of PANELS_PER_ROW, as wide as the column."""
    cols = min(count, PANELS_PER_ROW)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(min(COLUMN_INCHES, 3.3 * cols), height * rows + 0.6), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(rows, cols)).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def line_styles(count: int) -> list[dict]:
    """`count` distinguishable styles: 10 colours, then 20, then 20 colours x line styles."""
    if count <= 10:
        return [{"color": f"C{i}"} for i in range(count)]
    cmap = matplotlib.colormaps["tab20"]
    dashes = ["-", "--", ":", "-."]
    return [{"color": cmap(i % 20), "linestyle": dashes[(i // 20) % 4]} for i in range(count)]


def figure_legend(fig: Figure, ax, columns: int = 4) -> None:
    """One legend for the whole figure, under its panels, out of the data's way, in as many
    columns as its labels fit across the figure."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    fits = int(fig.get_size_inches()[0] / (0.06 * max(map(len, labels)) + 0.5))  # 7 pt text
    fig.legend(
        handles, labels, loc="outside lower center", ncols=max(1, min(columns, fits, len(labels))), fontsize=7
    )


def distinguishing(runs: list[dict], first: list[str] = (), ignore: set[str] = frozenset()) -> list[str]:
    """The fewest settings, `first` ones first, that tell apart the runs everything else that
    differs tells apart (but the `ignore`d keys): the same groups as all of them, shorter labels."""
    candidates = list(dict.fromkeys([*first, *varying([r["spec"] for r in runs])]))
    keys: list[str] = []
    groups = 1
    for key in candidates:
        if key in ignore:
            continue
        count = len({tuple(repr(_lookup(r["spec"], k)) for k in [*keys, key]) for r in runs})
        if count > groups:
            keys, groups = [*keys, key], count
    # a run told apart only by lacking them (a user's model has no width) is named by what it has
    for key in candidates:
        has = [any(_lookup(r["spec"], k) is not None for k in keys) for r in runs]
        if all(has) or not any(has):
            break
        if key in keys or key in ignore:
            continue
        named = {repr(_lookup(r["spec"], key)) for r, h in zip(runs, has) if h}
        lacking = [_lookup(r["spec"], key) for r, h in zip(runs, has) if not h]
        if any(v is not None and repr(v) not in named for v in lacking):
            keys.append(key)
    return keys


def curves_plot(runs: list[dict], metrics: list[str], swept: list[str]) -> Plot | None:
    """Learning curves: one panel per metric, one legend under the panels (none where no run
    was evaluated twice: its one point is in the table). Up to MANY_LINES runs, a line per
    run; beyond, a line per setting (seeds averaged), and beyond MANY_LINES settings, the
    colour says one setting and the line style the others, each in a legend of its own."""
    shown = [m for m in metrics if any(sum(m in p for p in r["curve"]) > 1 for r in runs)]
    if not shown:
        return None
    many = len(runs) > MANY_LINES
    keys = [k for k in distinguishing(runs, swept) if not (many and k == "seed")]
    lines: dict[str, list[dict]] = defaultdict(list)  # a line (its label): the runs it averages
    for run in runs:
        lines[_label(run, keys, run["id"][:8]) if many else run["id"]].append(run)
    labels = {line: _label(members[0], keys, members[0]["id"][:8]) for line, members in lines.items()}
    legends = None
    if len(lines) <= MANY_LINES:
        styles = dict(zip(lines, line_styles(len(lines))))
    else:  # colour by the first setting, line style by the rest
        parts = {line: (_lookup(m[0]["spec"], keys[0]), _label(m[0], keys[1:])) for line, m in lines.items()}
        colour_of = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(v for v, _ in parts.values()))}
        rest = dict.fromkeys(r for _, r in parts.values())
        dash_of = dict(zip(rest, DASHES * len(rest)))
        styles = {line: {"color": colour_of[v], "linestyle": dash_of[r]} for line, (v, r) in parts.items()}
        legends = (
            {f"{keys[0].split('.')[-1]}={_cell(v)}": {"color": c} for v, c in colour_of.items()},
            {label: {"color": "grey", "linestyle": d} for label, d in dash_of.items()},
        )
    fig, axes = panels(len(shown))
    data: dict[str, dict] = {}
    for ax, metric in zip(axes, shown):
        for line, members in lines.items():
            by_step: dict[float, list[float]] = defaultdict(list)
            for run in members:
                points = [[p["step"], p[metric]] for p in run["curve"] if metric in p]
                if points:
                    data.setdefault(run["id"][:8], {"label": _label(run, keys, run["id"][:8])})[metric] = (
                        points
                    )
                for step, value in points:
                    by_step[step].append(value)
            if by_step:
                steps = sorted(by_step)
                marker = "o" if len(steps) <= FEW_POINTS else None
                means = [float(np.mean(by_step[step])) for step in steps]
                ax.plot(steps, means, label=labels[line], lw=1.2, marker=marker, ms=4, **styles[line])
        ax.set_xlabel("step")
        ax.set_title(f"{metric}{', mean over seeds' if many else ''}", fontsize=9)
        ax.grid(alpha=0.3)
        if metric.endswith("r2"):
            ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.02)
    if legends is None:
        figure_legend(fig, axes[0])
    else:
        for entries, place in zip(legends, ("outside lower left", "outside lower right")):
            handles = [Line2D([], [], lw=1.5, **style) for style in entries.values()]
            fig.legend(
                handles, list(entries), loc=place, ncols=max(1, math.ceil(len(entries) / 8)), fontsize=7
            )
    return Plot("learning curves", fig, data)


def sweep_plots(runs: list[dict], headline: str, swept: list[str]) -> list[Plot]:
    """The headline metric against each swept setting; other settings are separate lines,
    seeds are averaged (mean line, every seed as a point)."""
    plots = []
    finished = [r for r in runs if headline in r["metrics"]]
    for key in swept:
        if key == "seed":
            continue
        done = [r for r in finished if _lookup(r["spec"], key) is not None]
        values = sorted({_lookup(r["spec"], key) for r in done}, key=_sort_key)
        if len(values) < 2:
            continue
        rest = [k for k in swept if k not in (key, "seed")]
        others = distinguishing(done, rest, ignore={key, "seed"})
        groups: dict[str, dict] = defaultdict(lambda: defaultdict(list))
        for run in done:
            groups[_label(run, others)][_lookup(run["spec"], key)].append(run["metrics"][headline])
        # runs without the setting (a user's model beside the widths): a level across the plot
        apart = [r for r in finished if _lookup(r["spec"], key) is None]
        them = distinguishing(finished, rest, ignore={key, "seed"}) if apart else []
        levels: dict[str, list[float]] = defaultdict(list)
        for run in apart:
            levels[_label(run, them, f"no {key.split('.')[-1]}")].append(run["metrics"][headline])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        fig = Figure(figsize=(6, 3.6 + 0.2 * math.ceil(len(groups) / 2)), layout="constrained")
        ax = fig.subplots()
        data = {}
        for (label, by_value), style in zip(groups.items(), line_styles(len(groups))):
            xs = [v for v in values if v in by_value]
            means = [float(np.mean(by_value[v])) for v in xs]
            data[label or "all"] = [{key: v, "mean": m, "values": by_value[v]} for v, m in zip(xs, means)]
            positions = xs if numeric else [values.index(v) for v in xs]
            if not numeric:  # categories: no line between them, the groups side by side
                style = {**style, "linestyle": "none"}
            shown = label or (f"by {key.split('.')[-1]}" if levels else None)
            ax.plot(positions, means, marker="o", label=shown, **style)
            for x, v in zip(positions, xs):
                ax.scatter([x] * len(by_value[v]), by_value[v], s=10, alpha=0.4, color="k")
        for i, (label, found) in enumerate(levels.items()):
            mean = float(np.mean(found))
            data[label] = [{key: None, "mean": mean, "values": found}]
            ax.axhline(mean, color=f"C{(len(groups) + i) % 10}", linestyle="--", lw=1.2, label=label)
        if numeric and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
        ax.set_xticks(values if numeric else range(len(values)), [str(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel(headline)
        ax.grid(alpha=0.3)
        if len(groups) > 1 or next(iter(groups)) or levels:
            figure_legend(fig, ax, columns=2)
        plots.append(Plot(f"{headline} against {key}", fig, data))
    return plots


def experiment_plots(name: str, runs: list[dict], swept: list[str], metrics: list[str]) -> list[Plot]:
    """The figures of one experiment's section: learning curves, the headline against each
    swept setting, and the experiment's own."""
    plots = [p for p in [curves_plot(runs, metrics, swept)] if p is not None]
    if metrics:
        plots += sweep_plots(runs, metrics[0], swept)
    experiment = EXPERIMENTS.get(name)
    if experiment is not None and experiment.plots is not None:
        plots += experiment.plots(runs)
    return plots


def _sort_key(value: Any):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode()


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
        # what the runs were trained with: every distinct set of versions and machine
        "versions": [
            json.loads(v)
            for v in dict.fromkeys(json.dumps(r["versions"], sort_keys=True) for r in runs if r["versions"])
        ],
        "claims": [],
        "experiments": [],
    }
    sections = []
    for name in dict.fromkeys(run["experiment"] for run in runs):
        mine = [r for r in runs if r["experiment"] == name]
        # what the commands swept, and whatever else differs between these runs (commands
        # sharing a folder at different settings): never averaged as if seeds
        declared = sweeps.get(name, [])
        swept = [*declared, *varying([r["spec"] for r in mine], ignore=[*declared, "seed"])]
        table = experiment_table(name, mine, swept)
        plots = experiment_plots(name, mine, swept, table["metrics"])
        experiment = EXPERIMENTS.get(name)
        shown = ("done", "diverged", "failed", "running", "pending")
        counts = {s: sum(r["status"] == s for r in mine) for s in shown}
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
        if table["metrics"] and not any(p.table for p in plots):  # no summary of its own
            summary = headline_table(mine, table["settings"], table["metrics"][0])
            if summary is not None:
                entry["summary"] = summary
        report["experiments"].append(entry)
        sections.append((entry, [(p.title, _png(p.figure)) for p in plots]))
    if figures is not None:
        Path(figures).mkdir(parents=True, exist_ok=True)
        for entry, pngs in sections:
            for stale in Path(figures).glob(f"{entry['name']}-*.png"):  # an earlier build's, maybe more
                stale.unlink()
            for n, (_, png) in enumerate(pngs, 1):
                (Path(figures) / f"{entry['name']}-{n}.png").write_bytes(base64.b64decode(png))
    # the two files are one build (core.files.publish): never an HTML of one and JSON of another
    report["build"] = build = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    text, page = strict_dumps(report, indent=1, default=str), render_html(report, sections)
    paths = publish(folder, {"report.json": text, "report.html": page}, build)
    return paths["report.html"], paths["report.json"]


def _markdown_table(columns: list, rows: list) -> list[str]:
    def cell(value: Any) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def markdown_sections(report: dict) -> dict[str, str]:
    """The Markdown of the report's claims table ("claims") and of each experiment's summary
    tables (its own, else its headline table, else its runs table), by experiment name."""
    sections = {}
    if report.get("claims"):
        rows = [[c["experiment"], c["claim"], c["verdict"], c["detail"]] for c in report["claims"]]
        sections["claims"] = _markdown_table(["experiment", "claim", "verdict", "measured"], rows)
    for entry in report["experiments"]:
        summary = [(entry["summary"]["title"], entry["summary"])] if "summary" in entry else []
        tables = [(f["title"], f["table"]) for f in entry["figures"] if "table" in f] or summary
        lines: list[str] = []
        for title, table in tables or [("runs", {"columns": entry["columns"], "rows": entry["rows"]})]:
            lines += [f"{title}:", ""] + _markdown_table(table["columns"], table["rows"])
        sections[entry["name"]] = lines
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def commands_of(meta: dict) -> list[str]:
    """Every command that wrote into the folder, oldest first (one, for older stores)."""
    return meta.get("commands") or ([meta["command"]] if meta.get("command") else [])


def markdown(report: dict) -> str:
    """The report's claims and each experiment's summary tables as Markdown, for a README: the
    numbers the page shows, cell for cell."""
    sections = markdown_sections(report)
    lines = [f"# {report['title']}", ""]
    for command in commands_of(report["meta"]):
        lines += [f"`{command}`", ""]
    if "claims" in sections:
        lines += ["## Claims", "", sections["claims"], ""]
    for entry in report["experiments"]:
        lines += [f"## {entry['title']} (`{entry['name']}`)", "", sections[entry["name"]], ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td.text{text-align:left}
.status-failed,.status-diverged{color:#b00}.status-running{color:#a60}
.verdict-held{color:#070;font-weight:600}.verdict-not-held{color:#b00;font-weight:600}
.verdict-not-measured{color:#777}
table.claims td{max-width:28em}table.claims th{text-align:left}
figure{display:inline-block;margin:0.5em}figcaption{font-size:13px;color:#555}
code{background:#f3f3f3;padding:1px 4px}
img{max-width:100%}.versions{font-size:13px;color:#555}nav ul{margin:0.3em 0}
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
        f"<meta name='bindbench-build' content='{esc(report.get('build', ''))}'>",
        f"<title>{esc(report['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report['title'])}</h1>",
        "<p>" + "<br>".join(f"Command: <code>{esc(c)}</code>" for c in commands_of(meta)) + "<br>",
        f"Device: {esc(str(meta.get('device', '')))} &middot; created {esc(report['created'])}</p>",
    ]
    for versions in report.get("versions", []):
        parts.append(
            "<p class='versions'>Trained with "
            + esc(", ".join(f"{k} {v}" for k, v in versions.items()))
            + "</p>"
        )
    parts.append("<nav><b>Contents</b><ul>")
    if report.get("claims"):
        parts.append("<li><a href='#claims'>Claims</a></li>")
    parts += [f"<li><a href='#{esc(e['name'])}'>{esc(e['title'])}</a></li>" for e, _ in sections]
    parts.append("</ul></nav>")
    if report.get("claims"):
        parts.append("<h2 id='claims'>Claims</h2>")
        parts += _claims_html(report["claims"], link=True)
    for entry, figures in sections:
        counts = ", ".join(f"{n} {s}" for s, n in entry["counts"].items() if n)
        parts.append(
            f"<h2 id='{esc(entry['name'])}'>{esc(entry['title'])}</h2>"
            f"<p>experiment <code>{esc(entry['name'])}</code>: {counts}</p>"
        )
        if entry.get("claims"):
            parts += _claims_html(entry["claims"], link=False)
        if "summary" in entry:
            parts.append(f"<p>{esc(entry['summary']['title'])}:</p>")
            parts += _table_html(entry["summary"]["columns"], entry["summary"]["rows"], "summary")
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
