"""Composition on the hyperteacher: does a plain MLP generalize to held-out module combinations?

Redhardt, Akram & Schug (2025): with enough width and task-space coverage, an MLP trained
on combinations of teacher modules reaches high R^2 on combinations it never saw.
One run trains one MLP on the training support and tracks in-distribution (fresh tasks
from training combinations) and OOD (held-out combinations) R^2.
"""

from __future__ import annotations

from functools import partial

from bindbench.core.claims import Claim, rises_with
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.experiments.hyperteacher.setup import (
    TINY,
    CompositionSpec,
    build_student,
    check,
    fit,
    group_key,
    result,
    step_flops,
)


def run(spec: CompositionSpec, ctx) -> RunResult:
    ((_, model, trained),) = fit([spec], ctx)
    return result(trained, model)


def run_group(specs: list[CompositionSpec], ctx) -> list[RunResult]:
    """Trains runs of one `group_key` as one vectorized ensemble; results as if run alone."""
    return [result(trained, model) for _, model, trained in fit(specs, ctx)]


CLAIMS = (
    Claim(
        "width",
        "OOD R² on held-out module combinations rises with the MLP's width, at every coverage",
        "Redhardt, Akram & Schug 2025: OOD R² rises with width and coverage (curve values not "
        "retrieved; research note scaling-compgen)",
        partial(rises_with, metric="ood_r2", key="model.width"),
    ),
)


EXPERIMENT = register(
    Experiment(
        name="composition",
        title="Composition: MLPs on held-out hyperteacher module combinations",
        spec=CompositionSpec,
        run=run,
        check=check,
        run_group=run_group,
        group_key=group_key,
        step_flops=step_flops,
        make_model=build_student,
        profiles={
            # Width at low coverage (5% of the 696 combinations): OOD R^2 should rise with
            # width. About 1.5 minutes on 2 CPU cores.
            "quick": {
                "model.width": [32, 64, 128, 256, 512],
                "model.depth": 2,
                "task.frac_ood": 0.95,
                "train.steps": 2000,
                "train.eval_every": 250,
            },
            # Width x coverage x 3 seeds, 45 runs: about 45 minutes on 2 CPU cores (--workers 2).
            "full": {
                "model.width": [32, 64, 128, 256, 512],
                "model.depth": 2,
                "task.frac_ood": [0.75, 0.9, 0.95],
                "train.steps": 5000,
                "train.eval_every": 500,
                "seed": [0, 1, 2],
            },
            # The reference's model sweep (M=16, K=3, frac_ood 0.25, 100k steps): for GPUs.
            "paper": {
                "model.width": [128, 256, 512, 1024, 2048],
                "model.depth": [2, 4],
                "task.frac_ood": 0.25,
                "train.steps": 100000,
                "train.eval_every": 10000,
                "seed": [1, 2, 3],
            },
        },
        columns=("model.width", "model.depth", "task.frac_ood", "task.support", "seed"),
        metrics=("ood_r2", "id_r2", "train_loss"),
        tiny=TINY,
        claims=CLAIMS,
    )
)
