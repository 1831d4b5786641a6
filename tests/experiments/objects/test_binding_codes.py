import json

import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.objects.binding_codes import BindingCodesSpec, check, plots, run

CPU = RunContext(torch.device("cpu"))
TINY_TRAIN = {"steps": 40, "batch_size": 32, "eval_every": 20}


def spec(**fields) -> BindingCodesSpec:
    return BindingCodesSpec.model_validate({"train": TINY_TRAIN, "eval_items": 300, **fields})


def stored(spec, result, number: int) -> dict:
    record = {"id": f"run{number:04d}", "status": "done", "spec": spec.model_dump()}
    return json.loads(json.dumps({**record, "metrics": result.metrics, "extra": result.extra}))


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


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"code": {"kind": "bag", "readout": "unbind"}}, "needs a tensor-product code"),
        ({"code": {"kind": "tpr_orthonormal", "role_dim": 2}}, "role_dim=2 must be >= sets.shapes=4"),
        ({"sets": {"max_objects": 5}}, "sets: max_objects=5"),
    ],
)
def test_impossible_specs_are_rejected_before_any_run(fields, message):
    with pytest.raises(ValueError, match=message):
        check(BindingCodesSpec.model_validate(fields))


def test_the_cli_rejects_an_impossible_spec_with_one_line(tmp_path, capsys):
    from bindbench.cli import main

    out = tmp_path / "out"
    code = main(["run", "binding_codes", "--out", str(out), "--set", "code.readout=unbind"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and "code.readout='unbind' needs a tensor-product code" in error
    assert not out.exists()


def test_representation_is_a_suite_of_the_three_and_the_default_suite_runs_the_codes():
    quick = make_plan("binding_codes").jobs
    assert all(job.spec.train.steps <= 1000 for job in quick)
    representation = ("binding_codes", "binding_images", "slot_probe")
    in_default = [j for j in make_plan().jobs if j.experiment.name in representation]
    assert {j.run_id for j in in_default} == {j.run_id for j in quick}
    suite = make_plan("representation", profile="full").jobs
    assert {j.experiment.name for j in suite} == {"binding_codes", "binding_images", "slot_probe"}
    assert sorted(j.spec.seed for j in suite if j.experiment.name == "slot_probe") == [0, 1, 2]
    with pytest.raises(SpecError):
        make_plan("binding_codes", sets=["code.kind=nope"])


def test_a_code_run_id_does_not_depend_on_the_image_or_autoencoder_settings():
    assert set(BindingCodesSpec.model_fields) == {"seed", "sets", "code", "model", "train", "eval_items"}
    # the slot for a user's readout is left out of a reference run's spec, so its id is unchanged
    assert "model" not in BindingCodesSpec().model_dump()


def test_plots_show_codes_and_crosstalk():
    runs = []
    sweep = [
        {
            "code": {"kind": "tpr_random", "readout": "unbind", "role_dim": d},
            "sets": {"colours": 16, "shapes": 16, "held_out": 0.0, "min_objects": n, "max_objects": n},
        }
        for d in (4, 16)
        for n in (2, 8)
    ]
    main = [
        {"code": {"kind": "bag", "readout": "linear"}},
        {"code": {"kind": "tpr_orthonormal", "readout": "unbind", "role_dim": 4}},
    ]
    for number, fields in enumerate(main + sweep):
        s = spec(**fields)
        runs.append(stored(s, run(s, CPU), number))
    made = plots(runs)
    assert len(made) == 2 and "Cross-talk" in made[1].title
    crosstalk = made[1]
    assert crosstalk.data["d=16"][2][0] > crosstalk.data["d=4"][8][0]
    # a column per set size, a row per dimension, every header named
    assert crosstalk.table["columns"] == ["roles \\ objects", "2", "8"]
    assert crosstalk.table["rows"][1] == ["d = 16", *(f"{crosstalk.data['d=16'][n][0]:.3f}" for n in (2, 8))]
    codes = made[0].table["rows"]
    assert [row[0] for row in codes] == ["bag, linear", "tpr_orthonormal d=4, unbind"]
    assert codes[0][4].startswith("0.500")  # the bag's swap accuracy
