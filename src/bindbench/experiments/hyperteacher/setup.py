"""The hyperteacher family's recipe: one student MLP trained on teacher-module combinations.

Redhardt, Akram & Schug (2025). The claims of this family (composition, scaling, neurons)
train students the same way: a teacher and its split from the seed, an MLP, fresh tasks at
every step, and in-distribution (fresh tasks from training combinations) and OOD (held-out
combinations) R^2 on fixed sets. Runs of one `group_key` train as one vectorized ensemble.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator, model_validator
from scipy import stats

from bindbench.core import factory
from bindbench.core.claims import (
    HELD,
    NOT_HELD,
    NOT_MEASURED,
    Verdict,
    beyond,
    every,
    exceeds,
    in_every,
    per_setting,
    rises_with,
)
from bindbench.core.claims import values as metric_values
from bindbench.core.config import ReferenceKeys, Spec, SpecError, get_path
from bindbench.core.ensemble import Ensemble
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.metrics import r2_score
from bindbench.core.probes import capture, features, r2_per_target, ridge_fit, ridge_fit_cg
from bindbench.core.registry import RunResult
from bindbench.core.report import Plot, column_width
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainResult, TrainSpec, train, train_ensemble
from bindbench.models import MLP
from bindbench.models.mlp import INITS
from bindbench.tasks.hyperteacher import ENCODINGS, SUPPORTS, TASK_DISTRIBUTIONS, HyperTeacher

# a student of about a second on one core: what the checks every experiment passes run
TINY = {
    "model.width": 8,
    "model.depth": 1,
    "task.num_modules": 6,
    "task.num_hot": 2,
    "task.frac_ood": 0.3,
    "train.steps": 20,
    "train.batch_size": 8,
    "train.eval_every": 10,
    "eval_tasks": 16,
}


# bounds a spec is checked against before anything is built (the reference: 696 combinations,
# a teacher of 4,624 numbers; M = 32, K = 3 in the neurons profile: 5,488)
MAX_COMBINATIONS = 1_000_000
MAX_TEACHER_NUMBERS = 50_000_000


class HyperTeacherSpec(Spec):
    """The task family (defaults: the reference's I = H = O = 16, M = 16, K = 3)."""

    num_modules: int = Field(16, ge=2, description="M, teacher modules")
    num_hot: int = Field(3, ge=1, description="K, at most K modules per task")
    input_dim: int = Field(16, ge=1, description="I, size of x ~ U[-1, 1]^I")
    hidden_dim: int = Field(16, ge=1, description="H, teacher hidden units")
    output_dim: int = Field(16, ge=1, description="O, size of y")
    num_samples: int = Field(16, ge=2, description="(x, y) pairs per task")
    task_distribution: Literal[TASK_DISTRIBUTIONS] = Field(  # type: ignore[valid-type]
        "discrete", description="weights of active modules: {0.5..1.0}, 1, or simplex in [0.5, 1]"
    )
    support: Literal[SUPPORTS] = Field(  # type: ignore[valid-type]
        "random", description="which combinations are trained (the rest are OOD)"
    )
    frac_ood: float = Field(0.25, ge=0.0, lt=1.0, description="fraction of combinations held out")
    encoding: Literal[ENCODINGS] = Field(  # type: ignore[valid-type]
        "identity", description="what the student sees of z"
    )

    @model_validator(mode="after")
    def _fits_in_memory(self) -> HyperTeacherSpec:
        # checked before the teacher is built: planning builds it to check the split
        m, k = self.num_modules, min(self.num_hot, self.num_modules)
        combinations = sum(math.comb(m, j) for j in range(1, k + 1))
        if combinations > MAX_COMBINATIONS:
            raise ValueError(
                f"task.num_modules={self.num_modules} with task.num_hot={self.num_hot} makes"
                f" {combinations:,} combinations, more than {MAX_COMBINATIONS:,}"
            )
        numbers = m * (self.input_dim + 1) * self.hidden_dim + self.hidden_dim * self.output_dim
        if numbers > MAX_TEACHER_NUMBERS:
            raise ValueError(
                f"task.input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, output_dim={self.output_dim}"
                f" and num_modules={self.num_modules} make a teacher of {numbers:,} numbers,"
                f" more than {MAX_TEACHER_NUMBERS:,}"
            )
        return self

    @field_validator("encoding")
    @classmethod
    def _mlp_takes_vectors(cls, value: str) -> str:
        if value == "tokens":
            raise ValueError(
                "the MLP takes vectors, not tokens; allowed are "
                + ", ".join(e for e in ENCODINGS if e != "tokens")
            )
        return value


class MLPSpec(Spec):
    width: int = Field(1024, ge=1, description="units per hidden layer")
    depth: int = Field(4, ge=1, description="hidden layers")
    init: Literal[INITS] = Field(  # type: ignore[valid-type]
        "reference",
        description="reference: LeCun truncated normal, zero bias (the paper's); torch: nn.Linear's",
    )
    factory: FactoryPath | None = factory_field("input_dim, output_dim")
    REFERENCE = ReferenceKeys()


class CompositionSpec(Spec):
    """One student on the hyperteacher: composition's spec, the base of scaling's, and what
    neurons trains at each width it tries."""

    seed: int = Field(0, ge=0, description="teacher, split, initialization and data")
    task: HyperTeacherSpec = HyperTeacherSpec()
    model: MLPSpec = MLPSpec()
    train: TrainSpec = TrainSpec()
    eval_tasks: int = Field(1024, ge=2, description="tasks in each of the ID and OOD sets")


def make_teacher(spec: CompositionSpec, device: torch.device | str = "cpu") -> HyperTeacher:
    return HyperTeacher(**spec.task.model_dump(), seed=spec.seed, device=device)


@functools.lru_cache(maxsize=64)
def _check_task(task_json: str, seed: int) -> int:
    return HyperTeacher(**json.loads(task_json), seed=seed).encoding_dim


# what a model of the user's must be (docs/models.md)
INTERFACE = "model(inputs): (batch, samples, input_dim) -> (batch, samples, output_dim)"


def check(spec: CompositionSpec, **more: int) -> torch.nn.Module | None:
    """Builds the split once per task setting, so an impossible split fails before any run;
    a user's model is built (given `more` sizes too) and called on an example batch (returned,
    for callers' own checks)."""
    encoding_dim = _check_task(spec.task.model_dump_json(), spec.seed)
    if spec.model.factory is None:
        return None
    batch, task = 2, spec.task
    sizes = {"input_dim": encoding_dim + task.input_dim, "output_dim": task.output_dim, **more}
    model = factory.build(spec.model.factory, **sizes)
    out = factory.try_forward(
        spec.model.factory, model, torch.zeros(batch, task.num_samples, sizes["input_dim"]), INTERFACE
    )
    factory.expect_tensor(spec.model.factory, out, (batch, task.num_samples, task.output_dim), INTERFACE)
    return model


def build_student(spec: CompositionSpec) -> torch.nn.Module:
    """A run's untrained student, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_student(spec, _check_task(spec.task.model_dump_json(), spec.seed) + spec.task.input_dim)


def make_student(spec: CompositionSpec, input_dim: int, **more: int) -> torch.nn.Module:
    """The student: the user's model (model.factory, given `more` sizes too) or the reference MLP."""
    if spec.model.factory is not None:
        return factory.build(spec.model.factory, input_dim=input_dim, output_dim=spec.task.output_dim, **more)
    model = spec.model
    return MLP(input_dim, spec.task.output_dim, model.width, model.depth, model.init)


def student_inputs(encoding: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Concatenates the task encoding to every sample: (b, e), (b, s, i) -> (b, s, e + i)."""
    return torch.cat([encoding.unsqueeze(1).expand(-1, x.shape[1], -1), x], dim=-1)


SPLITS = ("id", "ood")


class Setup:
    """What one run needs: its teacher, fresh model, data stream and fixed evaluation sets.

    `fit` trains any class with this interface: `model`, `spec`, `batch()` -> (inputs,
    targets), `eval_inputs` and `eval_targets` per split, and the static `loss` (one value
    per leading axis: () alone, (e,) for an ensemble) and `scores` (named metrics, same axes).
    """

    def __init__(self, spec: CompositionSpec, device: torch.device, **sizes: int):
        self.spec, self.device = spec, device
        self.teacher = make_teacher(spec, device)
        seed_init(spec.seed)
        self.model = make_student(spec, self.teacher.encoding_dim + spec.task.input_dim, **sizes).to(device)
        self.data = generator(spec.seed, "data", device=device)
        held = generator(spec.seed, "eval", device=device)
        self.eval_sets = {
            split: self.teacher.sample(spec.eval_tasks, "train" if split == "id" else "ood", held)
            for split in SPLITS
        }
        self.eval_inputs = {k: student_inputs(b.encoding, b.x) for k, b in self.eval_sets.items()}
        self.eval_targets = {k: b.y for k, b in self.eval_sets.items()}

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.teacher.sample(self.spec.train.batch_size, "train", self.data)
        return student_inputs(batch.encoding, batch.x), batch.y

    def probe_tasks(self, num_tasks: int, split: str, gen: torch.Generator) -> tuple:
        """(inputs, z, targets) of num_tasks fresh tasks of the "train" or "ood" combinations."""
        batch = self.teacher.sample(num_tasks, split, gen)
        return student_inputs(batch.encoding, batch.x), batch.z, batch.y

    @staticmethod
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).pow(2).mean(dim=(-3, -2, -1))  # MSE

    @staticmethod
    def scores(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"r2": r2_score(outputs, targets)}

    PER_TASK = "r2"  # what `per_task` gives

    @staticmethod
    def per_task(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The network's score on each task (b,): R^2."""
        return r2_score(outputs, targets, per_task=True)


def result(trained: TrainResult, model: torch.nn.Module) -> RunResult:
    """A trained student's RunResult: its final evaluation, speed and parameter count."""
    metrics = dict(trained.final)
    metrics["steps_per_second"] = trained.steps / max(trained.seconds, 1e-9)
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    return RunResult(metrics=metrics, curve=trained.curve, diverged=trained.diverged, model=model)


def student_loss(model, batch) -> torch.Tensor:
    """The student's training loss: MSE on a batch of (inputs, targets)."""
    inputs, targets = batch
    return Setup.loss(model(inputs), targets)


def _evaluation(task, model, inputs: dict, targets: dict) -> tuple[list[str], torch.Tensor]:
    """Metric names ("<split>_<score>") and their values (..., metrics), one copy to the host later."""
    names, values = [], []
    for split in inputs:
        for score, value in task.scores(model(inputs[split]), targets[split]).items():
            names.append(f"{split}_{score}")
            values.append(value)
    return names, torch.stack(values, -1)


def fit(
    specs: list, ctx, setup: type = Setup, **sizes: int
) -> list[tuple[Any, torch.nn.Module, TrainResult]]:
    """Trains one run alone, or several of one `group_key` as one vectorized ensemble.

    Returns (setup, trained model, training result) per spec; ensemble members come back
    as standalone models, each equal (to float tolerance) to what training it alone gives.
    `setup` is the family member's Setup class (the hyperteacher's, or preferences');
    `sizes` go to a user's factory beside the task's (neurons' width).
    """
    setups = [setup(spec, ctx.device, **sizes) for spec in specs]
    if len(setups) == 1:
        (one,) = setups

        def evaluate(model) -> dict[str, float]:
            names, values = _evaluation(one, model, one.eval_inputs, one.eval_targets)
            return dict(zip(names, values.tolist()))

        def loss(model, batch) -> torch.Tensor:
            return one.loss(model(batch[0]), batch[1])

        trained = train(one.model, one.spec.train, lambda step: one.batch(), loss, evaluate, ctx.on_eval)
        return [(one, one.model, trained)]

    ensemble = Ensemble([s.model for s in setups])
    splits = setups[0].eval_inputs
    eval_inputs = {k: torch.stack([s.eval_inputs[k] for s in setups]) for k in splits}  # (e, ...)
    eval_targets = {k: torch.stack([s.eval_targets[k] for s in setups]) for k in splits}

    def sample_batch(step: int):
        inputs, targets = zip(*(s.batch() for s in setups))  # each member its own stream
        return torch.stack(inputs), torch.stack(targets)

    def evaluate_all(ensemble) -> list[dict[str, float]]:
        names, values = _evaluation(setups[0], ensemble, eval_inputs, eval_targets)
        return [dict(zip(names, row)) for row in values.tolist()]

    def ensemble_loss(ensemble, batch) -> torch.Tensor:
        return setups[0].loss(ensemble(batch[0]), batch[1])  # (e,)

    trained = train_ensemble(
        ensemble, [s.train for s in specs], sample_batch, ensemble_loss, evaluate_all, ctx.on_member_eval
    )
    return [(one, ensemble.member(e), t) for e, (one, t) in enumerate(zip(setups, trained))]


def step_flops(spec: CompositionSpec) -> float:
    """Forward + backward matmul FLOPs of one training step: 6 x rows x weights."""
    task, model = spec.task, spec.model
    encoding = 50 * (task.input_dim + task.output_dim) if task.encoding == "fewshot" else task.num_modules
    dims = [encoding + task.input_dim] + [model.width] * model.depth + [task.output_dim]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 6.0 * spec.train.batch_size * task.num_samples * weights


def group_key(spec) -> str:
    """Runs with the same key have the same parameter shapes and step counts: one ensemble.

    Seed, split, task weights, optimizer settings and initialization may differ within one;
    a user's model trains alone: its forward may not survive `vmap` (BatchNorm, dropout)."""
    if spec.model.factory is not None:
        return spec.model_dump_json()
    free = spec.model_dump(mode="json")
    free.pop("seed")
    for key in ("lr", "weight_decay", "schedule", "half_life", "warmup_steps"):
        free["train"].pop(key)
    for key in ("frac_ood", "support", "task_distribution", "discount", "plan"):
        free["task"].pop(key, None)
    free["model"].pop("init")
    if "encoding" in free["task"]:
        free["task"]["encoding"] = "fewshot" if spec.task.encoding == "fewshot" else "vector"
    return json.dumps(free, sort_keys=True)


# --------------------------------------------------------------------------- probes of z
# scaling and preferences: ridge probes of the task z from every layer, the figures over
# width x coverage and the claims on them, for a headline metric (ood_r2 or ood_acc_all)


class ProbeSpec(Spec):
    tasks: int = Field(1024, ge=4, description="ID tasks for the probe (half fit, half test) and OOD tasks")
    alpha: float = Field(1.0, gt=0, description="ridge penalty")
    solver: Literal["exact", "cg10"] = Field(
        "exact", description="exact: closed form, free intercept; cg10: the reference's 10 CG steps"
    )


def _ridge(x: torch.Tensor, z: torch.Tensor, probe: ProbeSpec) -> tuple[torch.Tensor, torch.Tensor]:
    if probe.solver == "cg10":
        weights, bias = ridge_fit_cg(x, z, probe.alpha, iterations=10)
        return weights.double(), bias.double()
    return ridge_fit(x, z, probe.alpha)


def linear_layers(model: torch.nn.Module) -> list[str]:
    """The names of the model's Linear layers, in order: the MLP's `hidden.0` .. `readout`."""
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def summary_layer(layers: list[str]) -> str:
    """The layer of the summary `decodability_r2`: the last hidden layer (the one before the readout)."""
    return layers[-2] if len(layers) > 1 else layers[-1]


def check_probed(model: torch.nn.Module | None, spec) -> None:
    """A user's model must have Linear layers to probe."""
    if model is not None and not linear_layers(model):
        raise SpecError(
            f"model.factory={spec.model.factory}: the probes read every nn.Linear's output;"
            " the model has none"
        )


def decodability(setup, model: torch.nn.Module) -> tuple[dict, dict]:
    """Ridge probes of z from the encoding and from every Linear layer's pre-activations.

    At the last sample (or step) of each task, as the reference. Returns (metrics, extra):
    per-layer R^2 on held-out ID tasks and on OOD tasks, the summary `decodability_r2` (OOD,
    last hidden layer), and per-OOD-task values of the network's score (`setup.per_task`)
    and the probe's R^2 (over the M module weights of that task).
    """
    spec = setup.spec
    gen = generator(spec.seed, "probe", device=setup.device)
    tasks = {split: setup.probe_tasks(spec.probe.tasks, split, gen) for split in ("train", "ood")}
    layers = linear_layers(model)
    acts = {k: {"encoding": z, **capture(model, inputs, layers)} for k, (inputs, z, _) in tasks.items()}
    half = spec.probe.tasks // 2
    z_id, z_ood = tasks["train"][1], tasks["ood"][1]
    metrics, summary_prediction = {}, None
    for layer in acts["train"]:
        x_id, x_ood = features(acts["train"][layer]), features(acts["ood"][layer])
        weights, bias = _ridge(x_id[:half], z_id[:half], spec.probe)
        test_r2 = r2_per_target(z_id[half:], x_id[half:].double() @ weights + bias).mean()
        ood_prediction = x_ood.double() @ weights + bias
        metrics[f"decodability_test_{layer}"] = float(test_r2)
        metrics[f"decodability_ood_{layer}"] = float(r2_per_target(z_ood, ood_prediction).mean())
        if layer == summary_layer(layers):
            summary_prediction = ood_prediction
    metrics["decodability_r2"] = metrics[f"decodability_ood_{summary_layer(layers)}"]

    inputs, _, targets = tasks["ood"]
    with torch.no_grad():
        network = setup.per_task(model(inputs), targets)
    z = z_ood.double()
    residual = (z - summary_prediction).pow(2).sum(1)
    total = (z - z.mean(1, keepdim=True)).pow(2).sum(1)
    per_task = 1 - residual / total  # how well this task's module weights are read out
    metrics["task_spearman"] = correlation(per_task.cpu().numpy(), network.cpu().numpy())
    extra = {f"ood_task_{setup.PER_TASK}": network.tolist(), "ood_task_decodability": per_task.tolist()}
    return metrics, extra


def correlation(x: np.ndarray, y: np.ndarray, measure=stats.spearmanr) -> float:
    """Spearman's rho (or `measure`'s statistic) of x and y; NaN where either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(measure(x, y).statistic)


def probed(fitted) -> list[RunResult]:
    """RunResults of `fit`'s students, with the probes' figures for those that did not diverge."""
    results = []
    for one, model, trained in fitted:
        run_result = result(trained, model)
        if not trained.diverged:
            metrics, extra = decodability(one, model)
            run_result.metrics.update(metrics)
            run_result.extra.update(extra)
        results.append(run_result)
    return results


def _get(run: dict, path: str):
    return get_path(run["spec"], path)


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] == "done" and "decodability_r2" in r["metrics"]]


def _reference(runs: list[dict]) -> list[dict]:
    """The runs of the reference MLP, which has a width (a user's model has none)."""
    return [r for r in runs if "width" in r["spec"]["model"]]


def heatmap_plot(runs: list[dict], metric: str, label: str) -> Plot | None:
    """The mean `metric` (over seeds) over width x coverage, random support, one panel per depth."""
    main = [r for r in _reference(_done(runs)) if _get(r, "task.support") == "random"]
    widths = sorted({_get(r, "model.width") for r in main})
    coverages = sorted({round(1 - _get(r, "task.frac_ood"), 6) for r in main})
    depths = sorted({_get(r, "model.depth") for r in main})
    if len(widths) < 2 or len(coverages) < 2:
        return None
    fig = Figure(figsize=(column_width(4.6 * len(depths)), 3.6), layout="constrained")
    data = {}
    for ax, depth in zip(np.atleast_1d(fig.subplots(1, len(depths))), depths):
        cells = defaultdict(list)
        for r in main:
            if _get(r, "model.depth") == depth:
                cells[(round(1 - _get(r, "task.frac_ood"), 6), _get(r, "model.width"))].append(
                    r["metrics"][metric]
                )
        grid = np.full((len(coverages), len(widths)), np.nan)
        for (c, w), found in cells.items():
            grid[coverages.index(c), widths.index(w)] = np.mean(found)
        image = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i in range(len(coverages)):
            for j in range(len(widths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(coverages)), [f"{c:g}" for c in coverages])
        ax.set_xlabel("width")
        ax.set_ylabel("coverage (1 - frac_ood)")
        ax.set_title(f"{label} (depth {depth})")
        data[f"depth={depth}"] = {"widths": widths, "coverages": coverages, metric: grid.tolist()}
    fig.colorbar(image, ax=fig.axes)
    return Plot(f"{label} over width x coverage (random support)", fig, data)


def correlation_plot(runs: list[dict], metric: str, label: str) -> Plot | None:
    """Decodability (OOD, last hidden layer) against `metric`, one point per run."""
    done = _done(runs)
    if len(done) < 3:
        return None
    x = np.array([r["metrics"]["decodability_r2"] for r in done])
    y = np.array([r["metrics"][metric] for r in done])
    spearman, pearson = correlation(x, y), correlation(x, y, stats.pearsonr)
    fig = Figure(figsize=(5, 3.8), layout="constrained")
    ax = fig.subplots()
    for support in sorted({_get(r, "task.support") for r in done}):
        mask = np.array([_get(r, "task.support") == support for r in done])
        ax.scatter(x[mask], y[mask], s=14, label=support, alpha=0.8)
    ax.set_xlabel("decodability R² of z (OOD, last hidden layer)")
    ax.set_ylabel(f"network {label}")
    ax.set_title(f"across runs: Spearman {spearman:.2f}, Pearson {pearson:.2f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    within = [r["metrics"]["task_spearman"] for r in done if np.isfinite(r["metrics"]["task_spearman"])]
    data = {
        "spearman": spearman,
        "pearson": pearson,
        "runs": len(done),
        "points": [[float(a), float(b)] for a, b in zip(x, y)],
        "within_run_task_spearman_median": float(np.median(within)) if within else None,
    }
    return Plot(f"decodability against {label} across runs", fig, data)


def controls_plot(runs: list[dict], metric: str, label: str) -> Plot | None:
    """`metric` against width for each support, at the coverages the controls were run at."""
    done = _reference(_done(runs))
    controls = {_get(r, "task.frac_ood") for r in done if _get(r, "task.support") != "random"}
    shown = [r for r in done if _get(r, "task.frac_ood") in controls]
    if not controls or len({_get(r, "task.support") for r in shown}) < 2:
        return None
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    data = {}
    for support in sorted({_get(r, "task.support") for r in shown}):
        by_width = defaultdict(list)
        for r in shown:
            if _get(r, "task.support") == support:
                by_width[_get(r, "model.width")].append(r["metrics"][metric])
        widths = sorted(by_width)
        means = [float(np.mean(by_width[w])) for w in widths]
        ax.plot(widths, means, marker="o", label=support)
        data[support] = {"widths": widths, metric: means}
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel(label)
    ax.set_title(f"controls beside random support (frac_ood {', '.join(map(str, sorted(controls)))})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Plot("controls against width", fig, data)


def probe_plots(runs: list[dict], metric: str, label: str) -> list[Plot]:
    """The heatmap, the correlation and the controls of `metric`."""
    made = (
        heatmap_plot(runs, metric, label),
        correlation_plot(runs, metric, label),
        controls_plot(runs, metric, label),
    )
    return [p for p in made if p is not None]


CONTROLS = ["non_compositional", "pseudo_random_disconnected"]


def with_controls(main: dict, controls_at: float) -> list[dict]:
    """A profile: the main sweep (random support) and the two controls at one coverage."""
    return [main, {**main, "task.frac_ood": controls_at, "task.support": CONTROLS}]


def of_support(runs: list[dict], support: str) -> list[dict]:
    return [r for r in runs if r["spec"]["task"]["support"] == support]


def _widths(part: list[dict]) -> dict:
    """Each width of the runs (a user's model, without one: None, last) and its name."""
    widths = sorted({r["spec"]["model"].get("width") for r in part}, key=lambda w: (w is None, w or 0))
    return {w: f"width {w}" if w is not None else "your model" for w in widths}


def control_fails(runs: list[dict], support: str, metric: str, bound: float) -> Verdict:
    """The control's mean `metric` below `bound` at every width it was trained at."""

    def one(part: list[dict]) -> Verdict:
        return every(
            {
                name: beyond(
                    metric_values(part, metric, model__width=w), bound, f"{metric} at {name}", above=False
                )
                for w, name in _widths(part).items()
            }
        )

    mine = of_support(runs, support)
    if not mine:
        return Verdict(NOT_MEASURED, {}, f"no finished {support} run")
    return in_every(per_setting(mine, ["model.width"]), one)


def control_below_random(runs: list[dict], support: str, metric: str) -> Verdict:
    """The random support's mean `metric` above the control's, at its coverage, at every width."""
    mine = of_support(runs, support)
    if not mine:
        return Verdict(NOT_MEASURED, {}, f"no finished {support} run")
    coverages = {r["spec"]["task"]["frac_ood"] for r in mine}
    beside = [r for r in of_support(runs, "random") if r["spec"]["task"]["frac_ood"] in coverages]
    verdicts = {}
    for w, name in _widths(mine).items():
        verdicts[name] = exceeds(
            metric_values(beside, metric, model__width=w),
            metric_values(mine, metric, model__width=w),
            f"random {metric} at {name}",
            f"{support} {metric} at {name}",
        )
    return every(verdicts)


def width_rises(runs: list[dict], metric: str) -> Verdict:
    return rises_with(of_support(runs, "random"), metric, "model.width")


def decodability_goes_with(runs: list[dict], metric: str) -> Verdict:
    """Spearman's rho of decodability_r2 and `metric` across random-support runs, at least 0.5."""
    done = [
        r for r in of_support(runs, "random") if "decodability_r2" in r["metrics"] and metric in r["metrics"]
    ]
    if len(done) < 4:
        return Verdict(NOT_MEASURED, {}, f"{len(done)} random-support runs with both figures; 4 needed")
    rho = correlation(np.array(metric_values(done, "decodability_r2")), np.array(metric_values(done, metric)))
    if not np.isfinite(rho):
        return Verdict(
            NOT_MEASURED, {"runs": len(done)}, f"decodability or {metric} is the same in every run"
        )
    held = rho >= 0.5
    detail = f"Spearman rho {rho:.3f} over {len(done)} runs ({'>=' if held else '<'} 0.5)"
    return Verdict(HELD if held else NOT_HELD, {"spearman": rho, "runs": len(done)}, detail)
