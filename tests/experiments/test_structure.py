import json

import numpy as np
import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.structure import floor_difference, plots, run

TINY_STRUCTURE = [
    "task.symbols=8",
    "model.width=16",
    "model.depth=2",
    "train.steps=30",
    "train.eval_every=15",
    "mask.steps=10",
    "mask.seeds=2",
    "mask.penalties=[1e-5,1e-3]",
    "eval_items=100",
]


def tiny_spec(*sets: str):
    return make_plan("structure", sets=[*TINY_STRUCTURE, *sets]).jobs[0].spec


def stored(spec, result, run_id: str) -> dict:
    return json.loads(
        json.dumps(
            {
                "id": run_id,
                "status": "done",
                "spec": spec.model_dump(),
                "metrics": result.metrics,
                "extra": result.extra,
                "curve": result.curve,
            }
        )
    )


def test_floor_difference_clips_both_sides_at_chance():
    assert floor_difference(0.9, 0.3, 0.5) == pytest.approx(0.4)
    assert floor_difference(0.2, 0.4, 0.5) == 0.0
    assert floor_difference(0.5, 0.8, 0.25) == pytest.approx(-0.3)


@pytest.mark.parametrize("init", ["trained", "random"])
def test_a_run_scores_every_subroutine_and_mask_seed_and_is_deterministic(init):
    spec = tiny_spec(f"model.init={init}")
    first = run(spec, RunContext(torch.device("cpu")))
    second = run(spec, RunContext(torch.device("cpu")))
    assert first.metrics == second.metrics and first.extra == second.extra
    assert set(first.metrics) == {
        "base_accuracy",
        *(f"{k}_{n}" for k in ("sub", "abl", "random_abl") for n in (1, 2)),
    }
    assert [p["step"] for p in first.curve] == ([15, 30] if init == "trained" else [])
    for name in ("A", "B"):
        found = first.extra["subroutine"][name]
        assert found["penalty"] in (1e-5, 1e-3) and len(found["selection"]) == 2
        assert all(len(values) == 2 for values in found["seeds"].values())  # one per mask seed
        assert set(found["density"]) == {"hidden.0.weight", "hidden.1.weight"}  # the readout is not masked
        for key in ("sub", "abl", "random_abl"):  # the metric is the clipped difference of the accuracies
            own, other = found["seeds"][f"{key}_own"], found["seeds"][f"{key}_other"]
            expected = [floor_difference(a, b, 0.5) for a, b in zip(own, other)]
            assert found["seeds"][key] == pytest.approx(expected)
    assert first.metrics["sub_1"] == pytest.approx(sum(first.extra["subroutine"]["A"]["seeds"]["sub"]) / 2)
    assert set(first.extra["iou"]) == {"hidden.0.weight", "hidden.1.weight"}


def test_mask_include_chooses_the_masked_layers():
    result = run(tiny_spec("mask.include=[hidden.0,readout]"), RunContext(torch.device("cpu")))
    assert set(result.extra["iou"]) == {"hidden.0.weight", "readout.weight"}
    assert set(result.extra["subroutine"]["B"]["density"]) == {"hidden.0.weight", "readout.weight"}


def test_plots_draw_both_controls_and_the_per_layer_masks():
    specs = [tiny_spec(f"model.init={init}") for init in ("trained", "random")]
    runs = [stored(spec, run(spec, RunContext(torch.device("cpu"))), f"r{i}") for i, spec in enumerate(specs)]
    ablation, layers = plots(runs)
    assert [row[:2] for row in ablation.table["rows"]] == [
        ["and, random", "A"],
        ["and, random", "B"],
        ["and, trained", "A"],
        ["and, trained", "B"],
    ]
    assert set(layers.data) == {"and: kept A", "and: kept B", "and: iou"}
    seeds = ablation.data["and, trained: A"]  # the own / other columns are the means of the seeds
    own, other = np.mean(seeds["abl_own"]), np.mean(seeds["abl_other"])
    assert ablation.table["columns"][7] == "ablated own / other"
    assert ablation.table["rows"][2][7] == f"{own:.3f} / {other:.3f}"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["mask.include=[conv*]"], "mask.include pattern 'conv\\*' matches no layer"),
        (["task.symbols=2"], "task: the .* split has no item"),
        (["task.val=0.5", "task.test=0.5"], "task: val=0.5 \\+ test=0.5 must leave items"),
        (["mask.method=magnitude"], "mask.method"),
        (["mask.penalties=[]"], "mask.penalties"),
    ],
)
def test_bad_specs_are_one_line_errors(sets, message):
    with pytest.raises(SpecError, match=message) as err:
        make_plan("structure", sets=[*TINY_STRUCTURE, *sets])
    assert "\n" not in str(err.value)


def test_profiles_resolve_with_their_controls():
    quick = make_plan("structure").jobs
    assert sorted(job.spec.model.init for job in quick) == ["random", "trained"]
    full = make_plan("structure", profile="full").jobs
    assert len(full) == 12
    assert {(j.spec.task.name, j.spec.model.init) for j in full} == {
        (t, i) for t in ("and", "addmul") for i in ("trained", "random")
    }
    assert all(j.spec.mask.seeds >= 3 for j in full)
