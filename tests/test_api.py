"""The Python API at the top level: the library's own functions, their signatures and docs."""

import inspect
import os
import re
import subprocess
import sys

import pytest

import bindbench
from bindbench.core import masks, probes


@pytest.mark.parametrize(
    "name", ["probe", "find_subnetwork", "ablate", "apply_mask", "density", "mask_iou", "random_mask"]
)
def test_the_top_level_functions_are_the_library_functions_with_their_signatures(name):
    function = getattr(bindbench, name)
    assert function is getattr(probes if name == "probe" else masks, name)
    assert "args" not in inspect.signature(function).parameters and len(function.__doc__) > 20


def test_help_on_probe_and_run_says_what_they_return_with_an_example():
    for function in (bindbench.probe, bindbench.run):
        assert ">>>" in function.__doc__
    assert "{layer: {split: score}}" in bindbench.probe.__doc__
    assert {"sets", "profile", "out"} <= set(inspect.signature(bindbench.run).parameters)


def test_sets_are_one_string_a_list_or_a_mapping_with_nested_keys():
    def widths(sets):
        return [
            (job.spec.model.width, job.spec.seed) for job in bindbench.plan("composition", sets=sets).jobs
        ]

    assert widths("model.width=16") == widths(["model.width=16"]) == widths({"model.width": 16}) == [(16, 0)]
    nested = widths({"model": {"width": [16, 32]}, "seed": 3})
    assert nested == widths(["model.width=[16, 32]", "seed=3"]) == [(16, 3), (32, 3)]
    with pytest.raises(bindbench.core.errors.SpecError, match="model.widht"):
        bindbench.plan("composition", sets={"model.widht": 3})


def test_import_bindbench_imports_no_torch_until_a_function_is_used():
    script = "import sys, bindbench; print('torch' in sys.modules, 'probe' in dir(bindbench))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_on_eval_fires_for_every_member_of_an_ensemble_with_its_stored_curve(tmp_path, tiny):
    seen: dict[str, list] = {}

    def on_eval(job, step, point):
        seen.setdefault(job.run_id, []).append(point)

    folder = bindbench.run("composition", sets=[*tiny, "seed=[0,1,2]"], out=tmp_path / "r", on_eval=on_eval)
    with bindbench.Store(folder, create=False) as store:
        runs = store.runs()
        assert {r["extra"].get("ensemble_size") for r in runs} == {3}  # trained as one ensemble
        for r in runs:
            assert [p["step"] for p in seen[r["id"]]] == [p["step"] for p in store.curve(r["id"])]
            assert seen[r["id"]][-1]["ood_r2"] == store.curve(r["id"])[-1]["ood_r2"]


def test_the_examples_in_docs_api_md_run_as_written(tmp_path, monkeypatch):
    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "api.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "docs/api.md", "exec"), {"__name__": "docs_api"})


def test_run_from_python_shows_progress_unless_quiet(tmp_path, tiny, capsys):
    bindbench.run("composition", sets=[*tiny, "seed=[0,1]"], out=tmp_path / "a")
    out = capsys.readouterr().out
    assert "composition (quick): 2 runs to do" in out and out.count("    done composition ") == 2
    bindbench.run("composition", sets=[*tiny, "seed=[2,3]"], out=tmp_path / "b", quiet=True)
    assert capsys.readouterr().out == ""
