import pytest
import torch

from bindbench.core.worker import RunContext
from bindbench.experiments.objects.binding_images import BindingImagesSpec, check, plots, run

CPU = RunContext(torch.device("cpu"))
TINY = {"train": {"steps": 4, "batch_size": 32, "eval_every": 2}, "eval_items": 40}


@pytest.mark.parametrize("model", ["cnn", "slot_attention", "slot_autoencoder"])
def test_image_runs_train_every_model_end_to_end(model):
    image = {"model": model, "channels": 8, "dim": 16, "width": 16}
    spec = BindingImagesSpec.model_validate({**TINY, "image": image})
    result = run(spec, CPU)
    assert {"accuracy_seen", "accuracy_held_out", "swap_seen", "swap_held_out"} <= set(result.metrics)
    assert all(0 <= result.metrics[m] <= 1 for m in ("accuracy_seen", "swap_held_out"))
    stored = {"id": model, "status": "done", "spec": spec.model_dump(), "metrics": result.metrics}
    (plot,) = plots([stored])
    assert plot.table["rows"][0][:2] == [model, 1]


def test_image_runs_clip_the_gradient_at_one_by_default():
    assert BindingImagesSpec().train.clip_norm == 1.0


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"sets": {"colours": 9}}, "images have at most 8 colours"),
        ({"image": {"num_slots": 3}}, "num_slots=3 must be >= sets.max_objects"),
        ({"image": {"sizes": [0.6]}}, "image: sizes"),
        ({"sets": {"max_objects": 5}}, "sets: max_objects=5"),
        ({"image": {"model": "slot_autoencoder", "pixels": 5000}}, "image.pixels=5000"),
    ],
)
def test_impossible_specs_are_rejected_before_any_run(fields, message):
    with pytest.raises(ValueError, match=message):
        check(BindingImagesSpec.model_validate(fields))
