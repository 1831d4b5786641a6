"""Scaling: width and coverage against compositional generalization, and what decodes it.

Redhardt, Akram & Schug (2025): plain MLPs generalize to held-out module combinations once
width and task-space coverage suffice, the controls (a module never trained, or two
disconnected groups of modules) fail at any width, and when networks generalize the task's
constituents z are linearly decodable from their hidden activations. Each run trains a
student as composition does (the family's recipe) and adds ridge probes (lambda = 1) of z
from every layer; per-task values support the correlation within a run as well as across runs.
"""

from __future__ import annotations

from functools import partial

from bindbench.core.claims import Claim
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.experiments.hyperteacher import setup
from bindbench.experiments.hyperteacher.setup import (
    TINY,
    CompositionSpec,
    ProbeSpec,
    build_student,
    check,
    control_fails,
    decodability_goes_with,
    fit,
    group_key,
    probed,
    step_flops,
    width_rises,
    with_controls,
)


class ScalingSpec(CompositionSpec):
    probe: ProbeSpec = ProbeSpec()


def check_probed(spec: ScalingSpec) -> None:
    """The family's checks, and a user's model must have Linear layers to probe."""
    setup.check_probed(check(spec), spec)


def run(spec: ScalingSpec, ctx) -> RunResult:
    return probed(fit([spec], ctx))[0]


def run_group(specs: list[ScalingSpec], ctx) -> list[RunResult]:
    return probed(fit(specs, ctx))


METRIC, LABEL = "ood_r2", "OOD R²"
heatmap_plot = partial(setup.heatmap_plot, metric=METRIC, label=LABEL)
correlation_plot = partial(setup.correlation_plot, metric=METRIC, label=LABEL)
controls_plot = partial(setup.controls_plot, metric=METRIC, label=LABEL)


def plots(runs: list[dict]) -> list:
    return setup.probe_plots(runs, METRIC, LABEL)


ANCHOR = "Redhardt, Akram & Schug 2025 (curve values not retrieved; research note scaling-compgen)"
CLAIMS = (
    Claim(
        "width",
        "OOD R² rises with width at every coverage (random support)",
        ANCHOR,
        partial(width_rises, metric=METRIC),
    ),
    Claim(
        "non_compositional_fails",
        "A support that never trains one module fails at every width: OOD R² below 0.5",
        ANCHOR,
        partial(control_fails, support="non_compositional", metric=METRIC, bound=0.5),
    ),
    Claim(
        "disconnected_fails",
        "A support of two disconnected groups of modules fails at every width: OOD R² below 0.5",
        ANCHOR,
        partial(control_fails, support="pseudo_random_disconnected", metric=METRIC, bound=0.5),
    ),
    Claim(
        "decodability",
        "Where networks generalize, the constituents are decodable: decodability R² of z "
        "(last hidden layer, OOD) goes with OOD R² across runs, Spearman rho at least 0.5",
        ANCHOR,
        partial(decodability_goes_with, metric=METRIC),
    ),
)


EXPERIMENT = register(
    Experiment(
        name="scaling",
        title="Scaling: width x coverage, controls, and linear decodability of the task constituents",
        spec=ScalingSpec,
        run=run,
        run_group=run_group,
        group_key=group_key,
        step_flops=step_flops,
        make_model=build_student,
        check=check_probed,
        plots=plots,
        profiles={
            # About 2 minutes on 2 CPU cores: 3 widths x 2 coverages, and the two controls.
            "quick": with_controls(
                {
                    "model.width": [16, 64, 256],
                    "model.depth": 2,
                    "task.frac_ood": [0.5, 0.9],
                    "train.steps": 1500,
                    "train.eval_every": 500,
                },
                controls_at=0.5,
            ),
            # 5 widths x 4 coverages x 3 seeds, plus the controls: about an hour on 2 CPU cores.
            "full": with_controls(
                {
                    "model.width": [32, 64, 128, 256, 512],
                    "model.depth": 2,
                    "task.frac_ood": [0.5, 0.75, 0.9, 0.95],
                    "train.steps": 3000,
                    "train.eval_every": 500,
                    "seed": [0, 1, 2],
                },
                controls_at=0.75,
            ),
            # The reference's sweeps at M=16, K=3 (model and data axes, 100k steps): GPU.
            "paper": with_controls(
                {
                    "model.width": [128, 256, 512, 1024, 2048],
                    "model.depth": [2, 4],
                    "task.frac_ood": [0.25, 0.5, 0.75, 0.9, 0.95],
                    "train.steps": 100000,
                    "train.eval_every": 10000,
                    "seed": [1, 2, 3],
                },
                controls_at=0.25,
            ),
        },
        columns=("model.width", "model.depth", "task.frac_ood", "task.support", "seed"),
        metrics=("ood_r2", "decodability_r2", "id_r2", "task_spearman", "train_loss"),
        tiny={**TINY, "probe.tasks": 64},
        claims=CLAIMS,
    )
)
