"""Vectorized ensembles: E models of one shape trained as one batched model.

Small models waste a CPU on per-call overhead; stacking E of them turns E small matmuls
into one batched matmul. Parameters are stacked along a leading member axis (e) and the
forward pass is `vmap` over `functional_call` of one shared module, so any torch module
whose members share parameter shapes can be stacked. The optimizer is AdamW written for
stacked tensors, with a learning rate and weight decay per member, and it follows
`torch.optim.AdamW` step for step, so each member trains as it would alone; the gradient
clip per member likewise follows `torch.nn.utils.clip_grad_norm_`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Ensemble:
    """E models of one architecture, stacked; calling it maps inputs (e, ...) to outputs (e, ...)."""

    def __init__(self, models: list[nn.Module]):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.params, self.buffers = stack_module_state(models)  # leaves (e, ...) that need grad
        self.size = len(models)
        # The template lives on the meta device: it holds the architecture, not the numbers.
        self.template = copy.deepcopy(models[0]).to("meta")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        def one(params, buffers, inputs):
            return functional_call(self.template, (params, buffers), (inputs,))

        return vmap(one)(self.params, self.buffers, x)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> Ensemble:
        self.template.train(mode)
        return self

    def eval(self) -> Ensemble:
        return self.train(False)

    def member(self, index: int) -> nn.Module:
        """A standalone copy of member `index` (for probes, checkpoints, inspection)."""
        device = next(iter(self.params.values())).device
        model = copy.deepcopy(self.template).to_empty(device=device)
        state = {name: p[index].detach().clone() for name, p in self.params.items()}
        state.update({name: b[index].clone() for name, b in self.buffers.items()})
        model.load_state_dict(state)
        return model


@torch.no_grad()
def clip_member_grad_norms_(params: list[torch.Tensor], max_norm: torch.Tensor) -> torch.Tensor:
    """Clips each member's gradient norm to its `max_norm` (e,) in place; returns the (e,) norms.

    Each member gets what `torch.nn.utils.clip_grad_norm_` does to it trained alone: the norm
    over all of its parameters, and its grads scaled by max_norm / (norm + 1e-6) when that is
    below 1. A member whose max_norm is inf is not clipped.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros_like(max_norm)
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, dim=0)  # (e,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    # not the clamp alone: inf / inf (a non-finite norm) is nan, and an unclipped member keeps its grads
    coef = torch.where(torch.isfinite(max_norm), coef, 1.0)
    for g in grads:
        g.mul_(coef.view((-1,) + (1,) * (g.ndim - 1)))
    return total


class StackedAdamW:
    """AdamW on stacked parameters (e, ...) with a learning rate and weight decay per member.

    As in `make_optimizer`, weight decay applies to parameters that are matrices for each
    member (ndim >= 3 stacked) and not to biases or norms.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        self.lr, self.weight_decay = lr, weight_decay  # (e,)
        self.betas, self.eps = betas, eps
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr_factor: torch.Tensor) -> None:
        """One AdamW step; `lr_factor` (e,) scales each member's rate (schedule, or 0 to freeze)."""
        beta1, beta2 = self.betas
        self.step_count += 1
        bias1 = 1 - beta1**self.step_count
        bias2_sqrt = math.sqrt(1 - beta2**self.step_count)
        lr = self.lr * lr_factor  # (e,)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.ndim - 1)
            lr_e = lr.view(shape)
            if p.ndim >= 3:  # a matrix per member
                p.mul_(1 - lr_e * self.weight_decay.view(shape))
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.sub_(lr_e / bias1 * m / denom)
