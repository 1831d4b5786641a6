"""Metrics shared by experiments."""

from __future__ import annotations

import torch


def r2_score(prediction: torch.Tensor, target: torch.Tensor, per_task: bool = False) -> torch.Tensor:
    """Returns R^2 = 1 - MSE / (per-task, per-output variance over the task's samples).

    Shapes (..., b, s, o): any leading axes (ensemble members), b tasks, s samples,
    o outputs. As in the reference, the ratio is taken per task and output, then averaged
    over tasks and outputs (or over outputs only, per task). Returns shape (...) or (..., b).
    """
    squared_error = (prediction - target).pow(2).mean(dim=-2)  # (..., b, o)
    variance = (target - target.mean(dim=-2, keepdim=True)).pow(2).mean(dim=-2)  # (..., b, o)
    r2 = 1.0 - squared_error / variance
    return r2.mean(dim=-1) if per_task else r2.mean(dim=(-2, -1))
