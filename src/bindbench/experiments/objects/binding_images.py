"""Binding in images: are the sets of binding_codes answered from pixels, and which
architecture keeps the binding on held-out colour-shape pairs?

The sets are drawn as images, one object per grid cell, and answered by a CNN with a
global (mean-pooled) readout or by Slot Attention with a query attending over the slots
(alone, or on the slots of the family's autoencoder, trained on reconstruction too), each
trained end to end on the queries. Scored as binding_codes: queries about seen and
held-out pairs, and swap pairs drawn at the same places.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bindbench.core import factory
from bindbench.core.claims import Claim, Verdict, every, exceeds, values
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainSpec, train
from bindbench.experiments.objects.setup import (
    BINDING_METRICS,
    BINDING_TRAIN,
    AutoencoderSpec,
    SetSpec,
    binding_plot,
    check_sets,
    make_model,
    make_task,
)
from bindbench.models.readouts import GlobalReader, SlotAutoencoderReader, SlotQueryHead, SlotReader
from bindbench.tasks.binding import evaluation_sets, layout, render, score_queries
from bindbench.tasks.scenes import PALETTE, SHAPES, Scenes

CHUNK = 256  # evaluation items per forward pass
RECONSTRUCTION = 10.0  # slot_autoencoder: weight of the reconstruction MSE (about 0.05) beside the
# answers' cross-entropy (about 1), so that neither drowns the other


class ImageSpec(Spec):
    model: Literal["cnn", "slot_attention", "slot_autoencoder"] = Field(
        "slot_attention",
        description="CNN with a mean-pooled global readout, slots read by query attention, or the same "
        "on the slots of an autoencoder trained on reconstruction too",
    )
    resolution: int = Field(32, ge=16, description="image side in pixels")
    sizes: list[float] = Field([0.35, 0.45], min_length=1, description="object sizes, fractions of the side")
    channels: int = Field(32, ge=1, description="encoder channels")
    dim: int = Field(64, ge=1, description="feature and slot size")
    num_slots: int = Field(4, ge=1, description="slots (slot models)")
    width: int = Field(128, ge=1, description="hidden units of the answering MLP")
    pixels: int = Field(256, ge=1, description="slot_autoencoder: random pixels per image in the loss")


class ReaderSpec(Spec):
    factory: FactoryPath | None = factory_field("resolution, query_dim, answers")


class BindingImagesSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization and training data")
    sets: SetSpec = SetSpec()
    image: ImageSpec = ImageSpec()
    model: ReaderSpec = Field(ReaderSpec(), json_schema_extra={"omit_at_default": True})
    train: TrainSpec = BINDING_TRAIN.model_copy(update={"clip_norm": 1.0})
    eval_items: int = Field(2000, ge=10, description="evaluation sets per score")
    REFERENCE = ReferenceKeys(kept=("resolution", "sizes"), part="image")  # a user's reader: the images only


# what a reader of the user's must be (docs/models.md)
INTERFACE = "model(images, query): (batch, 3, resolution, resolution), (batch, query_dim) -> (batch, answers)"


class OwnReader(torch.nn.Module):
    """A user's reader (`own`) behind the readers' interface: it gets the images and the
    query, not the query's kind or the slots' noise."""

    def __init__(self, own: torch.nn.Module):
        super().__init__()
        self.own = own

    def forward(self, images, query, kind=None, noise=None):
        return self.own(images, query)


def make_scenes(spec: BindingImagesSpec) -> Scenes:
    return Scenes(
        spec.image.resolution,
        colours=tuple(PALETTE)[: spec.sets.colours],
        shapes=SHAPES[: spec.sets.shapes],
        sizes=tuple(spec.image.sizes),
    )


def check(spec: BindingImagesSpec) -> None:
    """Rejects specs whose sets or images cannot be made, before any run."""
    task = check_sets(spec.sets)
    if spec.sets.colours > len(PALETTE) or spec.sets.shapes > len(SHAPES):
        raise ValueError(
            f"sets.colours={spec.sets.colours} and sets.shapes={spec.sets.shapes}: images have at most "
            f"{len(PALETTE)} colours and {len(SHAPES)} shapes"
        )
    try:
        scenes, draw = make_scenes(spec), torch.Generator().manual_seed(0)
        sets = task.sample(4, draw)
        render(sets, scenes, layout(sets, scenes, draw))
    except ValueError as err:
        raise ValueError(f"image: {err}") from None
    if spec.model.factory is not None:
        path, model = spec.model.factory, make_reader(spec, task.query_dim, task.num_answers)
        images = torch.zeros(2, 3, spec.image.resolution, spec.image.resolution)
        query = task.query_vector(task.query(task.sample(2, draw), draw))
        out = factory.try_forward(path, model, (images, query), INTERFACE)
        factory.expect_tensor(path, out, (2, task.num_answers), INTERFACE)
        return
    if spec.image.model != "cnn" and spec.image.num_slots < spec.sets.max_objects + 1:
        raise ValueError(
            f"image.num_slots={spec.image.num_slots} must be >= sets.max_objects + 1 = "
            f"{spec.sets.max_objects + 1} (a slot per object and one for the background)"
        )
    if spec.image.model == "slot_autoencoder" and spec.image.pixels > spec.image.resolution**2:
        raise ValueError(f"image.pixels={spec.image.pixels} must be <= image.resolution^2")


def make_reader(spec: BindingImagesSpec, query_dim: int, answers: int) -> torch.nn.Module:
    image = spec.image
    sizes = (image.resolution, query_dim, answers)
    if spec.model.factory is not None:
        names = ("resolution", "query_dim", "answers")
        return OwnReader(factory.build(spec.model.factory, **dict(zip(names, sizes))))
    if image.model == "cnn":
        return GlobalReader(*sizes, image.channels, image.dim, image.width)
    if image.model == "slot_attention":
        return SlotReader(*sizes, 2, image.num_slots, image.channels, image.dim, image.width)
    # the family's autoencoder at its defaults but these sizes, and the same head
    slots = AutoencoderSpec(channels=image.channels, slot_dim=image.dim, num_slots=image.num_slots)
    autoencoder = make_model(slots, image.resolution)  # drawn before the head, as it always was
    return SlotAutoencoderReader(autoencoder, SlotQueryHead(image.dim, query_dim, answers, 2, image.width))


def run(spec: BindingImagesSpec, ctx) -> RunResult:
    task, scenes, image = make_task(spec.sets), make_scenes(spec), spec.image
    seed_init(spec.seed)
    device = ctx.device
    data = generator(spec.seed, "data")
    reconstructs = image.model == "slot_autoencoder"
    model = make_reader(spec, task.query_dim, task.num_answers).to(device)

    shared = generator(None, "eval")  # the evaluation sets: the same for every run
    draws, swaps = evaluation_sets(task, spec.eval_items, shared)
    images = {}  # each evaluation set drawn once; both sets of a swap pair at the same places
    for sets, _ in draws.values():
        images[id(sets)] = render(sets, scenes, layout(sets, scenes, shared)).images.to(device)
    for pairs in swaps.values():
        where = layout(pairs.first, scenes, shared)
        for sets in (pairs.first, pairs.second):
            images[id(sets)] = render(sets, scenes, where).images.to(device)
    noise = torch.randn(spec.eval_items, image.num_slots, image.dim, generator=shared).to(device)

    def inputs(queries):  # the query, and what the slot readout answers from besides the slot: its kind
        kind = torch.nn.functional.one_hot(queries.kind, 2).float()
        return task.query_vector(queries).to(device), kind.to(device)

    def scores_of(m, sets, queries):
        x, (q, kind), z = images[id(sets)], inputs(queries), noise[: len(sets.valid)]
        parts = [slice(i, i + CHUNK) for i in range(0, len(x), CHUNK)]
        return torch.cat([m(x[p], q[p], kind[p], z[p]) for p in parts]).cpu()

    def sample_batch(step):
        sets = task.sample(spec.train.batch_size, data)
        queries = task.query(sets, data)
        x = render(sets, scenes, layout(sets, scenes, data)).images
        batch = (x.to(device), *inputs(queries), queries.answer.to(device))
        if reconstructs:  # the pixels the reconstruction loss is taken on, as in segregation
            pixels = torch.randperm(image.resolution**2, generator=data)[: image.pixels]
            batch += (pixels.to(device),)
        return batch

    def loss(m, batch):
        if not reconstructs:
            return torch.nn.functional.cross_entropy(m(*batch[:3]), batch[3])
        x, q, kind, answer, pixels = batch
        out = m.autoencoder(x, pixels=pixels)
        answers = torch.nn.functional.cross_entropy(m.head(out.slots, q, kind), answer)
        return answers + RECONSTRUCTION * torch.nn.functional.mse_loss(
            out.reconstruction, x.flatten(2)[:, :, pixels]
        )

    trained = train(
        model,
        spec.train,
        sample_batch,
        loss,
        lambda m: score_queries(lambda s, q: scores_of(m, s, q), draws, swaps),
        ctx.on_eval,
    )
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    parameters = float(sum(p.numel() for p in model.parameters()))
    metrics = {**trained.final, "parameters": parameters, "seconds_training": trained.seconds}
    return RunResult(metrics=metrics, curve=trained.curve, model=model)


def reader_of(spec: BindingImagesSpec) -> torch.nn.Module:
    """A run's untrained reader, as its checkpoint holds it (`Experiment.make_model`)."""
    task = make_task(spec.sets)
    return make_reader(spec, task.query_dim, task.num_answers)


def _label(spec: dict) -> str:
    return spec.get("model", {}).get("factory") or spec["image"]["model"]


def plots(runs: list[dict]) -> list[Plot]:
    title = "Binding queries and swap tests on images"
    plot = binding_plot(runs, _label, "model", title)
    return [plot] if plot is not None else []


def _slots_bind_held_out(runs: list[dict]) -> Verdict:
    def swap(model: str) -> list[float]:
        return values(runs, "swap_held_out", image__model=model)

    slots = [m for m in ("slot_attention", "slot_autoencoder") if swap(m)] or ["slot_attention"]
    return every({m: exceeds(swap(m), swap("cnn"), f"{m} swap", "cnn swap") for m in slots})


CLAIMS = (
    Claim(
        "slots_bind_held_out_pairs",
        "On images, slot readouts keep the binding of held-out colour-shape pairs where a "
        "global CNN readout does not: swap accuracy on held-out pairs above the CNN's by more "
        "than the seed spread",
        "the binding problem's representation aspect (Greff et al. 2020, section 4); no figure",
        _slots_bind_held_out,
    ),
)


TRAIN = {"train.batch_size": 32, "train.lr": 1e-3, "train.warmup_steps": 200}

EXPERIMENT = register(
    Experiment(
        name="binding_images",
        title="Binding in images: a global CNN readout against slots, on held-out colour-shape pairs",
        spec=BindingImagesSpec,
        run=run,
        check=check,
        plots=plots,
        make_model=reader_of,
        profiles={
            # quick: a look at the pipeline, not at the claim (that needs full)
            "quick": {
                "image.model": ["cnn", "slot_attention"],
                **TRAIN,
                "train.steps": 300,
                "train.eval_every": 300,
                "eval_items": 250,
            },
            # full: 9-23 min a run on one thread (README)
            "full": {
                "image.model": ["cnn", "slot_attention", "slot_autoencoder"],
                "seed": [0, 1, 2],
                **TRAIN,
                "train.steps": 8000,
                "train.eval_every": 2000,
                "eval_items": 1000,
            },
        },
        columns=("image.model", "model.factory", "seed"),
        metrics=(*BINDING_METRICS, "parameters"),
        tiny={
            "image.channels": 8,
            "image.dim": 16,
            "image.width": 16,
            "train.steps": 4,
            "train.warmup_steps": 0,  # over any profile (quick warms up for 200)
            "train.batch_size": 8,
            "train.eval_every": 2,
            "eval_items": 20,
        },
        claims=CLAIMS,
    )
)
