import math
from collections import Counter

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
import torch

from bindbench.core.segmentation import fg_ari
from bindbench.tasks.scenes import (
    BACKGROUNDS,
    PALETTE,
    PIECE_CELLS,
    PIECE_NAMES,
    SHAPES,
    Scenes,
    Tetrominoes,
    hsv_to_rgb,
    load_scenes,
    save_scenes,
    shape_masks,
)

HELD = [("red", "square"), ("blue", "heart"), ("green", "circle")]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def scenes():
    return Scenes(max_objects=4, background="grey", held_out=HELD)


@pytest.fixture(scope="module")
def batch(scenes):
    return scenes.sample(256, gen(0))


def as_dict(batch) -> dict:
    return vars(batch)


def pairs_of(scenes, batch) -> list[list[tuple[str, str]]]:
    """Per scene, the (colour, shape) names of its valid objects in depth order."""
    out = []
    for colours, shapes, valid in zip(batch.colour.tolist(), batch.shape.tolist(), batch.valid.tolist()):
        out.append([(scenes.colours[c], scenes.shapes[s]) for c, s, v in zip(colours, shapes, valid) if v])
    return out


# ----------------------------------------------------------------------------- shapes


def test_shapes_cover_their_known_share_of_the_bounding_box():
    n = len(SHAPES)
    half = torch.full((n,), 0.5)
    masks = shape_masks(torch.arange(n), half, half, torch.ones(n), 400)  # one big object per image
    share = dict(zip(SHAPES, masks.float().mean((1, 2)).tolist()))
    assert share["square"] == pytest.approx(0.8**2, abs=0.01)
    assert share["circle"] == pytest.approx(math.pi / 4, abs=0.01)
    assert share["triangle"] == pytest.approx(0.5, abs=0.01)
    assert 0.6 < share["heart"] < 0.75


def test_triangle_points_up_and_heart_has_its_notch_on_top_and_its_tip_below():
    masks = shape_masks(
        torch.tensor([2, 3]), torch.full((2,), 0.5), torch.full((2,), 0.5), torch.ones(2), 100
    )
    triangle, heart = masks
    assert triangle[2, 50] and not triangle[2, 2] and triangle[97, 2]  # apex top centre, base corners
    assert not heart[10, 50] and heart[20, 25] and heart[20, 75]  # notch between the two lobes
    assert heart[95, 50] and not heart[95, 30]  # a point at the bottom


# ----------------------------------------------------------------------------- scenes


def test_same_seed_gives_identical_batches_and_another_seed_differs(scenes):
    for split in ("train", "test"):
        a, b, c = (scenes.sample(64, gen(seed), split) for seed in (3, 3, 4))
        for name, value in as_dict(a).items():
            assert torch.equal(value, as_dict(b)[name]), name
        assert not torch.equal(a.images, c.images)
        assert not torch.equal(a.x, c.x)


def test_batch_has_the_documented_shapes_and_ranges(scenes, batch):
    b, k, r = 256, 4, 32
    assert batch.images.shape == (b, 3, r, r) and batch.images.dtype == torch.float32
    assert batch.labels.shape == (b, r, r) and batch.labels.dtype == torch.long
    for name in ("shape", "colour", "size", "x", "y", "valid", "visibility", "held_out"):
        assert as_dict(batch)[name].shape == (b, k), name
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert batch.labels.max() <= k


def test_object_counts_span_min_to_max_objects_and_fill_the_first_slots(batch):
    counts = batch.valid.sum(1)
    assert set(counts.tolist()) == {1, 2, 3, 4}
    assert torch.equal(batch.valid, torch.arange(4) < counts[:, None])  # valid slots come first
    invalid = ~batch.valid
    assert (batch.shape[invalid] == -1).all() and (batch.colour[invalid] == -1).all()
    assert (batch.visibility[invalid] == 0).all() and not batch.held_out[invalid].any()


def test_bounding_boxes_lie_inside_the_image(scenes, batch):
    side = torch.tensor(scenes.sizes)[batch.size.clamp(min=0)]
    v = batch.valid
    for centre in (batch.x, batch.y):
        assert ((centre - side / 2)[v] >= 0).all() and ((centre + side / 2)[v] <= 1).all()
    assert set(batch.size[v].tolist()) == {0, 1, 2}


def test_label_map_agrees_with_attributes_and_the_image_colours(scenes, batch):
    background = torch.tensor(BACKGROUNDS["grey"])
    pixels = batch.images.permute(0, 2, 3, 1)  # (b, h, w, c)
    is_background = (pixels == background).all(-1)
    assert torch.equal(is_background, batch.labels == 0)  # label 0 exactly where the background shows
    for s in range(4):
        present = (batch.labels == s + 1).flatten(1).any(1)
        assert torch.equal(present, batch.visibility[:, s] > 0)  # every visible object has its label
        rows, ii, jj = (batch.labels == s + 1).nonzero(as_tuple=True)
        names = [scenes.colours[c] for c in batch.colour[rows, s].tolist()]
        assert torch.equal(pixels[rows, ii, jj], torch.tensor([PALETTE[n] for n in names]))


def test_top_object_covers_all_of_its_own_pixels_and_lower_ones_only_part(scenes, batch):
    b = len(batch.labels)
    rows = torch.arange(b)
    top = batch.valid.sum(1) - 1
    side = torch.tensor(scenes.sizes)[batch.size[rows, top]]
    drawn = shape_masks(batch.shape[rows, top], batch.x[rows, top], batch.y[rows, top], side, 32)
    assert torch.equal(batch.labels == (top + 1)[:, None, None], drawn)
    assert (batch.visibility[rows, top] == 1).all()
    for s in range(4):  # every object shows only inside its own shape, in the measured share
        v = batch.valid[:, s]
        side = torch.tensor(scenes.sizes)[batch.size[v, s]]
        own = shape_masks(batch.shape[v, s], batch.x[v, s], batch.y[v, s], side, 32)
        shown = batch.labels[v] == s + 1
        assert not (shown & ~own).any()
        share = shown.sum((1, 2)) / own.sum((1, 2))
        assert torch.allclose(batch.visibility[v, s], share)
    assert (batch.visibility[batch.valid] < 1).any()  # occlusion does happen


def test_train_split_never_draws_a_held_out_pair(scenes):
    big = scenes.sample(4096, gen(1), "train")
    seen = Counter(p for scene in pairs_of(scenes, big) for p in scene)
    assert not set(HELD) & set(seen)
    assert len(seen) == len(scenes.colours) * len(scenes.shapes) - len(HELD)  # all others occur
    assert not big.held_out.any()


def test_every_test_scene_has_exactly_one_held_out_pair_on_top(scenes):
    test = scenes.sample(2048, gen(2), "test")
    for scene in pairs_of(scenes, test):
        assert scene[-1] in HELD
        assert not set(scene[:-1]) & set(HELD)
    assert torch.equal(test.held_out.sum(1), torch.ones(2048, dtype=torch.long))
    assert {p for scene in pairs_of(scenes, test) for p in scene[-1:]} == set(HELD)


def test_fraction_held_out_is_seeded_and_keeps_every_colour_and_shape_in_training():
    splits = [Scenes(held_out=0.5, seed=seed).held_out for seed in (0, 0, 1)]
    assert splits[0] == splits[1] and splits[0] != splits[2]
    for held in splits:
        assert len(held) == 16
        train = set((c, s) for c in PALETTE for s in SHAPES) - set(held)
        assert {c for c, _ in train} == set(PALETTE) and {s for _, s in train} == set(SHAPES)
    assert Scenes(held_out=0.75).held_out  # 8 training pairs still cover 8 colours


@pytest.mark.parametrize("split", ["train", "test"])
def test_distinct_colours_never_repeat_a_colour_in_a_scene_and_keep_the_split(split):
    scenes = Scenes(min_objects=3, max_objects=6, held_out=HELD, distinct_colours=True)
    big = scenes.sample(2048, gen(3), split)
    for scene in pairs_of(scenes, big):
        assert len({c for c, _ in scene}) == len(scene)
        held = [p in HELD for p in scene]
        assert held == ([False] * len(scene) if split == "train" else [False] * (len(scene) - 1) + [True])
    seen = Counter(p for scene in pairs_of(scenes, big) for p in scene[: None if split == "train" else -1])
    assert len(seen) == len(scenes.colours) * len(scenes.shapes) - len(HELD)  # all training pairs occur


def test_with_distinct_colours_a_segmentation_by_colour_alone_is_perfect():
    batch = Scenes(min_objects=2, max_objects=4, sizes=(0.5,), distinct_colours=True).sample(256, gen(4))
    flat = batch.images.flatten(2).transpose(1, 2)  # (b, n, c)
    by_colour = torch.stack([torch.unique(x, dim=0, return_inverse=True)[1] for x in flat])
    assert torch.nanmean(fg_ari(batch.labels, by_colour.view_as(batch.labels))) == 1.0
    repeats = Scenes(min_objects=2, max_objects=4, sizes=(0.5,)).sample(256, gen(4))
    flat = repeats.images.flatten(2).transpose(1, 2)
    by_colour = torch.stack([torch.unique(x, dim=0, return_inverse=True)[1] for x in flat])
    assert torch.nanmean(fg_ari(repeats.labels, by_colour.view_as(repeats.labels))) < 0.95


def test_hsv_to_rgb_agrees_with_matplotlib():
    hsv = torch.rand(500, 3, generator=gen(0), dtype=torch.float64)
    expected = matplotlib.colors.hsv_to_rgb(hsv.numpy())
    assert np.allclose(hsv_to_rgb(*hsv.unbind(1)).numpy(), expected, atol=1e-12)


def _owned_colours(batch, image: int, label: int) -> torch.Tensor:
    """The distinct colours of the pixels of `label` in scene `image`, (n, 3)."""
    pixels = batch.images[image].permute(1, 2, 0)[batch.labels[image] == label]
    return torch.unique(pixels, dim=0)


@pytest.mark.parametrize("texture", ["none", "objects", "all"])
def test_hue_and_textured_scenes_keep_the_masks_exact(texture):
    kw = {"min_objects": 2, "max_objects": 3, "sizes": (0.4, 0.5), "held_out": 0.25}
    flat = Scenes(**kw).sample(64, gen(5))
    scenes = Scenes(**kw, hues=8, texture=texture)
    batch = scenes.sample(64, gen(5))
    assert scenes.colours == tuple(f"hue{i}" for i in range(8))
    # the same objects at the same places as the palette scenes of the same seed: only colours differ
    assert torch.equal(batch.labels, flat.labels) and torch.equal(batch.shape, flat.shape)
    assert torch.equal(batch.colour, flat.colour)
    # labels partition the image (one owner per pixel); every object with visible area has pixels
    visible = torch.stack([(batch.labels == s + 1).sum((1, 2)) for s in range(3)], 1)
    assert torch.equal(visible > 0, batch.visibility > 0) and torch.equal(
        visible > 0, batch.valid & (visible > 0)
    )
    assert not torch.equal(batch.images, flat.images)
    for i in range(16):
        for label in range(int(batch.labels[i].max()) + 1):
            colours = _owned_colours(batch, i, label)
            patterned = texture == "all" or (texture == "objects" and label > 0)
            assert len(colours) <= (2 if patterned else 1)  # one colour, or the two of a texture
            if texture == "none" and label > 0:  # the object's hue lies in its colour's band
                (rgb,) = colours
                hue = matplotlib.colors.rgb_to_hsv(rgb.numpy())[0]
                band = int(batch.colour[i, label - 1])
                assert band / 8 - 1e-6 <= hue <= (band + 1) / 8 + 1e-6
    test = scenes.sample(64, gen(6), "test")
    assert test.held_out.sum(1).eq(1).all()


def test_textures_take_colour_away_as_a_shortcut():
    kw = {"min_objects": 2, "max_objects": 3, "sizes": (0.5,), "hues": 8}
    for texture, low, high in (("none", 0.99, 1.0), ("objects", 0.0, 0.6), ("all", 0.0, 0.6)):
        batch = Scenes(**kw, texture=texture).sample(128, gen(4))
        flat = batch.images.flatten(2).transpose(1, 2)  # (b, n, c)
        by_colour = torch.stack([torch.unique(x, dim=0, return_inverse=True)[1] for x in flat])
        score = float(torch.nanmean(fg_ari(batch.labels, by_colour.view_as(batch.labels))))
        assert low <= score <= high, (texture, score)
    textured = Scenes(**kw, texture="all").sample(32, gen(4))
    two = [len(_owned_colours(textured, i, 0)) for i in range(32)]  # the background is patterned too
    assert sum(n == 2 for n in two) >= 30
    objects = Scenes(**kw, texture="objects").sample(32, gen(4))  # the same objects' textures
    assert all(len(_owned_colours(objects, i, 0)) == 1 for i in range(32))
    on_objects = textured.labels > 0
    assert torch.equal(
        objects.images.permute(0, 2, 3, 1)[on_objects], textured.images.permute(0, 2, 3, 1)[on_objects]
    )


def test_a_palette_colour_can_be_the_background_when_no_object_uses_it():
    scenes = Scenes(colours=("red", "green"), shapes=("circle", "square"), background="white")
    batch = scenes.sample(32, gen(0))
    assert torch.equal((batch.images == 1).all(1), batch.labels == 0)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"resolution": 8}, "resolution=8"),
        ({"resolution": 16, "sizes": (0.2,)}, "sizes="),
        ({"min_objects": 0}, "min_objects=0"),
        ({"min_objects": 3, "max_objects": 2}, "max_objects=2"),
        ({"shapes": ("square", "star")}, "shapes="),
        ({"shapes": ()}, "shapes="),
        ({"colours": ("red", "red")}, "colours="),
        ({"sizes": (0.3, 1.5)}, "sizes="),
        ({"background": "pink"}, "background='pink'"),
        ({"background": "red"}, "background='red'"),
        ({"held_out": 1.0}, "held_out=1.0"),
        ({"held_out": 0.9}, "held_out=0.9"),
        ({"held_out": "red"}, "held_out='red'"),
        ({"held_out": [("red", "star")]}, "held_out pair"),
        ({"held_out": [(c, s) for c in PALETTE for s in SHAPES]}, "held_out=.*all 32"),
        ({"held_out": [("red", s) for s in SHAPES]}, "held_out=.*colour 'red'"),
        ({"held_out": [(c, "heart") for c in PALETTE]}, "held_out=.*shape 'heart'"),
        ({"seed": -1}, "seed=-1"),
        ({"hues": 1}, "hues=1"),
        ({"texture": True}, "texture=True"),
        ({"hues": 8, "background": "white"}, "background='white' with hues"),
        ({"colours": ("red", "green"), "max_objects": 3, "distinct_colours": True}, "distinct_colours"),
        (
            {
                "colours": ("red", "green"),
                "max_objects": 2,
                "held_out": [("red", "heart")],
                "distinct_colours": True,
            },
            "needs 3 colours",
        ),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_parameter(settings, name):
    with pytest.raises(ValueError, match=name):
        Scenes(**settings)


def test_bad_sample_arguments_raise_a_value_error_naming_the_parameter(scenes):
    with pytest.raises(ValueError, match="batch_size=0"):
        scenes.sample(0, gen())
    with pytest.raises(ValueError, match="split='ood'"):
        scenes.sample(4, gen(), "ood")
    with pytest.raises(ValueError, match="split='test'"):
        Scenes().sample(4, gen(), "test")


# ----------------------------------------------------------------------------- tetrominoes


def test_there_are_19_distinct_connected_pieces_of_four_blocks():
    assert len(PIECE_NAMES) == 19 and PIECE_CELLS.shape == (19, 4, 2)
    assert Counter(name[0] for name in PIECE_NAMES) == {
        "I": 2,
        "O": 1,
        "T": 4,
        "S": 2,
        "Z": 2,
        "J": 4,
        "L": 4,
    }
    pieces = [frozenset(map(tuple, cells.tolist())) for cells in PIECE_CELLS]
    assert len(set(pieces)) == 19 and all(len(p) == 4 for p in pieces)
    for piece in pieces:
        assert min(r for r, _ in piece) == 0 and min(c for _, c in piece) == 0
        reached, todo = set(), [next(iter(piece))]
        while todo:
            r, c = todo.pop()
            reached.add((r, c))
            todo += [n for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)) if n in piece - reached]
        assert reached == piece


def test_tetrominoes_show_three_whole_pieces_that_match_their_attributes():
    tetrominoes = Tetrominoes()
    batch = tetrominoes.sample(256, gen(0))
    assert batch.images.shape == (256, 3, 35, 35)
    assert all(set(row.unique().tolist()) == {0, 1, 2, 3} for row in batch.labels)
    assert torch.equal((batch.images == 0).all(1), batch.labels == 0)  # black background
    for b in range(0, 256, 17):
        for s in range(3):
            shown = batch.labels[b] == s + 1
            assert shown.sum() == 4 * 25
            blocks = shown[::5, ::5]  # one pixel per 5 x 5 block
            assert torch.equal(blocks.repeat_interleave(5, 0).repeat_interleave(5, 1), shown)
            cells = blocks.nonzero()
            corner = cells.min(0).values
            assert {tuple(c) for c in (cells - corner).tolist()} == set(
                map(tuple, PIECE_CELLS[batch.shape[b, s]].tolist())
            )
            height, width = (cells.max(0).values - corner + 1).tolist()
            assert batch.x[b, s] == pytest.approx((corner[1] + width / 2) / 7)
            assert batch.y[b, s] == pytest.approx((corner[0] + height / 2) / 7)
            colour = tetrominoes.colours[batch.colour[b, s]]
            assert torch.equal(batch.images[b][:, shown].T, torch.tensor([PALETTE[colour]] * 100))
    assert set(batch.shape.flatten().tolist()) == set(range(19))
    assert set(batch.colour.flatten().tolist()) == set(range(6))
    assert (batch.visibility == 1).all()


def test_tetrominoes_are_deterministic_for_a_seed():
    tetrominoes = Tetrominoes()
    a, b, c = (tetrominoes.sample(32, gen(seed)) for seed in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.shape, b.shape)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"num_pieces": 0}, "num_pieces=0"),
        ({"num_pieces": 4}, "num_pieces=4"),
        ({"grid": 3}, "grid=3"),
        ({"block": 0}, "block=0"),
        ({"colours": ("red", "ochre")}, "colours="),
    ],
)
def test_bad_tetromino_settings_raise_a_value_error_naming_the_parameter(settings, name):
    with pytest.raises(ValueError, match=name):
        Tetrominoes(**settings)


# ----------------------------------------------------------------------------- files


def test_saved_scenes_load_back_unchanged_with_one_png_per_image(tmp_path, scenes):
    batch = scenes.sample(5, gen(0), "test")
    path = save_scenes(batch, tmp_path / "out")
    assert sorted(p.name for p in path.parent.glob("*.png")) == [f"{i:05d}.png" for i in range(5)]
    loaded = load_scenes(path)
    for name, value in as_dict(batch).items():
        assert torch.equal(value, as_dict(loaded)[name]), name
    png = matplotlib.image.imread(path.parent / "00003.png")[..., :3]  # (h, w, c), RGBA on disk
    assert np.abs(png - batch.images[3].permute(1, 2, 0).numpy()).max() <= 1 / 255
