import json

import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.executor import RunContext
from bindbench.core.plan import make_plan
from bindbench.experiments.representation import RepresentationSpec, check, plots, run

CPU = RunContext(torch.device("cpu"))
TINY_TRAIN = {"steps": 40, "batch_size": 32, "eval_every": 20}


def spec(**fields) -> RepresentationSpec:
    return RepresentationSpec.model_validate({"train": TINY_TRAIN, "eval_items": 300, **fields})


def stored(spec: RepresentationSpec, result, number: int) -> dict:
    return json.loads(
        json.dumps(
            {
                "id": f"run{number:04d}",
                "status": "done",
                "spec": spec.model_dump(),
                "metrics": result.metrics,
                "extra": result.extra,
                "curve": result.curve,
            }
        )
    )


@pytest.mark.parametrize("readout", ["linear", "mlp"])
def test_the_bag_of_features_is_at_one_half_on_swaps_exactly_whatever_the_readout(readout):
    result = run(spec(code={"kind": "bag", "readout": readout}), CPU)
    assert result.metrics["swap_seen"] == 0.5
    assert result.metrics["swap_held_out"] == 0.5
    assert [p["step"] for p in result.curve] == [20, 40]


def test_orthonormal_tensor_products_unbind_every_query_seen_and_held_out():
    result = run(spec(code={"kind": "tpr_orthonormal", "readout": "unbind", "role_dim": 4}), CPU)
    for metric in ("accuracy_seen", "accuracy_held_out", "swap_seen", "swap_held_out"):
        assert result.metrics[metric] == 1.0


def test_code_runs_are_deterministic():
    first = run(spec(code={"kind": "slot", "readout": "linear"}), CPU)
    second = run(spec(code={"kind": "slot", "readout": "linear"}), CPU)
    first.metrics.pop("seconds_training"), second.metrics.pop("seconds_training")
    assert first.metrics == second.metrics


def test_image_runs_train_both_models_end_to_end():
    for model in ("cnn", "slot_attention", "slot_autoencoder"):
        settings = {"image": {"model": model, "channels": 8, "dim": 16, "width": 16}, "eval_items": 40}
        result = run(spec(part="images", train={**TINY_TRAIN, "steps": 4, "eval_every": 2}, **settings), CPU)
        assert {"accuracy_seen", "accuracy_held_out", "swap_seen", "swap_held_out"} <= set(result.metrics)
        assert all(0 <= result.metrics[m] <= 1 for m in ("accuracy_seen", "swap_held_out"))


def test_the_probe_run_scores_each_attribute_on_seen_and_held_out_objects():
    slots = {
        "model": {"channels": 8, "slot_dim": 16, "hidden": 16, "decoder_hidden": 16, "decoder_layers": 1},
        "data": {"held_out": 0.25},
        "train": {"steps": 3, "eval_every": 3, "warmup_steps": 1},
        "eval_scenes": 16,
        "pictures": 0,
    }
    result = run(spec(part="probe", slots=slots, probe_scenes=60, eval_items=40), CPU)
    for attribute in ("colour", "shape"):
        for split in ("seen", "held_out"):
            assert 0 <= result.metrics[f"probe_{attribute}_{split}"] <= 1
    assert result.metrics["probe_objects"] > 60  # 2-3 objects per scene, most of them visible
    assert "slots_fg_ari" in result.metrics


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"code": {"kind": "bag", "readout": "unbind"}}, "needs a tensor-product code"),
        ({"code": {"kind": "tpr_orthonormal", "role_dim": 2}}, "role_dim=2 must be >= sets.shapes=4"),
        ({"sets": {"max_objects": 5}}, "sets: max_objects=5"),
        ({"part": "images", "sets": {"colours": 9}}, "images have at most 8 colours"),
        ({"part": "images", "image": {"num_slots": 3}}, "num_slots=3 must be >= sets.max_objects"),
        ({"part": "images", "image": {"sizes": [0.6]}}, "image: sizes"),
        ({"part": "probe", "slots": {"data": {"held_out": 0.0}}}, "slots.data.held_out must be > 0"),
    ],
)
def test_impossible_specs_are_rejected_before_any_run(fields, message):
    with pytest.raises(ValueError, match=message):
        check(RepresentationSpec.model_validate(fields))


def test_the_cli_rejects_an_impossible_spec_with_one_line(tmp_path, capsys):
    from bindbench.cli import main

    out = tmp_path / "out"
    code = main(["run", "representation", "--out", str(out), "--set", "code.readout=unbind"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and "code.readout='unbind' needs a tensor-product code" in error
    assert not out.exists()


def test_profiles_plan_and_the_quick_profile_is_cheap():
    quick = make_plan("representation").jobs
    assert {job.spec.part for job in quick} == {"codes"}  # images and the probe train for minutes
    assert all(job.spec.train.steps <= 1000 for job in quick)
    in_suite = [j for j in make_plan().jobs if j.experiment.name == "representation"]  # the default suite
    assert {j.run_id for j in in_suite} == {j.run_id for j in quick}
    full = make_plan("representation", profile="full").jobs
    assert {job.spec.part for job in full} == {"codes", "images", "probe"}
    # the probe's seeds are its autoencoder's (the run's own seed draws nothing there)
    assert sorted(job.spec.slots.seed for job in full if job.spec.part == "probe") == [0, 1, 2]
    with pytest.raises(SpecError):
        make_plan("representation", sets=["code.kind=nope"])


def test_plots_show_codes_crosstalk_images_and_probe():
    runs = []
    for number, fields in enumerate(
        [
            {"code": {"kind": "bag", "readout": "linear"}},
            {"code": {"kind": "tpr_orthonormal", "readout": "unbind", "role_dim": 4}},
            *(
                {
                    "code": {"kind": "tpr_random", "readout": "unbind", "role_dim": d},
                    "sets": {
                        "colours": 16,
                        "shapes": 16,
                        "held_out": 0.0,
                        "min_objects": n,
                        "max_objects": n,
                    },
                }
                for d in (4, 16)
                for n in (2, 8)
            ),
        ]
    ):
        s = spec(**fields)
        runs.append(stored(s, run(s, CPU), number))
    runs.append(
        {
            "id": "probe",
            "status": "done",
            "spec": spec(part="probe").model_dump(),
            "metrics": {
                "probe_colour_seen": 1.0,
                "probe_colour_held_out": 0.9,
                "probe_shape_seen": 0.8,
                "probe_shape_held_out": 0.5,
                "slots_fg_ari": 0.6,
            },
        }
    )
    made = plots(runs)
    titles = [p.title for p in made]
    assert len(made) == 3 and any("Cross-talk" in t for t in titles) and any("probe" in t for t in titles)
    crosstalk = next(p for p in made if "Cross-talk" in p.title)
    assert crosstalk.data["d=16"][2][0] > crosstalk.data["d=4"][8][0]
    codes = made[0].table["rows"]
    assert [row[0] for row in codes] == ["bag, linear", "tpr_orthonormal d=4, unbind"]
    assert codes[0][4].startswith("0.500")  # the bag's swap accuracy
