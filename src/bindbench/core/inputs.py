"""A model's inputs as the diagnostics take them: one tensor, a tuple or list of tensors
(`model(*inputs)`), or a dict of them (`model(**inputs)`), with one sample per row."""

from __future__ import annotations

from collections.abc import Callable

import torch

Inputs = torch.Tensor | tuple | list | dict


def tensors(inputs: Inputs) -> list[torch.Tensor]:
    """The input tensors, in order."""
    if isinstance(inputs, dict):
        return list(inputs.values())
    return list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]


def length(inputs: Inputs, what: str = "inputs") -> int:
    """The number of samples, which every input tensor must share."""
    sizes = {len(t) for t in tensors(inputs)}
    if len(sizes) != 1:
        raise ValueError(f"{what}: every input tensor needs the same number of samples, got {sorted(sizes)}")
    return sizes.pop()


def rows(inputs: Inputs, index: torch.Tensor) -> Inputs:
    """The samples at `index` of every input tensor, in the same structure."""
    if isinstance(inputs, dict):
        return {key: value[index] for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(value[index] for value in inputs)
    return inputs[index]


def call(model: Callable, inputs: Inputs):
    """`model(inputs)`, `model(*inputs)` or `model(**inputs)`."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)
