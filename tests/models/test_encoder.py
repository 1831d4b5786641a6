import pytest
import torch

from bindbench.core.masks import MaskSearch, MaskSettings, apply_mask, maskable_weights
from bindbench.models.encoder import EncoderClassifier


def model_and_tokens():
    torch.manual_seed(0)
    return EncoderClassifier(vocab=7, length=4, classes=3, d_model=16, depth=2, heads=4), torch.randint(
        7, (5, 4)
    )


def test_logits_per_sequence_read_at_cls_see_every_position():
    model, tokens = model_and_tokens()
    logits = model(tokens)
    assert logits.shape == (5, 3)
    for position in range(4):  # no causal mask: the last token changes the [CLS] readout too
        changed = tokens.clone()
        changed[:, position] = (changed[:, position] + 1) % 7
        assert not torch.allclose(model(changed), logits)
    with pytest.raises(ValueError, match="at most length=4"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_masks_cover_attention_and_feed_forward_weights_and_all_ones_changes_nothing():
    model, tokens = model_and_tokens()
    names = maskable_weights(model, include=["blocks.*"])
    assert names == [
        f"blocks.{i}.{layer}.weight"
        for i in range(2)
        for layer in ("self_attn.query", "self_attn.key_value", "self_attn.out", "ff.0", "ff.2")
    ]
    expected = model(tokens)
    params = dict(model.named_parameters())
    ones = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
    assert torch.equal(apply_mask(model, ones)(tokens), expected)
    # the search's forward pass under a saturated soft mask is the model's own
    search = MaskSearch(model, names, MaskSettings(init=10.0))
    assert torch.allclose(search(1.0, tokens), expected, atol=1e-6)
    # and a mask that drops the attention's output projection does change them
    no_attention = {
        **ones,
        **{f"blocks.{i}.self_attn.out.weight": ~ones[f"blocks.{i}.self_attn.out.weight"] for i in range(2)},
    }
    assert not torch.allclose(apply_mask(model, no_attention)(tokens), expected)
