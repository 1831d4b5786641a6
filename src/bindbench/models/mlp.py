"""A plain multi-layer perceptron: `depth` x [Linear(width) + ReLU], then a Linear readout."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """The reference's student: depth hidden layers of `width` ReLU units and a linear output.

    Linear layers are named `hidden.0` .. `hidden.{depth-1}` and `readout`, so probes and masks can
    address them by name; the Linear outputs are the pre-activations.
    """

    def __init__(self, input_dim: int, output_dim: int, width: int = 1024, depth: int = 4):
        super().__init__()
        dims = [input_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.readout = nn.Linear(dims[-1], output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.readout(x)
