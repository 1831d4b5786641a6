"""Scaling: width and coverage against compositional generalization, and what decodes it.

Redhardt, Akram & Schug (2025): plain MLPs generalize to held-out module combinations once
width and task-space coverage suffice, the controls (a module never trained, or two
disconnected groups of modules) fail at any width, and when networks generalize the task's
constituents z are linearly decodable from their hidden activations. Each run trains a
student as composition does (the family's recipe) and adds ridge probes (lambda = 1) of z
from every layer; per-task values support the correlation within a run as well as across runs.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field
from scipy import stats

from bindbench.core.claims import (
    HELD,
    NOT_HELD,
    NOT_MEASURED,
    Claim,
    Verdict,
    beyond,
    every,
    in_every,
    per_setting,
    rises_with,
)
from bindbench.core.claims import values as metric_values
from bindbench.core.config import Spec, SpecError, get_path
from bindbench.core.metrics import r2_score
from bindbench.core.probes import capture, features, r2_per_target, ridge_fit, ridge_fit_cg
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, column_width
from bindbench.core.seeds import generator
from bindbench.experiments.hyperteacher.setup import (
    TINY,
    CompositionSpec,
    Setup,
    build_student,
    check,
    fit,
    group_key,
    result,
    step_flops,
    student_inputs,
)


class ProbeSpec(Spec):
    tasks: int = Field(1024, ge=4, description="ID tasks for the probe (half fit, half test) and OOD tasks")
    alpha: float = Field(1.0, gt=0, description="ridge penalty")
    solver: Literal["exact", "cg10"] = Field(
        "exact", description="exact: closed form, free intercept; cg10: the reference's 10 CG steps"
    )


class ScalingSpec(CompositionSpec):
    probe: ProbeSpec = ProbeSpec()


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


def check_probed(spec: ScalingSpec) -> None:
    """The family's checks, and a user's model must have Linear layers to probe."""
    model = check(spec)
    if model is not None and not linear_layers(model):
        raise SpecError(
            f"model.factory={spec.model.factory}: scaling probes every nn.Linear's output; the model has none"
        )


def decodability(setup: Setup, model: torch.nn.Module) -> tuple[dict, dict]:
    """Ridge probes of z from the encoding and from every Linear layer's pre-activations.

    Returns (metrics, extra): per-layer R^2 on held-out ID tasks and on OOD tasks, the
    summary `decodability_r2` (OOD, last hidden layer), and per-OOD-task values of the
    network's R^2 and the probe's R^2 (over the M module weights of that task).
    """
    spec = setup.spec
    gen = generator(spec.seed, "probe", device=setup.teacher.device)
    tasks = {split: setup.teacher.sample(spec.probe.tasks, split, gen) for split in ("train", "ood")}
    inputs = {k: student_inputs(b.encoding, b.x) for k, b in tasks.items()}
    layers = linear_layers(model)
    acts = {k: {"encoding": tasks[k].encoding, **capture(model, inputs[k], layers)} for k in tasks}
    half = spec.probe.tasks // 2
    z_id, z_ood = tasks["train"].z, tasks["ood"].z
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

    with torch.no_grad():
        network = r2_score(model(inputs["ood"]), tasks["ood"].y, per_task=True)
    z = z_ood.double()
    residual = (z - summary_prediction).pow(2).sum(1)
    total = (z - z.mean(1, keepdim=True)).pow(2).sum(1)
    per_task = 1 - residual / total  # how well this task's module weights are read out
    metrics["task_spearman"] = float(stats.spearmanr(per_task.cpu(), network.cpu()).statistic)
    extra = {"ood_task_r2": network.tolist(), "ood_task_decodability": per_task.tolist()}
    return metrics, extra


def _probed(fitted) -> list[RunResult]:
    results = []
    for setup, model, trained in fitted:
        probed = result(trained, model)
        if not trained.diverged:
            metrics, extra = decodability(setup, model)
            probed.metrics.update(metrics)
            probed.extra.update(extra)
        results.append(probed)
    return results


def run(spec: ScalingSpec, ctx) -> RunResult:
    return _probed(fit([spec], ctx))[0]


def run_group(specs: list[ScalingSpec], ctx) -> list[RunResult]:
    return _probed(fit(specs, ctx))


# --------------------------------------------------------------------------- report plots


def _get(run: dict, path: str):
    return get_path(run["spec"], path)


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] == "done" and "decodability_r2" in r["metrics"]]


def _reference(runs: list[dict]) -> list[dict]:
    """The runs of the reference MLP, which has a width (a user's model has none)."""
    return [r for r in runs if "width" in r["spec"]["model"]]


def heatmap_plot(runs: list[dict]) -> Plot | None:
    """Mean OOD R^2 (over seeds) over width x coverage, random support, one panel per depth."""
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
                    r["metrics"]["ood_r2"]
                )
        grid = np.full((len(coverages), len(widths)), np.nan)
        for (c, w), values in cells.items():
            grid[coverages.index(c), widths.index(w)] = np.mean(values)
        image = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i in range(len(coverages)):
            for j in range(len(widths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(coverages)), [f"{c:g}" for c in coverages])
        ax.set_xlabel("width")
        ax.set_ylabel("coverage (1 - frac_ood)")
        ax.set_title(f"OOD R² (depth {depth})")
        data[f"depth={depth}"] = {"widths": widths, "coverages": coverages, "ood_r2": grid.tolist()}
    fig.colorbar(image, ax=fig.axes)
    return Plot("OOD R² over width x coverage (random support)", fig, data)


def correlation_plot(runs: list[dict]) -> Plot | None:
    """Decodability (OOD, last hidden layer) against OOD R^2, one point per run."""
    done = _done(runs)
    if len(done) < 3:
        return None
    x = np.array([r["metrics"]["decodability_r2"] for r in done])
    y = np.array([r["metrics"]["ood_r2"] for r in done])
    spearman = float(stats.spearmanr(x, y).statistic)
    pearson = float(stats.pearsonr(x, y).statistic)
    fig = Figure(figsize=(5, 3.8), layout="constrained")
    ax = fig.subplots()
    supports = sorted({_get(r, "task.support") for r in done})
    for support in supports:
        mask = np.array([_get(r, "task.support") == support for r in done])
        ax.scatter(x[mask], y[mask], s=14, label=support, alpha=0.8)
    ax.set_xlabel("decodability R² of z (OOD, last hidden layer)")
    ax.set_ylabel("network OOD R²")
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
    return Plot("decodability against OOD R² across runs", fig, data)


def controls_plot(runs: list[dict]) -> Plot | None:
    """OOD R^2 against width for each support, at the coverages the controls were run at."""
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
                by_width[_get(r, "model.width")].append(r["metrics"]["ood_r2"])
        widths = sorted(by_width)
        means = [float(np.mean(by_width[w])) for w in widths]
        ax.plot(widths, means, marker="o", label=support)
        data[support] = {"widths": widths, "ood_r2": means}
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel("OOD R²")
    ax.set_title(f"controls beside random support (frac_ood {', '.join(map(str, sorted(controls)))})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Plot("controls against width", fig, data)


def plots(runs: list[dict]) -> list[Plot]:
    return [p for p in (heatmap_plot(runs), correlation_plot(runs), controls_plot(runs)) if p is not None]


CONTROLS = ["non_compositional", "pseudo_random_disconnected"]


def with_controls(main: dict, controls_at: float) -> list[dict]:
    """A profile: the main sweep (random support) and the two controls at one coverage."""
    return [main, {**main, "task.frac_ood": controls_at, "task.support": CONTROLS}]


def _support(runs: list[dict], support: str) -> list[dict]:
    return [r for r in runs if r["spec"]["task"]["support"] == support]


def _control_fails(runs: list[dict], support: str) -> Verdict:
    """The control's mean OOD R² below 0.5 at every width it was trained at."""

    def one(part: list[dict]) -> Verdict:
        # by number, a user's model (no width: None) last
        widths = sorted({r["spec"]["model"].get("width") for r in part}, key=lambda w: (w is None, w or 0))
        names = {w: f"width {w}" if w is not None else "your model" for w in widths}
        return every(
            {
                names[w]: beyond(
                    metric_values(part, "ood_r2", model__width=w), 0.5, f"OOD R² at {names[w]}", above=False
                )
                for w in widths
            }
        )

    mine = _support(runs, support)
    if not mine:
        return Verdict(NOT_MEASURED, {}, f"no finished {support} run")
    return in_every(per_setting(mine, ["model.width"]), one)


def _width_rises(runs: list[dict]) -> Verdict:
    return rises_with(_support(runs, "random"), "ood_r2", "model.width")


def _decodability_goes_with_ood(runs: list[dict]) -> Verdict:
    done = [
        r for r in _support(runs, "random") if "decodability_r2" in r["metrics"] and "ood_r2" in r["metrics"]
    ]
    if len(done) < 4:
        return Verdict(NOT_MEASURED, {}, f"{len(done)} random-support runs with both figures; 4 needed")
    decodability, ood = metric_values(done, "decodability_r2"), metric_values(done, "ood_r2")
    rho = float(stats.spearmanr(decodability, ood).statistic)
    held = rho >= 0.5
    detail = f"Spearman rho {rho:.3f} over {len(done)} runs ({'>=' if held else '<'} 0.5)"
    return Verdict(HELD if held else NOT_HELD, {"spearman": rho, "runs": len(done)}, detail)


ANCHOR = "Redhardt, Akram & Schug 2025 (curve values not retrieved; research note scaling-compgen)"
CLAIMS = (
    Claim(
        "width",
        "OOD R² rises with width at every coverage (random support)",
        ANCHOR,
        _width_rises,
    ),
    Claim(
        "non_compositional_fails",
        "A support that never trains one module fails at every width: OOD R² below 0.5",
        ANCHOR,
        partial(_control_fails, support="non_compositional"),
    ),
    Claim(
        "disconnected_fails",
        "A support of two disconnected groups of modules fails at every width: OOD R² below 0.5",
        ANCHOR,
        partial(_control_fails, support="pseudo_random_disconnected"),
    ),
    Claim(
        "decodability",
        "Where networks generalize, the constituents are decodable: decodability R² of z "
        "(last hidden layer, OOD) goes with OOD R² across runs, Spearman rho at least 0.5",
        ANCHOR,
        _decodability_goes_with_ood,
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
