"""Reference models: plain torch.nn.Modules that know nothing of tasks or experiments."""

from bindbench.models.mlp import MLP
from bindbench.models.seq2seq import LSTMSeq2Seq, TransformerSeq2Seq
from bindbench.models.slot_attention import Layout, SlotAttention, SlotAutoencoder, SlotMLPAutoencoder

__all__ = [
    "MLP",
    "LSTMSeq2Seq",
    "TransformerSeq2Seq",
    "Layout",
    "SlotAttention",
    "SlotAutoencoder",
    "SlotMLPAutoencoder",
]
