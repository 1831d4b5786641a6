"""The frozen-slot property probe: do an autoencoder's slots hold each object's attributes,
even for colour-shape pairs it never saw?

The family's Slot Attention autoencoder is trained by reconstruction on scenes whose
held-out pairs it never sees, then frozen; each object's slot (Hungarian matching of masks)
feeds a linear probe of colour and shape (fit on seen objects), scored on seen objects and on
held-out ones. A slot that binds attributes to its object decodes held-out pairs as well as
seen ones.
"""

from __future__ import annotations

from functools import partial

import torch
from matplotlib.figure import Figure
from pydantic import Field

from bindbench.core.claims import Claim, Verdict, beyond, values
from bindbench.core.probes import logistic_fit, matched_slots
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, bars, spread
from bindbench.core.seeds import generator
from bindbench.core.segmentation import one_hot_masks
from bindbench.experiments.objects import setup
from bindbench.experiments.objects.setup import (
    EVAL_CHUNK,
    TINY_SLOTS,
    SceneSpec,
    SlotsSpec,
    make_scenes,
    train_autoencoder,
)
from bindbench.tasks.scenes import SHAPES

MIN_VISIBLE = 0.5  # objects with less of their area visible are not scored
SPLITS = ("seen", "held_out")
METRICS = [f"probe_{a}_{s}" for a in ("colour", "shape") for s in SPLITS]


class SlotProbeSpec(SlotsSpec):
    data: SceneSpec = SceneSpec(held_out=0.25)
    eval_scenes: int = Field(128, ge=1, description="the autoencoder's evaluation scenes (drawn on the CPU)")
    probe_scenes: int = Field(1000, ge=10, description="scenes whose objects fit the probe")
    eval_items: int = Field(2000, ge=10, description="scenes of seen and of held-out pairs that score it")


def check(spec: SlotProbeSpec) -> None:
    if not spec.data.held_out:
        raise ValueError("data.held_out must be > 0: the probe scores held-out pairs")
    setup.check(spec)
    setup.check_own_autoencoder(spec, needs_slots=True)


def slot_features(model, batch, noise: torch.Tensor):
    """Each object's matched slot (objects, d), its colour and shape, whether it is held out,
    for the objects of `batch` that are valid, at least MIN_VISIBLE visible and found a slot."""
    features, found = [], []
    for i in range(0, len(batch.images), EVAL_CHUNK):
        part = slice(i, i + EVAL_CHUNK)
        out = model(batch.images[part], noise=noise[part])
        pred = one_hot_masks(out.masks.argmax(1), out.masks.shape[1])
        true = one_hot_masks(batch.labels[part], batch.valid.shape[1] + 1)[:, 1:]
        counted = batch.valid[part] & (batch.visibility[part] >= MIN_VISIBLE)
        slot, ok = matched_slots(out.slots, pred, true, counted)
        features.append(slot)
        found.append(ok)
    keep = torch.cat(found)
    return torch.cat(features)[keep], batch.colour[keep], batch.shape[keep], batch.held_out[keep]


def run(spec: SlotProbeSpec, ctx) -> RunResult:
    model, trained, _ = train_autoencoder(spec, ctx)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    model.eval()
    scenes = make_scenes(spec.data, ctx.device)
    draw = generator(None, "probe", device=ctx.device)  # the probe's scenes: the same for every run
    noise_shape = (spec.model.num_slots, spec.model.slot_dim)
    sets = {
        "fit": scenes.sample(spec.probe_scenes, draw),
        "seen": scenes.sample(spec.eval_items, draw),
        "held_out": scenes.sample(spec.eval_items, draw, "test"),
    }
    with torch.no_grad():
        drawn = {
            name: slot_features(
                model,
                batch,
                torch.randn(len(batch.images), *noise_shape, generator=draw, device=ctx.device),
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
        for split in SPLITS:
            features, c, s, held = drawn[split]
            counted = held if split == "held_out" else ~held
            truth = c if attribute == "colour" else s
            right = (features.double() @ weights + bias).argmax(1) == truth
            metrics[f"probe_{attribute}_{split}"] = right[counted].double().mean().item()
    return RunResult(metrics=metrics, curve=trained.curve, model=model)


def probe_plot(runs: list[dict]) -> Plot | None:
    """Probe accuracy per attribute and split, every autoencoder seed a dot."""
    done = [r for r in runs if r["status"] == "done" and METRICS[0] in r["metrics"]]
    if not done:
        return None
    values = {m: [[r["metrics"][m] for r in done]] for m in METRICS}
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    bars(ax, ["frozen slots"], values)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probe accuracy")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fg = ", ".join(f"{r['metrics']['slots_fg_ari']:.3f}" for r in done if "slots_fg_ari" in r["metrics"])
    rows = [["frozen slots", len(done), *(spread(values[m][0]) for m in METRICS), fg]]
    table = {"columns": ["slots", "runs", *METRICS, "FG-ARI of the autoencoder"], "rows": rows}
    title = "Frozen-slot property probe: a linear probe per attribute on the matched slot"
    return Plot(title, fig, {"rows": rows}, table)


def plots(runs: list[dict]) -> list[Plot]:
    plot = probe_plot(runs)
    return [plot] if plot is not None else []


def _halfway(runs: list[dict], attribute: str, classes: int) -> Verdict:
    """The probe on held-out pairs at least halfway from chance (1/classes) to 1."""
    bound = (1 + 1 / classes) / 2
    return beyond(values(runs, f"probe_{attribute}_held_out"), bound, f"{attribute} on held-out pairs")


CLAIMS = tuple(
    Claim(
        f"slots_hold_{attribute}",
        f"Frozen slots hold each object's {attribute}, for held-out colour-shape pairs too: a "
        f"linear probe on the matched slot at least halfway from chance (1/{classes}) to 1",
        "slots as object representations that keep attributes apart (Greff et al. 2020; "
        "Locatello et al. 2020 probe CLEVR properties from slots); no figure",
        partial(_halfway, attribute=attribute, classes=classes),
    )
    for attribute, classes in (("colour", setup.HUE_BANDS), ("shape", len(SHAPES)))
)


EXPERIMENT = register(
    Experiment(
        name="slot_probe",
        title="Frozen-slot property probe: attributes of held-out colour-shape pairs read from slots",
        spec=SlotProbeSpec,
        run=run,
        check=check,
        make_model=setup.autoencoder_of,
        plots=plots,
        profiles={
            # quick: a look at the pipeline; slots that segment need the full budget
            "quick": {"train.steps": 300, "train.eval_every": 300, "probe_scenes": 300, "eval_items": 500},
            "full": {"seed": [0, 1, 2], "train.steps": 6000, "train.eval_every": 2000},
        },
        columns=("seed",),
        metrics=(*METRICS, "slots_fg_ari"),
        tiny={**TINY_SLOTS, "probe_scenes": 20, "eval_items": 20},
        claims=CLAIMS,
    )
)
