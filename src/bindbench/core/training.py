"""The training loop every experiment shares: AdamW, a schedule, online data, evaluation.

The recipe is the reference's: AdamW with weight decay off for 1-D parameters (biases,
norms), a constant, cosine or halving learning rate with linear warm-up (halving: the
Slot Attention reference's 0.5^(step/half_life), from step 0), a fresh batch from the
task generator at every step, evaluation every `eval_every` steps and at the end.
A non-finite loss stops training and marks the run diverged instead of failing the sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field, model_validator

from bindbench.core.config import Spec


class TrainSpec(Spec):
    """Optimization settings (defaults: the hyperteacher reference config)."""

    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(128, ge=1, description="tasks per step")
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(3e-3, ge=0, description="AdamW decay, on >=2-D parameters only")
    schedule: Literal["constant", "cosine", "halving"] = Field(
        "constant",
        description="constant, cosine to 0, or halving every `half_life` steps"
        " (the Slot Attention reference: 0.5^(step/100k), from step 0)",
    )
    half_life: int = Field(100_000, ge=1, description="steps per halving of the rate (schedule='halving')")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr")
    eval_every: int = Field(500, ge=1, description="steps between evaluations")
    clip_norm: float | None = Field(
        None, gt=0, description="clip of the global gradient norm before each step (null: none)"
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="decay of a moving average of the weights (warmed up as min(ema, (1+n)/(10+n))), "
        "evaluated and kept in place of the last weights (null: none)",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: forward and loss under bfloat16 autocast (weights, AdamW, evaluation fp32)"
    )

    @model_validator(mode="after")
    def _warmup_within_training(self) -> TrainSpec:
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(
                f"train.warmup_steps={self.warmup_steps} must be less than train.steps={self.steps}"
            )
        return self


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The training step's autocast context (`TrainSpec.precision`): bfloat16 for bf16, off for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Returns AdamW with weight decay on matrices and none on 1-D parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def lr_factor(step: int, spec: TrainSpec) -> float:
    """Returns the learning-rate multiplier at `step` (0-based): warm-up, then flat or cosine.

    "halving" is the Slot Attention reference's decay, 0.5^(step/half_life) from step 0:
    during warm-up it multiplies the warm-up factor instead of starting after it."""
    warmup = (step + 1) / spec.warmup_steps if step < spec.warmup_steps else 1.0
    if spec.schedule == "halving":
        return warmup * 0.5 ** (step / spec.half_life)
    if step < spec.warmup_steps:
        return warmup
    if spec.schedule == "constant":
        return 1.0
    decay_steps = max(1, spec.steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    curve: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    diverged: bool = False
    steps: int = 0
    seconds: float = 0.0


def _due(done: int, spec: TrainSpec) -> bool:
    """Whether an evaluation follows step `done` (every eval_every steps, and at the end)."""
    return done % spec.eval_every == 0 or done == spec.steps


def _diverged(result: TrainResult, done: int) -> None:
    result.diverged, result.steps = True, done
    result.curve.append({"step": done, "train_loss": float("nan")})


def _close(result: TrainResult, seconds: float) -> TrainResult:
    """Sets the run's time and its final metrics (the last evaluation, if it did not diverge)."""
    result.seconds = seconds
    if result.curve and not result.diverged:
        result.final = {k: v for k, v in result.curve[-1].items() if k not in ("step", "lr", "seconds")}
    return result


def train(
    model: torch.nn.Module,
    spec: TrainSpec,
    sample_batch: Callable[[int], tuple],
    loss_fn: Callable[[torch.nn.Module, tuple], torch.Tensor],
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    on_eval: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Trains `model` in place and returns its learning curve and final evaluation.

    `sample_batch(step)` gives a batch, `loss_fn(model, batch)` a scalar loss and
    `evaluate(model)` a dict of metrics (called under no_grad in eval mode). `spec.clip_norm`,
    when set, clips the global gradient norm before each step. With `spec.ema`, an
    exponential moving average of the weights (and buffers) after every step is what is
    evaluated, and what `model` holds when training ends.
    """
    optimizer = make_optimizer(model, spec.lr, spec.weight_decay)
    averaged = None if spec.ema is None else ema_copy(model, spec.ema)
    scored = model if averaged is None else averaged.module
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, spec))
    result = TrainResult()
    window_loss = None  # summed on the device; read once per evaluation
    window_steps = 0
    start = time.perf_counter()

    def record(step: int) -> None:
        scored.eval()
        with torch.no_grad():
            point = {"step": step, **evaluate(scored)}
        scored.train()
        if window_steps:
            point["train_loss"] = float(window_loss) / window_steps
        point["lr"] = optimizer.param_groups[0]["lr"]
        point["seconds"] = time.perf_counter() - start
        result.curve.append(point)
        if on_eval is not None:
            on_eval(step, point)

    mixed = autocast(spec.precision, next(model.parameters()).device)
    model.train()
    for step in range(spec.steps):
        batch = sample_batch(step)
        with mixed:
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clip_norm)
        optimizer.step()
        schedule.step()
        if averaged is not None:
            averaged.update_parameters(model)
        detached = loss.detach()
        window_loss = detached if window_loss is None else window_loss + detached
        window_steps += 1
        done = step + 1
        if _due(done, spec):
            if not math.isfinite(float(window_loss)):
                _diverged(result, done)
                break
            record(done)
            window_loss, window_steps = None, 0
        result.steps = done
    if averaged is not None and not result.diverged:
        model.load_state_dict(averaged.module.state_dict())
    return _close(result, time.perf_counter() - start)


def ema_copy(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """A copy of `model` that `update_parameters(model)` averages: the first update copies
    the weights (and buffers), the n-th after it (n = 1, 2, ...) moves each towards the
    model's by 1 - min(decay, (1 + n) / (10 + n)), so that early steps are not held back."""

    def average(kept: list[torch.Tensor], new: list[torch.Tensor], n: torch.Tensor) -> None:
        rate = min(decay, (1 + int(n)) / (10 + int(n)))
        for a, b in zip(kept, new):
            a.lerp_(b, 1 - rate)

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def train_ensemble(
    ensemble,
    specs: list[TrainSpec],
    sample_batch: Callable[[int], tuple],
    loss_fn: Callable[[object, tuple], torch.Tensor],
    evaluate: Callable[[object], list[dict[str, float]]],
    on_eval: Callable[[int, int, dict], None] | None = None,
) -> list[TrainResult]:
    """Trains the members of a `core.ensemble.Ensemble` together; one TrainResult per member.

    Members share steps, batch size and evaluation points (they are one batched model);
    learning rate, weight decay, schedule and gradient clip are per member. `loss_fn` gives
    the (e,) per-member losses and `evaluate` a list of metric dicts, one per member. A member
    whose loss turns non-finite is frozen and reported diverged; the others go on.
    `on_eval(member, step, point)` is called at each member's evaluation.
    """
    from bindbench.core.ensemble import StackedAdamW, clip_member_grad_norms_

    first = specs[0]
    if any(spec.ema is not None for spec in specs):
        raise ValueError("train.ema: ensembles keep no moving average; train the runs alone")
    shared = ("steps", "batch_size", "eval_every", "precision")
    for spec in specs:
        if any(getattr(spec, key) != getattr(first, key) for key in shared):
            raise ValueError("ensemble members must share train." + ", ".join(shared))
    params = ensemble.parameters()
    device = params[0].device
    optimizer = StackedAdamW(
        params,
        lr=torch.tensor([s.lr for s in specs], device=device),
        weight_decay=torch.tensor([s.weight_decay for s in specs], device=device),
    )
    clips = torch.tensor([math.inf if s.clip_norm is None else s.clip_norm for s in specs], device=device)
    clipping = any(s.clip_norm is not None for s in specs)  # else skip the norms at every step

    def factors(step: int) -> torch.Tensor:  # (e,) every member's schedule at `step`
        return torch.tensor([lr_factor(step, s) for s in specs], device=device)

    alive = torch.ones(len(specs), device=device)
    results = [TrainResult() for _ in specs]
    window_loss = torch.zeros(len(specs), device=device)
    window_steps = 0
    start = time.perf_counter()

    mixed = autocast(first.precision, device)
    ensemble.train()
    for step in range(first.steps):
        batch = sample_batch(step)  # data outside autocast: the tasks stay fp32
        with mixed:
            losses = loss_fn(ensemble, batch)  # (e,)
        optimizer.zero_grad()
        losses.sum().backward()
        if clipping:
            clip_member_grad_norms_(params, clips)
        optimizer.step(factors(step) * alive)
        window_loss += losses.detach()
        window_steps += 1
        done = step + 1
        if not _due(done, first):
            continue
        finite = torch.isfinite(window_loss).tolist()
        ensemble.eval()
        with torch.no_grad():
            points = evaluate(ensemble)
        ensemble.train()
        seconds = time.perf_counter() - start
        for member, (spec, result) in enumerate(zip(specs, results)):
            if result.diverged:
                continue
            if not finite[member]:
                _diverged(result, done)
                alive[member] = 0.0
                continue
            point = {"step": done, **points[member], "train_loss": float(window_loss[member]) / window_steps}
            point["lr"] = spec.lr * lr_factor(done, spec)
            point["seconds"] = seconds
            result.curve.append(point)
            result.steps = done
            if on_eval is not None:
                on_eval(member, done, point)
        window_loss.zero_()
        window_steps = 0
        if not alive.any():
            break
    seconds = time.perf_counter() - start
    return [_close(result, seconds) for result in results]
