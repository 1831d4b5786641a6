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
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core.config import Spec
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot
from bindbench.core.segmentation import fg_ari, segmentation_scores
from bindbench.core.training import TrainSpec, train
from bindbench.models import Layout, SlotAutoencoder, SlotMLPAutoencoder
from bindbench.tasks.scenes import Scenes, Tetrominoes

# FG-ARI of Locatello et al. 2020, Table 1 (research note 1.4), as fractions
REFERENCE = {
    ("slot_attention", "scenes"): (0.913, "Locatello et al. 2020, Multi-dSprites"),
    ("slot_mlp", "scenes"): (0.603, "Locatello et al. 2020, Multi-dSprites"),
    ("slot_attention", "tetrominoes"): (0.995, "Locatello et al. 2020, Tetrominoes"),
    ("slot_mlp", "tetrominoes"): (0.251, "Locatello et al. 2020, Tetrominoes"),
}
TETROMINO_GRID = 7  # blocks per image side, as in the DeepMind dataset (7 x 5 px = 35 px)
EVAL_SEED = 0  # a run's own generators use seeds 2 * seed + 1 and 2 * seed + 2, never 0
EVAL_CHUNK = 64  # evaluation scenes per forward pass


class AutoencoderSpec(Spec):
    """The object-discovery autoencoder (defaults: the CPU-sized 32-channel version)."""

    kind: Literal["slot_attention", "slot_mlp"] = Field(
        "slot_attention", description="Slot Attention, or the Slot-MLP ablation (slots from pooled features)"
    )
    channels: int = Field(32, ge=1, description="CNN channels of the encoder and the broadcast decoder")
    slot_dim: int = Field(64, ge=1, description="D, size of a slot")
    num_slots: int = Field(4, ge=1, description="K, at least data.max_objects + 1 (one for the background)")
    iters: int = Field(3, ge=1, description="Slot Attention iterations (slot_attention only)")
    hidden: int = Field(
        128, ge=1, description="hidden units of the slot MLP (slot_mlp: of the slot-making MLP)"
    )
    implicit: bool = Field(
        False, description="back-propagate through the last iteration only (Chang et al. 2022)"
    )
    encoder_stride: int = Field(
        2, ge=1, le=4, description="first convolution's stride (1: the reference; 2: a quarter the inputs)"
    )
    decoder: Literal["mlp", "conv"] = Field(
        "mlp", description="per-pixel MLP broadcast decoder, or the reference's 5 x 5 convolutions"
    )
    decoder_hidden: int = Field(64, ge=1, description="hidden units of the MLP decoder's layers")
    decoder_layers: int = Field(
        5, ge=1, le=8, description="hidden layers of the MLP decoder (5: Invariant Slot Attention's)"
    )
    decoder_frequencies: int = Field(
        0, ge=0, le=8, description="sines and cosines of position, 1/2, 1, 2, ... cycles per image (mlp)"
    )


class SceneSpec(Spec):
    dataset: Literal["scenes", "tetrominoes"] = Field(
        "scenes", description="sprites with occlusion (Multi-dSprites-like) or Tetris pieces"
    )
    resolution: int = Field(32, ge=16, description="image side in pixels (tetrominoes: a multiple of 7)")
    min_objects: int = Field(2, ge=1, description="fewest objects in a scene (tetrominoes: = max_objects)")
    max_objects: int = Field(3, ge=1, description="most objects in a scene (tetrominoes: pieces, at most 3)")
    background: Literal["black", "grey"] = Field(
        "black", description="scenes' background (tetrominoes: black)"
    )
    sizes: list[float] = Field(
        [0.4, 0.5], min_length=1, description="object sizes, fractions of the image side (not tetrominoes)"
    )
    distinct_colours: bool = Field(
        True,
        description="no two objects of a scene share a colour, so colour separates them (not tetrominoes)",
    )
    held_out: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="fraction of colour x shape pairs never drawn (the same pairs every seed)",
    )


class SlotTrainSpec(TrainSpec):
    """Adam with linear warm-up and no weight decay, as the reference, sized for a CPU: batch 16,
    lr 2e-3 (the reference: 4e-4 at batch 64; at 16 and 10-20k steps, 1e-3 stayed on a spatial
    split of the image where 2e-3 went on to objects), gradient norm clipped at 1, and the loss
    on 256 random pixels per image. The reference decays the rate by 0.5^(step / 100k); the
    shared loop offers cosine instead."""

    steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="scenes per step, fresh at every step")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (the reference: 4e-4)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decay on >=2-D parameters (0: Adam)")
    schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="after warm-up: flat, or cosine to 0"
    )
    warmup_steps: int = Field(100, ge=0, description="linear warm-up from 0 to lr")
    eval_every: int = Field(250, ge=1, description="steps between evaluations")
    clip_norm: float | None = Field(1.0, gt=0, description="clip of the gradient norm (null: none)")
    pixels: int | None = Field(
        256,
        ge=1,
        description="pixels per image in the loss, a fresh random subset each step (null: all; mlp decoder)",
    )


class SegregationSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization, training scenes and initial-slot noise")
    model: AutoencoderSpec = AutoencoderSpec()
    data: SceneSpec = SceneSpec()
    train: SlotTrainSpec = SlotTrainSpec()
    eval_scenes: int = Field(
        256, ge=1, description="fixed evaluation scenes, the same for every seed (drawn once on the CPU)"
    )
    pictures: int = Field(
        4, ge=0, description="evaluation scenes whose pictures the run keeps for the report"
    )


def make_scenes(data: SceneSpec, device: torch.device | str = "cpu") -> Scenes | Tetrominoes:
    if data.dataset == "tetrominoes":
        return Tetrominoes(
            data.max_objects, grid=TETROMINO_GRID, block=data.resolution // TETROMINO_GRID, device=device
        )
    return Scenes(
        data.resolution,
        data.min_objects,
        data.max_objects,
        sizes=tuple(data.sizes),
        background=data.background,
        held_out=data.held_out or None,
        distinct_colours=data.distinct_colours,
        device=device,
    )


def check(spec: SegregationSpec) -> None:
    """Rejects specs whose scenes cannot be drawn or whose slots cannot hold them, before any run."""
    data = spec.data
    if data.max_objects < data.min_objects:
        raise ValueError(
            f"data.max_objects={data.max_objects} must be >= data.min_objects={data.min_objects}"
        )
    if data.dataset == "tetrominoes":
        if data.resolution % TETROMINO_GRID:
            raise ValueError(
                f"data.resolution={data.resolution}: tetrominoes are {TETROMINO_GRID} x {TETROMINO_GRID} "
                f"blocks, so it must be a multiple of {TETROMINO_GRID} (the reference: 35)"
            )
        if data.min_objects != data.max_objects:
            raise ValueError(
                f"data.min_objects={data.min_objects} must equal data.max_objects={data.max_objects} "
                f"for tetrominoes: every scene holds that many pieces"
            )
        if data.held_out:
            raise ValueError(f"data.held_out={data.held_out}: tetrominoes have no held-out pairs")
        if data.background != "black":
            raise ValueError(f"data.background={data.background!r}: tetrominoes are drawn on black only")
        if data.max_objects > 3:  # each piece rules out up to 16 of the 36 places of the next
            raise ValueError(f"data.max_objects={data.max_objects}: at most 3 tetrominoes fit on the board")
    if spec.model.num_slots < data.max_objects + 1:
        raise ValueError(
            f"model.num_slots={spec.model.num_slots} must be >= data.max_objects + 1 = {data.max_objects + 1}"
            f" (a slot per object and one for the background)"
        )
    pixels = spec.train.pixels
    if pixels is not None and spec.model.decoder != "mlp":
        raise ValueError(f"train.pixels={pixels}: only model.decoder='mlp' decodes a subset of pixels")
    if pixels is not None and pixels > data.resolution**2:
        raise ValueError(f"train.pixels={pixels} must be <= data.resolution^2 = {data.resolution**2}")
    if spec.pictures > spec.eval_scenes:
        raise ValueError(f"pictures={spec.pictures} must be <= eval_scenes={spec.eval_scenes}")
    try:
        make_scenes(data)
    except ValueError as err:
        raise ValueError(f"data: {err}") from None


def make_model(spec: SegregationSpec) -> SlotAutoencoder | SlotMLPAutoencoder:
    m, size = spec.model, spec.data.resolution
    layout = Layout(m.encoder_stride, m.decoder, m.decoder_hidden, m.decoder_layers, m.decoder_frequencies)
    if m.kind == "slot_mlp":
        return SlotMLPAutoencoder(size, m.num_slots, m.channels, m.slot_dim, m.hidden, layout)
    return SlotAutoencoder(size, m.num_slots, m.channels, m.slot_dim, m.iters, m.hidden, m.implicit, layout)


@dataclass
class EvaluationSet:
    """Fixed scenes with their initial-slot noise, so an evaluation depends on the weights only."""

    images: torch.Tensor  # (s, 3, h, w)
    labels: torch.Tensor  # (s, h, w): 0 background, 1..num_objects the objects
    noise: torch.Tensor  # (s, k, d)
    num_objects: int


def evaluation_set(spec: SegregationSpec, device: torch.device | str = "cpu") -> EvaluationSet:
    """The run's evaluation scenes, drawn on the CPU from EVAL_SEED: the same on every device and seed."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    scenes = make_scenes(spec.data).sample(spec.eval_scenes, generator)
    noise = torch.randn(spec.eval_scenes, spec.model.num_slots, spec.model.slot_dim, generator=generator)
    return EvaluationSet(
        scenes.images.to(device), scenes.labels.to(device), noise.to(device), spec.data.max_objects
    )


def segment(model, ev: EvaluationSet) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Predicted labels (s, h, w), the argmax over slots; reconstruction MSE (s,); number of slots."""
    labels, mse = [], []
    for start in range(0, len(ev.images), EVAL_CHUNK):
        images = ev.images[start : start + EVAL_CHUNK]
        out = model(images, noise=ev.noise[start : start + EVAL_CHUNK])
        labels.append(out.masks.argmax(1))
        mse.append((out.reconstruction - images).pow(2).mean((1, 2, 3)))
    return torch.cat(labels), torch.cat(mse), out.masks.shape[1]


def score(model, ev: EvaluationSet) -> dict[str, float]:
    """The evaluation set's mean scores (NaN-skipping) and reconstruction MSE."""
    pred, mse, num_slots = segment(model, ev)
    per_scene = {**segmentation_scores(ev.labels, pred, ev.num_objects, num_slots), "mse": mse}
    means = torch.stack([torch.nanmean(v.float()) for v in per_scene.values()])
    return dict(zip(per_scene, means.tolist()))  # one copy to the host


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


def reconstruction_loss(model, batch) -> torch.Tensor:
    images, noise, pixels = batch
    if pixels is None:
        return torch.nn.functional.mse_loss(model(images, noise=noise).reconstruction, images)
    out = model(images, noise=noise, pixels=pixels)
    return torch.nn.functional.mse_loss(out.reconstruction, images.flatten(2)[:, :, pixels])


def batch_sampler(spec: SegregationSpec, scenes, data: torch.Generator, noise: torch.Generator):
    """The training batches, step -> (images, initial-slot noise, pixels or None): fresh scenes and
    pixel subset from `data`, noise from `noise` (both on the scenes' device)."""
    shape = (spec.train.batch_size, spec.model.num_slots, spec.model.slot_dim)
    device, num_pixels = scenes.device, spec.data.resolution**2

    def sample_batch(step: int):
        # noise is drawn for the Slot MLP too (unused), so both kinds see the same scenes and pixels
        images = scenes.sample(spec.train.batch_size, data).images
        pixels = None
        if spec.train.pixels is not None:
            pixels = torch.randperm(num_pixels, generator=data, device=device)[: spec.train.pixels]
        return images, torch.randn(shape, generator=noise, device=device), pixels

    return sample_batch


def train_autoencoder(spec: SegregationSpec, ctx):
    """Trains the spec's autoencoder by reconstruction, scored on the evaluation set as it goes:
    (model, its TrainResult, the EvaluationSet)."""
    device = ctx.device
    scenes = make_scenes(spec.data, device)
    ev = evaluation_set(spec, device)
    torch.manual_seed(spec.seed)
    model = make_model(spec).to(device)
    data = torch.Generator(device=device).manual_seed(2 * spec.seed + 1)
    noise = torch.Generator(device=device).manual_seed(2 * spec.seed + 2)
    sample_batch = batch_sampler(spec, scenes, data, noise)

    trained = train(
        model,
        spec.train,
        sample_batch,
        reconstruction_loss,
        lambda m: score(m, ev),
        ctx.on_eval,
        clip_norm=spec.train.clip_norm,
    )
    return model, trained, ev


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
    return spec["model"]["kind"], spec.get("data", {}).get("dataset", "scenes")


def _name(group: tuple[str, str], groups) -> str:
    """The model kind, with the dataset when the runs span more than one."""
    return group[0] if len({d for _, d in groups}) == 1 else f"{group[0]} ({group[1]})"


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


def scores_plot(runs: list[dict]) -> Plot | None:
    """FG-ARI and mBO per model: mean bars, every seed a dot (diverged runs an x at 0), with the
    published FG-ARI beside, and a summary table."""
    finished = defaultdict(list)
    unfinished = defaultdict(list)
    for r in runs:
        if r["status"] == "done" and "fg_ari" in r["metrics"]:
            finished[_group(r["spec"])].append(r)
        elif r["status"] in ("diverged", "failed"):
            unfinished[_group(r["spec"])].append(r)
    groups = sorted(set(finished) | set(unfinished))
    if not finished:
        return None
    fig = Figure(figsize=(2.2 + 1.6 * len(groups), 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    rows, diverged = [], False
    for ax, metric, title in zip(axes, ("fg_ari", "mbo"), ("FG-ARI", "mBO")):
        for x, group in enumerate(groups):
            done = sorted(finished[group], key=lambda r: r["spec"]["seed"])
            values = [r["metrics"][metric] for r in done]
            mean, _ = _stats(values)
            if mean is not None:
                ax.bar(x, mean, 0.6, color=f"C{x}", alpha=0.7)
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(x + np.asarray(jitter), values, color="k", s=12, zorder=3)
            lost = [r for r in unfinished[group] if r["status"] == "diverged"]
            if lost:
                ax.scatter([x] * len(lost), [0.0] * len(lost), color="r", marker="x", s=30, zorder=3)
                diverged = True
            if metric == "fg_ari" and group in REFERENCE:
                ax.hlines(REFERENCE[group][0], x - 0.3, x + 0.3, colors="grey", linestyles="--")
        ax.set_xticks(range(len(groups)), [_name(g, groups) for g in groups], fontsize=8)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].plot([], [], "k.", label="a seed")
    axes[0].plot([], [], "--", color="grey", label="published")
    if diverged:
        axes[0].plot([], [], "rx", label="diverged (at 0)")
    axes[0].legend(fontsize=7, loc="upper right")
    for group in groups:
        done = sorted(finished[group], key=lambda r: r["spec"]["seed"])
        summary = {
            m: _stats([r["metrics"].get(m) for r in done]) for m in ("fg_ari", "mbo", "ari", "miou", "mse")
        }
        reference, source = REFERENCE.get(group, (None, ""))
        rows.append(
            {
                "model": group[0],
                "dataset": group[1],
                **{f"{m}_mean": s[0] for m, s in summary.items()},
                **{f"{m}_std": s[1] for m, s in summary.items()},
                "seeds": [r["spec"]["seed"] for r in done],
                "fg_ari_per_seed": [r["metrics"]["fg_ari"] for r in done],
                "not_finished": len(unfinished[group]),
                "reference": reference,
                "source": source,
            }
        )
    table = {
        "columns": [
            "model",
            "dataset",
            "FG-ARI mean",
            "std",
            "mBO mean",
            "std",
            "ARI mean",
            "mIoU mean",
            "MSE mean",
            "seeds",
            "FG-ARI per seed",
            "diverged or failed",
            "published FG-ARI",
            "source",
        ],
        "rows": [
            [
                r["model"],
                r["dataset"],
                r["fg_ari_mean"],
                r["fg_ari_std"],
                r["mbo_mean"],
                r["mbo_std"],
                r["ari_mean"],
                r["miou_mean"],
                r["mse_mean"],
                len(r["seeds"]),
                ", ".join(f"{v:.3f}" for v in r["fg_ari_per_seed"]),
                r["not_finished"],
                r["reference"],
                r["source"],
            ]
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
        if r["status"] != "done" or not r.get("extra", {}).get("pictures"):
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
    )
)
