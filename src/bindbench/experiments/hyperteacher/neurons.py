"""Neurons versus modules: how does the width an MLP needs grow with the number of modules?

Redhardt, Akram & Schug (2025) prove that a number of neurons linear in the number of
modules M suffices to approximate the hyperteacher family. Empirically: for each M (K,
coverage and step budget fixed), find the smallest width whose OOD R^2 reaches a
threshold, by doubling the width until it passes and then bisecting between the last
failing and the first passing width. One run is one search; the report fits a power law
width = a M^b across M (b near 1 is linear, not exponential).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from bindbench.core.claims import HELD, NOT_HELD, NOT_MEASURED, Claim, Verdict, in_every
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot
from bindbench.core.training import TrainSpec
from bindbench.experiments.hyperteacher import setup
from bindbench.experiments.hyperteacher.setup import CompositionSpec, HyperTeacherSpec, MLPSpec
from bindbench.models.mlp import INITS


class WidthModelSpec(Spec):
    factory: FactoryPath | None = factory_field("input_dim, output_dim, width")


class NeuronsSpec(Spec):
    seed: int = Field(0, ge=0, description="teacher, split, initialization and data")
    task: HyperTeacherSpec = HyperTeacherSpec()
    depth: int = Field(2, ge=1, description="hidden layers of every MLP tried")
    init: Literal[INITS] = Field("reference", description="initialization of every MLP tried")  # type: ignore[valid-type]
    train: TrainSpec = TrainSpec()
    eval_tasks: int = Field(1024, ge=2, description="tasks in each of the ID and OOD sets")
    threshold: float = Field(0.8, gt=0, le=1, description="OOD R^2 a width must reach")
    start_width: int = Field(8, ge=1, description="first width of the doubling grid")
    max_width: int = Field(1024, ge=1, description="give up above this width")
    refinements: int = Field(2, ge=0, description="bisection steps between fail and pass")
    model: WidthModelSpec = Field(WidthModelSpec(), json_schema_extra={"omit_at_default": True})
    REFERENCE = ReferenceKeys(dropped=("depth", "init"))  # a user's model: its own layers

    @model_validator(mode="after")
    def _widths_in_order(self) -> NeuronsSpec:
        if self.max_width < self.start_width:
            raise ValueError(f"max_width={self.max_width} must be >= start_width={self.start_width}")
        return self


def _composition(spec: NeuronsSpec, width: int) -> CompositionSpec:
    """What one width of the search trains: the MLP, or the user's model given `width`."""
    own = spec.model.factory
    model = MLPSpec(factory=own) if own else MLPSpec(width=width, depth=spec.depth, init=spec.init)
    return CompositionSpec(
        seed=spec.seed, task=spec.task, model=model, train=spec.train, eval_tasks=spec.eval_tasks
    )


def _ood_r2(spec: NeuronsSpec, width: int, ctx) -> dict:
    sizes = {"width": width} if spec.model.factory else {}
    ((_, _, trained),) = setup.fit([_composition(spec, width)], ctx, **sizes)
    return {"width": width, "diverged": trained.diverged, **trained.final}


def search(passes, start: int, maximum: int, refinements: int) -> tuple[int | None, list]:
    """The smallest passing width on the doubling grid from `start`, refined by bisection.

    `passes(width) -> bool`. Returns (width or None if even `maximum` fails, widths tried).
    """
    tried = []
    failing, width = None, start
    while width <= maximum:
        tried.append(width)
        if passes(width):
            break
        failing, width = width, width * 2
    else:
        return None, tried
    passing = width
    for _ in range(refinements):
        if failing is None or passing - failing <= 1:
            break
        middle = (failing + passing) // 2
        tried.append(middle)
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return passing, tried


def run(spec: NeuronsSpec, ctx) -> RunResult:
    trials = []

    def passes(width: int) -> bool:
        trials.append(_ood_r2(spec, width, ctx))
        return trials[-1].get("ood_r2", -math.inf) >= spec.threshold

    width, _ = search(passes, spec.start_width, spec.max_width, spec.refinements)
    metrics = {
        "min_width": float(width) if width is not None else math.nan,
        "reached": float(width is not None),
        "widths_tried": float(len(trials)),
        "best_ood_r2": max((t.get("ood_r2", -math.inf) for t in trials), default=math.nan),
    }
    return RunResult(metrics=metrics, extra={"trials": trials})


def power_law(modules: list[float], widths: list[float]) -> tuple[float, float]:
    """Least-squares fit of log width = log a + b log M; returns (a, b)."""
    slope, intercept = np.polyfit(np.log(modules), np.log(widths), 1)
    return float(np.exp(intercept)), float(slope)


def width_plot(runs: list[dict]) -> Plot | None:
    by_m = defaultdict(list)
    for r in runs:
        if r["status"] == "done" and r["metrics"].get("reached") == 1.0:
            by_m[r["spec"]["task"]["num_modules"]].append(r["metrics"]["min_width"])
    if len(by_m) < 2:
        return None
    modules = sorted(by_m)
    means = [float(np.mean(by_m[m])) for m in modules]
    a, b = power_law(modules, means)
    per_module, intercept = (float(v) for v in np.polyfit(modules, means, 1))
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    for m in modules:
        ax.scatter([m] * len(by_m[m]), by_m[m], color="k", s=10, alpha=0.4)
    ax.plot(modules, means, "o", label="mean minimal width")
    grid = np.linspace(min(modules), max(modules), 50)
    ax.plot(grid, a * grid**b, "--", label=f"power law: {a:.1f} M^{b:.2f}")
    ax.plot(grid, intercept + per_module * grid, ":", label=f"line: {intercept:.0f} + {per_module:.1f} M")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(modules, [str(m) for m in modules])
    ax.minorticks_off()
    ax.set_xlabel("modules M")
    ax.set_ylabel("smallest width reaching the threshold")
    ax.set_title(f"width ~ M^{b:.2f} (linear in M: exponent 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    data = {
        "modules": modules,
        "mean_min_width": means,
        "per_seed": dict(by_m),
        "a": a,
        "exponent": b,
        "line_intercept": intercept,
        "line_per_module": per_module,
    }
    return Plot("minimal width against modules", fig, data)


def _about_linear(runs: list[dict]) -> Verdict:
    """The power law's exponent over the mean minimal width per M at most 1.5, every search reached."""
    by_m = defaultdict(list)
    for r in runs:
        by_m[r["spec"]["task"]["num_modules"]].append(
            r["metrics"].get("min_width") if r["metrics"].get("reached") == 1.0 else None
        )
    missed = sorted(m for m, widths in by_m.items() if None in widths)
    reached = {m: w for m, w in by_m.items() if None not in w}
    if len(reached) < 2:
        return Verdict(NOT_MEASURED, {}, f"minimal widths at {len(reached)} values of M; 2 needed")
    modules = sorted(reached)
    means = [float(np.mean(reached[m])) for m in modules]
    _, b = power_law(modules, means)
    numbers = {"exponent": b, **{f"mean minimal width at M={m}": w for m, w in zip(modules, means)}}
    shown = ", ".join(f"{w:.0f}" for w in means)
    if missed:
        numbers["M without a width"] = len(missed)
        return Verdict(NOT_HELD, numbers, f"no width reached the threshold at M = {missed}")
    held = b <= 1.5
    return Verdict(
        HELD if held else NOT_HELD,
        numbers,
        f"widths {shown} at M = {modules}: exponent {b:.2f} ({'<=' if held else '>'} 1.5)",
    )


def _model(spec: dict) -> str:
    return spec.get("model", {}).get("factory") or "MLP"


def _per_model(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs of each model: the MLP's, and each user's model's (its own widths)."""
    models = defaultdict(list)
    for r in runs:
        models[_model(r["spec"])].append(r)
    return dict(models)


def _about_linear_per_model(runs: list[dict]) -> Verdict:
    return in_every(_per_model(runs), _about_linear)


CLAIMS = (
    Claim(
        "linear_in_modules",
        "The smallest width that generalizes grows about linearly in the number of modules M, "
        "not exponentially: the exponent b of width = a M^b at most 1.5",
        "a number of neurons linear in M suffices (Redhardt, Akram & Schug 2025, a theorem)",
        _about_linear_per_model,
    ),
)


def plots(runs: list[dict]) -> list[Plot]:
    models = _per_model(runs)
    made = {model: width_plot(part) for model, part in models.items()}
    if len(models) > 1:  # a figure per model, named
        made = {m: Plot(f"{p.title}: {m}", p.figure, p.data) for m, p in made.items() if p is not None}
    return [p for p in made.values() if p is not None]


def check(spec: NeuronsSpec) -> None:
    """The task's split; a user's model is built at the first width and called on a batch."""
    sizes = {"width": spec.start_width} if spec.model.factory else {}
    setup.check(_composition(spec, spec.start_width), **sizes)


EXPERIMENT = register(
    Experiment(
        name="neurons",
        title="Neurons versus modules: the smallest width that generalizes, as M grows",
        spec=NeuronsSpec,
        run=run,
        check=check,
        plots=plots,
        profiles={
            # Coverage is the reference's (frac_ood 0.25): at M >= 8 OOD R^2 then tracks ID R^2,
            # so what limits a width is fitting the family, not the data.
            "quick": {
                "task.num_modules": [4, 8, 12, 16],
                "threshold": 0.7,
                "start_width": 16,
                "train.steps": 1500,
                "train.eval_every": 1500,
                "eval_tasks": 512,
            },
            # M up to 32 so that a trend over M shows beyond the constant cost at small M.
            "full": {
                "task.num_modules": [4, 8, 12, 16, 24, 32],
                "threshold": 0.8,
                "start_width": 16,
                "max_width": 2048,
                "train.steps": 4000,
                "train.eval_every": 4000,
                "seed": [0, 1],
            },
            "paper": {
                "task.num_modules": [4, 8, 12, 16, 20, 24, 28],
                "threshold": 0.9,
                "depth": 4,
                "max_width": 8192,
                "train.steps": 100000,
                "train.eval_every": 100000,
                "seed": [1, 2, 3],
            },
        },
        columns=("task.num_modules", "task.num_hot", "task.frac_ood", "threshold", "model.factory", "seed"),
        metrics=("min_width", "reached", "best_ood_r2", "widths_tried"),
        tiny={
            "task.num_modules": 6,
            "task.num_hot": 2,
            "task.frac_ood": 0.3,
            "train.steps": 20,
            "train.batch_size": 8,
            "train.eval_every": 20,
            "eval_tasks": 16,
            "threshold": 0.9,
            "start_width": 4,
            "max_width": 8,
            "refinements": 0,
        },
        claims=CLAIMS,
    )
)
