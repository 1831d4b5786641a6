import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.patching import TESTS
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments import binding_ids
from bindbench.tasks.contexts import BindingContexts


def test_training_never_sees_a_held_out_pair_or_length(monkeypatch, tiny_spec):
    torch.set_num_threads(1)
    drawn = []
    original = BindingContexts.sample

    def recording(self, batch_size, gen, split="train", bindings=None):
        batch = original(self, batch_size, gen, split, bindings)
        drawn.append((split, batch, self))
        return batch

    monkeypatch.setattr(BindingContexts, "sample", recording)
    spec = tiny_spec("binding_ids", "train.steps=6", "task.held_out_pairs=0.2")
    binding_ids.run(spec, RunContext(torch.device("cpu")))
    training = [(b, task) for split, b, task in drawn if len(b.tokens) == spec.train.batch_size]
    assert len(training) == 6
    for batch, task in training:
        assert not task.held[batch.entities, batch.attributes].any()
        assert batch.entities.shape[1] in task.lengths
    held = [b for split, b, _ in drawn if split == "held_out_pairs"]
    assert held and all(task.held[b.entities, b.attributes].any(1).all() for b in held)


def test_a_run_reports_every_test_per_layer_and_along_training(tiny_spec):
    torch.set_num_threads(1)
    result = binding_ids.run(tiny_spec("binding_ids"), RunContext(torch.device("cpu")))
    per_layer = result.extra["per_layer"]
    assert list(per_layer) == ["embed", "blocks.0"]
    assert len(result.curve) == 2 and all(set(TESTS) <= set(point) for point in result.curve)
    assert all(0.0 <= per_layer[layer][key] <= 1.0 for layer in per_layer for key in binding_ids.HELD)
    for test in TESTS:
        assert 0.0 <= result.metrics[test] <= 1.0
        assert result.metrics[f"{test}_layer"] == 1.0  # the one block, never the embedding


def scores(position=0.0, read=0.0, factorizability=0.0, control=0.0, others=1.0):
    """One layer's scores: the given factorizability (both) and control, the additivity tests at `others`."""
    out = {"position": position, "read": read, "position_control": 0.0}
    for test in TESTS:
        if test != "position":
            out[test], out[f"{test}_control"] = (
                (factorizability, control) if "factor" in test else (others, 0.0)
            )
    return out


def test_position_is_read_at_the_block_where_the_attributes_are_read():
    per_layer = {
        "embed": scores(0.0, 1.0, 1.0),
        "blocks.0": scores(0.7, 0.9, 0.6, 0.1),
        "blocks.1": scores(1.0, 0.0, 0.7, 0.4),
    }
    assert binding_ids.best_block(per_layer, "position") == "blocks.0"  # blocks.1's 1.0 is empty
    # the highest score above its floor, never the embedding (a patch there swaps the token)
    assert binding_ids.best_block(per_layer, "factorizability_entity") == "blocks.0"
    # among blocks that are read, the one where position passes best, not the one read most
    per_layer["blocks.1"] = scores(1.0, 0.8, 0.2)
    assert binding_ids.best_block(per_layer, "position") == "blocks.1"


def test_the_one_block_score_is_the_weakest_test_where_all_are_best_together():
    # each test passes at some block, but never all at one: the lexical and positional halves
    per_layer = {
        "embed": scores(0.0, 1.0, 1.0),
        "blocks.0": scores(0.0, 1.0, 1.0, others=0.0),  # factorizable, positional
        "blocks.1": scores(1.0, 0.9, 0.3, others=0.0),  # position-independent, not factorizable
    }
    found = binding_ids.summary(per_layer, list(per_layer))
    assert found["factorizability_entity"] == 1.0 and found["position"] == 1.0
    assert found["binding_id_score"] == 0.0 and found["binding_id_layer"] in (1.0, 2.0)
    per_layer["blocks.1"] = scores(0.9, 0.9, 0.8, 0.2, others=0.7)  # everything at block 1
    found = binding_ids.summary(per_layer, list(per_layer))
    assert found["binding_id_layer"] == 2.0 and abs(found["binding_id_score"] - 0.6) < 1e-9


@pytest.mark.parametrize(
    "sets, message",
    [
        (["tests.bindings=5", "task.bindings=4"], "tests.bindings=5 must be at most task.bindings=4"),
        (["task.entities=6", "task.bindings=6"], "task.bindings \\+ 1 = 7"),
        (["model.d_model=30", "model.heads=4"], "multiple of model.heads"),
    ],
)
def test_impossible_settings_name_themselves(sets, message):
    with pytest.raises(SpecError, match=message):
        make_plan("binding_ids", sets=sets)


class Planted(torch.nn.Module):
    """Two hookable codes of each token: `lexical` is its own and the previous token's one-hot
    (an attribute holds its entity), `slot` the one-hot index of its statement."""

    def __init__(self, vocab: int, slots: int):
        super().__init__()
        self.vocab, self.slots = vocab, slots
        self.lexical, self.slot = torch.nn.Identity(), torch.nn.Identity()

    def forward(self, tokens):
        onehot = torch.nn.functional.one_hot(tokens, self.vocab).float()
        previous = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        self.lexical(torch.cat([onehot, previous], -1))
        statement = torch.nn.functional.one_hot(
            (torch.arange(tokens.shape[1]) // 3).clamp(max=self.slots), self.slots + 1
        )
        self.slot(statement.float().expand(len(tokens), -1, -1))
        return torch.zeros(*tokens.shape, self.vocab)


def test_the_probes_read_a_planted_entity_code_and_a_planted_slot_code():
    task = BindingContexts(entities=8, attributes=8, lengths=(3,), held_out_lengths=(), held_out_pairs=0.0)
    fit, test = (task.for_patching(task.sample(400, torch.Generator().manual_seed(s))) for s in (1, 2))
    found = binding_ids.held_at_attributes(Planted(len(task.vocab), 3), ["lexical", "slot"], fit, test, 3)
    assert found["lexical"]["entity_at_attribute"] == 1.0
    assert abs(found["lexical"]["slot_at_attribute"] - 1 / 3) < 0.1  # the entity says nothing of the slot
    assert found["slot"]["slot_at_attribute"] == 1.0
    assert abs(found["slot"]["entity_at_attribute"] - 1 / 8) < 0.06
