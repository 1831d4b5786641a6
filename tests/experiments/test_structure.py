import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments import structure
from bindbench.experiments.structure import floor_difference, modular_fraction, plots, run

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
        *(f"{k}_{n}" for k in ("base_accuracy", "sub", "abl", "random_sub", "random_abl") for n in (1, 2)),
    }
    assert [p["step"] for p in first.curve] == ([15, 30] if init == "trained" else [])
    for name in ("A", "B"):
        found = first.extra["subroutine"][name]
        assert found["penalty"] in (1e-5, 1e-3) and len(found["selection"]) == 2
        assert all(len(values) == 2 for values in found["seeds"].values())  # one per mask seed
        assert set(found["density"]) == {"hidden.0.weight", "hidden.1.weight"}  # the readout is not masked
        for key in ("sub", "abl", "random_sub", "random_abl"):  # the clipped difference of the accuracies
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
    ablation, modularity, layers = plots(runs)
    assert [row[:2] for row in ablation.table["rows"]] == [
        ["and, mlp, from scratch", "A"],
        ["and, mlp, from scratch", "B"],
        ["and, mlp, untrained", "A"],
        ["and, mlp, untrained", "B"],
    ]
    assert [row[:2] for row in modularity.table["rows"]] == [row[:2] for row in ablation.table["rows"]]
    longer = tiny_spec("train.steps=45")  # a condition trained for several step counts is split by them
    runs.append(stored(longer, run(longer, RunContext(torch.device("cpu"))), "r2"))
    labels = {row[0] for row in plots(runs)[1].table["rows"]}
    assert labels == {
        "and, mlp, from scratch, steps=30",
        "and, mlp, from scratch, steps=45",
        "and, mlp, untrained",
    }
    label = "and, mlp, from scratch"
    assert set(layers.data) == {f"{label}: kept A", f"{label}: kept B", f"{label}: iou"}
    seeds = ablation.data[f"{label}: A"]  # the own / other columns are the means of the seeds
    own, other = np.mean(seeds["abl_own"]), np.mean(seeds["abl_other"])
    assert ablation.table["columns"][7] == "ablated own / other"
    assert ablation.table["rows"][0][7] == f"{own:.3f} / {other:.3f}"


def built_run(sub: dict, abl: dict, random_sub=None, random_abl=None) -> dict:
    """A stored run with the given per-mask-seed Sub and Abl per subroutine."""
    seeds = {
        name: {
            "sub": sub[name],
            "abl": abl[name],
            "random_sub": (random_sub or sub)[name],
            "random_abl": (random_abl or abl)[name],
        }
        for name in sub
    }
    return {"extra": {"subroutines": list(sub), "subroutine": {n: {"seeds": s} for n, s in seeds.items()}}}


def test_modular_fraction_counts_pairs_passing_both_thresholds():
    assert (structure.SUB_MIN, structure.ABL_MAX) == (0.2, -0.1)
    one = built_run(
        sub={"A": [0.49, 0.49, 0.19], "B": [0.3, 0.2, 0.5]},
        abl={"A": [-0.3, -0.05, -0.4], "B": [-0.1, -0.2, 0.0]},
        random_sub={"A": [0.0, 0.0, 0.0], "B": [0.25, 0.0, 0.0]},
        random_abl={"A": [0.0, 0.0, 0.0], "B": [-0.2, 0.0, 0.0]},
    )
    # A: only the first pair (the second's ablation is too weak, the third's subnetwork);
    # B: the first two (the thresholds are inclusive), not the third
    assert modular_fraction([one], "A") == pytest.approx(1 / 3)
    assert modular_fraction([one], "B") == pytest.approx(2 / 3)
    assert modular_fraction([one]) == pytest.approx(3 / 6)
    assert modular_fraction([one], "B", control=True) == pytest.approx(1 / 3)
    two = built_run(sub={"A": [0.5], "B": [0.5]}, abl={"A": [-0.5], "B": [-0.5]})
    assert modular_fraction([one, two], "A") == pytest.approx(2 / 4)  # pooled over pairs, not runs
    assert np.isnan(modular_fraction([]))


def recording_train(monkeypatch) -> list[dict]:
    """Records every training of a run: its settings, its batches and its starting weights."""
    calls, real = [], structure.train

    def record(model, spec, sample_batch, *args, **kwargs):
        call = {"spec": spec, "start": {k: v.clone() for k, v in model.state_dict().items()}, "batches": []}
        calls.append(call)

        def sample(step):
            batch = sample_batch(step)
            call["batches"].append(batch)
            return batch

        result = real(model, spec, sample, *args, **kwargs)
        call["end"] = {k: v.clone() for k, v in model.state_dict().items()}
        return result

    monkeypatch.setattr(structure, "train", record)
    return calls


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_pretraining_changes_only_the_initialization(monkeypatch, arch):
    calls = recording_train(monkeypatch)
    results = {}
    for objective in ("none", "self_supervised", "related_task"):
        sets = [f"model.arch={arch}", "model.d_model=8", "model.blocks=1", f"pretrain.objective={objective}"]
        results[objective] = run(tiny_spec(*sets, "pretrain.steps=15"), RunContext(torch.device("cpu")))
    scratch, pretrained_ssl, ssl, pretrained_related, related = calls
    assert len(calls) == 5 and "pretrain_accuracy" not in results["none"].metrics
    for pretraining, fine_tuning in ((pretrained_ssl, ssl), (pretrained_related, related)):
        assert pretraining["spec"].steps == 15 and len(pretraining["batches"]) == 15
        # the same fine-tuning: settings, every batch, and the readout's initial weights
        assert fine_tuning["spec"] == scratch["spec"] and len(fine_tuning["batches"]) == 30
        for (x, y), (x0, y0) in zip(fine_tuning["batches"], scratch["batches"]):
            assert torch.equal(x, x0) and torch.equal(y, y0)
        for name, start in fine_tuning["start"].items():
            if name.startswith("readout."):
                assert torch.equal(start, scratch["start"][name])
            else:  # the body starts where pretraining left it, which started where scratch does
                assert torch.equal(start, pretraining["end"][name])
                assert torch.equal(pretraining["start"][name], scratch["start"][name])
        assert any(not torch.equal(fine_tuning["start"][n], scratch["start"][n]) for n in scratch["start"])
    assert pretrained_ssl["start"]["readout.weight"].shape[0] == 8  # one output per symbol it may have hidden
    assert pretrained_related["start"]["readout.weight"].shape[0] == 2  # (a1 == b1) and (a2 == b2)


def test_the_untrained_control_ignores_pretraining_and_a_transformer_masks_its_blocks():
    assert tiny_spec("model.init=random", "pretrain.objective=related_task") == tiny_spec("model.init=random")
    spec = tiny_spec("model.arch=transformer")
    assert spec.mask.include == ["blocks.*"]
    assert tiny_spec("model.arch=transformer", "mask.include=[blocks.0.*]").mask.include == ["blocks.0.*"]
    # keys added for pretraining and the Transformer leave the run ids of the MLP from scratch as they were
    assert set(tiny_spec().model_dump()) == {"seed", "task", "model", "train", "mask", "eval_items"}
    assert set(tiny_spec().model_dump()["model"]) == {"width", "depth", "init"}


@pytest.mark.parametrize(
    "sets, message",
    [
        (["mask.include=[conv*]"], "mask.include pattern 'conv\\*' matches no layer"),
        (["task.symbols=2"], "task: the .* split has no item"),
        (["task.val=0.5", "task.test=0.5"], "task: val=0.5 \\+ test=0.5 must leave items"),
        (["mask.method=magnitude"], "mask.method"),
        (["mask.penalties=[]"], "mask.penalties"),
        (["pretrain.objective=denoise"], "pretrain.objective"),
        (
            ["model.arch=transformer", "model.d_model=10", "model.heads=4"],
            "model.d_model=10 must be a multiple",
        ),
    ],
)
def test_bad_specs_are_one_line_errors(sets, message):
    with pytest.raises(SpecError, match=message) as err:
        make_plan("structure", sets=[*TINY_STRUCTURE, *sets])
    assert "\n" not in str(err.value)


def test_profiles_resolve_with_their_controls():
    def condition(job):
        spec = job.spec
        return spec.task.name, spec.model.arch, spec.model.init, spec.pretrain.objective, spec.mask.method

    def steps(job):
        return job.spec.train.steps, job.spec.mask.steps, job.spec.train.schedule

    quick = make_plan("structure").jobs
    assert sorted(condition(j)[2:4] for j in quick) == [
        ("random", "none"),
        ("trained", "none"),
        ("trained", "related_task"),
        ("trained", "self_supervised"),
    ]
    full = make_plan("structure", profile="full").jobs
    seeds = defaultdict(set)
    for job in full:
        seeds[condition(job), steps(job)].add(job.spec.seed)
    assert all(found == {0, 1, 2} for found in seeds.values()) and len(full) == 3 * len(seeds)
    scratch = ("and", "mlp", "trained", "none", "continuous")
    # from scratch: 6k steps, pretraining's 3k + 6k, and 3x
    assert {n for c, (n, _, _) in seeds if c == scratch} == {6000, 9000, 18000}
    assert {m for c, (_, m, _) in seeds if c[-1] == "gumbel" and c[0] == "and"} == {1000, 5000}
    assert (scratch, (9000, 1000, "cosine")) in seeds  # at the pretrained models' accuracy
    seeds = {c for c, n in seeds}
    pretraining = {(a, o) for t, a, i, o, m in seeds if t == "and" and i == "trained" and m == "continuous"}
    assert pretraining == {
        (a, o) for a in ("mlp", "transformer") for o in ("none", "self_supervised", "related_task")
    }
    assert {("and", a, "random", "none", "continuous") for a in ("mlp", "transformer")} <= set(seeds)
    for method in ("continuous", "gumbel"):  # Gumbel masks beside continuous sparsification
        assert {("and", "mlp", i, "none", method) for i in ("trained", "random")} <= set(seeds)
        assert ("addmul", "mlp", "trained", "none", method) in seeds
    assert all(j.spec.mask.seeds >= 3 for j in full)


class OneHidden(torch.nn.Module):
    """A user's model: one hidden layer and an output layer of the given name."""

    def __init__(self, input_dim: int, output_dim: int, head: str = "readout"):
        super().__init__()
        self.hidden, self.head = torch.nn.Linear(input_dim, 8), head
        setattr(self, head, torch.nn.Linear(8, output_dim))

    def forward(self, x):
        return getattr(self, self.head)(torch.relu(self.hidden(x)))


def unnamed_head(input_dim: int, output_dim: int) -> OneHidden:
    return OneHidden(input_dim, output_dim, head="out")


def test_a_users_model_pretrains_when_its_output_layer_is_named_readout():
    sets = [f"model.factory={__name__}:OneHidden", "mask.include=[hidden]", "pretrain.objective=related_task"]
    result = run(tiny_spec(*sets), RunContext(torch.device("cpu")))
    assert 0 <= result.metrics["pretrain_accuracy"] <= 1 and set(result.extra["iou"]) == {"hidden.weight"}
    with pytest.raises(SpecError, match="output layer named `readout`") as err:
        tiny_spec(
            f"model.factory={__name__}:unnamed_head",
            "mask.include=[hidden]",
            "pretrain.objective=self_supervised",
        )
    assert "\n" not in str(err.value)
