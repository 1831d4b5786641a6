import json
import math
from html.parser import HTMLParser

import pytest

from bindbench.api import run
from bindbench.core.report import build_report, format_cell
from bindbench.core.store import Store


class _Tables(HTMLParser):
    """Collects the cells of every table and the sources of every image."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self._row, self._cell = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)


def test_a_tiny_run_writes_a_self_contained_report_whose_html_and_json_agree(tmp_path, tiny):
    folder = run("composition", sets=[*tiny, "model.width=[4,8]"], out=tmp_path / "r")
    report = json.loads((folder / "report.json").read_text())
    page = (folder / "report.html").read_text()
    parser = _Tables()
    parser.feed(page)

    (entry,) = report["experiments"]
    assert entry["columns"][:2] == ["run", "status"] and "ood_r2" in entry["columns"]
    claims = 1 + len(report["claims"])  # the page opens with the claims, and the section repeats them
    assert parser.rows[0] == ["experiment", "claim", "anchor", "verdict", "measured"]
    summary = entry["summary"]  # the headline table, then the runs
    start = 2 * claims + 1 + len(summary["rows"])
    assert parser.rows[2 * claims : start] == [summary["columns"], *summary["rows"]]
    assert parser.rows[start] == entry["columns"]
    assert parser.rows[start + 1 :] == [[format_cell(v) for v in row] for row in entry["rows"]]
    ood = entry["columns"].index("ood_r2")
    assert all(isinstance(row[ood], float) for row in entry["rows"])
    titles = [f["title"] for f in entry["figures"]]
    assert "ood_r2 against model.width" in titles
    assert len(parser.images) == len(titles) >= 2
    # the JSON carries the numbers each figure draws: the sweep's points are the table's
    (sweep,) = [f["data"] for f in entry["figures"] if f["title"] == "ood_r2 against model.width"]
    width = entry["columns"].index("model.width")
    assert {p["model.width"]: p["mean"] for p in sweep["all"]} == {r[width]: r[ood] for r in entry["rows"]}
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "http" not in page  # nothing to fetch: opens offline, without a server


def test_report_rebuilds_from_the_store_alone(tmp_path, tiny):
    folder = run("composition", sets=tiny, out=tmp_path / "r")
    before = json.loads((folder / "report.json").read_text())
    (folder / "report.html").unlink()
    (folder / "report.json").unlink()
    build_report(folder)
    after = json.loads((folder / "report.json").read_text())
    assert after["experiments"] == before["experiments"]
    assert (folder / "report.html").stat().st_size > 1000
    build_report(folder, figures=tmp_path / "figures")  # and every figure as a PNG file
    count = len(after["experiments"][0]["figures"])
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == sorted(f"composition-{n}.png" for n in range(1, count + 1))
    assert all((tmp_path / "figures" / name).read_bytes()[:4] == b"\x89PNG" for name in written)


def test_a_figure_s_summary_table_is_rendered_under_the_runs_table():
    from bindbench.core.report import render_html

    entry = {
        "name": "x",
        "title": "X",
        "counts": {"done": 1},
        "columns": ["run", "status"],
        "rows": [["abc", "done"]],
        "figures": [
            {"title": "f", "data": {}, "table": {"columns": ["split", "mean"], "rows": [["simple", 0.98765]]}}
        ],
    }
    report = {"title": "t", "created": "now", "meta": {}, "experiments": [entry]}
    parser = _Tables()
    parser.feed(render_html(report, [(entry, [])]))
    assert parser.rows == [
        ["run", "status"],
        ["abc", "done"],
        ["split", "mean"],
        ["simple", format_cell(0.98765)],
    ]


def test_a_list_valued_setting_is_grouped_on_like_any_other():
    from bindbench.core.report import sweep_plots

    runs = [
        {"spec": {"grid": grid, "width": w, "seed": 0}, "metrics": {"score": w / 10}}
        for w in (8, 16)
        for grid in ([1e-5, 1e-4], [1e-3])
    ]
    plot = sweep_plots(runs, "score", ["width", "grid"])[0]
    assert list(plot.data) == ["grid=[1e-05, 0.0001]", "grid=[0.001]"]


def test_the_page_opens_with_every_claim_and_its_verdict_linked_to_its_section():
    from bindbench.core.report import render_html

    claim = {"claim": "c", "sentence": "A beats B", "anchor": "0.9 vs 0.6 (paper)", "verdict": "not held"}
    claim |= {"numbers": {"difference": -0.1}, "detail": "A 0.5 is not above B 0.6"}
    entry = {"name": "x", "title": "X", "counts": {"done": 1}, "columns": ["run"], "rows": [], "figures": []}
    entry["claims"] = [claim]
    report = {
        "title": "t",
        "created": "now",
        "meta": {},
        "claims": [{"experiment": "x", **claim}],
        "experiments": [entry],
    }
    page = render_html(report, [(entry, [])])
    parser = _Tables()
    parser.feed(page)
    assert parser.rows[:2] == [
        ["experiment", "claim", "anchor", "verdict", "measured"],
        ["x", "A beats B", "0.9 vs 0.6 (paper)", "not held", "A 0.5 is not above B 0.6"],
    ]
    assert page.index("<h2 id='claims'>Claims</h2>") < page.index("<h2 id='x'>")
    assert "href='#x'" in page and "class='verdict-not-held'" in page


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """The tables of a Markdown text, as rows of cells (the |---| line dropped)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip("|").split(" | ")])
        else:
            current = None
    return tables


def test_markdown_gives_the_claims_and_the_tables_of_the_report_cell_for_cell(tmp_path, tiny, capsys):
    from bindbench.cli import main

    folder = run("composition", sets=[*tiny, "model.width=[4,8]"], out=tmp_path / "r")
    capsys.readouterr()
    assert main(["report", str(folder), "--markdown"]) == 0
    claims, summary = _markdown_tables(capsys.readouterr().out)
    report = json.loads((folder / "report.json").read_text())
    assert claims[1:] == [[c["experiment"], c["claim"], c["verdict"], c["detail"]] for c in report["claims"]]
    (entry,) = report["experiments"]
    table = entry["summary"]  # composition has no table of its own: the headline's, by width
    assert summary == [table["columns"], *table["rows"]]
    assert table["columns"] == ["model.width", "4", "8"]
    by_width = {
        row[entry["columns"].index("model.width")]: row[entry["columns"].index("ood_r2")]
        for row in entry["rows"]
    }
    assert table["rows"] == [["ood_r2", f"{by_width[4]:.3f}", f"{by_width[8]:.3f}"]]


def test_the_headline_table_puts_the_widest_setting_across_and_averages_seeds_only():
    from bindbench.core.report import headline_table

    runs = []
    for width in (8, 16, 32):
        for support in ("random", "connected"):
            for seed in (0, 1):
                value = width / 100 + (support == "random") + seed / 10
                spec = {"seed": seed, "model": {"width": width}, "task": {"support": support}}
                runs.append({"status": "done", "spec": spec, "metrics": {"r2": value}})
    runs.append({"status": "failed", "spec": {"seed": 0, "model": {"width": 64}}, "metrics": {}})
    table = headline_table(runs, ["model.width", "task.support", "seed"], "r2")
    assert table["title"] == "r2, mean ± std over seeds"
    assert table["columns"] == ["task.support \\ model.width", "8", "16", "32"]  # the failed run: no column
    assert table["rows"][0] == ["connected", "0.130 ± 0.050", "0.210 ± 0.050", "0.370 ± 0.050"]
    assert table["rows"][1][0] == "random" and table["rows"][1][3] == "1.370 ± 0.050"
    assert headline_table(runs[:2], ["model.width", "seed"], "r2") is None  # only the seed varies


def _fake_runs(count, metrics=("a",), points=1, **spec):
    """Finished runs with a curve of `points` evaluations per metric, one per seed."""
    runs = []
    for i in range(count):
        curve = [{"step": 100 * (j + 1), **{m: 0.1 * i + j for m in metrics}} for j in range(points)]
        metrics_ = {m: 0.1 * i for m in metrics}
        runs.append(
            {
                "id": f"{i:08d}",
                "status": "done",
                "spec": {"seed": i, **spec},
                "metrics": metrics_,
                "curve": curve,
                "seconds": 1.0,
            }
        )
    return runs


def lines_across_categories(fig) -> list[str]:
    """The lines drawn between two or more x positions of an axis whose ticks are categories."""
    found = []
    for ax in fig.axes:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        numeric = all(t.replace(".", "", 1).replace("−", "").isdigit() for t in ticks if t)
        for line in ax.get_lines():
            if not numeric and line.get_linestyle() not in ("None", "none", "") and len(line.get_xdata()) > 1:
                found.append(f"{ax.get_title()}: {line.get_label()}")
    return found


def test_learning_curves_fit_the_column_with_one_legend_markers_and_a_style_per_run():
    from bindbench.core.report import COLUMN_INCHES, curves_plot

    assert curves_plot(_fake_runs(3, points=1), ["a"], ["seed"]) is None  # one point each: no curve
    runs = _fake_runs(12, metrics=tuple("abcdefg"), points=2)
    fig = curves_plot(runs, list("abcdefg"), ["seed"]).figure
    assert fig.get_size_inches()[0] <= COLUMN_INCHES
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    lines = fig.axes[0].get_lines()
    assert all(line.get_marker() == "o" for line in lines)  # two points each: markers show them
    assert len({(str(line.get_color()), line.get_linestyle()) for line in lines}) == 12
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {f"seed={i}" for i in range(12)}


def test_many_runs_give_a_line_per_setting_over_seeds_coloured_by_one_setting_styled_by_the_rest():
    import numpy as np

    from bindbench.core.report import curves_plot

    runs = []
    for width in (8, 16, 32):
        for frac in (0.25, 0.5, 0.75, 0.9, 0.95):
            for seed in (0, 1):
                (one,) = _fake_runs(1, points=6, model={"width": width}, task={"frac_ood": frac})
                one["id"] = f"{width}-{frac}-{seed}"
                one["spec"]["seed"] = seed
                one["curve"] = [{"step": 100 * j, "a": width + frac + seed + j} for j in range(6)]
                runs.append(one)
    fig = curves_plot(runs, ["a"], ["model.width", "task.frac_ood", "seed"]).figure
    lines = fig.axes[0].get_lines()
    assert len(lines) == 15  # 30 runs, 15 settings: the seeds averaged
    first = next(line for line in lines if line.get_label() == "width=8, frac_ood=0.25")
    assert np.allclose(first.get_ydata(), [8.25 + 0.5 + j for j in range(6)])
    colours = {line.get_label(): str(line.get_color()) for line in lines}
    assert (
        len(set(colours.values())) == 3
        and colours["width=8, frac_ood=0.5"] == colours["width=8, frac_ood=0.95"]
    )
    dashes = {line.get_label(): str(line._unscaled_dash_pattern) for line in lines}  # the style as drawn
    assert (
        len(set(dashes.values())) == 5 and dashes["width=8, frac_ood=0.5"] == dashes["width=32, frac_ood=0.5"]
    )
    legend_texts = [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]
    assert legend_texts == [
        ["width=8", "width=16", "width=32"],
        [f"frac_ood={f}" for f in (0.25, 0.5, 0.75, 0.9, 0.95)],
    ]


def test_a_sweep_over_categories_draws_dots_and_a_line_per_value_of_what_else_varies():
    from bindbench.core.report import sweep_plots

    runs = []
    for split in ("simple", "length"):
        for objects in (2, 8):
            (r,) = _fake_runs(1, metrics=("acc",))
            r["spec"] |= {"split": split, "objects": objects}
            r["id"] = f"{split}{objects}"
            runs.append(r)
    (plot,) = sweep_plots(runs, "acc", ["split"])
    assert lines_across_categories(plot.figure) == []
    assert set(plot.data) == {"objects=2", "objects=8"}  # not averaged over the object count
    for r in runs:
        r["spec"]["split"] = {"simple": 1, "length": 2}[r["spec"]["split"]]
    (plot,) = sweep_plots(runs, "acc", ["split"])
    assert len([line for line in plot.figure.axes[0].get_lines() if line.get_linestyle() == "-"]) == 2


def test_a_table_shows_lists_as_lists_and_no_setting_that_no_run_has():
    from bindbench.core.report import experiment_table

    runs = _fake_runs(2, metrics=("a",))
    runs[0]["spec"]["grid"] = [3e-05]
    runs[1]["spec"]["grid"] = [1e-4, 1e-3]
    table = experiment_table("no_such_experiment", runs, ["grid", "image.model"])
    assert "image.model" not in table["columns"]
    assert [format_cell(row[table["columns"].index("grid")]) for row in table["rows"]] == [
        "[3e-05]",
        "[0.0001, 0.001]",
    ]


def test_labels_use_the_fewest_settings_that_tell_the_runs_apart():
    from bindbench.core.report import distinguishing

    runs = _fake_runs(4)
    for r, (kind, dim, objects, colours) in zip(
        runs, [("bag", 8, 3, 8), ("tpr", 8, 3, 8), ("tpr", 4, 2, 64), ("tpr", 4, 8, 64)]
    ):
        r["spec"] |= {"kind": kind, "dim": dim, "objects": objects, "colours": colours}
    # colours adds nothing once kind, dim and objects are known; the seed is ignored
    assert distinguishing(runs, ["kind", "dim"], ignore={"seed"}) == ["kind", "dim", "objects"]


def test_a_diverged_run_s_nan_leaves_report_json_valid_json(tmp_path, tiny):
    folder = run("composition", sets=[*tiny, "seed=[0,1]"], out=tmp_path / "r")
    with Store(folder) as store:
        first = store.runs()[0]
        nan = {k: math.nan for k in first["metrics"]}
        store.finish(first["id"], "diverged", metrics=nan, curve=[{"step": 10, "train_loss": math.nan}])
    build_report(folder)
    text = (folder / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in report.json"))


def test_a_shared_folder_s_report_names_every_command_and_what_differs_between_them(tmp_path, tiny):
    out = tmp_path / "shared"
    for lr in ("1e-3", "3e-3"):  # two commands, one folder, a setting neither sweeps
        run("composition", sets=[*tiny, f"train.lr={lr}"], out=out)
    report = json.loads((out / "report.json").read_text())
    assert [c.split("train.lr=")[1].split()[0] for c in report["meta"]["commands"]] == ["1e-3", "3e-3"]
    (entry,) = report["experiments"]
    assert "train.lr" in entry["swept"]  # shown and grouped on, not averaged as if seeds
    lr = entry["columns"].index("train.lr")
    assert sorted(row[lr] for row in entry["rows"]) == [0.001, 0.003]
    page = (out / "report.html").read_text()
    assert page.count("Command: <code>") == 2


def _widths_and_a_user_model():
    """Reference runs over widths and one run of a user's model, which has no width."""
    runs = _fake_runs(4, metrics=("r2",), points=2)
    for r, width in zip(runs, (8, 16, 32)):
        r["spec"] |= {"seed": 0, "model": {"width": width, "depth": 2}}
    runs[3]["spec"] |= {"seed": 0, "model": {"factory": "mine:Net"}}
    return runs


def test_a_user_model_beside_the_widths_is_a_named_level_not_a_width_called_none():
    from bindbench.core.report import curves_plot, headline_table, sweep_plots

    runs = _widths_and_a_user_model()
    swept = ["model.width", "model.factory"]
    (plot,) = sweep_plots(runs, "r2", swept)  # none against the factory: one value has it
    ax = plot.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "16", "32"]
    (level,) = plot.data["factory=mine:Net"]
    assert level["model.width"] is None and level["mean"] == pytest.approx(0.3)
    assert [m["mean"] for m in plot.data["all"]] == pytest.approx([0.0, 0.1, 0.2])
    assert [t.get_text() for t in plot.figure.legends[0].get_texts()] == ["by width", "factory=mine:Net"]
    labels = [t.get_text() for t in curves_plot(runs, ["r2"], swept).figure.legends[0].get_texts()]
    assert labels == ["width=8", "width=16", "width=32", "factory=mine:Net"]
    table = headline_table(runs, swept, "r2")
    assert table["columns"] == ["model.factory \\ model.width", "8", "16", "32", "—"]
    assert table["rows"] == [["—", "0.000", "0.100", "0.200", ""], ["mine:Net", "", "", "", "0.300"]]


def test_report_figures_replace_an_earlier_build_s(tmp_path, tiny):
    folder = run("composition", sets=tiny, out=tmp_path / "r")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "composition-9.png").write_bytes(b"old")
    build_report(folder, figures=tmp_path / "f")
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names and "composition-9.png" not in names and all(n.startswith("composition-") for n in names)
