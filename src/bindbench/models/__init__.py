"""Reference models: plain torch.nn.Modules that know nothing of tasks or experiments."""

from bindbench.models.mlp import MLP
from bindbench.models.seq2seq import LSTMSeq2Seq, TransformerSeq2Seq

__all__ = ["MLP", "LSTMSeq2Seq", "TransformerSeq2Seq"]
