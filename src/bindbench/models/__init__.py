"""Reference models: plain torch.nn.Modules that know nothing of tasks or experiments."""

from bindbench.models.mlp import MLP

__all__ = ["MLP"]
