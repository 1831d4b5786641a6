"""A model BindBench does not ship, for the README's "Your own model" example.

    PYTHONPATH=docs/examples bindbench run composition --set model.factory=gated_mlp:GatedMLP

A gated hidden layer (a multiplicative interaction, as in a GLU): does it generalize to
held-out module combinations better than the plain MLP of the same width?
"""

import torch
from torch import nn


class GatedMLP(nn.Module):
    """One hidden layer of `width` units, each a ReLU unit times a sigmoid gate, then a readout.

    Takes any leading axes: composition calls it on (batch, samples, input_dim), structure
    on (batch, input_dim)."""

    def __init__(self, input_dim: int, output_dim: int, width: int = 256):
        super().__init__()
        self.value = nn.Linear(input_dim, width)
        self.gate = nn.Linear(input_dim, width)
        self.readout = nn.Linear(width, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.value(x)) * torch.sigmoid(self.gate(x)))
