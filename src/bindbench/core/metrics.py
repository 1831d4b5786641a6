"""Metrics shared by experiments."""

from __future__ import annotations

import torch


def r2_score(prediction: torch.Tensor, target: torch.Tensor, per_task: bool = False) -> torch.Tensor:
    """Returns R^2 = 1 - MSE / (per-task, per-output variance over the task's samples).

    Shapes (b, s, o): b tasks, s samples, o outputs. As in the reference, the ratio is
    taken per task and output, then averaged (over everything, or over s, o per task).
    """
    squared_error = (prediction - target).pow(2).mean(dim=1)  # (b, o)
    variance = (target - target.mean(dim=1, keepdim=True)).pow(2).mean(dim=1)  # (b, o)
    r2 = 1.0 - squared_error / variance
    return r2.mean(dim=1) if per_task else r2.mean()
