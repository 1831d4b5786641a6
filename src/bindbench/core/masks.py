"""Subnetwork masks: which weights of a trained, frozen model carry one function.

A binary mask over the Linear and Conv2d weights is trained while the weights stay frozen
(research note break-it-down.md, section 2): the subnetwork (the kept weights) should solve its
own subroutine, and ablating it (keeping the complement) should hurt that subroutine more
than another one. Two estimators of the binary mask:

- "continuous": continuous sparsification (Savarese et al. 2020, as Lepori, Serre & Pavlick
  2023 use it): the soft mask sigmoid(beta * s), beta rising geometrically from 1 to
  beta_final over the search, penalty lambda * sum sigmoid(beta * s); the hard mask is s > 0.
- "gumbel": the straight-through Gumbel-sigmoid of Csordas et al. (2021): logits start at 2,
  the forward pass uses the binary sample 1[sigmoid((l + logistic noise) / tau) > 0.5], the
  backward pass the sigmoid's gradient; penalty alpha * sum l; the hard mask is l >= 0.

A mask is a dict {parameter name: bool tensor of the weight's shape}, True where the weight is
kept. The model itself is never changed: the masked weights are substituted in a functional
call, and `apply_mask` / `ablate` return masked copies.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from bindbench.core.inputs import Inputs, call, length, rows
from bindbench.core.probes import evaluating

Mask = dict[str, torch.Tensor]  # parameter name -> bool tensor of its shape, True = kept
METHODS = ("continuous", "gumbel")


@dataclass(frozen=True)
class MaskSettings:
    """The search's hyperparameters; `None` takes the method's reference value."""

    method: Literal["continuous", "gumbel"] = "continuous"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2  # Adam on the logits (both references)
    penalty: float | None = None  # continuous: lambda = 1e-8 (Lepori); gumbel: alpha = 1e-4 (Csordas)
    init: float | None = None  # initial logit: continuous 0.05 (Lepori's sweep: -0.05..0.1); gumbel 2
    beta_final: float = 200.0  # continuous: the temperature reached at the last step
    tau: float = 1.0  # gumbel: the sigmoid's temperature

    def resolved(self) -> MaskSettings:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} must be one of {METHODS}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0 or self.beta_final < 1 or self.tau <= 0:
            raise ValueError(
                f"lr={self.lr}, beta_final={self.beta_final}, tau={self.tau}: need lr > 0, "
                "beta_final >= 1, tau > 0"
            )
        gumbel = self.method == "gumbel"
        penalty = self.penalty if self.penalty is not None else (1e-4 if gumbel else 1e-8)
        init = self.init if self.init is not None else (2.0 if gumbel else 0.05)
        if penalty < 0:
            raise ValueError(f"penalty={penalty} must be >= 0")
        return replace(self, penalty=penalty, init=init)


def maskable_weights(
    model: nn.Module, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()
) -> list[str]:
    """Names of the Linear and Conv2d weights whose module name matches a pattern of `include`
    and none of `exclude` (shell-style patterns, as `fnmatch`); biases, norms and embeddings are
    never masked."""
    include, exclude = list(include), list(exclude)

    def matches(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if matches(module_name, include) and not matches(module_name, exclude):
                names.append(f"{module_name}.weight" if module_name else "weight")
    return names


class _StraightThrough(torch.autograd.Function):
    """1[x > 0.5] forward, the identity's gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return (x > 0.5).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class MaskSearch(nn.Module):
    """One logit per masked weight of a frozen model, and the model's forward pass under the mask.

    `forward(progress, *inputs)` runs the model with every masked weight multiplied by its soft
    (continuous) or straight-through binary (gumbel) mask at `progress` in [0, 1] of the search;
    the model's own parameters get no gradient.
    """

    def __init__(self, model: nn.Module, names: list[str], settings: MaskSettings, generator=None):
        super().__init__()
        params = dict(model.named_parameters())
        unknown = [n for n in names if n not in params]
        if not names or unknown:
            raise ValueError(f"names={unknown or names}: need weights of the model (see maskable_weights)")
        self.model, self.names, self.settings, self.generator = (
            model,
            list(names),
            settings.resolved(),
            generator,
        )
        self.logits = nn.ParameterList(
            nn.Parameter(torch.full_like(params[n], self.settings.init, requires_grad=True)) for n in names
        )

    def beta(self, progress: float) -> float:
        return self.settings.beta_final**progress  # 1 at the start, beta_final at the end

    def soft(self, progress: float) -> list[torch.Tensor]:
        """The masks the forward pass multiplies the weights by."""
        if self.settings.method == "continuous":
            return [torch.sigmoid(self.beta(progress) * s) for s in self.logits]
        masks = []
        for logit in self.logits:
            u = torch.rand(logit.shape, generator=self.generator, device=logit.device).clamp(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((logit + u.log() - (-u).log1p()) / self.settings.tau)  # logistic noise
            masks.append(_StraightThrough.apply(soft))
        return masks

    def penalty(self, progress: float) -> torch.Tensor:
        if self.settings.method == "continuous":
            total = sum(torch.sigmoid(self.beta(progress) * s).sum() for s in self.logits)
        else:
            total = sum(logit.sum() for logit in self.logits)
        return self.settings.penalty * total

    def forward(self, progress: float, *inputs, **named_inputs):
        params = {n: p.detach() for n, p in self.model.named_parameters()}  # frozen, masked or not
        params.update({n: params[n] * m for n, m in zip(self.names, self.soft(progress))})
        return functional_call(self.model, params, inputs, named_inputs)

    def hard(self) -> Mask:
        keep = (lambda s: s > 0) if self.settings.method == "continuous" else (lambda s: s >= 0)
        return {n: keep(s.detach()) for n, s in zip(self.names, self.logits)}


Data = tuple[Inputs, torch.Tensor] | Callable[[int], tuple[Inputs, torch.Tensor]]


def find_subnetwork(
    model: nn.Module,
    data: Data,
    method: str = "continuous",
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    include: Iterable[str] = ("*",),
    exclude: Iterable[str] = (),
    seed: int = 0,
    **settings,
) -> Mask:
    """The binary mask over `model`'s Linear and Conv2d weights that keeps the function `data` asks for.

    `data` is (inputs, targets), from which minibatches of `batch_size` are drawn, or a
    callable step -> (inputs, targets); inputs are a tensor, a tuple of tensors
    (`model(*inputs)`) or a dict (`model(**inputs)`). The model is searched in eval mode
    and every module's mode is restored at the end. The search minimizes loss(model under the mask, targets)
    plus the sparsity penalty with Adam on the logits only; `model` is left unchanged. Further
    keyword arguments are `MaskSettings` fields (steps, lr, penalty, init, beta_final, tau, ...).
    """
    config = MaskSettings(method=method, **settings).resolved()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    sample = data if callable(data) else _minibatches(data, config.batch_size, generator)
    search = MaskSearch(model, maskable_weights(model, include, exclude), config, generator)
    optimizer = torch.optim.Adam(search.logits.parameters(), lr=config.lr)
    with evaluating(model):
        for step in range(config.steps):
            progress = step / max(config.steps - 1, 1)
            inputs, targets = sample(step)
            output = call(functools.partial(search, progress), inputs)
            objective = loss(output, targets) + search.penalty(progress)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
    return search.hard()


def _minibatches(data, batch_size: int, generator: torch.Generator):
    inputs, targets = data
    n = length(inputs, "data")
    if n != len(targets) or n == 0:
        raise ValueError(f"data: {n} input samples and {len(targets)} targets; need as many, > 0")

    def sample(step: int):
        index = torch.randint(n, (min(batch_size, n),), generator=generator, device=generator.device)
        return rows(inputs, index), targets[index]

    return sample


def _masked_copy(model: nn.Module, mask: Mask, keep: bool) -> nn.Module:
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, kept in mask.items():
            params[name].mul_(kept if keep else ~kept)
    return out


def apply_mask(model: nn.Module, mask: Mask) -> nn.Module:
    """A copy of `model` with the weights outside the mask set to zero: the subnetwork."""
    return _masked_copy(model, mask, keep=True)


def ablate(model: nn.Module, mask: Mask) -> nn.Module:
    """A copy of `model` with the mask's weights set to zero: the complement (zero-ablation)."""
    return _masked_copy(model, mask, keep=False)


def random_mask(mask: Mask, generator: torch.Generator | None = None) -> Mask:
    """A mask with as many kept weights as `mask` in every layer, at uniformly random places."""
    out = {}
    for name, kept in mask.items():
        order = torch.rand(kept.numel(), generator=generator, device=kept.device).argsort()
        flat = torch.zeros(kept.numel(), dtype=torch.bool, device=kept.device)
        flat[order[: int(kept.sum())]] = True
        out[name] = flat.view_as(kept)
    return out


def density(mask: Mask) -> dict[str, float]:
    """The fraction of weights kept, per layer."""
    return {name: kept.float().mean().item() for name, kept in mask.items()}


def kept_fraction(mask: Mask) -> float:
    """The fraction of all the masked layers' weights kept."""
    return sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())


def mask_iou(a: Mask, b: Mask) -> dict[str, float]:
    """Intersection over union of the kept weights of two masks, per layer (NaN where both are empty)."""
    if a.keys() != b.keys():
        raise ValueError(f"the masks cover different weights: {sorted(a.keys() ^ b.keys())}")
    return {
        n: ((a[n] & b[n]).sum() / (a[n] | b[n]).sum()).item() if (a[n] | b[n]).any() else float("nan")
        for n in a
    }
