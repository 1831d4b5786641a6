import pytest
import torch

from bindbench.models import LSTMSeq2Seq, TransformerSeq2Seq

SOURCE_VOCAB, TARGET_VOCAB = 10, 9
MODELS = {
    "transformer": lambda: TransformerSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, d_model=32, heads=4, ff=64),
    "lstm": lambda: LSTMSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, hidden=32),
}


def batch(seed=0, n=6, s=7, t=9):
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(1, SOURCE_VOCAB, (n, s), generator=g)
    source[0, 4:] = 0  # one shorter command
    target = torch.randint(3, TARGET_VOCAB, (n, t), generator=g)
    target[:, 0] = 1
    target[:, -1] = 2
    return source, target


@pytest.mark.parametrize("kind", MODELS)
def test_padding_the_source_changes_nothing(kind):
    torch.manual_seed(0)
    model = MODELS[kind]().eval()
    source, target = batch()
    padded = torch.cat([source, torch.zeros(len(source), 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(source, target[:, :-1]), model(padded, target[:, :-1]))


@pytest.mark.parametrize("kind", MODELS)
def test_greedy_equals_argmax_of_the_full_forward_pass(kind):
    """Step-by-step decoding (with its cache) gives what teacher forcing on its own output gives."""
    torch.manual_seed(0)
    model = MODELS[kind]().eval()
    source, _ = batch()
    tokens = model.greedy(source, max_len=8)
    assert tokens.shape[1] <= 9 and (tokens[:, 0] == 1).all()
    logits = model(source, tokens[:, :-1])
    again = logits.argmax(-1)
    generated = tokens[:, 1:]
    live = torch.ones_like(generated, dtype=torch.bool)  # positions up to and including <eos>
    for i, row in enumerate(generated.tolist()):
        if 2 in row:
            live[i, row.index(2) + 1 :] = False
    assert torch.equal(again[live], generated[live])


@pytest.mark.parametrize("kind", MODELS)
def test_a_few_steps_fit_a_fixed_batch(kind):
    torch.manual_seed(0)
    model = MODELS[kind]()
    source, target = batch()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)

    def loss():
        logits = model(source, target[:, :-1])
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), target[:, 1:], ignore_index=0)

    first = loss().item()
    for _ in range(100):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert loss().item() < 0.5 * first
