"""A small Transformer encoder that classifies a token sequence (the analogue of BERT-Small).

A learned [CLS] vector is put before the token embeddings (with learned positions), the
pre-norm blocks are the seq2seq Transformer's (`models.seq2seq.Block`, no cross-attention,
no causal mask: every position sees every other), and `readout` maps the final [CLS]
state to class logits. Masks address the attention and feed-forward Linears by name:
`blocks.<i>.self_attn.query|key_value|out` and `blocks.<i>.ff.0|ff.2`.
Axes: b batch, t position, d feature.
"""

from __future__ import annotations

import torch
from torch import nn

from bindbench.models.seq2seq import Block


class EncoderClassifier(nn.Module):
    def __init__(
        self,
        vocab: int,
        length: int,
        classes: int,
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        ff: int | None = None,
    ):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.embed = nn.Embedding(vocab, d_model)
        self.cls = nn.Parameter(torch.randn(d_model) * 0.02)
        # at the embeddings' scale (unit normal): which symbol sits where is visible from the start
        self.position = nn.Parameter(torch.randn(length + 1, d_model))
        self.blocks = nn.ModuleList(
            Block(d_model, heads, ff or 2 * d_model, dropout=0.0, cross=False) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits (b, classes) of token ids (b, t), t at most `length`."""
        b, t = tokens.shape
        if t + 1 > len(self.position):
            raise ValueError(f"{t} tokens: the model takes at most length={len(self.position) - 1}")
        x = torch.cat([self.cls.expand(b, 1, -1), self.embed(tokens)], dim=1) + self.position[: t + 1]
        for block in self.blocks:
            x, _ = block(x, None)  # (b, t + 1, d)
        return self.readout(self.norm(x[:, 0]))
