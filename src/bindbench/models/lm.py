"""A small decoder-only Transformer language model: token ids (b, t) -> next-token logits.

The pre-norm blocks are the seq2seq Transformer's (`models.seq2seq.Block`, without
cross-attention) under a causal mask; positions are learned. `blocks.<i>` are the layers
the binding tests patch: each block's output is the residual stream after it.
Axes: b batch, t position, d feature, v vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from bindbench.models.seq2seq import Block


class DecoderLM(nn.Module):
    def __init__(
        self,
        vocab: int,
        max_len: int,
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        ff: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, ff or 4 * d_model, dropout, cross=False) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (b, t, v) of the token after each position, seeing only positions up to it."""
        t = tokens.shape[1]
        if t > len(self.position):
            raise ValueError(f"{t} tokens: the model takes at most max_len={len(self.position)}")
        x = self.embed(tokens) + self.position[:t]
        causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()  # True: may attend
        for block in self.blocks:
            x, _ = block(x, causal)
        return self.head(self.norm(x))
