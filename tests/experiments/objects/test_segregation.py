import json

import numpy as np
import pytest
import torch

from bindbench.cli import main
from bindbench.core.config import SpecError
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.objects.segregation import picture_plots, pictures, plots, run, scores_plot
from bindbench.experiments.objects.setup import (
    evaluation_set,
    make_model,
    make_scenes,
    reconstruction_loss,
    score,
)
from bindbench.models.slot_attention import AutoencoderOutput
from bindbench.tasks.scenes import load_scenes

TINY_SEGREGATION = [
    "data.resolution=16",
    "model.channels=8",
    "model.slot_dim=16",
    "model.hidden=16",
    "train.steps=4",
    "train.batch_size=4",
    "train.warmup_steps=1",
    "train.eval_every=2",
    "eval_scenes=8",
    "pictures=2",
]
METRICS = {"fg_ari", "ari", "mbo", "miou", "mse"}


def tiny_spec(*sets: str):
    return make_plan("segregation", sets=[*TINY_SEGREGATION, *sets]).jobs[0].spec


class Oracle(torch.nn.Module):
    """Segments like the truth: its masks are the one-hot true labels, its reconstruction the image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_masks: int):
        super().__init__()
        self.images, self.labels, self.num_masks = images, labels, num_masks

    def forward(self, images, noise=None, generator=None):
        rows = (images.flatten(1)[:, None] == self.images.flatten(1)[None]).all(-1).float().argmax(1)
        labels = self.labels[rows]  # (b, h, w)
        masks = torch.nn.functional.one_hot(labels, self.num_masks).permute(0, 3, 1, 2).float()
        slot_rgb = masks.unsqueeze(2) * images.unsqueeze(1)  # (b, k, c, h, w)
        return AutoencoderOutput(images, masks, slot_rgb, torch.zeros(len(images), self.num_masks, 1))


@pytest.mark.parametrize("kind", ["slot_attention", "slot_mlp"])
def test_a_run_reports_every_metric_at_each_evaluation_and_is_deterministic(kind):
    spec = tiny_spec(f"model.kind={kind}")
    first = run(spec, RunContext(torch.device("cpu")))
    second = run(spec, RunContext(torch.device("cpu")))
    assert [p["step"] for p in first.curve] == [2, 4]
    assert all(METRICS <= set(p) for p in first.curve)
    assert first.metrics == {**second.metrics, "seconds_training": first.metrics["seconds_training"]}

    def timeless(curve):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in curve]

    assert timeless(first.curve) == timeless(second.curve)
    assert (
        -1.0 <= first.metrics["fg_ari"] <= 1.0 and 0.0 <= first.metrics["miou"] <= first.metrics["mbo"] <= 1.0
    )
    kept = json.loads(json.dumps(first.extra))["pictures"]
    assert np.asarray(kept["images"]).shape == (2, 16, 16, 3)
    assert np.asarray(kept["slots"]).shape == (2, 4, 16, 16, 3)
    assert np.asarray(kept["segmentations"]).shape == (2, 16, 16)


def test_a_loss_on_a_pixel_subset_is_the_same_pixels_of_the_full_loss():
    spec = tiny_spec("train.pixels=40")
    torch.manual_seed(0)
    model = make_model(spec.model, spec.data.resolution)
    images = evaluation_set(spec).images[:3]
    noise, pixels = torch.randn(3, 4, 16), torch.randperm(256)[:40]
    errors = (model(images, noise=noise).reconstruction - images).pow(2).flatten(2)  # (s, c, h * w)
    loss = reconstruction_loss(model, (images, noise, pixels))
    torch.testing.assert_close(loss, errors[:, :, pixels].mean())
    first, second = (run(spec, RunContext(torch.device("cpu"))) for _ in range(2))
    assert [p["train_loss"] for p in first.curve] == [p["train_loss"] for p in second.curve]


def test_a_perfect_segmentation_scores_one_and_a_single_slot_does_not():
    spec = tiny_spec("eval_scenes=100")
    ev = evaluation_set(spec)
    perfect = score(Oracle(ev.images, ev.labels, ev.num_objects + 1), ev)
    assert perfect == {"fg_ari": 1.0, "ari": 1.0, "mbo": 1.0, "miou": 1.0, "mse": 0.0}
    lumped = score(Oracle(ev.images, torch.zeros_like(ev.labels), 1), ev)
    assert lumped["ari"] == pytest.approx(0.0) and lumped["mbo"] < 1.0
    kept = pictures(Oracle(ev.images, ev.labels, ev.num_objects + 1), ev, 3)
    assert kept["fg_ari"] == [1.0, 1.0, 1.0]
    assert kept["segmentations"] == ev.labels[:3].tolist()


def test_the_evaluation_scenes_are_the_same_for_every_seed_and_model():
    a = evaluation_set(tiny_spec("seed=0", "model.kind=slot_attention"))
    b = evaluation_set(tiny_spec("seed=3", "model.kind=slot_mlp"))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["model.kind=iodine"], "model.kind"),
        (["data.min_objects=3", "data.max_objects=2"], "data.max_objects=2 must be >= data.min_objects=3"),
        (["model.num_slots=3"], r"model.num_slots=3 must be >= data.max_objects \+ 1 = 4"),
        (["data.dataset=tetrominoes"], "data.resolution=16: tetrominoes are 7 x 7 blocks"),
        (["data.dataset=tetrominoes", "data.resolution=21"], "data.min_objects=2 must equal"),
        (["data.background=red"], "data.background"),
        (
            ["data.dataset=tetrominoes", "data.resolution=21", "data.min_objects=4", "data.max_objects=4"],
            "data.max_objects=4: at most 3 tetrominoes fit",
        ),
        (["pictures=9"], "pictures=9 must be <= eval_scenes=8"),
        (["data.sizes=[0.1]"], r"data: sizes=\(0.1,\) at resolution=16 give objects under 4 pixels"),
        (
            ["data.held_out=0.3", "data.dataset=tetrominoes", "data.resolution=21", "data.min_objects=3"],
            "data.held_out=0.3: tetrominoes",
        ),
        (["train.pixels=257"], r"train.pixels=257 must be <= data.resolution\^2 = 256"),
        (["train.pixels=8", "model.decoder=conv"], "only model.decoder='mlp' decodes a subset"),
        (
            ["data.max_objects=9", "model.num_slots=10"],
            "data: distinct_colours with max_objects=9 needs 9 colours, but colours has 8",
        ),
    ],
)
def test_bad_specs_are_one_line_errors(sets, message):
    with pytest.raises(SpecError, match=message) as err:
        make_plan("segregation", sets=[*TINY_SEGREGATION, *sets])
    assert "\n" not in str(err.value)


def test_tetrominoes_and_every_profile_resolve():
    spec = tiny_spec(
        "data.dataset=tetrominoes", "data.resolution=21", "data.min_objects=3", "data.max_objects=3"
    )
    assert evaluation_set(spec).labels.max() == 3
    assert len(make_plan("segregation").jobs) == 2
    in_suite = [j.spec for j in make_plan().jobs if j.experiment.name == "segregation"]  # the default suite
    assert sorted(spec.model.kind for spec in in_suite) == ["slot_attention", "slot_mlp"]
    assert all(spec.data == in_suite[0].data and spec.seed == in_suite[0].seed for spec in in_suite)
    assert len(make_plan("segregation", profile="full").jobs) == 6
    assert len(make_plan("segregation", profile="paper").jobs) == 10


def _stored(kind: str, seed: int, fg: float, status: str = "done") -> dict:
    rng = np.random.default_rng(seed)
    kept = {
        "images": rng.integers(0, 256, (2, 16, 16, 3)).tolist(),
        "reconstructions": rng.integers(0, 256, (2, 16, 16, 3)).tolist(),
        "labels": rng.integers(0, 4, (2, 16, 16)).tolist(),
        "segmentations": rng.integers(0, 4, (2, 16, 16)).tolist(),
        "slots": rng.integers(0, 256, (2, 4, 16, 16, 3)).tolist(),
        "fg_ari": [fg, None],
    }
    metrics = {"fg_ari": fg, "ari": 0.5, "mbo": 0.6, "miou": 0.5, "mse": 0.01} if status == "done" else {}
    return {
        "id": f"{kind}{seed}".ljust(16, "0"),
        "status": status,
        "spec": {"seed": seed, "model": {"kind": kind}, "data": {"dataset": "scenes"}},
        "metrics": metrics,
        "extra": {"pictures": kept} if status == "done" else {},
    }


def test_plots_show_every_seed_and_a_summary_per_model():
    runs = [
        _stored("slot_attention", 0, 0.9),
        _stored("slot_attention", 1, 0.3),  # a failed seed is shown, not dropped
        _stored("slot_attention", 2, 0.0, status="diverged"),
        _stored("slot_mlp", 1, 0.5),
        _stored("slot_mlp", 0, 0.4),
    ]
    summary = scores_plot(runs)
    rows = {r["model"]: r for r in summary.data["rows"]}
    assert rows["slot_attention"]["fg_ari_mean"] == pytest.approx(0.6)
    assert rows["slot_attention"]["fg_ari_std"] == pytest.approx(0.3)
    assert rows["slot_attention"]["fg_ari_per_seed"] == [0.9, 0.3]
    assert rows["slot_attention"]["not_finished"] == 1
    assert rows["slot_mlp"]["seeds"] == [0, 1] and rows["slot_mlp"]["reference"] == 0.603
    assert [row[:2] for row in summary.table["rows"]] == [
        ["slot_attention", "scenes"],
        ["slot_mlp", "scenes"],
    ]
    shown = picture_plots(runs)
    assert [p.data["seed"] for p in shown] == [0, 0]  # each model's lowest seed
    assert len(plots(runs)) == 3
    assert plots([_stored("slot_mlp", 0, 0.0, status="failed")]) == []


def test_data_scenes_writes_pngs_and_labels_and_rejects_bad_values(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["data", "scenes", "--n", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png", "scenes.npz"]
    batch = load_scenes(out / "scenes.npz")
    assert batch.images.shape == (3, 3, 32, 32) and batch.labels.shape == (3, 32, 32)
    capsys.readouterr()
    for bad in (
        ["--resolution", "8"],
        ["--dataset", "clevr"],
        ["--dataset", "tetrominoes", "--resolution", "32"],
        ["--n", "0"],
    ):
        args = ["data", "scenes", "--n", "3", "--out", str(tmp_path / "bad"), *bad]
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("bindbench: error:"), (bad, err)
    assert not (tmp_path / "bad").exists()


def test_decoder_depth_and_distinct_colours_reach_the_model_and_the_scenes():
    def depth(spec) -> int:
        decoder = make_model(spec.model, spec.data.resolution).decoder
        return sum(isinstance(m, torch.nn.Linear) for m in [decoder.first, *decoder.rest]) - 1

    assert depth(tiny_spec()) == 5 and depth(tiny_spec("model.decoder_layers=3")) == 3
    assert make_scenes(tiny_spec().data).distinct_colours
    repeats = make_scenes(
        tiny_spec("data.distinct_colours=false", "data.max_objects=4", "model.num_slots=5").data
    )
    batch = repeats.sample(256, torch.Generator().manual_seed(0))
    assert not repeats.distinct_colours
    assert any(len(set(c[v].tolist())) < int(v.sum()) for c, v in zip(batch.colour, batch.valid))


def test_held_out_pairs_never_appear_in_the_scenes_a_run_trains_on():
    spec = tiny_spec("data.held_out=0.25")
    scenes = make_scenes(spec.data)
    assert len(scenes.held_out) == 8  # a quarter of the 8 x 4 colour x shape pairs
    batch = scenes.sample(512, torch.Generator().manual_seed(0))
    assert batch.valid.sum() > 1000 and not batch.held_out.any()
    assert not make_scenes(tiny_spec().data).held_out
