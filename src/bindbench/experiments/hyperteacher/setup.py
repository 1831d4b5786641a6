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
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from bindbench.core import factory
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.ensemble import Ensemble
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.metrics import r2_score
from bindbench.core.registry import RunResult
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
    """What one run needs: its teacher, fresh model, data stream and fixed evaluation sets."""

    def __init__(self, spec: CompositionSpec, device: torch.device, **sizes: int):
        self.spec = spec
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

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.teacher.sample(self.spec.train.batch_size, "train", self.data)
        return student_inputs(batch.encoding, batch.x), batch.y


def result(trained: TrainResult, model: torch.nn.Module) -> RunResult:
    """A trained student's RunResult: its final evaluation, speed and parameter count."""
    metrics = dict(trained.final)
    metrics["steps_per_second"] = trained.steps / max(trained.seconds, 1e-9)
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    return RunResult(metrics=metrics, curve=trained.curve, diverged=trained.diverged, model=model)


def student_loss(model, batch) -> torch.Tensor:
    """The student's training loss: MSE on a batch of (inputs, targets)."""
    inputs, targets = batch
    return torch.nn.functional.mse_loss(model(inputs), targets)


def _ensemble_mse(ensemble, batch) -> torch.Tensor:
    inputs, targets = batch
    return (ensemble(inputs) - targets).pow(2).mean(dim=(1, 2, 3))  # (e,)


def fit(specs: list[CompositionSpec], ctx, **sizes: int) -> list[tuple[Setup, torch.nn.Module, TrainResult]]:
    """Trains one run alone, or several of one `group_key` as one vectorized ensemble.

    Returns (setup, trained model, training result) per spec; ensemble members come back
    as standalone models, each equal (to float tolerance) to what training it alone gives.
    `sizes` go to a user's factory beside the task's (neurons' width).
    """
    setups = [Setup(spec, ctx.device, **sizes) for spec in specs]
    if len(setups) == 1:
        (setup,) = setups

        def evaluate(model) -> dict[str, float]:
            r2 = torch.stack([r2_score(model(setup.eval_inputs[s]), setup.eval_sets[s].y) for s in SPLITS])
            return dict(zip([f"{s}_r2" for s in SPLITS], r2.tolist()))  # one copy to the host

        trained = train(
            setup.model, setup.spec.train, lambda step: setup.batch(), student_loss, evaluate, ctx.on_eval
        )
        return [(setup, setup.model, trained)]

    ensemble = Ensemble([s.model for s in setups])
    eval_inputs = {k: torch.stack([s.eval_inputs[k] for s in setups]) for k in SPLITS}  # (e, b, s, d)
    eval_targets = {k: torch.stack([s.eval_sets[k].y for s in setups]) for k in SPLITS}

    def sample_batch(step: int):
        inputs, targets = zip(*(s.batch() for s in setups))  # each member its own stream
        return torch.stack(inputs), torch.stack(targets)

    def evaluate_all(ensemble) -> list[dict[str, float]]:
        r2 = torch.stack([r2_score(ensemble(eval_inputs[k]), eval_targets[k]) for k in SPLITS], 1)
        return [dict(zip([f"{s}_r2" for s in SPLITS], row)) for row in r2.tolist()]

    trained = train_ensemble(
        ensemble, [s.train for s in specs], sample_batch, _ensemble_mse, evaluate_all, ctx.on_member_eval
    )
    return [(setup, ensemble.member(e), t) for e, (setup, t) in enumerate(zip(setups, trained))]


def step_flops(spec: CompositionSpec) -> float:
    """Forward + backward matmul FLOPs of one training step: 6 x rows x weights."""
    task, model = spec.task, spec.model
    encoding = 50 * (task.input_dim + task.output_dim) if task.encoding == "fewshot" else task.num_modules
    dims = [encoding + task.input_dim] + [model.width] * model.depth + [task.output_dim]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 6.0 * spec.train.batch_size * task.num_samples * weights


def group_key(spec: CompositionSpec) -> str:
    """Runs with the same key have the same parameter shapes and step counts: one ensemble.

    A user's model trains alone: its forward may not survive `vmap` (BatchNorm, dropout)."""
    if spec.model.factory is not None:
        return spec.model_dump_json()
    free = spec.model_dump(mode="json")
    free.pop("seed")
    for key in ("lr", "weight_decay", "schedule", "half_life", "warmup_steps"):
        free["train"].pop(key)
    for key in ("frac_ood", "support", "task_distribution"):
        free["task"].pop(key)
    free["model"].pop("init")
    free["task"]["encoding"] = "fewshot" if spec.task.encoding == "fewshot" else "vector"
    return json.dumps(free, sort_keys=True)
