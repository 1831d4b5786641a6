import pytest
import torch

from bindbench.core.worker import RunContext
from bindbench.experiments.objects.slot_probe import SlotProbeSpec, check, plots, run

CPU = RunContext(torch.device("cpu"))
TINY = {
    "model": {"channels": 8, "slot_dim": 16, "hidden": 16, "decoder_hidden": 16, "decoder_layers": 1},
    "train": {"steps": 3, "eval_every": 3, "warmup_steps": 1},
    "eval_scenes": 16,
    "probe_scenes": 60,
    "eval_items": 40,
}


def test_the_probe_run_scores_each_attribute_on_seen_and_held_out_objects():
    spec = SlotProbeSpec.model_validate(TINY)
    result = run(spec, CPU)
    for attribute in ("colour", "shape"):
        for split in ("seen", "held_out"):
            assert 0 <= result.metrics[f"probe_{attribute}_{split}"] <= 1
    assert result.metrics["probe_objects"] > 60  # 2-3 objects per scene, most of them visible
    assert "slots_fg_ari" in result.metrics
    (plot,) = plots([{"id": "p", "status": "done", "spec": spec.model_dump(), "metrics": result.metrics}])
    assert plot.table["rows"][0][1] == 1


def test_the_probe_scenes_hold_pairs_out_by_default_and_must():
    assert SlotProbeSpec().data.held_out == 0.25
    with pytest.raises(ValueError, match="data.held_out must be > 0"):
        check(SlotProbeSpec.model_validate({"data": {"held_out": 0.0}}))
