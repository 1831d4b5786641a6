"""The objects family's recipe: scenes, the object-discovery autoencoder, its training and
evaluation, and the binding sets that the binding claims draw.

Segregation trains the autoencoder and scores its segmentation; slot_probe freezes it and
probes its slots; binding_images reuses the model; binding_codes and binding_images draw the
same sets of (colour, shape) objects. Axes: s scene, k slot, c channel, h w pixels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import torch
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core import factory
from bindbench.core.config import ReferenceKeys, Spec, SpecError
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.report import Plot, bars, column_width, spread
from bindbench.core.seeds import generator, seed_init
from bindbench.core.segmentation import segmentation_scores
from bindbench.core.training import TrainSpec, train
from bindbench.models import Layout, SlotAutoencoder, SlotMLPAutoencoder
from bindbench.models.slot_attention import AutoencoderOutput
from bindbench.tasks.binding import BindingTask
from bindbench.tasks.scenes import Scenes, Tetrominoes

TETROMINO_GRID = 7  # blocks per image side, as in the DeepMind dataset (7 x 5 px = 35 px)
HUE_BANDS = 8  # continuous colours: the hue circle in as many bands as the palette has colours
EVAL_CHUNK = 64  # evaluation scenes per forward pass
BINDING_METRICS = ["accuracy_seen", "accuracy_held_out", "swap_seen", "swap_held_out"]
# an autoencoder of about a second on one core: what the checks every experiment passes run
TINY_SLOTS = {
    "data.resolution": 16,
    "model.channels": 8,
    "model.slot_dim": 16,
    "model.hidden": 16,
    "model.decoder_hidden": 16,
    "model.decoder_layers": 1,
    "train.steps": 4,
    "train.batch_size": 4,
    "train.warmup_steps": 1,
    "train.eval_every": 2,
    "train.pixels": 64,
    "eval_scenes": 8,
}
SWAP_FLOOR = 0.5  # any readout of a code (or image model) that cannot tell a swap pair's two sets apart


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
    factory: FactoryPath | None = factory_field("resolution, num_slots, slot_dim")
    REFERENCE = ReferenceKeys(kept=("num_slots", "slot_dim"))


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
    colours: Literal["palette", "hue"] = Field(
        "palette", description="8 palette colours, or continuous hues in 8 bands (not tetrominoes)"
    )
    texture: Literal["none", "objects", "all"] = Field(
        "none", description="stripes or checks of two colours: none, on the objects, on all (background too)"
    )
    held_out: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="fraction of colour x shape pairs never drawn (the same pairs every seed)",
    )


class SlotTrainSpec(TrainSpec):
    """The training settings, with the loss on a random subset of pixels."""

    pixels: int | None = Field(
        256,
        ge=1,
        description="pixels per image in the loss, a fresh random subset each step (null: all; mlp decoder)",
    )


# Adam with linear warm-up and no weight decay, as the reference, sized for a CPU: batch 16,
# lr 2e-3 (the reference: 4e-4 at batch 64; at 16 and 10-20k steps, 1e-3 stayed on a spatial
# split of the image where 2e-3 went on to objects), gradient norm clipped at 1, and the loss
# on 256 random pixels per image. The reference decays the rate by 0.5^(step / 100k); the
# shared loop offers cosine instead.
SLOT_TRAIN = SlotTrainSpec(
    steps=1000,
    batch_size=16,
    lr=2e-3,
    weight_decay=0.0,
    schedule="cosine",
    warmup_steps=100,
    eval_every=250,
    clip_norm=1.0,
)


class SlotsSpec(Spec):
    """The autoencoder trained on scenes: segregation's spec but its pictures, and what
    slot_probe trains before it freezes the slots."""

    seed: int = Field(0, ge=0, description="initialization, training scenes and initial-slot noise")
    model: AutoencoderSpec = AutoencoderSpec()
    data: SceneSpec = SceneSpec()
    train: SlotTrainSpec = SLOT_TRAIN
    eval_scenes: int = Field(
        256, ge=1, description="fixed evaluation scenes, the same for every seed (drawn once on the CPU)"
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
        hues=HUE_BANDS if data.colours == "hue" else None,
        texture=data.texture,
        device=device,
    )


def check(spec: SlotsSpec) -> None:
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
        if data.max_objects > 3:  # each piece rules out up to 16 of the 36 places of the next
            raise ValueError(f"data.max_objects={data.max_objects}: at most 3 tetrominoes fit on the board")
        flat = {"background": "black", "colours": "palette", "texture": "none"}
        for key, value in flat.items():
            if getattr(data, key) != value:
                shown = f"data.{key}={getattr(data, key)!r}"
                raise ValueError(f"{shown}: tetrominoes are drawn with {key}={value!r} only")
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
    try:
        make_scenes(data)
    except ValueError as err:
        raise ValueError(f"data: {err}") from None
    check_own_autoencoder(spec)


# what an autoencoder of the user's must be (docs/models.md)
INTERFACE = (
    "model(images, noise=noise): images (batch, 3, h, w), initial-slot noise (batch, num_slots, slot_dim)"
    " if forward takes it -> .reconstruction (batch, 3, h, w) and .masks (batch, slots, h, w)"
)


class OwnAutoencoder(torch.nn.Module):
    """A user's autoencoder (`own`) behind the interface the object experiments call.

    Its forward takes the images, and the initial-slot noise if it has a `noise` argument; it
    returns an object or dict with `reconstruction` (b, 3, h, w) and `masks` (b, k, h, w),
    softmax-normalized over slots, and optionally `slot_rgb` (b, k, 3, h, w) and `slots`
    (b, k, d), or a tuple (reconstruction, masks). A loss on a subset of pixels decodes them
    all and picks the subset (no speed-up, the same loss)."""

    def __init__(self, own: torch.nn.Module, path: str):
        super().__init__()
        self.own, self.path = own, path
        self.takes_noise = factory.accepts(own, "noise")

    def forward(self, images, noise=None, pixels=None) -> AutoencoderOutput:
        out = self.own(images, noise=noise) if self.takes_noise else self.own(images)
        parts = _parts(out, self.path)
        reconstruction, masks = parts["reconstruction"], parts["masks"]
        slot_rgb = parts.get("slot_rgb")
        if slot_rgb is None:  # pictures show each slot's share of the whole reconstruction
            slot_rgb = reconstruction.unsqueeze(1).expand(-1, masks.shape[1], -1, -1, -1)
        slots = parts.get("slots")
        if slots is None:
            slots = masks.new_zeros(masks.shape[0], masks.shape[1], 0)
        if pixels is not None:
            reconstruction, masks = reconstruction.flatten(2)[:, :, pixels], masks.flatten(2)[:, :, pixels]
            slot_rgb = slot_rgb.flatten(3)[..., pixels]
        return AutoencoderOutput(reconstruction, masks, slot_rgb, slots)


def _parts(out, path: str) -> dict:
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return {"reconstruction": out[0], "masks": out[1]}
    names = ("reconstruction", "masks", "slot_rgb", "slots")
    parts = dict(out) if isinstance(out, dict) else {n: getattr(out, n) for n in names if hasattr(out, n)}
    missing = " or ".join(n for n in names[:2] if n not in parts)
    if missing:
        raise SpecError(
            f"model.factory={path}: the output has no {missing}; the experiment calls {INTERFACE}"
        )
    return parts


def check_own_autoencoder(spec: SlotsSpec, needs_slots: bool = False) -> None:
    """Builds a user's autoencoder and calls it on two blank images; one line if it does not fit."""
    path, m, side = spec.model.factory, spec.model, spec.data.resolution
    if path is None:
        return
    model = make_model(m, side)
    images, noise = torch.zeros(2, 3, side, side), torch.zeros(2, m.num_slots, m.slot_dim)
    out = factory.try_forward(path, model, images, INTERFACE, noise=noise)
    factory.expect_tensor(path, out.reconstruction, (2, 3, side, side), INTERFACE, "the reconstruction")
    k = out.masks.shape[1] if out.masks.dim() == 4 else m.num_slots
    factory.expect_tensor(path, out.masks, (2, k, side, side), INTERFACE, "the masks")
    if needs_slots and (out.slots.dim() != 3 or out.slots.shape[:2] != (2, k) or out.slots.shape[2] == 0):
        raise SpecError(
            f"model.factory={path}: slot_probe reads .slots (batch, slots, d) from the output; it gave"
            f" {tuple(out.slots.shape) if out.slots.shape[2] else 'none'}"
        )


def autoencoder_of(spec: SlotsSpec) -> torch.nn.Module:
    """A run's untrained autoencoder, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_model(spec.model, spec.data.resolution)


def make_model(m: AutoencoderSpec, resolution: int) -> torch.nn.Module:
    """The autoencoder `m` describes, for square images of side `resolution` (a user's, behind
    `OwnAutoencoder`, when `m.factory` is set)."""
    if m.factory is not None:
        own = factory.build(m.factory, resolution=resolution, num_slots=m.num_slots, slot_dim=m.slot_dim)
        return OwnAutoencoder(own, m.factory)
    layout = Layout(m.encoder_stride, m.decoder, m.decoder_hidden, m.decoder_layers, m.decoder_frequencies)
    if m.kind == "slot_mlp":
        return SlotMLPAutoencoder(resolution, m.num_slots, m.channels, m.slot_dim, m.hidden, layout)
    return SlotAutoencoder(
        resolution, m.num_slots, m.channels, m.slot_dim, m.iters, m.hidden, m.implicit, layout
    )


@dataclass
class EvaluationSet:
    """Fixed scenes with their initial-slot noise, so an evaluation depends on the weights only."""

    images: torch.Tensor  # (s, 3, h, w)
    labels: torch.Tensor  # (s, h, w): 0 background, 1..num_objects the objects
    noise: torch.Tensor  # (s, k, d)
    num_objects: int
    colour: torch.Tensor  # (s, num_objects): colour index of the object of label o + 1, -1 if none
    shape: torch.Tensor  # (s, num_objects)
    place: torch.Tensor  # (s, num_objects): the cell of a 3 x 3 grid that holds the object's centre


def evaluation_set(
    spec: SlotsSpec,
    device: torch.device | str = "cpu",
    *index: int,
    scenes: int | None = None,
    data: SceneSpec | None = None,
    slots: int | None = None,
    split: str = "train",
) -> EvaluationSet:
    """Fixed scenes drawn on the CPU from a shared stream, the same on every device and seed:
    the run's evaluation set, or with an `index` another shared set (the validation set, more
    objects), of `scenes` scenes (default eval_scenes) of `data` (default spec.data), with noise
    for `slots` initial slots (default model.num_slots)."""
    draw = generator(None, "eval", *index)
    data, count = data or spec.data, scenes or spec.eval_scenes
    sampler = make_scenes(data)
    drawn = sampler.sample(count, draw) if split == "train" else sampler.sample(count, draw, split)
    noise = torch.randn(count, slots or spec.model.num_slots, spec.model.slot_dim, generator=draw)
    return EvaluationSet(
        *(t.to(device) for t in (drawn.images, drawn.labels, noise)),
        data.max_objects,
        drawn.colour.to(device),
        drawn.shape.to(device),
        torch.where(
            drawn.valid, (drawn.y * 3).long().clamp(max=2) * 3 + (drawn.x * 3).long().clamp(max=2), -1
        ).to(device),
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


def reconstruction_loss(model, batch) -> torch.Tensor:
    images, noise, pixels = batch
    if pixels is None:
        return torch.nn.functional.mse_loss(model(images, noise=noise).reconstruction, images)
    out = model(images, noise=noise, pixels=pixels)
    return torch.nn.functional.mse_loss(out.reconstruction, images.flatten(2)[:, :, pixels])


def batch_sampler(spec: SlotsSpec, scenes, data: torch.Generator, noise: torch.Generator):
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


def train_autoencoder(spec: SlotsSpec, ctx, also: dict[str, EvaluationSet] | None = None):
    """Trains the spec's autoencoder by reconstruction, scored on the evaluation set as it goes
    (and on the sets of `also`, their FG-ARI as `<name>_fg_ari`): (model, its TrainResult, the
    EvaluationSet)."""
    device = ctx.device
    scenes = make_scenes(spec.data, device)
    ev = evaluation_set(spec, device)

    def evaluate(m):
        scores = score(m, ev)
        for name, extra in (also or {}).items():
            scores[f"{name}_fg_ari"] = score(m, extra)["fg_ari"]
        return scores

    seed_init(spec.seed)
    model = make_model(spec.model, spec.data.resolution).to(device)
    data = generator(spec.seed, "data", device=device)
    noise = generator(spec.seed, "noise", device=device)
    sample_batch = batch_sampler(spec, scenes, data, noise)

    trained = train(
        model,
        spec.train,
        sample_batch,
        reconstruction_loss,
        evaluate,
        ctx.on_eval,
    )
    return model, trained, ev


class SetSpec(Spec):
    """Sets of (colour, shape) objects, with held-out pairs (the binding claims)."""

    colours: int = Field(8, ge=2, description="colour values (images: at most the palette's 8)")
    shapes: int = Field(4, ge=2, description="shape values (images: at most 4)")
    min_objects: int = Field(2, ge=2, description="fewest objects in a set")
    max_objects: int = Field(3, ge=2, description="most objects in a set (distinct colours and shapes)")
    held_out: float = Field(0.25, ge=0, lt=1, description="fraction of colour-shape pairs never trained")


# the binding readouts' training: Adam at 1e-3, no decay, an evaluation every 1000 steps
BINDING_TRAIN = TrainSpec(steps=2000, batch_size=128, lr=1e-3, weight_decay=0.0, eval_every=1000)


def make_task(sets: SetSpec) -> BindingTask:
    return BindingTask(sets.colours, sets.shapes, sets.min_objects, sets.max_objects, sets.held_out)


def check_sets(sets: SetSpec) -> BindingTask:
    """The task of `sets`, once its sets have been drawn: an impossible one fails here."""
    try:
        task = make_task(sets)
        task.sample(64, torch.Generator().manual_seed(0), "test" if task.held_out else "train")
    except ValueError as err:
        raise ValueError(f"sets: {err}") from None
    return task


def binding_plot(runs: list[dict], label, column: str, title: str) -> Plot | None:
    """Query and swap accuracy per group of finished runs, `label(spec)` naming a run's group
    (a code and its readout, an image model; None leaves the run out), every run a dot, the
    swap floor drawn; the same as a table of mean ± std."""
    groups = defaultdict(list)
    for r in runs:
        if r["status"] == "done" and (name := label(r["spec"])) is not None:
            groups[name].append(r)
    if not groups:
        return None
    labels, metrics = sorted(groups), BINDING_METRICS
    values = {m: [[r["metrics"][m] for r in groups[g] if m in r["metrics"]] for g in labels] for m in metrics}
    fig = Figure(figsize=(column_width(4 + 1.1 * len(labels)), 3.6), layout="constrained")
    ax = fig.subplots()
    bars(ax, labels, values)
    ax.axhline(SWAP_FLOOR, color="grey", linestyle=":", label=f"swap floor of an unbound code ({SWAP_FLOOR})")
    ax.tick_params(axis="x", labelsize=7, labelrotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rows = [[g, len(groups[g]), *(spread(values[m][i]) for m in metrics)] for i, g in enumerate(labels)]
    return Plot(title, fig, {"rows": rows}, {"columns": [column, "runs", *metrics], "rows": rows})
