"""Segregation: Slot Attention forms objects from raw pixels; a slot-free baseline does not.

Locatello et al. (2020): the Slot Attention autoencoder reaches 91.3 FG-ARI on Multi-dSprites,
its Slot-MLP ablation 60.3. One run trains one autoencoder (Slot Attention or the Slot MLP) by
reconstruction alone, on fresh procedural scenes at every step, and scores the argmax of its
masks against the true instance labels of a fixed evaluation set: FG-ARI, ARI, mBO, mIoU, and
the reconstruction MSE. It also keeps a few pictured scenes for the report.

Axes: s scene, k slot, c channel, h w pixels.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, bars
from bindbench.core.segmentation import fg_ari
from bindbench.experiments.objects import setup
from bindbench.experiments.objects.setup import TINY_SLOTS, EvaluationSet, SlotsSpec, train_autoencoder

# FG-ARI of Locatello et al. 2020, Table 1 (research note 1.4), as fractions
REFERENCE = {
    ("slot_attention", "scenes"): (0.913, "Locatello et al. 2020, Multi-dSprites"),
    ("slot_mlp", "scenes"): (0.603, "Locatello et al. 2020, Multi-dSprites"),
    ("slot_attention", "tetrominoes"): (0.995, "Locatello et al. 2020, Tetrominoes"),
    ("slot_mlp", "tetrominoes"): (0.251, "Locatello et al. 2020, Tetrominoes"),
}


class SegregationSpec(SlotsSpec):
    pictures: int = Field(
        4, ge=0, description="evaluation scenes whose pictures the run keeps for the report"
    )


def check(spec: SegregationSpec) -> None:
    """Rejects specs whose scenes cannot be drawn or whose slots cannot hold them, before any run."""
    setup.check(spec)
    if spec.pictures > spec.eval_scenes:
        raise ValueError(f"pictures={spec.pictures} must be <= eval_scenes={spec.eval_scenes}")


def pictures(model, ev: EvaluationSet, count: int) -> dict[str, list]:
    """The first `count` evaluation scenes as JSON-able lists: image, reconstruction, true and
    predicted segmentation, each slot's masked reconstruction (masks_k * slot_rgb_k), FG-ARI.

    Colours are 8-bit levels 0..255, channels last, as a PNG holds them: a third of the JSON of
    3-decimal floats, which matters at about 12 k values per 32 x 32 scene and slot."""
    if count == 0:
        return {}
    images, labels = ev.images[:count], ev.labels[:count]
    out = model(images, noise=ev.noise[:count])
    pred = out.masks.argmax(1)  # (s, h, w)
    slots = out.masks.unsqueeze(2) * out.slot_rgb  # (s, k, c, h, w)

    def rgb(x: torch.Tensor) -> list:
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).cpu().tolist()

    scores = fg_ari(labels, pred).tolist()
    return {
        "images": rgb(images),
        "reconstructions": rgb(out.reconstruction),
        "labels": labels.cpu().tolist(),
        "segmentations": pred.cpu().tolist(),
        "slots": rgb(slots),
        "fg_ari": [None if math.isnan(v) else round(v, 3) for v in scores],
    }


def run(spec: SegregationSpec, ctx) -> RunResult:
    model, trained, ev = train_autoencoder(spec, ctx)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    model.eval()
    with torch.no_grad():
        kept = pictures(model, ev, spec.pictures)
    metrics = {
        **trained.final,
        "seconds_training": trained.seconds,
        "parameters": float(sum(p.numel() for p in model.parameters())),
    }
    return RunResult(metrics=metrics, curve=trained.curve, extra={"pictures": kept} if kept else {})


# ----------------------------------------------------------------------------- plots


def _group(spec: dict) -> tuple[str, str]:
    return spec["model"]["kind"], spec["data"]["dataset"]


def _name(group: tuple[str, str], groups) -> str:
    """The model kind, with the dataset when the runs span more than one."""
    return group[0] if len({d for _, d in groups}) == 1 else f"{group[0]} ({group[1]})"


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


SUMMARY = ("fg_ari", "mbo", "ari", "miou", "mse")
TABLE_COLUMNS = ["model", "dataset", "FG-ARI mean", "std", "mBO mean", "std", "ARI mean", "mIoU mean"]
TABLE_COLUMNS += ["MSE mean", "seeds", "FG-ARI per seed", "diverged or failed", "published FG-ARI", "source"]


def scores_plot(runs: list[dict]) -> Plot | None:
    """FG-ARI and mBO per model: mean bars, every seed a dot (diverged runs an x at 0), with the
    published FG-ARI beside, and a summary table."""
    finished, unfinished = defaultdict(list), defaultdict(list)
    for r in runs:
        if r["status"] == "done" and "fg_ari" in r["metrics"]:
            finished[_group(r["spec"])].append(r)
        elif r["status"] in ("diverged", "failed"):
            unfinished[_group(r["spec"])].append(r)
    if not finished:
        return None
    groups = sorted(set(finished) | set(unfinished))
    done = {g: sorted(finished[g], key=lambda r: r["spec"]["seed"]) for g in groups}
    fig = Figure(figsize=(2.2 + 1.6 * len(groups), 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    diverged = False
    for ax, metric, title in zip(axes, ("fg_ari", "mbo"), ("FG-ARI", "mBO")):
        values = [[r["metrics"][metric] for r in done[g]] for g in groups]
        (x,) = bars(ax, [_name(g, groups) for g in groups], {"mean": values}, dots=12).values()
        for xi, group in zip(x, groups):
            lost = sum(r["status"] == "diverged" for r in unfinished[group])
            if lost:
                ax.scatter([xi] * lost, [0.0] * lost, color="r", marker="x", s=30, zorder=3)
                diverged = True
            if metric == "fg_ari" and group in REFERENCE:
                ax.hlines(REFERENCE[group][0], xi - 0.3, xi + 0.3, colors="grey", linestyles="--")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].plot([], [], "k.", label="a seed")
    axes[0].plot([], [], "--", color="grey", label="published")
    if diverged:
        axes[0].plot([], [], "rx", label="diverged (at 0)")
    axes[0].legend(fontsize=7, loc="upper right")
    rows = []
    for group in groups:
        summary = {m: _stats([r["metrics"].get(m) for r in done[group]]) for m in SUMMARY}
        reference, source = REFERENCE.get(group, (None, ""))
        rows.append(
            {
                "model": group[0],
                "dataset": group[1],
                **{f"{m}_mean": s[0] for m, s in summary.items()},
                **{f"{m}_std": s[1] for m, s in summary.items()},
                "seeds": [r["spec"]["seed"] for r in done[group]],
                "fg_ari_per_seed": [r["metrics"]["fg_ari"] for r in done[group]],
                "not_finished": len(unfinished[group]),
                "reference": reference,
                "source": source,
            }
        )
    shown = ["model", "dataset", "fg_ari_mean", "fg_ari_std", "mbo_mean", "mbo_std", "ari_mean"]
    shown += ["miou_mean", "mse_mean"]
    table = {
        "columns": TABLE_COLUMNS,
        "rows": [
            [*(r[k] for k in shown), len(r["seeds"]), ", ".join(f"{v:.3f}" for v in r["fg_ari_per_seed"])]
            + [r["not_finished"], r["reference"], r["source"]]
            for r in rows
        ],
    }
    return Plot("object discovery: FG-ARI and mBO per model, every seed", fig, {"rows": rows}, table)


TRUE_COLOURS = ListedColormap(["black", *[f"C{i}" for i in range(10)]])  # 0 is the background
SLOT_COLOURS = ListedColormap([f"C{i}" for i in range(10)])


def _show(ax, picture: list, colours: ListedColormap | None = None) -> None:
    """Draws 8-bit colours (h, w, 3), or with `colours` a label map (h, w)."""
    if colours is None:
        ax.imshow(np.asarray(picture) / 255, interpolation="nearest")
    else:
        ax.imshow(np.asarray(picture), cmap=colours, vmin=0, vmax=colours.N - 1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def picture_plots(runs: list[dict]) -> list[Plot]:
    """For each model, its lowest seed's pictured scenes: image, reconstruction, true and predicted
    segmentation, and every slot's masked reconstruction."""
    chosen = {}
    for r in runs:
        if r["status"] != "done" or not r["extra"].get("pictures"):
            continue
        group = _group(r["spec"])
        if group not in chosen or r["spec"]["seed"] < chosen[group]["spec"]["seed"]:
            chosen[group] = r
    plots = []
    for group in sorted(chosen):
        r = chosen[group]
        kept = r["extra"]["pictures"]
        num_scenes, num_slots = len(kept["images"]), len(kept["slots"][0])
        columns = ["image", "reconstruction", "true objects", "slots (argmax)"]
        columns += [f"slot {k + 1}" for k in range(num_slots)]
        fig = Figure(figsize=(1.05 * len(columns), 1.15 * num_scenes + 0.4), layout="constrained")
        axes = np.atleast_2d(fig.subplots(num_scenes, len(columns)))
        for i in range(num_scenes):
            shown = [
                (kept["images"][i], None),
                (kept["reconstructions"][i], None),
                (kept["labels"][i], TRUE_COLOURS),
                (kept["segmentations"][i], SLOT_COLOURS),
                *((slot, None) for slot in kept["slots"][i]),
            ]
            for ax, (picture, colours) in zip(axes[i], shown):
                _show(ax, picture, colours)
            if i == 0:
                for ax, title in zip(axes[i], columns):
                    ax.set_title(title, fontsize=7)
            fg = kept["fg_ari"][i]
            axes[i, 0].set_ylabel("FG-ARI n/a" if fg is None else f"FG-ARI {fg:.2f}", fontsize=7)
        name = _name(group, list(chosen))
        fig.suptitle(f"{name}, seed {r['spec']['seed']}", fontsize=9)
        data = {"run": r["id"][:8], "seed": r["spec"]["seed"], "fg_ari": kept["fg_ari"]}
        plots.append(Plot(f"{name}: scenes, reconstructions and slots", fig, data))
    return plots


def plots(runs: list[dict]) -> list[Plot]:
    scores = scores_plot(runs)
    return ([scores] if scores is not None else []) + picture_plots(runs)


EXPERIMENT = register(
    Experiment(
        name="segregation",
        title="Segregation: Slot Attention against the Slot-MLP baseline on multi-object scenes",
        spec=SegregationSpec,
        run=run,
        check=check,
        plots=plots,
        profiles={
            # CPU: the cheap layout (stride-2 encoder, per-pixel MLP decoder, loss on 256 random
            # pixels), 66 ms per step on one thread at batch 16; with --workers 2 both models
            # train side by side. See README for what each profile measured.
            "quick": {
                "model.kind": ["slot_attention", "slot_mlp"],
                "train.steps": 600,
                "train.warmup_steps": 200,
                "train.eval_every": 300,
                "eval_scenes": 128,
            },
            "full": {
                "model.kind": ["slot_attention", "slot_mlp"],
                "seed": [0, 1, 2],
                "train.steps": 20000,
                "train.warmup_steps": 500,
                "train.eval_every": 2000,
            },
            # The reference's recipe at Multi-dSprites size (64 x 64, 2-5 objects, K = 6,
            # the reference layout: stride-1 encoder, 5 x 5 convolutional decoder on all pixels;
            # batch 64, lr 4e-4, no clipping, 10k warm-up, 500k steps, 320 test scenes), cosine
            # for its decay: GPUs.
            "paper": {
                "model.kind": ["slot_attention", "slot_mlp"],
                "seed": [0, 1, 2, 3, 4],
                "model.channels": 64,
                "model.num_slots": 6,
                "model.encoder_stride": 1,
                "model.decoder": "conv",
                "data.resolution": 64,
                "data.min_objects": 2,
                "data.max_objects": 5,
                "data.sizes": [[0.25, 0.35, 0.45]],
                "train.steps": 500000,
                "train.batch_size": 64,
                "train.lr": 4e-4,
                "train.clip_norm": None,
                "train.pixels": None,
                "train.warmup_steps": 10000,
                "train.eval_every": 10000,
                "eval_scenes": 320,
            },
        },
        columns=("model.kind", "data.dataset", "seed"),
        metrics=("fg_ari", "ari", "mbo", "miou", "mse", "train_loss"),
        tiny={**TINY_SLOTS, "pictures": 1},
    )
)
