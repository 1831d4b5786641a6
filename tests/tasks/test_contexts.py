import pytest
import torch

from bindbench.tasks.contexts import BindingContexts


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_context_reads_as_its_bindings_and_the_answer_is_the_queried_entity_s_attribute():
    task = BindingContexts(entities=8, attributes=8)
    batch = task.sample(200, _gen(), bindings=3)
    for text, entities, attributes, queried, answer in zip(
        task.describe(batch.tokens), batch.entities, batch.attributes, batch.queried, batch.answer
    ):
        words = text.split()
        assert len(words) == 3 * 3 + 2 and words[-3] == "?" and words[-1] == "->"
        bound = dict(pair.split() for pair in " ".join(words[:-3]).split(" . "))  # {entity: attribute}
        assert list(bound) == [f"E{e}" for e in entities.tolist()]
        assert list(bound.values()) == [f"A{a}" for a in attributes.tolist()]
        assert words[-2] == f"E{entities[queried]}" and task.vocab[answer] == bound[words[-2]]
        assert len(set(entities.tolist())) == 3 and len(set(attributes.tolist())) == 3  # one answer


def test_held_out_pairs_never_appear_in_training_contexts_and_are_what_their_split_asks():
    task = BindingContexts(entities=10, attributes=10, held_out_pairs=0.3, seed=1)
    assert int(task.held.sum()) == 30
    assert task.held.any(1).all() and (~task.held).any(1).all() and (~task.held).any(0).all()
    gen = _gen()
    for _ in range(20):
        train = task.sample(64, gen)
        assert not task.held[train.entities, train.attributes].any()
    test = task.sample(500, gen, "held_out_pairs", bindings=4)
    held = task.held[test.entities, test.attributes]  # (b, k)
    rows = torch.arange(500)
    assert held[rows, test.queried].all()  # the queried binding is new
    held[rows, test.queried] = False
    assert not held.any()  # the others are training pairs
    assert len(set(test.queried.tolist())) == 4  # at every place in the context


def test_contexts_of_held_out_lengths_are_never_trained_on():
    task = BindingContexts(lengths=(2, 3, 4, 5), held_out_lengths=(6,))
    gen = _gen()
    trained = {task.sample(8, gen).entities.shape[1] for _ in range(100)}
    assert trained == {2, 3, 4, 5}
    assert task.sample(8, gen, "held_out_lengths").entities.shape[1] == 6
    with pytest.raises(ValueError, match="bindings=6"):
        task.sample(8, gen, bindings=6)


def test_the_same_seed_gives_the_same_split_and_contexts():
    a, b = BindingContexts(seed=3), BindingContexts(seed=3)
    assert torch.equal(a.held, b.held) and not torch.equal(a.held, BindingContexts(seed=4).held)
    assert torch.equal(a.sample(16, _gen(5)).tokens, b.sample(16, _gen(5)).tokens)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"entities": 4}, "entities=4"),
        ({"lengths": (2, 6)}, "both trained and held out"),
        ({"held_out_pairs": 1.0}, "held_out_pairs=1.0"),
        ({"lengths": (0,)}, "bindings >= 1"),
    ],
)
def test_bad_settings_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BindingContexts(**kwargs)
