import torch

from bindbench.core.seeds import seed_init
from bindbench.models.lm import DecoderLM


def test_the_model_is_causal_a_later_token_moves_no_earlier_logit():
    seed_init(0)
    model = DecoderLM(vocab=12, max_len=8, d_model=16, depth=2, heads=2).eval()
    tokens = torch.randint(12, (3, 8), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 12
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (3, 8, 12)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])
