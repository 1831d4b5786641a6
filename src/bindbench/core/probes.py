"""Linear probes: is a quantity linearly decodable from a network's hidden activations?

Activations are captured with forward hooks from any `torch.nn.Module` (by layer name, or
every Linear layer), so the probes work on models BindBench did not build. As in the
reference (Redhardt et al. 2025), the ridge probe has an intercept and lambda = 1 and is
scored by R^2 averaged over targets; a logistic probe covers categorical targets.
Everything is solved in float64 in closed form or by L-BFGS, on the activations' device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from bindbench.core.inputs import Inputs, call, length, tensors
from bindbench.core.segmentation import match_masks


def capture(
    model: nn.Module,
    inputs: Inputs,
    layers: Iterable[str] | None = None,
    select: Callable[[str, object], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Runs `model(inputs)` once in eval mode and returns {layer name: its output}, in forward
    order; every module's train/eval mode is restored afterwards (dropout off, BatchNorm's
    running statistics read, not updated).

    `inputs`: a tensor, a tuple or list of them (`model(*inputs)`) or a dict
    (`model(**inputs)`). `layers=None` takes every `nn.Linear` (for an MLP: the
    pre-activations and the output). A layer whose output is not a tensor (`nn.LSTM`
    returns `(output, (h, c))`) gives its first tensor, or what `select(name, output)` returns.
    """
    named = dict(model.named_modules())
    if layers is None:
        layers = [name for name, m in named.items() if isinstance(m, nn.Linear)]
    layers = list(layers)
    missing = [name for name in layers if name not in named]
    if missing:
        known = ", ".join(n for n in named if n)
        raise ValueError(f"no layer named {missing[0]!r} in {type(model).__name__}; it has {known}")
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str, out) -> None:
        value = select(name, out) if select is not None else _first_tensor(out)
        if not isinstance(value, torch.Tensor):
            got = type(value).__name__
            raise ValueError(
                f"layer {name!r} gave a {got}, not a tensor: pass select=(name, output) -> tensor"
            )
        captured[name] = value.detach()

    hooks = [
        named[name].register_forward_hook(lambda m, i, out, name=name: keep(name, out)) for name in layers
    ]
    try:
        with evaluating(model), torch.no_grad():
            call(model, inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: captured[name] for name in layers if name in captured}


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Within the block the model is in eval mode; every module's own mode is restored after."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _first_tensor(out):
    """The output itself if a tensor, else the first tensor in a tuple or list (depth first)."""
    if isinstance(out, (tuple, list)):
        for item in out:
            found = _first_tensor(item)
            if isinstance(found, torch.Tensor):
                return found
    return out


def features(activation: torch.Tensor, position: int | None = -1) -> torch.Tensor:
    """(n, d) probe features: the `position` of a (n, s, d) sequence, or everything flattened."""
    if position is not None and activation.ndim == 3:
        activation = activation[:, position]
    return activation.reshape(len(activation), -1)


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression with an unpenalized intercept: returns (weights (d, t), bias (t,)).

    Minimizes |y - x w - b|^2 + alpha |w|^2, as `sklearn.linear_model.Ridge(alpha)`.
    Solved in the smaller of the primal (d x d) and dual (n x n) forms.
    """
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    if d <= n:
        gram = xc.T @ xc + alpha * torch.eye(d, dtype=x.dtype, device=x.device)
        weights = torch.linalg.solve(gram, xc.T @ yc)
    else:
        gram = xc @ xc.T + alpha * torch.eye(n, dtype=x.dtype, device=x.device)
        weights = xc.T @ torch.linalg.solve(gram, yc)
    return weights, y_mean - x_mean @ weights


def ridge_fit_cg(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, iterations: int = 10, tol: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hyperteacher reference's ridge probe: returns (weights (d, t), bias (t,)).

    Conjugate gradient on (X'^T X' + alpha I) w = X'^T y in float32 from w = 0, stopped after
    `iterations` steps or once |residual| <= tol |X'^T y| (jax.scipy.sparse.linalg.cg's
    rule), one system per target column. X' is x with an intercept column that is penalized
    like the weights and is 1 only on rows without an exact zero (so 0 throughout for
    sparse inputs such as z); the bias is its weight. At many iterations it approaches
    `ridge_fit` with a penalized intercept; at 10 it can be far from converged.
    """
    x, y = x.float(), y.float()
    x = torch.cat([x, (x != 0).all(1, keepdim=True).float()], dim=1)

    def apply(u: torch.Tensor) -> torch.Tensor:
        return x.T @ (x @ u) + alpha * u

    rhs = x.T @ y
    weights = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    norm = residual.pow(2).sum(0)
    stop = (tol * rhs.norm(dim=0)).pow(2)
    for _ in range(iterations):
        active = norm > stop
        if not active.any():
            break
        applied = apply(direction)
        step = torch.where(active, norm / (direction * applied).sum(0), 0.0)
        weights = weights + step * direction
        residual = residual - step * applied
        new_norm = residual.pow(2).sum(0)
        direction = residual + torch.where(active, new_norm / norm, 0.0) * direction
        norm = torch.where(active, new_norm, norm)
    return weights[:-1], weights[-1]


def r2_per_target(y: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """R^2 of each target column, with sklearn's convention for constant targets (1 or 0)."""
    y, prediction = y.double(), prediction.double()
    residual = (y - prediction).pow(2).sum(0)
    total = (y - y.mean(0)).pow(2).sum(0)
    r2 = 1 - residual / total
    constant = total == 0
    return torch.where(constant, (residual == 0).double(), r2)


def ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]],
    alpha: float = 1.0,
) -> dict[str, float]:
    """Fits ridge on (train_x, train_y) and returns {test name: R^2 averaged over targets}."""
    weights, bias = ridge_fit(train_x, train_y, alpha)
    return {
        name: float(r2_per_target(y, x.double() @ weights + bias).mean()) for name, (x, y) in tests.items()
    }


def logistic_fit(
    x: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None, c: float = 1.0, max_iter: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with L2 penalty 1/(2C)|w|^2 (sklearn's objective and
    default C = 1); returns (weights (d, k), bias (k,))."""
    labels = labels.long()
    k = num_classes or int(labels.max()) + 1
    return logistic_fit_many(x, labels[:, None], (k,), c, max_iter)


def logistic_fit_many(
    x: torch.Tensor, labels: torch.Tensor, sizes: tuple[int, ...], c: float = 1.0, max_iter: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """One multinomial logistic regression per column of labels (n, m), the j-th over
    sizes[j] classes, all on the same features and fit together: the objective is their sum,
    each with its own weights, so its minimum is each one's own. Returns (weights (d, sum of
    sizes), bias (sum of sizes,)), the regressions' classes side by side."""
    x = x.double()
    labels = labels.long()
    total = sum(sizes)
    weights = torch.zeros(x.shape[1], total, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(total, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights, bias],
        max_iter=max_iter * len(sizes),
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def objective():
        optimizer.zero_grad()
        logits = (x @ weights + bias).split(list(sizes), dim=1)
        loss = sum(
            nn.functional.cross_entropy(lg, labels[:, j], reduction="sum") for j, lg in enumerate(logits)
        )
        loss = loss + weights.pow(2).sum() / (2 * c)
        loss.backward()
        return loss

    optimizer.step(objective)
    return weights.detach(), bias.detach()


def logistic_probe(
    train_x: torch.Tensor,
    train_labels: torch.Tensor,
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]],
    c: float = 1.0,
) -> dict[str, float]:
    """Fits a logistic probe and returns {test name: accuracy}."""
    num_classes = int(max([train_labels.max()] + [labels.max() for _, labels in tests.values()])) + 1
    weights, bias = logistic_fit(train_x, train_labels, num_classes, c)
    return {
        name: float(((x.double() @ weights + bias).argmax(1) == labels).double().mean())
        for name, (x, labels) in tests.items()
    }


def weighted_f1(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> float:
    """F1 per class, averaged with each class's share of the true labels as its weight
    (scikit-learn's `f1_score(average="weighted")`; a class never predicted nor true scores 0)."""
    labels, predicted = labels.long(), predicted.long()
    classes = torch.arange(num_classes, device=labels.device)
    true = labels[:, None] == classes  # (n, k)
    said = predicted[:, None] == classes
    hits = (true & said).sum(0).double()
    denominator = true.sum(0) + said.sum(0)
    f1 = torch.where(denominator > 0, 2 * hits / denominator.clamp(min=1), torch.zeros_like(hits))
    return float((f1 * true.sum(0)).sum() / len(labels))


def concept_probe(
    train_x: torch.Tensor,
    train_values: torch.Tensor,
    test_x: torch.Tensor,
    test_values: torch.Tensor,
    concept_sizes: tuple[int, ...],
    c: float = 1.0,
) -> dict:
    """How well each concept of a combination (train_values (n, c) of value indices) is read
        from features (n, d) by a linear probe: features standardized on the training rows (as
        scikit-learn's StandardScaler), one multinomial logistic regression per concept (fit
    together, `logistic_fit_many`). Returns,
        on the test rows: `exact_match` (every concept right), `accuracy` and `f1` (weighted) per
        concept, their means, and `log_loss` (m,), each test row's summed cross-entropy of its
        true values (the reference ranks held-out prompts by it)."""
    mean, std = train_x.double().mean(0), train_x.double().std(0, unbiased=False)
    scale = torch.where(std > 0, std, torch.ones_like(std))
    fit, test = (train_x.double() - mean) / scale, (test_x.double() - mean) / scale
    right, accuracy, f1 = [], [], []
    log_loss = torch.zeros(len(test), dtype=torch.float64, device=test.device)
    weights, bias = logistic_fit_many(fit, train_values, tuple(concept_sizes), c)
    for i, (k, logits) in enumerate(
        zip(concept_sizes, (test @ weights + bias).split(list(concept_sizes), 1))
    ):
        predicted = logits.argmax(1)
        right.append(predicted == test_values[:, i])
        accuracy.append(float(right[-1].double().mean()))
        f1.append(weighted_f1(test_values[:, i], predicted, k))
        log_loss += nn.functional.cross_entropy(logits, test_values[:, i].long(), reduction="none")
    return {
        "exact_match": float(torch.stack(right, 1).all(1).double().mean()),
        "accuracy": accuracy,
        "f1": f1,
        "mean_accuracy": sum(accuracy) / len(accuracy),
        "mean_f1": sum(f1) / len(f1),
        "log_loss": log_loss,
    }


def probe(
    model: nn.Module,
    inputs: Inputs,
    targets: torch.Tensor,
    layers: Iterable[str] | None = None,
    ood_inputs: Inputs | None = None,
    ood_targets: torch.Tensor | None = None,
    kind: str = "ridge",
    alpha: float = 1.0,
    position: int | None = -1,
    include_input: bool = True,
    seed: int = 0,
    split: tuple[torch.Tensor, torch.Tensor] | None = None,
    select: Callable[[str, object], torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """How linearly decodable `targets` are from each layer of `model`; {layer: {split: score}}.

    The model runs once in eval mode (its modes restored after). A seeded random half of
    the samples (`seed`) fits the probe and the other half scores it ("test"); `split=(fit
    indices, test indices)` gives your own. With `ood_inputs`, the same probe is also scored
    there ("ood"). Scores are R^2 averaged over target columns (`kind="ridge"`, lambda =
    `alpha`) or accuracy (`kind="logistic"`, integer `targets`). Sequence activations
    (n, s, d) are read at `position`; others are flattened. With `include_input`, the raw
    inputs are probed too, as the layer "input" (several input tensors: side by side).

    `inputs` is a tensor, a tuple or list of tensors (`model(*inputs)`) or a dict
    (`model(**inputs)`); a layer whose output is a tuple (`nn.LSTM`) is read at its first
    tensor, or at `select(name, output)`. Example:

        >>> scores = bindbench.probe(model, x, z, layers=["hidden.1"], ood_inputs=x_ood, ood_targets=z_ood)
        >>> scores["hidden.1"]["ood"]  # R^2 of the probe fitted in distribution, out of it
    """
    if kind not in ("ridge", "logistic"):
        raise ValueError(f"kind={kind!r} must be 'ridge' or 'logistic'")
    n = length(inputs, "inputs")
    if len(targets) != n:
        raise ValueError(f"targets has {len(targets)} samples, inputs {n}")
    if ood_inputs is not None and (
        ood_targets is None or len(ood_targets) != length(ood_inputs, "ood_inputs")
    ):
        raise ValueError("ood_inputs need ood_targets with one row per sample")
    if split is None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        split = (order[: n // 2], order[n // 2 :])
    fit, test = (torch.as_tensor(part, dtype=torch.long) for part in split)
    if len(fit) == 0 or len(test) == 0:
        raise ValueError(
            f"the split needs samples on both sides, got {len(fit)} to fit and {len(test)} to test"
        )
    activations = capture(model, inputs, layers, select)
    ood = capture(model, ood_inputs, list(activations), select) if ood_inputs is not None else {}
    if include_input:
        activations = {"input": _input_features(inputs, position), **activations}
        if ood_inputs is not None:
            ood = {"input": _input_features(ood_inputs, position), **ood}
    targets = torch.as_tensor(targets)
    scores = {}
    for name, activation in activations.items():
        x = features(activation, position)
        x_fit, y_fit = x[fit.to(x.device)], targets[fit.to(targets.device)]
        tests = {"test": (x[test.to(x.device)], targets[test.to(targets.device)])}
        if name in ood:
            tests["ood"] = (features(ood[name], position), ood_targets)
        if kind == "ridge":
            scores[name] = ridge_probe(x_fit, y_fit, tests, alpha)
        else:
            scores[name] = logistic_probe(x_fit, y_fit, tests)
    return scores


def _input_features(inputs: Inputs, position: int | None) -> torch.Tensor:
    """The raw inputs as (n, d) features; several tensors side by side."""
    return torch.cat([features(t.float(), position) for t in tensors(inputs)], dim=1)


def matched_slots(
    slots: torch.Tensor, pred_masks: torch.Tensor, true_masks: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each true object's slot, by Hungarian matching of masks: features (b, k_true, d) and
    which objects found a slot (b, k_true) bool.

    Slots (b, k, d) go with their masks pred_masks (b, k, h, w) (hard masks: threshold or argmax
    soft ones first); true_masks (b, k_true, h, w); `valid` (b, k_true) the objects that count
    (default: the non-empty true masks). The matching maximizes the total IoU (`match_masks`).
    """
    matched = match_masks(true_masks, pred_masks, valid)  # (b, k_true), -1 where none
    index = matched.clamp(min=0)[..., None].expand(-1, -1, slots.shape[-1])
    return slots.gather(1, index), matched >= 0
