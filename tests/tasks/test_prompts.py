import pytest
import torch

from bindbench.tasks.prompts import Prompts, held_out_combinations
from bindbench.tasks.scenes import SIZES


@pytest.mark.parametrize("form", ["object", "pair"])
def test_held_out_combinations_never_appear_in_training_batches_and_every_value_is_trained(form):
    prompts = Prompts(form=form, seed=3)
    n = len(prompts.combinations)
    assert n == (3 * 8 * 4 if form == "object" else (8 * 4) ** 2)
    assert int(prompts.is_held.sum()) == int(0.3 * n)
    train = prompts.sample(4096, torch.Generator().manual_seed(0), render=False)
    assert not train.held_out.any() and not prompts.is_held[train.combination].any()
    test = prompts.sample(512, torch.Generator().manual_seed(1), "test", render=False)
    assert test.held_out.all()
    trained = prompts.combinations[~prompts.is_held]
    for i, values in enumerate(prompts.concepts.values()):
        assert set(trained[:, i].tolist()) == set(range(len(values)))  # every part is known


def test_a_held_out_split_is_seeded_and_keeps_each_value_even_when_that_stops_it_short():
    grid = torch.tensor([[a, b] for a in range(2) for b in range(2)])
    assert torch.equal(held_out_combinations(grid, 0.5, 0), held_out_combinations(grid, 0.5, 0))
    # 2 x 2: holding out 3 would leave a value untrained; at most 2 (a diagonal) can go
    held = held_out_combinations(grid, 0.9, 0)
    assert int(held.sum()) == 2 and set(grid[~held][:, 0].tolist()) == {0, 1}
    assert set(grid[~held][:, 1].tolist()) == {0, 1}
    assert not held_out_combinations(grid, 0.0, 0).any()


def test_prompts_say_what_their_tokens_say_and_the_render_draws_exactly_that():
    prompts = Prompts(form="object")
    batch = prompts.sample(256, torch.Generator().manual_seed(0), "all")
    words = [" ".join(prompts.vocab[t] for t in row) for row in batch.tokens.tolist()]
    assert words == prompts.describe(batch.values) and words[0].startswith("a ")
    scenes = batch.scenes
    assert torch.equal(scenes.size[:, 0], batch.values[:, 0])
    assert torch.equal(scenes.colour[:, 0], batch.values[:, 1])
    assert torch.equal(scenes.shape[:, 0], batch.values[:, 2])
    assert (scenes.visibility[:, 0] == 1).all()
    # the k-hot form: one bit per concept, at the value's place
    hot = prompts.concepts_hot(batch.values)
    assert hot.shape == (256, 3 + 8 + 4) and torch.equal(hot.sum(1), torch.full((256,), 3.0))
    assert torch.equal(hot[:, 3:11].argmax(1), batch.values[:, 1])


def test_a_pair_prompt_draws_the_first_object_left_of_the_second_both_whole():
    prompts = Prompts(form="pair", seed=1)
    batch = prompts.sample(512, torch.Generator().manual_seed(2), "all")
    assert prompts.describe(batch.values[:1])[0].count(" left of a ") == 1 and batch.tokens.shape == (512, 8)
    scenes, half = batch.scenes, SIZES[1] / 2
    assert torch.equal(scenes.colour, batch.values[:, [0, 2]])
    assert torch.equal(scenes.shape, batch.values[:, [1, 3]])
    assert (scenes.x[:, 0] + half < scenes.x[:, 1] - half).all()  # boxes apart, left one first
    assert ((scenes.x - half >= 0) & (scenes.x + half <= 1)).all()
    assert (scenes.visibility == 1).all()  # nothing hides anything
    # the pixels of each object are its colour: what a judge has to read
    left_pixels = scenes.labels == 1
    assert left_pixels.any((1, 2)).all() and (scenes.labels == 2).any((1, 2)).all()


def test_the_same_seed_gives_the_same_prompts_and_scenes():
    one, two = (Prompts(form="pair").sample(8, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(one.tokens, two.tokens) and torch.equal(one.scenes.images, two.scenes.images)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"form": "triple"}, "form='triple' must be one of"),
        ({"held_out": 1.0}, "held_out=1.0 must be a fraction in [0, 1)"),
        ({"colours": ("red", "mauve")}, "colours="),
        ({"hue_jitter": 0.5}, "hue_jitter=0.5 must be in [0, 0.1]"),
    ],
)
def test_bad_settings_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Prompts(**kwargs)


def test_a_split_without_combinations_is_refused():
    with pytest.raises(ValueError, match="split='test' has no combinations"):
        Prompts(held_out=0.0).sample(2, torch.Generator(), "test")


def test_an_object_s_colour_is_its_named_colour_within_the_hue_jitter():
    from matplotlib.colors import rgb_to_hsv

    prompts = Prompts(form="object", colours=("red", "green", "blue"))
    batch = prompts.sample(64, torch.Generator().manual_seed(0), "all")
    scenes = batch.scenes
    pixel = scenes.images.permute(0, 2, 3, 1)[scenes.labels == 1]  # (pixels, 3), one object per scene
    owners = (scenes.labels == 1).flatten(1).sum(1)
    colour = batch.values[:, 1].repeat_interleave(owners)
    hue = torch.tensor(rgb_to_hsv(pixel.numpy()))[:, 0]
    named = prompts.hsv[colour, 0]
    distance = torch.minimum((hue - named).abs(), 1 - (hue - named).abs())
    assert distance.max() <= 0.03 + 1e-6 and distance.max() > 0.005  # jittered, and not far
    exact = Prompts(form="object", colours=("red", "green", "blue"), hue_jitter=0)
    batch = exact.sample(16, torch.Generator().manual_seed(0), "all")
    pixel = batch.scenes.images.permute(0, 2, 3, 1)[batch.scenes.labels == 1]
    owners = (batch.scenes.labels == 1).flatten(1).sum(1)
    assert torch.equal(pixel, exact.scenes.rgb[batch.values[:, 1].repeat_interleave(owners)])
