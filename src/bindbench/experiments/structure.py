"""Structural compositionality: does a trained network hold a subnetwork for each subroutine?

Lepori, Serre & Pavlick (2023, "Break It Down"): train a base model on a task made of two
subroutines; freeze it; train a binary weight mask on data labelled by one subroutine alone.
The subnetwork (the kept weights) should solve its own subroutine and not the other (Sub > 0),
and ablating it (keeping the complement) should hurt its own subroutine more than the other
(Abl < 0). One run is one base model (or, as a control, the same search on an untrained,
randomly initialized copy); per subroutine it selects the mask penalty on the validation
split, trains masks from several seeds, and scores each with its size-matched random-mask
control. Facts and hyperparameters: research note break-it-down.md.

Subroutine 1 is A (the `and` task) or add (`addmul`), subroutine 2 is B or mul.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core import factory
from bindbench.core.claims import Claim, Verdict, every, exceeds, in_every, per_setting, values
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.masks import (
    ablate,
    apply_mask,
    density,
    find_subnetwork,
    kept_fraction,
    mask_iou,
    maskable_weights,
    random_mask,
)
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, bars, column_width, spread
from bindbench.core.seeds import generator, seed_init, stream_seed
from bindbench.core.training import TrainSpec, train
from bindbench.models.mlp import MLP
from bindbench.tasks.subroutines import AddMulTask, AndTask


class StructureTaskSpec(Spec):
    name: Literal["and", "addmul"] = Field(
        "and", description="(a1 == a2) and (b1 == b2) on symbols, or a + b / a * b mod 100"
    )
    symbols: int = Field(20, ge=2, description="symbols per position (and)")
    val: float = Field(0.15, gt=0, lt=1, description="fraction of all inputs held out for selection")
    test: float = Field(0.15, gt=0, lt=1, description="fraction of all inputs held out for testing")


class BaseModelSpec(Spec):
    width: int = Field(256, ge=1, description="hidden units per layer of the MLP")
    depth: int = Field(3, ge=1, description="hidden layers")
    init: Literal["trained", "random"] = Field(
        "trained", description="train the base model, or search an untrained copy (the control)"
    )
    factory: FactoryPath | None = factory_field("input_dim, output_dim (classes)")
    REFERENCE = ReferenceKeys(kept=("init",))


class MaskSpec(Spec):
    method: Literal["continuous", "gumbel"] = Field(
        "continuous", description="continuous sparsification (Lepori) or straight-through Gumbel (Csordas)"
    )
    include: list[str] = Field(
        ["hidden.*"],
        min_length=1,
        description="name patterns of the masked layers (hidden.0.., readout); default: all but the readout",
    )
    penalties: list[float] = Field(
        [1e-5, 3e-5, 1e-4], min_length=1, description="sparsity penalties tried; chosen on the val split"
    )
    steps: int = Field(1000, ge=1, description="mask optimizer steps")
    batch_size: int = Field(64, ge=1, description="items per mask step")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate of the mask logits")
    init: float | None = Field(None, description="initial logit (null: 0.05 continuous, 2 gumbel)")
    seeds: int = Field(3, ge=1, description="masks trained per subroutine, from different seeds")
    threshold: float = Field(
        0.9, gt=0, le=1, description="val accuracy a subnetwork must reach on its subroutine to be chosen"
    )


class StructureSpec(Spec):
    seed: int = Field(0, ge=0, description="base model initialization and training data")
    task: StructureTaskSpec = StructureTaskSpec()
    model: BaseModelSpec = BaseModelSpec()
    train: TrainSpec = TrainSpec(steps=6000, lr=1e-3, weight_decay=0.0, eval_every=2000)
    mask: MaskSpec = MaskSpec()
    eval_items: int = Field(4000, ge=1, description="test and val items per set")


def make_task(spec: StructureTaskSpec) -> AndTask | AddMulTask:
    if spec.name == "and":
        return AndTask(spec.symbols, spec.val, spec.test)
    return AddMulTask(spec.val, spec.test)


def check(spec: StructureSpec) -> None:
    """Rejects specs whose sets cannot be drawn or whose mask patterns match no layer, before any run."""
    try:
        make_task(spec.task)
    except ValueError as err:
        raise ValueError(f"task: {err}") from None
    shape = check_model(spec) or MLP(1, 1, 1, spec.model.depth)  # the MLP's layer names, at no cost
    for pattern in spec.mask.include:
        if not maskable_weights(shape, include=[pattern]):
            layers = [name.removesuffix(".weight") for name in maskable_weights(shape)]
            hint = " (set mask.include to your model's layers)" if spec.model.factory else ""
            raise ValueError(f"mask.include pattern {pattern!r} matches no layer of {layers}{hint}")


# what a model of the user's must be (docs/models.md)
INTERFACE = "model(x): (batch, input_dim) -> (batch, output_dim) class logits"


def check_model(spec: StructureSpec) -> torch.nn.Module | None:
    """A user's base model, built and called on two of the task's inputs; None for the MLP."""
    if spec.model.factory is None:
        return None
    task = make_task(spec.task)
    model = make_base(spec, task)
    x, _ = task.sample("task", 2, generator(None, "eval"))
    out = factory.try_forward(spec.model.factory, model, x, INTERFACE)
    factory.expect_tensor(spec.model.factory, out, (2, task.num_classes), INTERFACE)
    return model


def base_of(spec: StructureSpec) -> torch.nn.Module:
    """A run's untrained base model, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_base(spec, make_task(spec.task))


def make_base(spec: StructureSpec, task) -> torch.nn.Module:
    """The base model: the user's (model.factory) or the MLP."""
    if spec.model.factory is not None:
        return factory.build(spec.model.factory, input_dim=task.input_dim, output_dim=task.num_classes)
    return MLP(task.input_dim, task.num_classes, spec.model.width, spec.model.depth)


def accuracy(model, task, kind: str, split: str, items: int) -> float:
    x, y = task.sample(kind, items, generator(None, "eval"), split)  # the same items for every run
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def floor_difference(own: float, other: float, chance: float) -> float:
    """Lepori's clipped difference: max(own, chance) - max(other, chance)."""
    return max(own, chance) - max(other, chance)


def _mean_defined(values: list[float]) -> float:
    """The mean of the values that are not NaN (an IoU of two empty masks is NaN); NaN if none."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def run(spec: StructureSpec, ctx) -> RunResult:
    task = make_task(spec.task)
    seed_init(spec.seed)
    model = make_base(spec, task)
    data = generator(spec.seed, "data")
    curve = []
    if spec.model.init == "trained":
        trained = train(
            model,
            spec.train,
            lambda step: task.sample("task", spec.train.batch_size, data),
            lambda m, batch: torch.nn.functional.cross_entropy(m(batch[0]), batch[1]),
            lambda m: {"accuracy": accuracy(m, task, "task", "val", spec.eval_items)},
            ctx.on_eval,
        )
        if trained.diverged:
            return RunResult(metrics={}, curve=trained.curve, diverged=True)
        curve = trained.curve
    model.eval()  # frozen from here: the mask search trains logits only

    first, second = task.subroutines
    metrics = {"base_accuracy": accuracy(model, task, "task", "test", spec.eval_items)}
    extra = {"subroutines": [first, second], "chance": task.chance, "subroutine": {}}
    masks = {}
    for number, (own, other) in enumerate(((first, second), (second, first)), start=1):
        masks[own], extra["subroutine"][own] = subroutine_masks(model, task, spec, own, other)
        for key in ("sub", "abl", "random_abl"):
            metrics[f"{key}_{number}"] = float(np.mean(extra["subroutine"][own]["seeds"][key]))
    ious = [mask_iou(a, b) for a, b in zip(masks[first], masks[second])]
    extra["iou"] = {layer: _mean_defined([iou[layer] for iou in ious]) for layer in ious[0]}
    return RunResult(metrics=metrics, curve=curve, extra=extra, model=model)


def search(model, task, spec: StructureSpec, kind: str, penalty: float, number: int):
    """The mask found on `kind`'s training items with this penalty, from the `number`-th mask streams."""
    sampler = generator(spec.seed, "mask_data", number)
    settings = spec.mask.model_dump(exclude={"include", "penalties", "seeds", "threshold"})
    return find_subnetwork(
        model,
        lambda step: task.sample(kind, spec.mask.batch_size, sampler),
        include=spec.mask.include,
        seed=stream_seed(spec.seed, "masks", number),
        penalty=penalty,
        **settings,
    )


def subroutine_masks(model, task, spec: StructureSpec, own: str, other: str) -> tuple[list, dict]:
    """The masks for subroutine `own` (one per mask seed) and what they score.

    The penalty is selected on the val split, blind to the ablation outcome: the sparsest mask
    whose subnetwork reaches `mask.threshold` on its own subroutine (else the most accurate).
    Each mask is scored as subnetwork and as ablation, and so is its size-matched random mask,
    on the test sets where only `own` or only `other` varies."""
    items = spec.eval_items
    tried = []
    for penalty in spec.mask.penalties:
        mask = search(model, task, spec, own, penalty, 0)
        val = accuracy(apply_mask(model, mask), task, own, "val", items)
        tried.append({"penalty": penalty, "val_accuracy": val, "kept": kept_fraction(mask), "mask": mask})
    passing = [t for t in tried if t["val_accuracy"] >= spec.mask.threshold]
    chosen = min(passing, key=lambda t: t["kept"]) if passing else max(tried, key=lambda t: t["val_accuracy"])

    masks, per_seed = [], defaultdict(list)
    for i in range(spec.mask.seeds):
        mask = chosen["mask"] if i == 0 else search(model, task, spec, own, chosen["penalty"], i)
        control = random_mask(mask, generator(spec.seed, "control", i))
        nets = {
            "sub": apply_mask(model, mask),
            "abl": ablate(model, mask),
            "random_abl": ablate(model, control),
        }
        for name, net in nets.items():
            scores = [accuracy(net, task, f"+/-{kind}", "test", items) for kind in (own, other)]
            per_seed[f"{name}_own"].append(scores[0])
            per_seed[f"{name}_other"].append(scores[1])
            per_seed[name].append(floor_difference(*scores, task.chance))
        per_seed["kept"].append(kept_fraction(mask))
        masks.append(mask)
    return masks, {
        "penalty": chosen["penalty"],
        "selection": [{k: v for k, v in t.items() if k != "mask"} for t in tried],
        "seeds": dict(per_seed),
        "density": {layer: float(np.mean([density(m)[layer] for m in masks])) for layer in masks[0]},
    }


# ----------------------------------------------------------------------------- plots


def _label(spec: dict) -> str:
    """The task and the base model: its initialization, and the user's factory if any."""
    factory = spec["model"].get("factory")
    return f"{spec['task']['name']}, {spec['model']['init']}" + (f", {factory}" if factory else "")


BARS = ["sub_own", "sub_other", "abl_own", "abl_other", "random_abl_own", "random_abl_other"]


def ablation_plot(runs: list[dict]) -> Plot | None:
    """The 2 x 2 of Lepori et al. per subroutine: subnetwork and ablated complement, each on its
    own and the other subroutine's test set, for trained and random-init base models, with the
    random-mask ablation beside them and chance drawn; the Sub and Abl table under it."""
    done = [r for r in runs if r["status"] == "done" and "subroutine" in r["extra"]]
    if not done:
        return None
    groups = defaultdict(list)
    for r in done:
        groups[_label(r["spec"])].append(r)
    fig = Figure(figsize=(column_width(4.5 * len(groups)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups), sharey=True))
    rows, data = [], {}
    for ax, (label, members) in zip(axes, sorted(groups.items())):
        names = members[0]["extra"]["subroutines"]
        values = {
            name: {b: [v for r in members for v in r["extra"]["subroutine"][name]["seeds"][b]] for b in BARS}
            for name in names
        }
        bars(
            ax,
            [b.replace("_", "\n") for b in BARS],
            {f"mask for {n}": list(values[n].values()) for n in names},
        )
        for number, name in enumerate(names, start=1):
            data[f"{label}: {name}"] = values[name]
            summary = [[r["metrics"][f"{k}_{number}"] for r in members] for k in ("sub", "abl", "random_abl")]
            pairs = [
                f"{np.mean(values[name][f'{b}_own']):.3f} / {np.mean(values[name][f'{b}_other']):.3f}"
                for b in ("sub", "abl", "random_abl")
            ]
            rows.append([label, name, len(members), *(spread(v, signed=True) for v in summary), *pairs])
        ax.axhline(members[0]["extra"]["chance"], color="grey", linestyle=":", label="chance")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test accuracy")
    columns = ["base model", "mask for", "base seeds", "Sub", "Abl", "random-mask Abl"]
    columns += ["subnetwork own / other", "ablated own / other", "random-mask ablated own / other"]
    table = {"columns": columns, "rows": rows}
    return Plot("Subnetworks and their ablation (own / other subroutine's test set)", fig, data, table)


def layer_plot(runs: list[dict]) -> Plot | None:
    """Per task and masked layer: the fraction of weights each subroutine's mask keeps, and the
    IoU of the two masks (trained base models)."""
    done = [r for r in runs if r["status"] == "done" and "iou" in r["extra"]]
    by_task = defaultdict(list)  # per task and model: a user's model has its own layers
    for r in done:
        if r["spec"]["model"]["init"] == "trained":
            factory = r["spec"]["model"].get("factory")
            by_task[r["spec"]["task"]["name"] + (f", {factory}" if factory else "")].append(r)
    if not by_task:
        return None
    fig = Figure(figsize=(8, 3.2 * len(by_task)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(by_task), 2))
    data = {}
    for (left, right), (task, members) in zip(axes, sorted(by_task.items())):
        layers = list(members[0]["extra"]["iou"])
        names = members[0]["extra"]["subroutines"]
        for i, name in enumerate(names):
            values = [[r["extra"]["subroutine"][name]["density"][layer] for r in members] for layer in layers]
            left.plot(
                layers, [np.mean(v) for v in values], marker="o", color=f"C{i}", label=f"mask for {name}"
            )
            data[f"{task}: kept {name}"] = values
        left.set_yscale("log")
        left.set_ylabel("fraction of weights kept")
        left.set_title(task, fontsize=9)
        left.legend(fontsize=7)
        iou = [[r["extra"]["iou"][layer] for r in members] for layer in layers]
        right.plot(layers, [_mean_defined(v) for v in iou], marker="o", color="k")
        right.set_ylabel(f"IoU of the {names[0]} and {names[1]} masks")
        right.set_ylim(0, 1)
        data[f"{task}: iou"] = iou
        for ax in (left, right):
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return Plot("Masks per layer (trained base models)", fig, data)


def plots(runs: list[dict]) -> list[Plot]:
    return [p for p in (ablation_plot(runs), layer_plot(runs)) if p is not None]


def _subnetworks(runs: list[dict]) -> Verdict:
    """Per task: for both subroutines, Sub of the trained model above the random-init control's,
    and its ablation's Abl below that of a size-matched random mask, by more than the seed spread."""

    def one(part: list[dict]) -> Verdict:
        trained = [r for r in part if r["spec"]["model"]["init"] == "trained"]
        control = [r for r in part if r["spec"]["model"]["init"] == "random"]
        checks = {}
        for n in (1, 2):
            checks[f"sub_{n}"] = exceeds(
                values(trained, f"sub_{n}"), values(control, f"sub_{n}"), f"Sub {n}", "random init"
            )
            checks[f"abl_{n}"] = exceeds(
                values(trained, f"random_abl_{n}"), values(trained, f"abl_{n}"), "random mask", f"Abl {n}"
            )
        return every(checks)

    return in_every(per_setting(runs, ["model.init"]), one)


CLAIMS = (
    Claim(
        "subnetworks",
        "A trained network holds a subnetwork per subroutine: for both subroutines Sub is above "
        "the random-init control's and ablating the subnetwork hurts more than a random mask of "
        "its size (Abl below the random mask's), by more than the seed spread",
        "structural compositionality in most of the vision and language models studied "
        "(Lepori, Serre & Pavlick 2023)",
        _subnetworks,
    ),
)


EXPERIMENT = register(
    Experiment(
        name="structure",
        title="Structural compositionality: a subnetwork per subroutine, found by masks, tested by ablation",
        spec=StructureSpec,
        run=run,
        check=check,
        make_model=base_of,
        plots=plots,
        profiles={
            # quick: one base seed and its random-init control, one penalty, 2 mask seeds
            "quick": {
                "model.init": ["trained", "random"],
                "train.steps": 2000,
                "mask.penalties": [[3e-5]],
                "mask.steps": 400,
                "mask.seeds": 2,
                "eval_items": 1000,
            },
            "full": [
                {"task.name": "and", "model.init": ["trained", "random"], "seed": [0, 1, 2]},
                {
                    "task.name": "addmul",
                    "model.width": 512,
                    "train.steps": 8000,
                    "model.init": ["trained", "random"],
                    "seed": [0, 1, 2],
                },
            ],
        },
        columns=("task.name", "model.init", "seed"),
        metrics=("sub_1", "abl_1", "random_abl_1", "sub_2", "abl_2", "random_abl_2", "base_accuracy"),
        tiny={
            "task.symbols": 6,
            "model.width": 16,
            "model.depth": 2,
            "train.steps": 20,
            "train.eval_every": 10,
            "mask.steps": 10,
            "mask.seeds": 1,
            "mask.penalties": [1e-4],
            "eval_items": 100,
        },
        claims=CLAIMS,
    )
)
