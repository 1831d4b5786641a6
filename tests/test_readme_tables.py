import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "tools" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)

REPORT = {
    "claims": [{"experiment": "composition", "claim": "width", "verdict": "held", "detail": "0.1, 0.2"}],
    "experiments": [
        {
            "name": "composition",
            "columns": ["run", "ood_r2"],
            "rows": [["ab", 0.5]],
            "figures": [],
            "summary": {"title": "ood_r2", "columns": ["model.width", "8"], "rows": [["ood_r2", "0.500"]]},
        }
    ],
}


def test_marked_blocks_are_replaced_by_their_folders_sections_and_missing_folders_kept(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "report.json").write_text(json.dumps(REPORT))
    text = "\n".join(
        [
            "intro",
            "<!-- bindbench report runs/a --markdown: composition -->",
            "| stale | table |",
            "<!-- end -->",
            "<!-- bindbench report runs/a --markdown: claims -->",
            "<!-- end -->",
            "<!-- bindbench report runs/gone --markdown: composition -->",
            "| kept |",
            "<!-- end -->",
            "outro",
        ]
    )
    new, missing = readme_tables.refresh(text, tmp_path)
    assert missing == ["runs/gone"]
    assert "| stale | table |" not in new and "| kept |" in new
    assert "| model.width | 8 |\n|---|---|\n| ood_r2 | 0.500 |" in new
    assert "| composition | width | held | 0.1, 0.2 |" in new
    assert readme_tables.refresh(new, tmp_path)[0] == new  # a second pass changes nothing


def test_every_marker_of_the_readme_has_its_end():
    lines = (ROOT / "README.md").read_text().split("\n")
    starts = [i for i, line in enumerate(lines) if readme_tables.MARKER.match(line)]
    ends = [i for i, line in enumerate(lines) if line == readme_tables.END]
    assert starts and len(starts) == len(ends)
    assert all(s < e for s, e in zip(starts, ends)) and all(e < s for e, s in zip(ends, starts[1:]))
