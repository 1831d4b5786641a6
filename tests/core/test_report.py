import json
from html.parser import HTMLParser

from bindbench.api import run
from bindbench.core.report import build_report, format_cell


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
    assert parser.rows[2 * claims] == entry["columns"]
    assert parser.rows[2 * claims + 1 :] == [[format_cell(v) for v in row] for row in entry["rows"]]
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
        {"spec": {"grid": [1e-5, 1e-4], "width": w, "seed": 0}, "metrics": {"score": w / 10}} for w in (8, 16)
    ]
    (plot,) = sweep_plots(runs, "score", ["width", "grid"])
    assert list(plot.data) == ["grid=(1e-05, 0.0001)"]


def test_the_page_opens_with_every_claim_and_its_verdict_linked_to_its_section():
    from bindbench.core.report import render_html

    claim = {"claim": "c", "sentence": "A beats B", "anchor": "0.9 vs 0.6 (paper)", "verdict": "not held"}
    claim |= {"numbers": {"difference": -0.1}, "detail": "A 0.5 is not above B 0.6"}
    entry = {"name": "x", "title": "X", "counts": {"done": 1}, "columns": ["run"], "rows": [], "figures": []}
    entry["claims"] = [claim]
    report = {"title": "t", "created": "now", "meta": {}, "claims": [{"experiment": "x", **claim}], "experiments": [entry]}
    page = render_html(report, [(entry, [])])
    parser = _Tables()
    parser.feed(page)
    assert parser.rows[:2] == [
        ["experiment", "claim", "anchor", "verdict", "measured"],
        ["x", "A beats B", "0.9 vs 0.6 (paper)", "not held", "A 0.5 is not above B 0.6"],
    ]
    assert page.index("<h2>Claims</h2>") < page.index("<h2 id='x'>")
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
    claims, runs = _markdown_tables(capsys.readouterr().out)
    report = json.loads((folder / "report.json").read_text())
    assert claims[1:] == [[c["experiment"], c["claim"], c["verdict"], c["detail"]] for c in report["claims"]]
    (entry,) = report["experiments"]
    assert runs == [entry["columns"], *[[format_cell(v) for v in row] for row in entry["rows"]]]
