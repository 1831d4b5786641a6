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


def mutual_information(x: torch.Tensor, y: torch.Tensor) -> float:
    """The plug-in mutual information in nats of two discrete variables, from paired samples
    x, y (n,) of non-negative integers: sum of p(x, y) log p(x, y) / (p(x) p(y)) over the
    joint counts (`sklearn.metrics.mutual_info_score`'s estimate). Its bias is upwards, about
    (|x| - 1)(|y| - 1) / 2n for independent variables."""
    if x.shape != y.shape or x.dim() != 1:
        raise ValueError(f"x and y must be paired samples (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        return float("nan")
    x, y = x.long().cpu(), y.long().cpu()
    joint = torch.zeros(int(x.max()) + 1, int(y.max()) + 1, dtype=torch.float64)
    joint.index_put_((x, y), torch.ones(len(x), dtype=torch.float64), accumulate=True)
    joint /= len(x)
    independent = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    seen = joint > 0
    return float((joint[seen] * (joint[seen] / independent[seen]).log()).sum())
