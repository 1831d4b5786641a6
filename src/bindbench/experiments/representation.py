"""Representation: does a code keep which attribute belongs to which object?

Greff et al. (2020): a distributed code that superposes objects loses the binding (the
superposition catastrophe); one object per slot, or a tensor product with orthonormal
roles, keeps it. Research note object-centric.md section 4. A run is one of three parts:

- `codes`: sets of (colour, shape) objects held by a code (bag of features, slots, tensor
  product with orthonormal or random roles), read by a trained readout (linear per query,
  or an MLP) or, for tensor products, by unbinding with the roles (no training). Scored on
  binding queries about seen and held-out colour-shape pairs, and on swap pairs.
- `images`: the same sets drawn as images, one object per grid cell, answered by a CNN
  with a global (mean-pooled) readout or by Slot Attention with a query attending over
  the slots, both trained end to end on the queries.
- `probe`: the segregation experiment's Slot Attention autoencoder, trained by
  reconstruction on scenes whose held-out pairs it never sees, then frozen; each object's
  slot (Hungarian matching of masks) feeds a linear probe of colour and shape, scored on
  seen objects and on held-out ones.

The swap test is two-alternative: for a pair of sets that differ only in the binding, does
the true answer outscore the swapped one? A code that gives both sets the same input is at
0.5 exactly, whatever the readout.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core.config import Spec
from bindbench.core.probes import logistic_fit, matched_slots
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot
from bindbench.core.segmentation import one_hot_masks
from bindbench.core.training import TrainSpec, train
from bindbench.experiments import segregation
from bindbench.models.readouts import (
    GlobalReader,
    QueryLinear,
    QueryMLP,
    SlotAutoencoderReader,
    SlotQueryHead,
    SlotReader,
)
from bindbench.tasks.binding import (
    BindingTask,
    layout,
    orthonormal_roles,
    random_roles,
    render,
    swap_accuracy,
)
from bindbench.tasks.scenes import PALETTE, SHAPES, Scenes

EVAL_SEED = 0  # evaluation sets, the same for every run; a run's own generators use seed + 1..
CHUNK = 256  # evaluation items per forward pass of an image model
SWAP_FLOOR = 0.5  # any readout of a code that cannot tell the two sets of a swap pair apart
MIN_VISIBLE = 0.5  # probe: objects with less of their area visible are not scored
RECONSTRUCTION = 10.0  # slot_autoencoder: weight of the reconstruction MSE (about 0.05) beside the
# answers' cross-entropy (about 1), so that neither drowns the other


class SetSpec(Spec):
    colours: int = Field(8, ge=2, description="colour values (images: at most the palette's 8)")
    shapes: int = Field(4, ge=2, description="shape values (images: at most 4)")
    min_objects: int = Field(2, ge=2, description="fewest objects in a set")
    max_objects: int = Field(3, ge=2, description="most objects in a set (distinct colours and shapes)")
    held_out: float = Field(0.25, ge=0, lt=1, description="fraction of colour-shape pairs never trained")


class CodeSpec(Spec):
    kind: Literal["bag", "slot", "tpr_orthonormal", "tpr_random"] = Field(
        "bag", description="bag of features, one object per slot, or a tensor product role(shape) x colour"
    )
    role_dim: int = Field(8, ge=1, description="d, the roles' dimension (tensor products)")
    readout: Literal["linear", "mlp", "unbind"] = Field(
        "mlp", description="a linear map per query, an MLP on code and query, or unbinding (tensor products)"
    )
    width: int = Field(256, ge=1, description="hidden units of the MLP readout")
    depth: int = Field(2, ge=1, description="hidden layers of the MLP readout")


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
    num_slots: int = Field(4, ge=1, description="slots (slot_attention)")
    width: int = Field(128, ge=1, description="hidden units of the answering MLP")


class RepresentationSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization, training data and roles")
    part: Literal["codes", "images", "probe"] = Field(
        "codes", description="readouts of codes, query models on images, or the frozen-slot probe"
    )
    sets: SetSpec = SetSpec()
    code: CodeSpec = CodeSpec()
    image: ImageSpec = ImageSpec()
    train: TrainSpec = TrainSpec(steps=2000, batch_size=128, lr=1e-3, weight_decay=0.0, eval_every=1000)
    slots: segregation.SegregationSpec = segregation.SegregationSpec(
        data=segregation.SceneSpec(held_out=0.25), eval_scenes=128, pictures=0
    )
    probe_scenes: int = Field(1000, ge=10, description="probe: scenes whose objects fit the probe")
    eval_items: int = Field(2000, ge=10, description="evaluation sets (scenes) per score")


def make_task(spec: RepresentationSpec) -> BindingTask:
    s = spec.sets
    return BindingTask(s.colours, s.shapes, s.min_objects, s.max_objects, s.held_out)


def make_scenes(spec: RepresentationSpec) -> Scenes:
    return Scenes(
        spec.image.resolution,
        colours=tuple(PALETTE)[: spec.sets.colours],
        shapes=SHAPES[: spec.sets.shapes],
        sizes=tuple(spec.image.sizes),
    )


def check(spec: RepresentationSpec) -> None:
    """Rejects specs whose sets, codes or images cannot be made, before any run."""
    generator = torch.Generator().manual_seed(0)
    try:
        task = make_task(spec)
        task.sample(64, generator, "test" if task.held_out else "train")
    except ValueError as err:
        raise ValueError(f"sets: {err}") from None
    if spec.part == "codes":
        code = spec.code
        if code.readout == "unbind" and not code.kind.startswith("tpr"):
            raise ValueError(
                f"code.readout='unbind' needs a tensor-product code, not code.kind={code.kind!r}"
            )
        if code.kind == "tpr_orthonormal" and code.role_dim < spec.sets.shapes:
            raise ValueError(
                f"code.role_dim={code.role_dim} must be >= sets.shapes={spec.sets.shapes} "
                f"for orthonormal roles"
            )
    if spec.part == "images":
        if spec.sets.colours > len(PALETTE) or spec.sets.shapes > len(SHAPES):
            raise ValueError(
                f"sets.colours={spec.sets.colours} and sets.shapes={spec.sets.shapes}: images have at most "
                f"{len(PALETTE)} colours and {len(SHAPES)} shapes"
            )
        try:
            scenes = make_scenes(spec)
            sets = task.sample(4, generator)
            render(sets, scenes, layout(sets, scenes, generator))
        except ValueError as err:
            raise ValueError(f"image: {err}") from None
        if spec.image.model != "cnn" and spec.image.num_slots < spec.sets.max_objects + 1:
            raise ValueError(
                f"image.num_slots={spec.image.num_slots} must be >= sets.max_objects + 1 = "
                f"{spec.sets.max_objects + 1} (a slot per object and one for the background)"
            )
    if spec.part == "probe":
        if not spec.slots.data.held_out:
            raise ValueError("slots.data.held_out must be > 0: the probe scores held-out pairs")
        try:
            segregation.check(spec.slots)
        except ValueError as err:
            raise ValueError(f"slots.{err}") from None


def run(spec: RepresentationSpec, ctx) -> RunResult:
    return {"codes": run_codes, "images": run_images, "probe": run_probe}[spec.part](spec, ctx)


# ----------------------------------------------------------------------------- codes and images


def evaluation(task: BindingTask, items: int):
    """The fixed evaluation draws: seen and held-out sets with their queries, and swap pairs of
    seen sets and of held-out sets; with the generator that drew them (for codes, layouts)."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    seen = task.sample(items, generator)
    draws = {"seen": (seen, task.query(seen, generator))}
    swaps = {"seen": task.swap(seen, generator)}
    if task.held_out:
        held = task.sample(items, generator, "test")
        draws["held_out"] = (held, task.query(held, generator))
        swaps["held_out"] = task.swap(held, generator, seen=False)
    return draws, swaps, generator


def score(scores_of, task: BindingTask, draws, swaps) -> dict[str, float]:
    """Query accuracy and swap accuracy per split; `scores_of(sets, queries)` gives the answer
    scores (b, answers)."""
    metrics = {}
    for split, (sets, queries) in draws.items():
        right = scores_of(sets, queries).argmax(1) == queries.answer
        metrics[f"accuracy_{split}"] = right.float().mean().item()
    for split, pairs in swaps.items():
        first = scores_of(pairs.first, pairs.first_queries)
        second = scores_of(pairs.second, pairs.second_queries)
        right = swap_accuracy(first, second, pairs.first_queries.answer, pairs.second_queries.answer)
        metrics[f"swap_{split}"] = right.mean().item()
    return metrics


def run_codes(spec: RepresentationSpec, ctx) -> RunResult:
    task, code = make_task(spec), spec.code
    torch.manual_seed(spec.seed)
    data = torch.Generator().manual_seed(spec.seed + 1)
    roles = fillers = None  # tensor products: orthonormal roles and one-hot fillers, or both random
    if code.kind.startswith("tpr"):
        draw = torch.Generator().manual_seed(spec.seed + 2)
        if code.kind == "tpr_orthonormal":
            roles = orthonormal_roles(spec.sets.shapes, code.role_dim, draw)
        else:
            roles = random_roles(spec.sets.shapes, code.role_dim, draw)
            fillers = random_roles(spec.sets.colours, code.role_dim, draw)

    def encode(sets, generator):
        if code.kind == "bag":
            return task.bag_of_features(sets)
        if code.kind == "slot":
            return task.slot_code(sets, generator)
        return task.tensor_product(sets, roles, fillers)

    draws, swaps, generator = evaluation(task, spec.eval_items)
    codes = {}  # each evaluation set's code, drawn once (the slot code's order is random)

    def code_of(sets):
        if id(sets) not in codes:
            codes[id(sets)] = encode(sets, generator)
        return codes[id(sets)]

    code_dim = code_of(draws["seen"][0]).shape[1]
    if code.readout == "unbind":
        metrics = score(lambda s, q: task.unbind(code_of(s), q, roles, fillers), task, draws, swaps)
        return RunResult(metrics={**metrics, "code_dim": float(code_dim)})

    if code.readout == "linear":
        model = QueryLinear(code_dim, task.query_dim, task.num_answers)
    else:
        model = QueryMLP(code_dim, task.query_dim, task.num_answers, code.width, code.depth)

    def sample_batch(step):
        sets = task.sample(spec.train.batch_size, data)
        queries = task.query(sets, data)
        return encode(sets, data), task.query_vector(queries), queries.answer

    trained = train(
        model,
        spec.train,
        sample_batch,
        lambda m, batch: torch.nn.functional.cross_entropy(m(batch[0], batch[1]), batch[2]),
        lambda m: score(lambda s, q: m(code_of(s), task.query_vector(q)), task, draws, swaps),
        ctx.on_eval,
    )
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    metrics = {**trained.final, "code_dim": float(code_dim), "seconds_training": trained.seconds}
    return RunResult(metrics=metrics, curve=trained.curve)


def run_images(spec: RepresentationSpec, ctx) -> RunResult:
    task, scenes, image = make_task(spec), make_scenes(spec), spec.image
    torch.manual_seed(spec.seed)
    device = ctx.device
    data = torch.Generator().manual_seed(spec.seed + 1)
    sizes = (image.resolution, task.query_dim, task.num_answers)
    reconstructs = image.model == "slot_autoencoder"
    slot_spec = segregation.SegregationSpec.model_validate(
        {
            "model": {"channels": image.channels, "slot_dim": image.dim, "num_slots": image.num_slots},
            "data": {"resolution": image.resolution},
        }
    )
    if image.model == "cnn":
        model = GlobalReader(*sizes, image.channels, image.dim, image.width)
    elif image.model == "slot_attention":
        model = SlotReader(*sizes, 2, image.num_slots, image.channels, image.dim, image.width)
    else:  # the segregation experiment's autoencoder at its defaults, and the same head
        autoencoder = segregation.make_model(slot_spec)
        head = SlotQueryHead(image.dim, task.query_dim, task.num_answers, 2, image.width)
        model = SlotAutoencoderReader(autoencoder, head)
    model.to(device)

    draws, swaps, generator = evaluation(task, spec.eval_items)
    images = {}  # each evaluation set drawn once; both sets of a swap pair at the same places
    for sets, _ in draws.values():
        images[id(sets)] = render(sets, scenes, layout(sets, scenes, generator)).images.to(device)
    for pairs in swaps.values():
        where = layout(pairs.first, scenes, generator)
        for sets in (pairs.first, pairs.second):
            images[id(sets)] = render(sets, scenes, where).images.to(device)
    noise = torch.randn(spec.eval_items, image.num_slots, image.dim, generator=generator).to(device)

    def inputs(queries):  # the query, and what the slot readout answers from besides the slot: its kind
        kind = torch.nn.functional.one_hot(queries.kind, 2).float()
        return task.query_vector(queries).to(device), kind.to(device)

    def scores_of(m, sets, queries):
        x, (q, kind), z = images[id(sets)], inputs(queries), noise[: len(sets.valid)]
        parts = [slice(i, i + CHUNK) for i in range(0, len(x), CHUNK)]
        out = [m(x[p], q[p], kind[p], z[p]) for p in parts]
        return torch.cat(out).cpu()

    def sample_batch(step):
        sets = task.sample(spec.train.batch_size, data)
        queries = task.query(sets, data)
        x = render(sets, scenes, layout(sets, scenes, data)).images
        batch = (x.to(device), *inputs(queries), queries.answer.to(device))
        if reconstructs:  # the pixels the reconstruction loss is taken on, as in segregation
            pixels = torch.randperm(image.resolution**2, generator=data)[: slot_spec.train.pixels]
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
        lambda m: score(lambda s, q: scores_of(m, s, q), task, draws, swaps),
        ctx.on_eval,
        clip_norm=1.0,
    )
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    parameters = float(sum(p.numel() for p in model.parameters()))
    metrics = {**trained.final, "parameters": parameters, "seconds_training": trained.seconds}
    return RunResult(metrics=metrics, curve=trained.curve)


# ----------------------------------------------------------------------------- frozen-slot probe


def slot_features(model, batch, noise: torch.Tensor):
    """Each object's matched slot (objects, d), its colour and shape, whether it is held out,
    for the objects of `batch` that are valid, at least MIN_VISIBLE visible and found a slot."""
    features, found = [], []
    for i in range(0, len(batch.images), segregation.EVAL_CHUNK):
        part = slice(i, i + segregation.EVAL_CHUNK)
        out = model(batch.images[part], noise=noise[part])
        pred = one_hot_masks(out.masks.argmax(1), out.masks.shape[1])
        true = one_hot_masks(batch.labels[part], batch.valid.shape[1] + 1)[:, 1:]
        counted = batch.valid[part] & (batch.visibility[part] >= MIN_VISIBLE)
        slot, ok = matched_slots(out.slots, pred, true, counted)
        features.append(slot)
        found.append(ok)
    keep = torch.cat(found)
    return torch.cat(features)[keep], batch.colour[keep], batch.shape[keep], batch.held_out[keep]


def run_probe(spec: RepresentationSpec, ctx) -> RunResult:
    model, trained, _ = segregation.train_autoencoder(spec.slots, ctx)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    model.eval()
    scenes = segregation.make_scenes(spec.slots.data, ctx.device)
    generator = torch.Generator(device=ctx.device).manual_seed(EVAL_SEED)
    noise_shape = (spec.slots.model.num_slots, spec.slots.model.slot_dim)
    sets = {
        "fit": scenes.sample(spec.probe_scenes, generator),
        "seen": scenes.sample(spec.eval_items, generator),
        "held_out": scenes.sample(spec.eval_items, generator, "test"),
    }
    with torch.no_grad():
        drawn = {
            name: slot_features(
                model,
                batch,
                torch.randn(len(batch.images), *noise_shape, generator=generator, device=ctx.device),
            )
            for name, batch in sets.items()
        }
    x, colour, shape, _ = drawn["fit"]
    metrics = {**{f"slots_{k}": v for k, v in trained.final.items()}, "probe_objects": float(len(x))}
    for attribute, target, classes in (
        ("colour", colour, len(scenes.colours)),
        ("shape", shape, len(scenes.shapes)),
    ):
        weights, bias = logistic_fit(x, target, classes)
        for split in ("seen", "held_out"):
            features, c, s, held = drawn[split]
            counted = held if split == "held_out" else ~held
            truth = c if attribute == "colour" else s
            right = (features.double() @ weights + bias).argmax(1) == truth
            metrics[f"probe_{attribute}_{split}"] = right[counted].double().mean().item()
    return RunResult(metrics=metrics, curve=trained.curve)


# ----------------------------------------------------------------------------- plots

SPLITS = ("seen", "held_out")


def _label(spec: dict) -> str:
    part = spec.get("part", "codes")
    if part == "codes":
        code = spec.get("code", {})
        name = code.get("kind", "bag")
        if name.startswith("tpr"):
            name += f" d={code.get('role_dim', 8)}"
        return f"{name}, {code.get('readout', 'mlp')}"
    if part == "images":
        return spec.get("image", {}).get("model", "slot_attention")
    return "frozen slots"


def _groups(runs: list[dict], part: str, keep=lambda spec: True) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for r in runs:
        if r["status"] == "done" and r["spec"].get("part", "codes") == part and keep(r["spec"]):
            groups[_label(r["spec"])].append(r)
    return dict(groups)


def _sweep(spec: dict) -> bool:
    """The cross-talk sweep's runs (random roles read by unbinding, sets of one fixed size),
    apart from the main table."""
    code, sets = spec.get("code", {}), spec.get("sets", {})
    fixed = sets.get("min_objects", 2) == sets.get("max_objects", 3)
    return code.get("kind") == "tpr_random" and code.get("readout") == "unbind" and fixed


def _bars(ax, groups: dict[str, list[dict]], metrics: list[str], floor: float | None = None) -> list:
    """Mean bars per group and metric, each run a dot; returns the table rows."""
    width = 0.8 / len(metrics)
    values = {
        (label, metric): [r["metrics"][metric] for r in members if metric in r["metrics"]]
        for label, members in groups.items()
        for metric in metrics
    }
    for i, metric in enumerate(metrics):
        x = np.arange(len(groups)) + (i - (len(metrics) - 1) / 2) * width
        per_group = [values[label, metric] for label in groups]
        ax.bar(x, [np.mean(v) if v else np.nan for v in per_group], width, label=metric)
        for xi, v in zip(x, per_group):
            ax.scatter([xi] * len(v), v, color="k", s=6, zorder=3)
    rows = [
        [
            label,
            len(members),
            *(
                f"{np.mean(values[label, m]):.3f} ± {np.std(values[label, m]):.3f}"
                if values[label, m]
                else ""
                for m in metrics
            ),
        ]
        for label, members in groups.items()
    ]
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle=":", label="swap floor of an unbound code (0.5)")
    ax.set_xticks(range(len(groups)), list(groups), fontsize=7, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return rows


def queries_plot(runs: list[dict], part: str, title: str) -> Plot | None:
    keep = (lambda spec: not _sweep(spec)) if part == "codes" else (lambda spec: True)
    groups = _groups(runs, part, keep)
    if not groups:
        return None
    metrics = ["accuracy_seen", "accuracy_held_out", "swap_seen", "swap_held_out"]
    fig = Figure(figsize=(4 + 1.1 * len(groups), 3.6), layout="constrained")
    ax = fig.subplots()
    rows = _bars(ax, dict(sorted(groups.items())), metrics, SWAP_FLOOR)
    ax.set_ylabel("accuracy")
    table = {"columns": ["code, readout" if part == "codes" else "model", "runs", *metrics], "rows": rows}
    return Plot(title, fig, {"rows": rows}, table)


def crosstalk_plot(runs: list[dict]) -> Plot | None:
    """Random-role tensor products read by unbinding: query accuracy against the number of
    objects, a line per role dimension."""
    done = [r for r in runs if r["status"] == "done" and r["spec"].get("part", "codes") == "codes"]
    done = [r for r in done if _sweep(r["spec"])]
    if not done:
        return None
    curves = defaultdict(lambda: defaultdict(list))
    for r in done:
        curves[r["spec"]["code"]["role_dim"]][r["spec"]["sets"]["max_objects"]].append(
            r["metrics"]["accuracy_seen"]
        )
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.subplots()
    data = {}
    for i, (dim, points) in enumerate(sorted(curves.items())):
        objects = sorted(points)
        ax.plot(objects, [np.mean(points[n]) for n in objects], marker="o", color=f"C{i}", label=f"d = {dim}")
        data[f"d={dim}"] = {n: points[n] for n in objects}
    ax.set_xscale("log", base=2)
    ax.set_xlabel("objects in the set")
    ax.set_ylabel("query accuracy (unbinding)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    rows = [
        [f"d = {dim}", *(f"{n}: {np.mean(p[n]):.3f}" for n in sorted(p))] for dim, p in sorted(curves.items())
    ]
    table = {"columns": ["roles", "objects: accuracy"] + [""] * (max(len(r) for r in rows) - 2), "rows": rows}
    return Plot("Cross-talk of random roles: accuracy against objects and dimension", fig, data, table)


def probe_plot(runs: list[dict]) -> Plot | None:
    groups = _groups(runs, "probe")
    if not groups:
        return None
    metrics = [f"probe_{a}_{s}" for a in ("colour", "shape") for s in SPLITS]
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    rows = _bars(ax, groups, metrics)
    ax.set_ylabel("probe accuracy")
    members = next(iter(groups.values()))
    fg = [r["metrics"].get("slots_fg_ari") for r in members]
    rows = [[*row, ", ".join(f"{v:.3f}" for v in fg if v is not None)] for row in rows]
    table = {"columns": ["slots", "runs", *metrics, "FG-ARI of the autoencoder"], "rows": rows}
    return Plot(
        "Frozen-slot property probe: a linear probe per attribute on the matched slot",
        fig,
        {"rows": rows},
        table,
    )


def plots(runs: list[dict]) -> list[Plot]:
    made = [
        queries_plot(runs, "codes", "Binding queries and swap tests on codes (swap floor 0.5 drawn)"),
        crosstalk_plot(runs),
        queries_plot(runs, "images", "Binding queries and swap tests on images"),
        probe_plot(runs),
    ]
    return [p for p in made if p is not None]


CODES = [  # the main table: every code with the readouts it can have
    {"code.kind": ["bag", "slot", "tpr_orthonormal", "tpr_random"], "code.readout": ["linear", "mlp"]},
    {"code.kind": ["tpr_orthonormal", "tpr_random"], "code.readout": "unbind"},
]


def crosstalk(objects: tuple[int, ...], dims: tuple[int, ...]) -> list[dict]:
    """Random roles read by unbinding, sets of exactly n of 64 colours and 64 shapes."""
    return [
        {
            "code.kind": "tpr_random",
            "code.readout": "unbind",
            "code.role_dim": list(dims),
            "sets.colours": 64,
            "sets.shapes": 64,
            "sets.held_out": 0.0,
            "sets.min_objects": n,
            "sets.max_objects": n,
        }
        for n in objects
    ]


CROSSTALK = crosstalk((2, 4, 8, 16, 32), (4, 8, 16, 32, 64))
QUICK = {"train.steps": 1000, "train.eval_every": 1000, "eval_items": 500}

EXPERIMENT = register(
    Experiment(
        name="representation",
        title="Representation: which codes keep the binding of attributes to objects",
        spec=RepresentationSpec,
        run=run,
        check=check,
        plots=plots,
        profiles={
            # quick: the codes only (seconds each); images and the probe train for minutes
            "quick": [{**block, **QUICK} for block in CODES + crosstalk((2, 8, 32), (4, 16, 64))],
            # full: the image models first, the longest runs (about 15 min each on one thread)
            "full": [
                {
                    "part": "images",
                    "image.model": ["cnn", "slot_attention", "slot_autoencoder"],
                    "seed": [0, 1, 2],
                    "train.steps": 8000,
                    "train.batch_size": 32,
                    "train.lr": 1e-3,
                    "train.warmup_steps": 200,
                    "train.eval_every": 2000,
                    "eval_items": 1000,
                },
                {
                    "part": "probe",
                    "slots.seed": [0, 1, 2],  # the autoencoder's seed (the run's own seed draws nothing)
                    "slots.train.steps": 6000,
                    "slots.train.eval_every": 2000,
                },
                *({**block, "seed": [0, 1, 2]} for block in CODES + CROSSTALK),
            ],
        },
        columns=("part", "code.kind", "code.readout", "image.model", "seed"),
        metrics=(
            "accuracy_seen",
            "accuracy_held_out",
            "swap_seen",
            "swap_held_out",
            "probe_colour_held_out",
            "probe_shape_held_out",
        ),
    )
)
