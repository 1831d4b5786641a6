import itertools

import pytest
import torch

from bindbench.models.readouts import QueryMLP
from bindbench.tasks.binding import (
    COLOUR_OF,
    SHAPE_OF,
    BindingTask,
    ObjectSets,
    layout,
    orthonormal_roles,
    random_roles,
    render,
    swap_accuracy,
)
from bindbench.tasks.scenes import PALETTE, SHAPES, Scenes


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pairs_of(sets: ObjectSets) -> list[set[tuple[int, int]]]:
    return [
        {(int(c), int(s)) for c, s, v in zip(cs, ss, vs) if v}
        for cs, ss, vs in zip(sets.colour, sets.shape, sets.valid)
    ]


def test_sets_hold_distinct_colours_and_shapes_and_only_training_pairs():
    task = BindingTask(8, 4, 2, 4, held_out=0.25)
    assert len(task.held_out) == 8
    sets = task.sample(500, gen())
    count = sets.valid.sum(1)
    assert count.min() == 2 and count.max() == 4
    for row in pairs_of(sets):
        assert len({c for c, _ in row}) == len(row) == len({s for _, s in row})
        assert not row & set(task.held_out)
    assert not sets.held_out.any()
    assert (sets.colour[~sets.valid] == -1).all() and (sets.shape[~sets.valid] == -1).all()


def test_test_sets_hold_exactly_one_held_out_object_and_queries_ask_about_it():
    task = BindingTask(8, 4, 2, 3, held_out=0.25)
    sets = task.sample(400, gen(), "test")
    assert (sets.held_out.sum(1) == 1).all()
    for row in pairs_of(sets):
        assert len(row & set(task.held_out)) == 1
    # the held-out object sits anywhere, not always first
    assert len(set(sets.held_out.long().argmax(1).tolist())) == 3
    queries = task.query(sets, gen(1))
    assert (queries.target == sets.held_out.long().argmax(1)).all()


def test_query_answers_by_hand():
    task = BindingTask(5, 4, 2, 2)
    # red(0)-circle(1) and blue(2)-square(0)
    sets = ObjectSets(
        torch.tensor([[0, 2], [0, 2]]),
        torch.tensor([[1, 0], [1, 0]]),
        torch.ones(2, 2, dtype=torch.bool),
        torch.zeros(2, 2, dtype=torch.bool),
    )
    queries = task._queries(sets, torch.tensor([COLOUR_OF, SHAPE_OF]), torch.tensor([0, 1]))
    assert queries.key.tolist() == [1, 2]  # "which colour is the circle?", "which shape is the blue one?"
    assert queries.answer.tolist() == [0, 5 + 0]  # red; square (after the 5 colours)
    vector = task.query_vector(queries)
    assert vector.tolist() == [[0, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 0, 0]]


def test_bag_of_features_by_hand_and_identical_on_every_swap_pair():
    task = BindingTask(4, 3, 2, 3, held_out=0.25)
    sets = ObjectSets(
        torch.tensor([[0, 3, -1]]),
        torch.tensor([[2, 0, -1]]),
        torch.tensor([[True, True, False]]),
        torch.zeros(1, 3, dtype=torch.bool),
    )
    assert task.bag_of_features(sets).tolist() == [[1, 0, 0, 1, 1, 0, 1]]
    for split, seen in (("train", True), ("test", False)):
        pairs = task.swap(task.sample(300, gen(), split), gen(1), seen=seen)
        assert len(pairs.first.valid) > 100
        assert torch.equal(task.bag_of_features(pairs.first), task.bag_of_features(pairs.second))
        # ... while the sets themselves differ, and so do the binding codes
        assert all(a != b for a, b in zip(pairs_of(pairs.first), pairs_of(pairs.second)))
        roles = orthonormal_roles(3, 3, gen(2))
        differ = task.tensor_product(pairs.first, roles) != task.tensor_product(pairs.second, roles)
        assert differ.any(1).all()


def test_swap_pairs_differ_only_in_which_colour_goes_with_which_shape():
    task = BindingTask(8, 4, 2, 3, held_out=0.25)
    pairs = task.swap(task.sample(300, gen(), "train"), gen(1))
    first, second = pairs.first, pairs.second
    assert torch.equal(first.shape, second.shape) and torch.equal(first.valid, second.valid)
    assert ((first.colour != second.colour).sum(1) == 2).all()
    assert torch.equal(first.colour.sort(1).values, second.colour.sort(1).values)
    # seen swaps: both sets use training pairs only
    assert not first.held_out.any() and not second.held_out.any()
    # the same question, different answers, each the other's alternative
    assert torch.equal(pairs.first_queries.key, pairs.second_queries.key)
    assert (pairs.first_queries.answer != pairs.second_queries.answer).all()
    for sets, queries in ((first, pairs.first_queries), (second, pairs.second_queries)):
        rows = torch.arange(len(queries.kind))
        colour_of = queries.kind == COLOUR_OF
        assert (sets.shape[rows, queries.target][colour_of] == queries.key[colour_of]).all()
        assert (sets.colour[rows, queries.target][~colour_of] == queries.key[~colour_of]).all()


def test_swap_accuracy_of_any_readout_of_the_bag_of_features_is_exactly_one_half():
    task = BindingTask(8, 4, 2, 3, held_out=0.25)
    pairs = task.swap(task.sample(400, gen(), "train"), gen(1))
    for seed in range(3):
        torch.manual_seed(seed)
        readout = QueryMLP(task.colours + task.shapes, task.query_dim, task.num_answers, 32, 2)
        with torch.no_grad():
            scores = [
                readout(task.bag_of_features(sets), task.query_vector(queries))
                for sets, queries in (
                    (pairs.first, pairs.first_queries),
                    (pairs.second, pairs.second_queries),
                )
            ]
        right = swap_accuracy(*scores, pairs.first_queries.answer, pairs.second_queries.answer)
        assert right.mean().item() == 0.5
        # per pair: exactly one of the two sets is answered right (or both tie)
        half = len(right) // 2
        assert torch.all(right[:half] + right[half:] == 1)


def test_swap_accuracy_counts_ties_as_half():
    scores = torch.tensor([[1.0, 0.0, 0.0]])
    right = swap_accuracy(scores, scores.clone(), torch.tensor([0]), torch.tensor([1]))
    assert right.tolist() == [1.0, 0.0]
    tie = torch.zeros(1, 3)
    assert swap_accuracy(tie, tie, torch.tensor([0]), torch.tensor([1])).tolist() == [0.5, 0.5]


def test_orthonormal_roles_unbind_every_query_exactly_seen_or_not():
    task = BindingTask(8, 4, 2, 4, held_out=0.25)
    roles = orthonormal_roles(4, 6, gen())
    assert torch.allclose(roles @ roles.T, torch.eye(4), atol=1e-6)
    for split in ("train", "test"):
        sets = task.sample(300, gen(1), split)
        queries = task.query(sets, gen(2))
        scores = task.unbind(task.tensor_product(sets, roles), queries, roles)
        assert (scores.argmax(1) == queries.answer).all()
        # the true answer scores 1, every other candidate of the asked attribute 0 (the rest -inf)
        top = scores.sort(1, descending=True).values
        assert torch.allclose(top[:, 0], torch.ones(len(top)), atol=1e-5)
        assert torch.allclose(top[:, 1:4], torch.zeros(len(top), 3), atol=1e-5)


def test_random_roles_cross_talk_grows_with_objects_and_shrinks_with_dimension():
    def accuracy(objects: int, dim: int) -> float:
        task = BindingTask(64, 64, objects, objects)
        roles, fillers = random_roles(64, dim, gen(1)), random_roles(64, dim, gen(2))
        sets = task.sample(1000, gen(3))
        queries = task.query(sets, gen(4))
        scores = task.unbind(task.tensor_product(sets, roles, fillers), queries, roles, fillers)
        return (scores.argmax(1) == queries.answer).float().mean().item()

    assert accuracy(2, 64) > 0.99  # d^2 = 4096 numbers hold 2 bindings cleanly
    assert accuracy(16, 16) < accuracy(2, 16) - 0.2  # more objects, more cross-talk (0.61 vs 0.92)
    assert accuracy(16, 8) < accuracy(16, 32) - 0.5  # a smaller dimension, more cross-talk
    # and the random roles have about unit length
    assert random_roles(10, 400, gen()).norm(dim=1).sub(1).abs().max() < 0.15


def test_slot_code_holds_each_object_once_in_a_random_order():
    task = BindingTask(5, 4, 2, 3)
    sets = task.sample(200, gen())
    code = task.slot_code(sets, gen(1)).view(200, 3, 9)
    assert torch.equal(code.sum(1), task.bag_of_features(sets))
    assert torch.isin(code.sum(2), torch.tensor([0.0, 2.0])).all()  # a whole object or an empty slot
    assert len({tuple(row) for row in code.sum(2).tolist()}) > 1  # empty slots move around


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_objects": 5}, "distinct colours and distinct shapes"),
        ({"min_objects": 3, "max_objects": 2}, "must be >= min_objects"),
        ({"held_out": 1.5}, "fraction"),
        ({"colours": 1}, "colours=1"),
    ],
)
def test_impossible_sets_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BindingTask(**{"colours": 8, "shapes": 4, **kwargs})


def test_too_many_held_out_pairs_to_draw_a_set_is_one_clear_error():
    task = BindingTask(
        4, 4, 4, 4, held_out=[(c, s) for c, s in itertools.product(range(4), range(4)) if c != s]
    )
    with pytest.raises(ValueError, match="cannot draw 4 objects"):
        task.sample(10, gen(), "test")


def test_rendered_sets_show_every_object_whole_with_its_colour():
    task = BindingTask(8, 4, 2, 4)
    scenes = Scenes(32, sizes=(0.35, 0.45))
    sets = task.sample(64, gen())
    batch = render(sets, scenes, layout(sets, scenes, gen(1)))
    assert torch.equal(batch.visibility[sets.valid], torch.ones(int(sets.valid.sum())))
    rgb = torch.tensor(list(PALETTE.values()))
    for b in range(8):
        for k in range(int(sets.valid[b].sum())):
            pixels = batch.images[b][:, batch.labels[b] == k + 1]
            assert torch.allclose(pixels, rgb[sets.colour[b, k]][:, None].expand_as(pixels))
    assert scenes.shapes == SHAPES
    with pytest.raises(ValueError, match="sizes"):
        layout(sets, Scenes(32, sizes=(0.6,)), gen())
