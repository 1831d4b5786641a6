"""Query readouts: networks that answer a question (a query vector) about an input.

On a fixed code (a vector per example):
- `QueryLinear`: one linear map of the code per query, logits = sum_q query_q (W_q code + b_q);
  for a one-hot query this is exactly a linear readout of the code chosen by the query.
- `QueryMLP`: an MLP on the code and the query side by side.

On images (b, 3, h, w), both over the Slot Attention encoder's feature set (b, n, d):
- `GlobalReader`: the mean of the features, a distributed code of the whole image, then an MLP
  with the query.
- `SlotReader`: Slot Attention groups the features into slots; the query attends over the
  slots (softmax of query-key dot products) and an MLP answers from the attended slot and a
  `context` (e.g. which attribute is asked for), not the query itself: what it answers is
  read from one slot, so an unseen combination in a slot is read like a seen one.
- `SlotAutoencoderReader`: the same head on the slots of an object-discovery autoencoder,
  for training on queries and reconstruction together.
Axes: b batch, q query, a answer class, k slot, d feature.
"""

from __future__ import annotations

import torch
from torch import nn

from bindbench.models.mlp import MLP
from bindbench.models.slot_attention import Encoder, ObjectDiscoveryAutoencoder, SlotAttention


class QueryLinear(nn.Module):
    def __init__(self, code_dim: int, query_dim: int, answers: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(query_dim, answers, code_dim))
        self.bias = nn.Parameter(torch.zeros(query_dim, answers))
        nn.init.normal_(self.weight, std=code_dim**-0.5)

    def forward(self, code: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bq,qad,bd->ba", query, self.weight, code) + query @ self.bias


class QueryMLP(nn.Module):
    def __init__(self, code_dim: int, query_dim: int, answers: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.mlp = MLP(code_dim + query_dim, answers, width, depth)

    def forward(self, code: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([code, query], -1))


class GlobalReader(nn.Module):
    def __init__(
        self,
        resolution: int,
        query_dim: int,
        answers: int,
        channels: int = 32,
        dim: int = 64,
        width: int = 128,
        stride: int = 2,
    ):
        super().__init__()
        self.encoder = Encoder((resolution, resolution), channels, dim, stride)
        self.readout = QueryMLP(dim, query_dim, answers, width, 2)

    def forward(self, images: torch.Tensor, query: torch.Tensor, context=None, noise=None) -> torch.Tensor:
        """Answer logits (b, answers); `context` and `noise` are unused (the SlotReader's)."""
        return self.readout(self.encoder(images).mean(1), query)


class SlotQueryHead(nn.Module):
    """A query attends over slots (softmax of query-key dot products); an MLP answers from the
    attended slot and a `context` (b, context_dim)."""

    def __init__(self, dim: int, query_dim: int, answers: int, context_dim: int, width: int = 128):
        super().__init__()
        self.to_query = nn.Linear(query_dim, dim)
        self.to_key = nn.Linear(dim, dim, bias=False)
        self.readout = QueryMLP(dim, context_dim, answers, width, 2)

    def attention(self, slots: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(b, k): how much the query (b, q) reads each slot of slots (b, k, d)."""
        logits = torch.einsum("bd,bkd->bk", self.to_query(query), self.to_key(slots))
        return (logits * slots.shape[-1] ** -0.5).softmax(1)

    def forward(self, slots: torch.Tensor, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        read = torch.einsum("bk,bkd->bd", self.attention(slots, query), slots)
        return self.readout(read, context)


class SlotReader(nn.Module):
    def __init__(
        self,
        resolution: int,
        query_dim: int,
        answers: int,
        context_dim: int,
        num_slots: int = 4,
        channels: int = 32,
        dim: int = 64,
        width: int = 128,
        iters: int = 3,
        stride: int = 2,
    ):
        super().__init__()
        self.encoder = Encoder((resolution, resolution), channels, dim, stride)
        self.slot_attention = SlotAttention(num_slots, dim, iters)
        self.head = SlotQueryHead(dim, query_dim, answers, context_dim, width)

    def attend(self, images: torch.Tensor, query: torch.Tensor, noise: torch.Tensor | None = None):
        """The slots (b, k, d) and the query's attention over them (b, k)."""
        slots = self.slot_attention(self.encoder(images), noise).slots
        return slots, self.head.attention(slots, query)

    def forward(self, images: torch.Tensor, query: torch.Tensor, context: torch.Tensor, noise=None):
        """Answer logits (b, answers) to `query` (b, q) given `context` (b, context_dim);
        `noise` (b, k, d) draws the initial slots (None: fresh)."""
        return self.head(self.slot_attention(self.encoder(images), noise).slots, query, context)


class SlotAutoencoderReader(nn.Module):
    """An object-discovery autoencoder with a `SlotQueryHead` on its slots, to be trained on
    queries and reconstruction together: the slots keep the objects reconstruction finds."""

    def __init__(self, autoencoder: ObjectDiscoveryAutoencoder, head: SlotQueryHead):
        super().__init__()
        self.autoencoder, self.head = autoencoder, head

    def forward(self, images: torch.Tensor, query: torch.Tensor, context: torch.Tensor, noise=None):
        slots, _ = self.autoencoder.slots_from(self.autoencoder.encoder(images), noise, None)
        return self.head(slots, query, context)
