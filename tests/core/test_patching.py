"""The causal binding tests on hand-built models whose mechanism is known.

`SlotLookup` binds by slot: each token's activation is its one-hot token plus a one-hot
binding ID (its statement's index), and the query is answered by finding the queried
entity's ID and then the attribute carrying that ID, the binding-ID account exactly.
`PositionLookup` binds by adjacency: the answer is the token right after the queried entity,
wherever it sits. `QueryOnly` ignores the context (no binding at all).
"""

import pytest
import torch
from torch import nn

from bindbench.core.patching import TESTS, Contexts, binding_tests, edited, logits_of
from bindbench.tasks.contexts import BindingContexts

TASK = BindingContexts(entities=8, attributes=8, lengths=(3,), held_out_lengths=(), held_out_pairs=0.0)
V, K = len(TASK.vocab), 3
ENTITY = torch.zeros(V)
ENTITY[TASK.first_entity : TASK.first_attribute] = 1
ATTRIBUTE = torch.zeros(V)
ATTRIBUTE[TASK.first_attribute :] = 1


class Embed(nn.Module):
    """(b, t) -> (b, t, V + K): the one-hot token, then the one-hot statement index (body only)."""

    def forward(self, tokens):
        t = tokens.shape[1]
        slot = torch.zeros(t, K)
        body = torch.arange(t - 3)  # the query's "? E ->" carries no slot
        slot[body, body // 3] = 1.0
        onehot = nn.functional.one_hot(tokens, V).float()
        return torch.cat([onehot, slot.expand(len(tokens), t, K)], -1)


class SlotLookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = Embed()
        self.lookup = nn.Identity()  # a second hookable layer, after the embedding
        self.out = nn.Identity()  # the logits: at the context's positions, read by nothing

    def forward(self, tokens):
        x = self.lookup(self.embed(tokens))
        token, slot = x[..., :V], x[..., V:]
        context = token[:, :-3]
        query = token[:, -2]  # (b, V): the queried entity
        match = torch.einsum("btv,bv->bt", context * ENTITY, query)  # which entity is the queried one
        wanted = torch.einsum("bt,btk->bk", match, slot[:, :-3])  # its binding ID
        carrier = torch.einsum("btk,bk->bt", slot[:, :-3], wanted) * (context @ ATTRIBUTE)
        answer = torch.einsum("bt,btv->bv", carrier, context * ATTRIBUTE)
        logits = torch.zeros(len(tokens), tokens.shape[1], V)
        logits[:, -1] = answer
        return self.out(logits)


class PositionLookup(SlotLookup):
    """The token after the queried entity's position, read off the token part only."""

    def forward(self, tokens):
        token = self.lookup(self.embed(tokens))[..., :V]
        context = token[:, :-3]
        match = torch.einsum("btv,bv->bt", context * ENTITY, token[:, -2])
        after = torch.einsum("bt,btv->bv", match[:, :-1], context[:, 1:])
        logits = torch.zeros(len(tokens), tokens.shape[1], V)
        logits[:, -1] = after
        return logits


class QueryOnly(SlotLookup):
    def forward(self, tokens):
        x = self.lookup(self.embed(tokens))
        logits = torch.zeros(len(tokens), tokens.shape[1], V)
        logits[:, -1, TASK.first_attribute :] = x[:, -2, TASK.first_entity : TASK.first_attribute]
        return logits


def draw(n, seed):
    return TASK.for_patching(TASK.sample(n, torch.Generator().manual_seed(seed)))


def scores(model, layer="embed"):
    contexts, donors, fit = draw(200, 1), draw(200, 2), draw(2000, 3)
    return binding_tests(model, [layer], contexts, donors, fit, torch.Generator().manual_seed(0))[layer]


def test_the_hand_built_models_answer_as_built():
    contexts = draw(100, 1)
    answer = logits_of(SlotLookup(), contexts.tokens)[:, -1].argmax(1)
    assert torch.equal(answer, contexts.answers())
    assert torch.equal(logits_of(PositionLookup(), contexts.tokens)[:, -1].argmax(1), contexts.answers())


def test_a_patch_of_a_position_with_its_own_activation_changes_nothing():
    model, tokens = SlotLookup(), draw(50, 1).tokens
    before = model(tokens)
    with edited(model, "embed", lambda out: out.clone()):
        assert torch.equal(model(tokens), before)


def test_a_slot_binding_model_passes_every_test_well_above_its_control():
    found = scores(SlotLookup())
    assert found["accuracy"] == 1.0 and found["read"] == 1.0
    for name in TESTS:
        assert found[name] > 0.95, (name, found[name])
    assert found["position_control"] == 0.0  # the swap elsewhere moved nothing
    for name in ("factorizability_attribute", "additivity_entity", "additivity_attribute"):
        assert found[f"{name}_control"] == 0.0  # the edit elsewhere never lands on the prediction
    # the entity test's query names an absent entity: with the edit elsewhere, the lookup
    # finds no binding and answers the first attribute, right for the contexts that query it
    assert 0.2 < found["factorizability_entity_control"] < 0.45


def test_a_position_binding_model_fails_position_independence_and_additivity():
    found = scores(PositionLookup())
    # swapping two attributes' activations swaps the answer: the binding lives in the position
    assert found["position"] == 0.0
    assert found["additivity_entity"] < 0.1 and found["additivity_attribute"] < 0.1
    # patching the attribute's token from a donor moves the answer: it is the token after the entity
    assert found["factorizability_attribute"] == 1.0


def test_the_control_moves_nothing_on_a_model_with_no_binding():
    found = scores(QueryOnly())
    assert found["position_control"] == 0.0
    for name in ("factorizability_attribute", "additivity_entity", "additivity_attribute"):
        assert found[f"{name}_control"] == found[name]  # edit or no edit: the query alone answers
    assert found["read"] == 0.0


def test_a_layer_whose_context_positions_nothing_reads_moves_nothing():
    found = scores(SlotLookup(), layer="out")
    assert found["read"] == 0.0 and found["factorizability_attribute"] < 0.1
    assert found["position"] == 1.0  # "unchanged", emptily: why position is read where `read` is high


def test_a_later_layer_is_patched_on_its_own_output():
    found = scores(SlotLookup(), layer="lookup")
    assert found["factorizability_attribute"] > 0.95


def test_contexts_too_short_for_the_controls_are_refused():
    task = BindingContexts(entities=8, attributes=8, lengths=(2,), held_out_lengths=(), held_out_pairs=0.0)
    two = task.for_patching(task.sample(10, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="two context positions"):
        binding_tests(SlotLookup(), ["embed"], two, two, two, torch.Generator())


def test_a_layout_outside_the_tokens_is_refused():
    c = draw(4, 0)
    with pytest.raises(ValueError, match="context_end"):
        Contexts(
            c.tokens, c.entity_positions, c.attribute_positions, 3, c.context_end, c.attributes, c.queried
        )


def tiny_gpt2_and_tokenizer(words):
    """A randomly initialized two-block GPT-2 and a word-level tokenizer, built here (nothing
    downloaded)."""
    import transformers  # the `hf` extra, which `make test` installs
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(["[UNK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval(), tokenizer


NAMES, CITIES = ["Alice", "Bob", "Carol", "Dave", "Erin"], ["Paris", "Rome", "Oslo", "Lima", "Kyiv"]


def test_the_tests_run_on_a_tiny_gpt2_through_its_tokenizer():
    import bindbench

    model, tokenizer = tiny_gpt2_and_tokenizer([*NAMES, *CITIES, "lives", "in", "Therefore,", "."])
    found = bindbench.causal_binding_tests(model, tokenizer, NAMES, CITIES, bindings=3, contexts=40)
    assert list(found) == ["transformer.h.0", "transformer.h.1"]
    for scores in found.values():
        assert set(scores) == {"accuracy", "read", *TESTS, *(f"{name}_control" for name in TESTS)}
        assert all(0.0 <= value <= 1.0 for value in scores.values())


def test_gpt2_blocks_are_patched_through_their_tuple_outputs():
    model, tokenizer = tiny_gpt2_and_tokenizer(["a", "b"])
    tokens = torch.tensor([[1, 2, 1, 2]])
    before = logits_of(model, tokens)
    with edited(model, "transformer.h.0", lambda out: out.clone()):
        assert torch.allclose(logits_of(model, tokens), before)
    with edited(model, "transformer.h.0", lambda out: torch.zeros_like(out)):
        assert not torch.allclose(logits_of(model, tokens), before)


def test_text_contexts_are_tokenized_as_written():
    from bindbench.tasks.contexts import TextContexts

    _, tokenizer = tiny_gpt2_and_tokenizer([*NAMES, *CITIES, "lives", "in", "Therefore,", "."])
    text = TextContexts(tokenizer, NAMES, CITIES)
    c = text.sample(5, torch.Generator().manual_seed(0), bindings=3)
    written = tokenizer.batch_decode(c.tokens)
    row = written[0].split()
    assert len(row) == 5 * 3 + 4  # "E lives in A ." per binding, then "Therefore, E lives in"
    asked = int(c.queried[0])
    assert row[-4] == "Therefore," and row[-3] == row[5 * asked]
    assert tokenizer.decode(c.answers()[:1]) == row[5 * asked + 3]
    assert c.entity_positions.tolist() == [0, 5, 10] and c.attribute_positions.tolist() == [3, 8, 13]
    assert (c.context_end, c.query_position) == (15, 16)
    with pytest.raises(ValueError, match="one"):
        TextContexts(tokenizer, [*NAMES[:2], "Zed Zed"], CITIES)
    # with 5 names and 5 cities, 2 bindings leave room for donors of other words only
    contexts, donors = text.sample_with_donors(50, torch.Generator().manual_seed(1), bindings=2)
    for row, donor in zip(contexts.tokens.tolist(), donors.tokens.tolist()):
        mine, theirs = set(row[: contexts.context_end]), set(donor[: donors.context_end])
        assert mine & theirs == set(tokenizer.convert_tokens_to_ids(["lives", "in", "."]))
    assert torch.equal(contexts.queried, donors.queried)
