"""Preferences: imitation of an optimal agent on held-out combinations of preferences.

Redhardt, Akram & Schug (2025) show their claims on a second task family, compositional
preferences (Schug et al. 2024): an agent in a 7x7 gridworld picks up objects whose reward
is a combination z of 1..K of P preferences. An MLP student (depth 2, as the reference) sees
each step's grid and z and is trained by masked cross-entropy on the optimal actions of
demonstrations (`tasks.preferences`). The sweep is scaling's: width x coverage x seeds with
the two controls, per-step `acc` and whole-trajectory `acc_all` on fresh episodes of the
training combinations (ID) and of the held-out ones (OOD), and ridge probes of z from every
layer (the family's `decodability`). The seed's phrase for the failure: agents "are fragile
under distributional shift".
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from functools import partial
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from bindbench.core import factory
from bindbench.core.claims import Claim
from bindbench.core.config import Spec
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainSpec
from bindbench.experiments.hyperteacher import setup
from bindbench.experiments.hyperteacher.setup import (
    MAX_COMBINATIONS,
    SPLITS,
    MLPSpec,
    ProbeSpec,
    control_below_random,
    decodability_goes_with,
    fit,
    group_key,
    probed,
    width_rises,
    with_controls,
)
from bindbench.models import MLP
from bindbench.tasks.hyperteacher import SUPPORTS, TASK_DISTRIBUTIONS, num_tasks
from bindbench.tasks.preferences import ACTIONS, LAYOUT, PLANS, CompositionalPreferences


class PreferencesTaskSpec(Spec):
    """The task family (defaults: the reference's P = 16, K = 3, F = 32, 4 objects)."""

    num_preferences: int = Field(16, ge=2, description="P, preferences (the modules)")
    num_features: int = Field(32, ge=1, description="F, object features (16 in the reference's sweeps)")
    num_objects: int = Field(4, ge=1, le=8, description="objects on the grid")
    num_hot: int = Field(3, ge=1, description="K, at most K preferences per task")
    task_distribution: Literal[TASK_DISTRIBUTIONS] = Field(  # type: ignore[valid-type]
        "discrete", description="weights of active preferences: {0.5..1.0}, 1, or simplex in [0.5, 1]"
    )
    support: Literal[SUPPORTS] = Field(  # type: ignore[valid-type]
        "random", description="which combinations are trained (the rest are OOD)"
    )
    frac_ood: float = Field(0.25, ge=0.0, lt=1.0, description="fraction of combinations held out")
    discount: float = Field(0.9, gt=0.0, le=1.0, description="reward discount per step")
    timelimit: int = Field(8, ge=1, le=32, description="steps per episode (and of value iteration)")
    plan: Literal[PLANS] = Field(  # type: ignore[valid-type]
        "receding",
        description="receding: each step plans timelimit steps ahead (the reference's, a policy of the "
        "state); remaining: plans over the steps left (exactly optimal returns, time-dependent)",
    )

    @model_validator(mode="after")
    def _fits_in_memory(self) -> PreferencesTaskSpec:
        if self.num_hot > self.num_preferences:
            raise ValueError(
                f"task.num_hot={self.num_hot} must be at most task.num_preferences={self.num_preferences}"
            )
        combinations = num_tasks(self.num_preferences, self.num_hot)
        if combinations > MAX_COMBINATIONS:
            raise ValueError(
                f"task.num_preferences={self.num_preferences} with task.num_hot={self.num_hot} makes"
                f" {combinations:,} combinations, more than {MAX_COMBINATIONS:,}"
            )
        return self


class PolicySpec(MLPSpec):
    depth: int = Field(2, ge=1, description="hidden layers (the reference's 2 on preferences)")


class PreferencesTrainSpec(TrainSpec):
    """The reference's preference config: AdamW at 1e-4, weight decay 1e-3."""

    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="AdamW decay, on >=2-D parameters only")


class PreferencesSpec(Spec):
    seed: int = Field(0, ge=0, description="preference basis, split, initialization and data")
    task: PreferencesTaskSpec = PreferencesTaskSpec()
    model: PolicySpec = PolicySpec()
    train: PreferencesTrainSpec = PreferencesTrainSpec()
    eval_tasks: int = Field(1024, ge=2, description="episodes in each of the ID and OOD sets")
    probe: ProbeSpec = ProbeSpec()


def make_task(spec: PreferencesSpec, device: torch.device | str = "cpu") -> CompositionalPreferences:
    return CompositionalPreferences(**spec.task.model_dump(), seed=spec.seed, device=device)


@functools.lru_cache(maxsize=64)
def _input_dim(task_json: str, seed: int) -> int:
    task = CompositionalPreferences(**json.loads(task_json), seed=seed)  # builds the split: fails early
    return task.observation_dim + task.num_preferences


INTERFACE = "model(inputs): (batch, steps, input_dim) -> (batch, steps, 5 actions)"


def make_policy(spec: PreferencesSpec, **more: int) -> torch.nn.Module:
    """The student: the user's model (model.factory) or the reference MLP, one step at a time."""
    input_dim = _input_dim(spec.task.model_dump_json(), spec.seed)
    if spec.model.factory is not None:
        return factory.build(spec.model.factory, input_dim=input_dim, output_dim=len(ACTIONS), **more)
    return MLP(input_dim, len(ACTIONS), spec.model.width, spec.model.depth, spec.model.init)


def check(spec: PreferencesSpec) -> None:
    """Builds the split (an impossible one fails before any run) and calls a user's model."""
    input_dim = _input_dim(spec.task.model_dump_json(), spec.seed)
    if spec.model.factory is None:
        return
    model, steps = make_policy(spec), spec.task.timelimit
    out = factory.try_forward(spec.model.factory, model, torch.zeros(2, steps, input_dim), INTERFACE)
    factory.expect_tensor(spec.model.factory, out, (2, steps, len(ACTIONS)), INTERFACE)
    setup.check_probed(model, spec)


class PreferenceSetup:
    """A run's task, fresh policy, demonstration stream and fixed ID / OOD episodes (`fit`'s interface)."""

    PER_TASK = "acc"

    def __init__(self, spec: PreferencesSpec, device: torch.device, **sizes: int):
        self.spec, self.device = spec, device
        self.task = make_task(spec, device)
        seed_init(spec.seed)
        self.model = make_policy(spec, **sizes).to(device)
        self.data = generator(spec.seed, "data", device=device)
        held = generator(spec.seed, "eval", device=device)
        self.eval_inputs, self.eval_targets = {}, {}
        for split in SPLITS:
            demos = self.task.sample(spec.eval_tasks, "train" if split == "id" else "ood", held)
            self.eval_inputs[split], self.eval_targets[split] = demos.inputs, demos.actions

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        demos = self.task.sample(self.spec.train.batch_size, "train", self.data)
        return demos.inputs, demos.actions

    def probe_tasks(self, num_tasks: int, split: str, gen: torch.Generator) -> tuple:
        demos = self.task.sample(num_tasks, split, gen)
        return demos.inputs, demos.z, demos.actions

    @staticmethod
    def loss(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the steps each episode reaches (actions -1 after it ended)."""
        valid = actions >= 0
        chosen = logits.log_softmax(-1).gather(-1, actions.clamp(min=0)[..., None])[..., 0]
        return -(chosen * valid).sum((-2, -1)) / valid.sum((-2, -1))

    @staticmethod
    def scores(logits: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """acc: right actions over reached steps; acc_all: episodes with every reached step right."""
        valid = actions >= 0
        right = logits.argmax(-1) == actions
        acc = (right & valid).sum((-2, -1)) / valid.sum((-2, -1))
        return {"acc": acc, "acc_all": (right | ~valid).all(-1).float().mean(-1)}

    @staticmethod
    def per_task(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Each episode's share of right actions (b,)."""
        valid = actions >= 0
        return ((logits.argmax(-1) == actions) & valid).sum(-1) / valid.sum(-1)


def run(spec: PreferencesSpec, ctx) -> RunResult:
    return probed(fit([spec], ctx, PreferenceSetup))[0]


def run_group(specs: list[PreferencesSpec], ctx) -> list[RunResult]:
    return probed(fit(specs, ctx, PreferenceSetup))


def step_flops(spec: PreferencesSpec) -> float:
    """Forward + backward matmul FLOPs of one training step: 6 x rows x weights."""
    task, model = spec.task, spec.model
    grid = len(LAYOUT) * len(LAYOUT[0]) * (task.num_features + 2)
    dims = [grid + task.num_preferences] + [model.width] * model.depth + [len(ACTIONS)]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 6.0 * spec.train.batch_size * task.timelimit * weights


def build_policy(spec: PreferencesSpec) -> torch.nn.Module:
    """A run's untrained student, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_policy(spec)


METRIC, LABEL = "ood_acc_all", "OOD acc_all"


def id_beside_ood_plot(runs: list[dict]) -> Plot | None:
    """ID and OOD acc_all (means over seeds) against width, one line pair per coverage (random
    support): how much of what the agent does right on its training combinations carries over."""
    main = [r for r in runs if r["status"] == "done" and r["spec"]["task"]["support"] == "random"]
    main = [r for r in main if "width" in r["spec"]["model"] and {METRIC, "id_acc_all"} <= set(r["metrics"])]
    if len({r["spec"]["model"]["width"] for r in main}) < 2:
        return None
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    data = {}
    for index, frac in enumerate(sorted({r["spec"]["task"]["frac_ood"] for r in main})):
        by_width = defaultdict(list)
        for r in main:
            if r["spec"]["task"]["frac_ood"] == frac:
                by_width[r["spec"]["model"]["width"]].append(
                    (r["metrics"]["id_acc_all"], r["metrics"][METRIC])
                )
        widths = sorted(by_width)
        ids, oods = ([float(np.mean([p[i] for p in by_width[w]])) for w in widths] for i in (0, 1))
        color = f"C{index}"
        ax.plot(widths, ids, marker="o", color=color, linestyle="--", label=f"ID, coverage {1 - frac:g}")
        ax.plot(widths, oods, marker="o", color=color, label=f"OOD, coverage {1 - frac:g}")
        data[f"frac_ood={frac}"] = {"widths": widths, "id_acc_all": ids, "ood_acc_all": oods}
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel("acc_all (every step of the episode right)")
    ax.set_title("ID (dashed) beside OOD (solid), random support")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Plot("ID beside OOD acc_all against width", fig, data)


def plots(runs: list[dict]) -> list:
    made = id_beside_ood_plot(runs)
    return setup.probe_plots(runs, METRIC, LABEL) + ([made] if made is not None else [])


ANCHOR = (
    "Redhardt, Akram & Schug 2025, compositional preferences (curve values not retrieved;"
    " research note scaling-compgen 1c)"
)
CLAIMS = (
    Claim(
        "width",
        "OOD acc_all rises with width at every coverage (random support)",
        ANCHOR,
        partial(width_rises, metric=METRIC),
    ),
    Claim(
        "non_compositional_fails",
        "A support that never trains one preference stays below the random support's OOD acc_all"
        " (same coverage), at every width",
        ANCHOR,
        partial(control_below_random, support="non_compositional", metric=METRIC),
    ),
    Claim(
        "disconnected_fails",
        "A support of two disconnected groups of preferences stays below the random support's"
        " OOD acc_all (same coverage), at every width",
        ANCHOR,
        partial(control_below_random, support="pseudo_random_disconnected", metric=METRIC),
    ),
    Claim(
        "decodability",
        "Where agents generalize, z is decodable: decodability R² of z (last hidden layer, OOD) goes with "
        "OOD acc_all across runs, Spearman rho at least 0.5",
        ANCHOR,
        partial(decodability_goes_with, metric=METRIC),
    ),
)

TINY = {
    "model.width": 8,
    "model.depth": 1,
    "task.num_preferences": 6,
    "task.num_hot": 2,
    "task.num_features": 4,
    "task.num_objects": 2,
    "task.frac_ood": 0.3,
    "train.steps": 20,
    "train.batch_size": 8,
    "train.eval_every": 10,
    "eval_tasks": 16,
    "probe.tasks": 64,
}

EXPERIMENT = register(
    Experiment(
        name="preferences",
        title="Preferences: imitation in a gridworld on held-out preference combinations, width x coverage",
        spec=PreferencesSpec,
        run=run,
        run_group=run_group,
        group_key=group_key,
        step_flops=step_flops,
        make_model=build_policy,
        check=check,
        plots=plots,
        profiles={
            # A look at the pipeline (8 runs, about a minute on 2 CPU cores): at 1,000 steps
            # no agent is near the task yet.
            "quick": with_controls(
                {
                    "model.width": [32, 128],
                    "task.num_features": 16,
                    "task.frac_ood": [0.25, 0.75],
                    "train.lr": 1e-3,
                    "train.steps": 1000,
                    "train.eval_every": 250,
                    "eval_tasks": 512,
                    "probe.tasks": 512,
                },
                controls_at=0.25,
            ),
            # 45 runs, 52 min with --workers 2 on 2 CPU cores (the Xeon of README); the agents
            # still learn at 6,000 steps (README: five times longer at width 512).
            "full": with_controls(
                {
                    "model.width": [32, 128, 512],
                    "task.num_features": 16,
                    "task.frac_ood": [0.25, 0.75, 0.95],
                    "train.lr": 1e-3,
                    "train.steps": 6000,
                    "train.eval_every": 1000,
                    "seed": [0, 1, 2],
                },
                controls_at=0.25,
            ),
            # The reference's model sweep (F = 16, frac_ood 0.25, 3M steps at 1e-4): for GPUs.
            "paper": with_controls(
                {
                    "model.width": [16, 64, 256, 1024, 2048],
                    "model.depth": [2, 4],
                    "task.num_features": 16,
                    "task.frac_ood": 0.25,
                    "train.steps": 3_000_000,
                    "train.eval_every": 100_000,
                    "seed": [1, 2, 3],
                },
                controls_at=0.25,
            ),
        },
        columns=("model.width", "task.frac_ood", "task.support", "seed"),
        metrics=(
            "ood_acc_all",
            "id_acc_all",
            "ood_acc",
            "id_acc",
            "decodability_r2",
            "task_spearman",
            "train_loss",
        ),
        tiny=TINY,
        claims=CLAIMS,
    )
)
