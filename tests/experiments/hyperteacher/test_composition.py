import torch

from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.hyperteacher.composition import run
from bindbench.experiments.hyperteacher.setup import CompositionSpec, Setup, student_inputs


def test_student_inputs_broadcast_the_encoding_to_every_sample():
    encoding = torch.arange(6.0).reshape(2, 3)
    x = torch.randn(2, 4, 5)
    inputs = student_inputs(encoding, x)
    assert inputs.shape == (2, 4, 8)
    torch.testing.assert_close(inputs[1, 3, :3], encoding[1])
    torch.testing.assert_close(inputs[..., 3:], x)


def test_a_run_reports_id_and_ood_r2_along_the_way(tiny):
    spec = make_plan("composition", sets=tiny).jobs[0].spec
    result = run(spec, RunContext(torch.device("cpu")))
    assert [p["step"] for p in result.curve] == [10, 20, 30]
    assert {"id_r2", "ood_r2", "train_loss"} <= set(result.curve[-1])
    assert result.metrics["ood_r2"] == result.curve[-1]["ood_r2"]
    assert result.metrics["parameters"] == (6 + 16) * 8 + 8 + 8 * 16 + 16


def test_training_improves_the_in_distribution_fit():
    spec = CompositionSpec.model_validate(
        {
            "task": {"num_modules": 6, "num_hot": 2, "frac_ood": 0.3},
            "model": {"width": 64, "depth": 2},
            "train": {"steps": 300, "batch_size": 32, "eval_every": 100, "lr": 3e-3},
            "eval_tasks": 64,
        }
    )
    result = run(spec, RunContext(torch.device("cpu")))
    assert result.curve[-1]["id_r2"] > result.curve[0]["id_r2"] + 0.1
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]


def test_students_start_from_the_reference_init_unless_asked_for_torch_s(tiny):
    for init, zero_biases in (("reference", True), ("torch", False)):
        spec = make_plan("composition", sets=[*tiny, f"model.init={init}"]).jobs[0].spec
        biases = [layer.bias for layer in Setup(spec, torch.device("cpu")).model.hidden]
        assert all(torch.count_nonzero(b) == 0 for b in biases) == zero_biases
    assert make_plan("composition", sets=tiny).jobs[0].spec.model.init == "reference"
