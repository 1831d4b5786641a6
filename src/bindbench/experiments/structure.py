"""Structural compositionality: does a trained network hold a subnetwork for each subroutine?

Lepori, Serre & Pavlick (2023, "Break It Down"): train a base model on a task made of two
subroutines; freeze it; train a binary weight mask on data labelled by one subroutine alone.
The subnetwork (the kept weights) should solve its own subroutine and not the other (Sub > 0),
and ablating it (keeping the complement) should hurt its own subroutine more than the other
(Abl < 0). One run is one base model (or, as a control, the same search on an untrained,
randomly initialized copy); per subroutine it selects the mask penalty on the validation
split, trains masks from several seeds, and scores each with its size-matched random-mask
control. Facts and hyperparameters: research note break-it-down.md.

The base model is an MLP on one-hot symbols or a small Transformer encoder on their ids
(`model.arch`), trained from scratch or fine-tuned from a pretrained start (`pretrain`):
self-supervised (the task's inputs with one symbol masked, predict it; no labels) or on a
related task (another function of the same inputs). Pretraining changes only the
initialization: the fine-tuning data, steps and readout are those of the run from scratch.

Subroutine 1 is A (the `and` task) or add (`addmul`), subroutine 2 is B or mul.
"""

from __future__ import annotations

import math
import typing
from collections import defaultdict
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from bindbench.core import factory
from bindbench.core.claims import (
    NOT_MEASURED,
    Claim,
    Verdict,
    beyond,
    every,
    exceeds,
    in_every,
    per_setting,
    values,
)
from bindbench.core.config import ReferenceKeys, Spec, flatten, varying
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
from bindbench.core.report import PANELS_PER_ROW, Plot, bars, column_width, spread
from bindbench.core.seeds import generator, seed_init, stream_seed
from bindbench.core.training import TrainSpec, train
from bindbench.models.encoder import EncoderClassifier
from bindbench.models.mlp import MLP
from bindbench.tasks.subroutines import AddMulTask, AndTask


class StructureTaskSpec(Spec):
    name: Literal["and", "addmul"] = Field(
        "and", description="(a1 == a2) and (b1 == b2) on symbols, or a + b / a * b mod 100"
    )
    symbols: int = Field(20, ge=2, description="symbols per position (and)")
    val: float = Field(0.15, gt=0, lt=1, description="fraction of all inputs held out for selection")
    test: float = Field(0.15, gt=0, lt=1, description="fraction of all inputs held out for testing")


NEW = {"omit_at_default": True}  # keys added after runs were stored: out of the run id at their default


class BaseModelSpec(Spec):
    arch: Literal["mlp", "transformer"] = Field(
        "mlp",
        description="an MLP on one-hot symbols, or a Transformer encoder on their ids (read at [CLS])",
        json_schema_extra=NEW,
    )
    width: int = Field(256, ge=1, description="hidden units per layer of the MLP")
    depth: int = Field(3, ge=1, description="hidden layers of the MLP")
    d_model: int = Field(
        96, ge=1, description="the Transformer's width (feed-forward: twice it)", json_schema_extra=NEW
    )
    blocks: int = Field(2, ge=1, description="the Transformer's blocks", json_schema_extra=NEW)
    heads: int = Field(4, ge=1, description="the Transformer's attention heads", json_schema_extra=NEW)
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


class PretrainSpec(Spec):
    objective: Literal["none", "self_supervised", "related_task"] = Field(
        "none",
        description="none (from scratch), self_supervised (predict a masked symbol of the task's "
        "inputs) or related_task (another function of the same inputs), then fine-tuning",
    )
    steps: int = Field(3000, ge=1, description="pretraining steps")
    batch_size: int = Field(128, ge=1, description="items per pretraining step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of pretraining (no decay)")


OBJECTIVES = typing.get_args(PretrainSpec.model_fields["objective"].annotation)


class StructureSpec(Spec):
    seed: int = Field(0, ge=0, description="base model initialization and training data")
    task: StructureTaskSpec = StructureTaskSpec()
    model: BaseModelSpec = BaseModelSpec()
    pretrain: PretrainSpec = Field(PretrainSpec(), json_schema_extra=NEW)
    train: TrainSpec = TrainSpec(steps=6000, lr=1e-3, weight_decay=0.0, eval_every=2000)
    mask: MaskSpec = MaskSpec()
    eval_items: int = Field(4000, ge=1, description="test and val items per set")

    @model_validator(mode="before")
    @classmethod
    def _controls_and_defaults(cls, data):
        if not (isinstance(data, dict) and isinstance(data.get("model"), dict)):
            return data
        # the untrained control is one network whatever the start its trained runs had, so a
        # sweep over pretrain.objective shares it (one run id) instead of refusing it; from
        # scratch, the pretraining settings do not apply
        pretrain = data.get("pretrain")
        objective = pretrain.get("objective", "none") if isinstance(pretrain, dict) else None
        if data["model"].get("init") == "random" or objective == "none":
            data = {k: v for k, v in data.items() if k != "pretrain"}
        # the default pattern names the MLP's layers; on a Transformer it means its blocks
        mask = data.get("mask")
        if data["model"].get("arch") == "transformer" and isinstance(mask, dict):
            if mask.get("include") == ["hidden.*"]:
                data = {**data, "mask": {**mask, "include": ["blocks.*"]}}
        return data


def make_task(spec: StructureSpec) -> AndTask | AddMulTask:
    """The task, its inputs as ids for the Transformer and one-hot for the MLP or a user's model."""
    task = spec.task
    form = "tokens" if spec.model.arch == "transformer" and spec.model.factory is None else "one_hot"
    if task.name == "and":
        return AndTask(task.symbols, task.val, task.test, form=form)
    return AddMulTask(task.val, task.test, form=form)


def check(spec: StructureSpec) -> None:
    """Rejects specs whose sets cannot be drawn or whose mask patterns match no layer, before any run."""
    try:
        task = make_task(spec)
    except ValueError as err:
        raise ValueError(f"task: {err}") from None
    if spec.model.arch == "transformer" and spec.model.d_model % spec.model.heads:
        raise ValueError(
            f"model.d_model={spec.model.d_model} must be a multiple of model.heads={spec.model.heads}"
        )
    shape = check_model(spec) or make_base(spec, task, tiny=True)  # the layer names, at little cost
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
    task = make_task(spec)
    model = make_base(spec, task)
    x, _ = task.sample("task", 2, generator(None, "eval"))
    out = factory.try_forward(spec.model.factory, model, x, INTERFACE)
    factory.expect_tensor(spec.model.factory, out, (2, task.num_classes), INTERFACE)
    if spec.pretrain.objective != "none" and not isinstance(getattr(model, "readout", None), torch.nn.Module):
        raise ValueError(
            f"pretrain.objective={spec.pretrain.objective}: the model needs its output layer named "
            "`readout` (pretraining replaces it by a head of its own)"
        )
    return model


def base_of(spec: StructureSpec) -> torch.nn.Module:
    """A run's untrained base model, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_base(spec, make_task(spec))


def make_base(spec: StructureSpec, task, classes: int | None = None, tiny: bool = False) -> torch.nn.Module:
    """The base model: the user's (model.factory), the MLP or the Transformer, with `classes`
    outputs (default: the task's). `tiny`: the same layer names at width 1, for checks."""
    classes = classes or task.num_classes
    m = spec.model
    if m.factory is not None:
        return factory.build(m.factory, input_dim=task.input_dim, output_dim=classes)
    if m.arch == "transformer":
        d_model, heads = (1, 1) if tiny else (m.d_model, m.heads)
        return EncoderClassifier(task.vocab + 1, task.length, classes, d_model, m.blocks, heads)
    return MLP(task.input_dim, classes, 1 if tiny else m.width, m.depth)


def classification_loss(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def pretraining_set(task, objective: str, n: int, generator: torch.Generator, split: str):
    """n items of the pretraining objective: masked inputs and their hidden symbols, or the
    related task's items."""
    if objective == "self_supervised":
        return task.masked(n, generator, split)
    return task.sample("related", n, generator, split)


def body(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without its output layer (`readout`)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("readout.")}


def pretrain(model: torch.nn.Module, spec: StructureSpec, task) -> float:
    """Pretrains `model`'s body in place (its readout untouched) and returns the pretraining
    objective's val accuracy. A copy of the model with a head for the objective starts from
    the model's own initial body and trains on the run's `pretrain` data stream."""
    objective, settings = spec.pretrain.objective, spec.pretrain
    classes = task.vocab if objective == "self_supervised" else task.num_classes
    head = make_base(spec, task, classes)
    head.load_state_dict(body(model), strict=False)
    data = generator(spec.seed, "pretrain")
    trained = train(
        head,
        TrainSpec(
            steps=settings.steps,
            batch_size=settings.batch_size,
            lr=settings.lr,
            weight_decay=0.0,
            eval_every=settings.steps,
        ),
        lambda step: pretraining_set(task, objective, settings.batch_size, data, "train"),
        classification_loss,
        lambda m: {
            "accuracy": _accuracy(
                m, *pretraining_set(task, objective, spec.eval_items, generator(None, "eval"), "val")
            )
        },
    )
    model.load_state_dict(body(head), strict=False)
    return trained.final.get("accuracy", math.nan)


def accuracy(model, task, kind: str, split: str, items: int) -> float:
    # the same items for every run
    return _accuracy(model, *task.sample(kind, items, generator(None, "eval"), split))


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def floor_difference(own: float, other: float, chance: float) -> float:
    """Lepori's clipped difference: max(own, chance) - max(other, chance)."""
    return max(own, chance) - max(other, chance)


def _mean_defined(values: list[float]) -> float:
    """The mean of the values that are defined (an IoU of two empty masks is NaN, stored as
    null); NaN if none."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def run(spec: StructureSpec, ctx) -> RunResult:
    task = make_task(spec)
    seed_init(spec.seed)
    model = make_base(spec, task)
    data = generator(spec.seed, "data")
    curve, metrics = [], {}
    if spec.pretrain.objective != "none":
        metrics["pretrain_accuracy"] = pretrain(model, spec, task)
    if spec.model.init == "trained":
        trained = train(
            model,
            spec.train,
            lambda step: task.sample("task", spec.train.batch_size, data),
            classification_loss,
            lambda m: {"accuracy": accuracy(m, task, "task", "val", spec.eval_items)},
            ctx.on_eval,
        )
        if trained.diverged:
            return RunResult(metrics={}, curve=trained.curve, diverged=True)
        curve = trained.curve
    model.eval()  # frozen from here: the mask search trains logits only

    first, second = task.subroutines
    metrics["base_accuracy"] = accuracy(model, task, "task", "test", spec.eval_items)
    extra = {"subroutines": [first, second], "chance": task.chance, "subroutine": {}}
    masks = {}
    for number, (own, other) in enumerate(((first, second), (second, first)), start=1):
        # the base model on the test set where only this subroutine varies: what its masks can keep
        metrics[f"base_accuracy_{number}"] = accuracy(model, task, f"+/-{own}", "test", spec.eval_items)
        masks[own], extra["subroutine"][own] = subroutine_masks(model, task, spec, own, other)
        for key in ("sub", "abl", "random_sub", "random_abl"):
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
            "random_sub": apply_mask(model, control),
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


START = {"none": "from scratch", "self_supervised": "self-supervised", "related_task": "related task"}


def _objective(spec: dict) -> str:
    """A stored spec's pretraining objective (the key is absent at its default)."""
    return spec.get("pretrain", {}).get("objective", "none")


def _label(spec: dict) -> str:
    """The condition: task, architecture (or the user's factory), start, and a Gumbel mask."""
    model = spec["model"]
    arch = model.get("factory") or model.get("arch", "mlp")
    start = "untrained" if model["init"] == "random" else START[_objective(spec)]
    gumbel = ", gumbel masks" if spec["mask"]["method"] == "gumbel" else ""
    return f"{spec['task']['name']}, {arch}, {start}{gumbel}"


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] == "done" and "subroutine" in r.get("extra", {})]


def _conditions(runs: list[dict]) -> dict[str, list[dict]]:
    """The finished runs by condition; runs of one condition that differ in other settings
    (the full profile's longer runs from scratch, a user's sweep of mask.steps) are split by
    them, named in the label."""
    by_label = defaultdict(list)
    for r in _done(runs):
        by_label[_label(r["spec"])].append(r)
    groups = {}
    for label, members in by_label.items():
        keys = varying([r["spec"] for r in members], ignore={"seed"})
        for r in members:
            flat = flatten(r["spec"])
            named = (f"{k.split('.')[-1]}={flat.get(k)}" for k in keys)  # train.steps -> steps
            groups.setdefault(", ".join([label, *named]), []).append(r)
    return dict(sorted(groups.items()))


BARS = ["sub_own", "sub_other", "abl_own", "abl_other", "random_abl_own", "random_abl_other"]


def ablation_plot(runs: list[dict]) -> Plot | None:
    """The 2 x 2 of Lepori et al. per subroutine: subnetwork and ablated complement, each on its
    own and the other subroutine's test set, per condition (trained or random-init base model),
    with the random-mask ablation beside them and chance drawn; the Sub and Abl table under it."""
    groups = _conditions(runs)
    if not groups:
        return None
    cols = min(len(groups), PANELS_PER_ROW)
    rows_of_panels = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(column_width(4.5 * cols), 3.4 * rows_of_panels), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_of_panels, cols, sharey=True, squeeze=False)).ravel()
    rows, data = [], {}
    for ax, (label, members) in zip(axes, groups.items()):
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
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("test accuracy")
    columns = ["condition", "mask for", "base seeds", "Sub", "Abl", "random-mask Abl"]
    columns += ["subnetwork own / other", "ablated own / other", "random-mask ablated own / other"]
    table = {"columns": columns, "rows": rows}
    return Plot("Subnetworks and their ablation (own / other subroutine's test set)", fig, data, table)


# a (base seed, mask seed) pair shows structural compositionality for a subroutine when its
# subnetwork solves it clearly better than the other (Sub >= SUB_MIN) and ablating the
# subnetwork hurts it clearly more than the other (Abl <= ABL_MAX)
SUB_MIN, ABL_MAX = 0.2, -0.1


def modular_pairs(run: dict, name: str, control: bool = False) -> list[bool]:
    """Per mask seed of subroutine `name` in a stored run: whether the pair shows structural
    compositionality; `control`: the same test on its size-matched random mask."""
    seeds = run["extra"]["subroutine"][name]["seeds"]
    prefix = "random_" if control else ""
    return [s >= SUB_MIN and a <= ABL_MAX for s, a in zip(seeds[prefix + "sub"], seeds[prefix + "abl"])]


def modular_fraction(runs: list[dict], name: str | None = None, control: bool = False) -> float:
    """The fraction of (base seed, mask seed) pairs of the runs that show structural
    compositionality, for subroutine `name` or pooled over both; NaN without pairs."""
    pairs = [
        p
        for r in runs
        for n in ([name] if name else r["extra"]["subroutines"])
        for p in modular_pairs(r, n, control)
    ]
    return float(np.mean(pairs)) if pairs else math.nan


def modularity_plot(runs: list[dict]) -> Plot | None:
    """Per condition: the fraction of (base seed, mask seed) pairs with structural
    compositionality, per subroutine, beside its size-matched random masks; the table has
    the base model's accuracy per subroutine, so that structure is compared at matched accuracy."""
    groups = _conditions(runs)
    if not groups:
        return None
    longest = max(len(label) for label in groups)  # slanted labels take height, not width
    fig = Figure(figsize=(column_width(1.2 * len(groups) + 3), 2.8 + 0.045 * longest), layout="constrained")
    ax = fig.subplots()
    series, rows, data = defaultdict(list), [], {}
    names_of = defaultdict(set)  # subroutine number -> its names across tasks (A, add)
    for label, members in groups.items():
        names = members[0]["extra"]["subroutines"]
        for number, name in enumerate(names, start=1):
            names_of[number].add(name)
            per_run = [float(np.mean(modular_pairs(r, name))) for r in members]
            series[number].append(per_run)
            pairs = sum(len(modular_pairs(r, name)) for r in members)
            control = modular_fraction(members, name, control=True)
            pretraining = [
                r["metrics"]["pretrain_accuracy"] for r in members if "pretrain_accuracy" in r["metrics"]
            ]
            rows.append(
                [
                    label,
                    name,
                    spread([r["metrics"][f"base_accuracy_{number}"] for r in members]),
                    spread(pretraining),
                    spread([r["metrics"][f"sub_{number}"] for r in members], signed=True),
                    spread([r["metrics"][f"abl_{number}"] for r in members], signed=True),
                    f"{modular_fraction(members, name):.2f} ({pairs})",
                    f"{control:.2f}",
                ]
            )
            data[f"{label}: {name}"] = {"modular per base seed": per_run, "random-mask modular": control}
        series["random"].append([modular_fraction([r], control=True) for r in members])
    labels = {n: f"subroutine {n} ({', '.join(sorted(names_of[n]))})" for n in names_of}
    bars(ax, list(groups), {labels.get(k, "size-matched random masks"): v for k, v in series.items()})
    ax.set_ylabel(f"modular fraction\n(Sub >= {SUB_MIN}, Abl <= {ABL_MAX})")
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelrotation=25, labelsize=7)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.legend(fontsize=7)
    columns = ["condition", "mask for", "base accuracy (+/-own test)", "pretraining accuracy (val)"]
    columns += ["Sub", "Abl", "modular fraction (pairs)", "random-mask modular fraction"]
    return Plot(
        "Modular fraction: (base seed, mask seed) pairs with structural compositionality",
        fig,
        data,
        {"columns": columns, "rows": rows},
    )


def layer_plot(runs: list[dict]) -> Plot | None:
    """Per trained condition and masked layer: the fraction of weights each subroutine's mask
    keeps, and the IoU of the two masks."""
    by_task = {
        label: members
        for label, members in _conditions(runs).items()
        if members[0]["spec"]["model"]["init"] == "trained" and "iou" in members[0]["extra"]
    }
    if not by_task:
        return None
    fig = Figure(figsize=(8, 3.2 * len(by_task)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(by_task), 2))
    data = {}
    for (left, right), (task, members) in zip(axes, by_task.items()):
        layers = list(members[0]["extra"]["iou"])
        shown = [_short(layer) for layer in layers]
        names = members[0]["extra"]["subroutines"]
        for i, name in enumerate(names):
            values = [[r["extra"]["subroutine"][name]["density"][layer] for r in members] for layer in layers]
            left.plot(
                shown, [np.mean(v) for v in values], marker="o", color=f"C{i}", label=f"mask for {name}"
            )
            data[f"{task}: kept {name}"] = values
        left.set_yscale("log")
        left.set_ylabel("fraction of weights kept")
        left.set_title(task, fontsize=9)
        left.legend(fontsize=7)
        iou = [[r["extra"]["iou"][layer] for r in members] for layer in layers]
        right.plot(shown, [_mean_defined(v) for v in iou], marker="o", color="k")
        right.set_ylabel(f"IoU of the {names[0]} and {names[1]} masks")
        right.set_ylim(0, 1)
        data[f"{task}: iou"] = iou
        for ax in (left, right):
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    return Plot("Masks per layer (trained base models)", fig, data)


def _short(layer: str) -> str:
    """A weight's name as a tick label: blocks.0.self_attn.query.weight -> blocks.0.query."""
    return layer.removesuffix(".weight").replace("self_attn.", "")


def plots(runs: list[dict]) -> list[Plot]:
    return [p for p in (ablation_plot(runs), modularity_plot(runs), layer_plot(runs)) if p is not None]


PRETRAIN_KEYS = [f"pretrain.{key}" for key in PretrainSpec.model_fields]


def _trained(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["spec"]["model"]["init"] == "trained"]


def _by_objective(runs: list[dict]) -> dict[str, list[dict]]:
    found = defaultdict(list)
    for r in runs:
        found[_objective(r["spec"])].append(r)
    return found


def _subnetworks(runs: list[dict]) -> Verdict:
    """Per task, architecture and mask method, for every start: for both subroutines, Sub of
    the trained model above the random-init control's, and its ablation's Abl below that of
    a size-matched random mask, by more than the seed spread."""

    def one(part: list[dict]) -> Verdict:
        control = [r for r in part if r["spec"]["model"]["init"] == "random"]
        checks = {}
        for objective, trained in _by_objective(_trained(part)).items():
            for n in (1, 2):
                checks[f"{objective}: sub_{n}"] = exceeds(
                    values(trained, f"sub_{n}"), values(control, f"sub_{n}"), f"Sub {n}", "random init"
                )
                checks[f"{objective}: abl_{n}"] = exceeds(
                    values(trained, f"random_abl_{n}"), values(trained, f"abl_{n}"), "random mask", f"Abl {n}"
                )
        return every(checks) if checks else Verdict(NOT_MEASURED, {}, "no trained base model")

    return in_every(per_setting(runs, ["model.init", *PRETRAIN_KEYS]), one)


def _pretraining(runs: list[dict]) -> Verdict:
    """Per task, architecture and mask method: the modular fraction of every pretrained start
    above the from-scratch one's (on the mean of the base seeds' fractions)."""

    def one(part: list[dict]) -> Verdict:
        starts = _by_objective(part)
        scratch = starts.pop("none", [])
        if not scratch or not starts:
            return Verdict(NOT_MEASURED, {}, "no pretrained and from-scratch base models to compare")
        return every(
            {
                objective: exceeds(
                    [modular_fraction([r]) for r in pretrained],
                    [modular_fraction([r]) for r in scratch],
                    START[objective],
                    "from scratch",
                    margin="mean",
                )
                for objective, pretrained in starts.items()
            }
        )

    return in_every(per_setting(_trained(_done(runs)), PRETRAIN_KEYS), one)


def _addmul_base(runs: list[dict]) -> Verdict:
    """Every trained addmul base model's accuracy on unseen add and on unseen mul problems
    (mean over base seeds) at least 0.9."""
    trained = [r for r in _trained(runs) if r["spec"]["task"]["name"] == "addmul"]

    def one(part: list[dict]) -> Verdict:
        return every(
            {
                op: beyond(values(part, f"base_accuracy_{n}"), 0.9, f"{op} accuracy")
                for n, op in ((1, "add"), (2, "mul"))
            }
        )

    if not trained:
        return Verdict(NOT_MEASURED, {}, "no trained addmul base model")
    return in_every(per_setting(trained), one)


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
    Claim(
        "pretraining",
        "Pretraining raises the modular fraction: for each architecture, more (base seed, mask seed) "
        f"pairs show structural compositionality (Sub >= {SUB_MIN}, Abl <= {ABL_MAX}) after each "
        "pretraining objective than from scratch",
        "pretrained BERT-Small gives stronger ablation effects than from scratch (Abl -0.13 to -0.51); "
        "SimCLR-pretrained ResNet50 mixed (Lepori, Serre & Pavlick 2023)",
        _pretraining,
    ),
    Claim(
        "addmul_base",
        "The addmul base model learns both operations: at least 0.9 on unseen add and unseen mul problems",
        "the precondition of the mask analysis (Csordas et al. 2021 train the FNN to solve both)",
        _addmul_base,
    ),
)


# addmul's base model, chosen on the val split among 12 recipes: lr 3e-3 with warm-up takes
# unseen mul problems to 0.96 (lr 1e-3: 0.87 at 8k steps, 0.89 at 16k; decay, depth, width hurt)
ADDMUL = {"task.name": "addmul", "model.width": 512, "train.lr": 3e-3, "train.warmup_steps": 500}

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
            # quick: the MLP from scratch and from each pretraining objective (base seed 0) and
            # the random-init control, one penalty, 2 mask seeds
            "quick": {
                "model.init": ["trained", "random"],
                "pretrain.objective": list(OBJECTIVES),
                "pretrain.steps": 1000,
                "train.steps": 2000,
                "mask.penalties": [[3e-5]],
                "mask.steps": 400,
                "mask.seeds": 2,
                "eval_items": 1000,
            },
            "full": [
                # pretraining x architecture on `and`, with each architecture's random-init control
                {
                    "task.name": "and",
                    "model.arch": ["mlp", "transformer"],
                    "model.init": ["trained", "random"],
                    "pretrain.objective": list(OBJECTIVES),
                    "seed": [0, 1, 2],
                },
                # the MLP from scratch as long as pretraining and fine-tuning together, and
                # longer: is its structure a matter of how far it is trained?
                {"task.name": "and", "train.steps": [9000, 18000], "seed": [0, 1, 2]},
                # ... and at the pretrained models' accuracy: cosine decay and weight decay 0.1
                # take it from 0.95 to 1.0 on val (the constant rate plateaus at 0.95)
                {
                    "task.name": "and",
                    "train.steps": 9000,
                    "train.schedule": "cosine",
                    "train.weight_decay": 0.1,
                    "seed": [0, 1, 2],
                },
                # Gumbel masks beside continuous sparsification, on the MLP from scratch
                {
                    "task.name": "and",
                    "mask.method": "gumbel",
                    "model.init": ["trained", "random"],
                    "seed": [0, 1, 2],
                },
                # ... and at 5x the mask steps (Csordas et al. train a mask for 20k steps)
                {"task.name": "and", "mask.method": "gumbel", "mask.steps": 5000, "seed": [0, 1, 2]},
                {**ADDMUL, "model.init": ["trained", "random"], "seed": [0, 1, 2]},
                {**ADDMUL, "mask.method": "gumbel", "seed": [0, 1, 2]},
            ],
        },
        columns=("task.name", "model.arch", "model.init", "pretrain.objective", "mask.method", "seed"),
        metrics=(
            "sub_1",
            "abl_1",
            "random_abl_1",
            "sub_2",
            "abl_2",
            "random_abl_2",
            "base_accuracy_1",
            "base_accuracy_2",
        ),
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
