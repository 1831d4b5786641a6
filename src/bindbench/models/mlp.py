"""A plain multi-layer perceptron: `depth` x [Linear(width) + ReLU], then a Linear readout."""

from __future__ import annotations

import math

import torch
from torch import nn

# `reference`: Flax's Dense default, which the hyperteacher reference trains with (LeCun
# truncated normal, zero bias); `torch`: nn.Linear's own (kaiming-uniform, uniform bias).
INITS = ("reference", "torch")

# std of a unit normal truncated to [-2, 2]; dividing by it makes the truncated std exact
_TRUNCATED_STD = 0.87962566103423978


def lecun_truncated_normal_(layer: nn.Linear) -> nn.Linear:
    """Weights ~ normal truncated at 2 std with std 1/sqrt(fan_in) after truncation; bias 0."""
    std = 1.0 / math.sqrt(layer.in_features) / _TRUNCATED_STD
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


class MLP(nn.Module):
    """The hyperteacher reference's student: depth hidden layers of `width` ReLU units and a
    linear output.

    Linear layers are named `hidden.0` .. `hidden.{depth-1}` and `readout`, so probes and masks can
    address them by name; the Linear outputs are the pre-activations. `init` is one of INITS.
    """

    def __init__(
        self, input_dim: int, output_dim: int, width: int = 1024, depth: int = 4, init: str = "torch"
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init={init!r} must be one of {', '.join(INITS)}")
        dims = [input_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.readout = nn.Linear(dims[-1], output_dim)
        if init == "reference":
            for layer in [*self.hidden, self.readout]:
                lecun_truncated_normal_(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.readout(x)
