"""Sequence-to-sequence models: a Transformer and an LSTM with attention, one interface.

Both take padded token ids (0 = padding; the target starts with <bos>) and give
`forward(source, target_in) -> logits` for teacher forcing, and `greedy(source, max_len)`
for batched greedy decoding with a length cap. Axes: b batch, s source position,
t target position, d feature, v vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """Fixed sine/cosine position codes (Vaswani et al. 2017), (length, dim)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


class Seq2Seq(nn.Module):
    """What both models share: token ids, the padding mask and greedy decoding."""

    def __init__(self, pad: int = 0, bos: int = 1, eos: int = 2):
        super().__init__()
        self.pad, self.bos, self.eos = pad, bos, eos

    def start(self, source: torch.Tensor):
        """The decoding state after reading the source."""
        raise NotImplementedError

    def next_logits(self, state, tokens: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Logits (b, v) for the token after `tokens` (b, t: <bos> and the tokens so far)."""
        raise NotImplementedError

    @torch.no_grad()
    def greedy(self, source: torch.Tensor, max_len: int) -> torch.Tensor:
        """Greedy decoding of a batch: ids (b, <= max_len + 1), starting with <bos>; after a
        sequence's <eos>, padding. Stops when every sequence has ended or at max_len tokens."""
        state = self.start(source)
        tokens = torch.full((source.shape[0], 1), self.bos, dtype=torch.long, device=source.device)
        ended = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
        for _ in range(max_len):
            logits, state = self.next_logits(state, tokens)
            token = logits.argmax(-1).masked_fill(ended, self.pad)
            tokens = torch.cat([tokens, token[:, None]], dim=1)
            ended |= token == self.eos
            if bool(ended.all()):
                break
        return tokens


class PrefixSeq2Seq(Seq2Seq):
    """Any module `own(source, target_in) -> logits (b, t, v)` as a Seq2Seq: it trains by
    teacher forcing as it is and decodes greedily by calling it on the whole prefix at each
    step (no cache, so a step costs the prefix). Its decoder must be causal: the logits at
    position t may depend on target_in[:, : t + 1] only."""

    def __init__(self, own: nn.Module, **ids):
        super().__init__(**ids)
        self.own = own

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.own(source, target_in)

    def start(self, source):
        return source

    def next_logits(self, state, tokens):
        return self.own(state, tokens)[:, -1], state


class Attention(nn.Module):
    """Multi-head attention of queries x (b, t, d) over keys/values from kv (b, s, d)."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        (b, t, d), s, h = x.shape, kv.shape[1], self.heads
        q = self.query(x).view(b, t, h, d // h).transpose(1, 2)  # (b, h, t, d/h)
        k, v = self.key_value(kv).view(b, s, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x (b, h, s, d/h)
        y = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm Transformer block: self-attention, cross-attention (decoder only), feed-forward."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float, cross: bool):
        super().__init__()
        self.self_norm, self.self_attn = nn.LayerNorm(d_model), Attention(d_model, heads, dropout)
        if cross:
            self.cross_norm, self.cross_attn = nn.LayerNorm(d_model), Attention(d_model, heads, dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.ReLU(), nn.Linear(ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask, memory=None, memory_mask=None, past=None):
        """`past`: this block's normed inputs at earlier positions, when decoding step by step;
        returns the output and the normed inputs so far (the cache for the next step)."""
        h = self.self_norm(x)
        seen = h if past is None else torch.cat([past, h], dim=1)
        x = x + self.drop(self.self_attn(h, seen, mask))
        if memory is not None:
            x = x + self.drop(self.cross_attn(self.cross_norm(x), memory, memory_mask))
        return x + self.drop(self.ff(self.ff_norm(x))), seen


class TransformerSeq2Seq(Seq2Seq):
    """Encoder-decoder Transformer (pre-norm, sinusoidal positions, padding masks); greedy
    decoding caches each decoder block's inputs, so a step costs one position, not the prefix."""

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        ff: int = 256,
        dropout: float = 0.1,
        **ids,
    ):
        super().__init__(**ids)
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.d_model = d_model
        self.source_embed = nn.Embedding(source_vocab, d_model, padding_idx=self.pad)
        self.target_embed = nn.Embedding(target_vocab, d_model, padding_idx=self.pad)
        self.encoder = nn.ModuleList(Block(d_model, heads, ff, dropout, cross=False) for _ in range(layers))
        self.decoder = nn.ModuleList(Block(d_model, heads, ff, dropout, cross=True) for _ in range(layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(d_model, target_vocab)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # unit-variance embeddings plus codes in [-1, 1]: positions stay visible (scaling the
        # embeddings by sqrt(d_model), as for small-initialized ones, drowns them)
        codes = sinusoids(offset + ids.shape[1], self.d_model, ids.device)[offset:]
        return self.drop(embedding(ids) + codes)

    def start(self, source):
        mask = (source != self.pad)[:, None, None, :]  # (b, 1, 1, s): True = attend
        x = self._embed(self.source_embed, source)
        for block in self.encoder:
            x, _ = block(x, mask)
        return self.encoder_norm(x), mask, [None] * len(self.decoder)

    def _decode(self, memory, memory_mask, pasts, target_in, offset=0):
        x = self._embed(self.target_embed, target_in, offset)
        t = target_in.shape[1]
        # later target positions are hidden; padding comes only after <eos>, where no loss is taken
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril() if pasts[0] is None else None
        seen = []
        for block, past in zip(self.decoder, pasts):
            x, cache = block(x, causal, memory, memory_mask, past)
            seen.append(cache)
        return self.readout(self.decoder_norm(x)), seen  # (b, t, v)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory, mask, pasts = self.start(source)
        return self._decode(memory, mask, pasts, target_in)[0]

    def next_logits(self, state, tokens):
        memory, mask, pasts = state
        offset = 0 if pasts[0] is None else pasts[0].shape[1]
        logits, seen = self._decode(memory, mask, pasts, tokens[:, offset:], offset)
        return logits[:, -1], (memory, mask, seen)


class LSTMSeq2Seq(Seq2Seq):
    """LSTM encoder and decoder with Luong ("general") attention over the encoder outputs;
    the decoder starts from the encoder's final state."""

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.1,
        **ids,
    ):
        super().__init__(**ids)
        between = dropout if layers > 1 else 0.0
        self.source_embed = nn.Embedding(source_vocab, hidden, padding_idx=self.pad)
        self.target_embed = nn.Embedding(target_vocab, hidden, padding_idx=self.pad)
        self.encoder = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=between)
        self.dropout = nn.Dropout(dropout)
        self.attend = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.readout = nn.Linear(hidden, target_vocab)

    def start(self, source):
        padding = source == self.pad
        lengths = (~padding).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(self.source_embed(source)), lengths, batch_first=True, enforce_sorted=False
        )
        outputs, state = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=source.shape[1])
        return outputs, padding, state  # (b, s, d), (b, s), final (h, c)

    def _attend(self, hidden, outputs, padding):
        scores = torch.einsum("btd,bsd->bts", self.attend(hidden), outputs)
        weights = scores.masked_fill(padding[:, None, :], float("-inf")).softmax(-1)
        context = torch.einsum("bts,bsd->btd", weights, outputs)
        mixed = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        return self.readout(self.dropout(mixed))  # (b, t, v)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        outputs, padding, state = self.start(source)
        hidden, _ = self.decoder(self.dropout(self.target_embed(target_in)), state)
        return self._attend(hidden, outputs, padding)

    def next_logits(self, state, tokens):
        outputs, padding, recurrent = state
        hidden, recurrent = self.decoder(self.target_embed(tokens[:, -1:]), recurrent)
        return self._attend(hidden, outputs, padding)[:, -1], (outputs, padding, recurrent)


# ----------------------------------------------------------------------------- training and scoring
# on padded id tensors: what the SCAN experiment and the benchmarks share


def trim(source: torch.Tensor, target: torch.Tensor, pad: int = 0):
    """Drops the columns that are padding in every row of this batch."""
    source_len = int((source != pad).sum(1).max())
    target_len = int((target != pad).sum(1).max())
    return source[:, :source_len], target[:, :target_len]


def by_target_length(source: torch.Tensor, target: torch.Tensor, groups: int, pad: int = 0) -> list[tuple]:
    """The batch's rows sorted by output length and cut into `groups` groups, each padded only
    to its own longest row: the loss is that of the whole batch, with less padding computed."""
    order = (target != pad).sum(1).argsort()
    return [trim(source[rows], target[rows], pad) for rows in order.tensor_split(groups)]


def sequence_loss(model: Seq2Seq, batch) -> torch.Tensor:
    """Teacher forcing: mean cross-entropy of each next target token, padding ignored.
    `batch` is (source, target) or a list of such groups, whose tokens are pooled."""
    groups = batch if isinstance(batch, list) else [batch]
    total, tokens = 0.0, 0
    for source, target in groups:
        logits = model(source, target[:, :-1])  # (b, t, v)
        total = total + nn.functional.cross_entropy(
            logits.transpose(1, 2), target[:, 1:], ignore_index=model.pad, reduction="sum"
        )
        tokens = tokens + (target[:, 1:] != model.pad).sum()
    return total / tokens


def greedy_score(model: Seq2Seq, source: torch.Tensor, target: torch.Tensor, batch: int = 1024) -> dict:
    """Greedy decoding against the targets: per-command exact match (bool) and tokens right.

    A prediction is exact when every target token and the <eos> after them are right;
    token accuracy counts, position by position, the target tokens (and <eos>) matched."""
    pad = model.pad
    exact, right, total = [], 0, 0
    for start in range(0, len(source), batch):
        s, t = trim(source[start : start + batch], target[start : start + batch], pad)
        want = t[:, 1:]  # actions and <eos>, then padding
        got = model.greedy(s, max_len=want.shape[1])[:, 1:]
        got = nn.functional.pad(got, (0, want.shape[1] - got.shape[1]), value=pad)
        counted = want != pad
        hits = (got == want) & counted
        exact.append((hits | ~counted).all(1))
        right += int(hits.sum())
        total += int(counted.sum())
    return {"exact": torch.cat(exact), "token_accuracy": right / total}
