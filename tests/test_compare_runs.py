import importlib.util
from pathlib import Path

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "tools" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


def _run(width, frac, seed, r2, **extra):
    flat = {"model.width": width, "task.frac_ood": frac, "seed": seed, **extra}
    return {"flat": flat, "metrics": {"ood_r2": r2}}


def test_cells_are_the_difference_of_seed_means_matched_on_the_settings_of_a():
    a = [_run(w, f, s, r2, **{"model.init": "reference"}) for w, f, s, r2 in [
        (8, 0.5, 0, 0.30), (8, 0.5, 1, 0.40), (16, 0.5, 0, 0.70), (16, 0.5, 1, 0.80),
        (8, 0.9, 0, 0.10), (16, 0.9, 0, 0.50), (32, 0.9, 0, 0.60),
    ]]  # fmt: skip
    b = [_run(w, f, s, r2) for w, f, s, r2 in [  # run before model.init existed
        (8, 0.5, 0, 0.20), (8, 0.5, 2, 0.30), (16, 0.5, 0, 0.75),
        (8, 0.9, 0, 0.15), (16, 0.9, 0, 0.40),
    ]]  # fmt: skip
    table = compare_runs.difference(a, b, "ood_r2")
    assert table["columns"] == ["task.frac_ood \\ model.width", "8", "16", "32"]
    assert table["rows"] == [
        ["0.5", "+0.100", "+0.000", ""],  # 0.35 - 0.25; 0.75 - 0.75; nothing in A
        ["0.9", "-0.050", "+0.100", ""],  # 32 is missing in B
    ]
    assert compare_runs.markdown(table).splitlines()[2] == "| 0.5 | +0.100 | +0.000 |  |"
