"""Binding codes: does a code keep which attribute belongs to which object?

Greff et al. (2020): a distributed code that superposes objects loses the binding (the
superposition catastrophe); one object per slot, or a tensor product with orthonormal
roles, keeps it. Research note object-centric.md section 4. A run holds sets of
(colour, shape) objects in one code (bag of features, slots, tensor product with
orthonormal or random roles), read by a trained readout (linear per query, or an MLP) or,
for tensor products, by unbinding with the roles (no training). Scored on binding queries
about seen and held-out colour-shape pairs, and on swap pairs.

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

from bindbench.core import factory
from bindbench.core.claims import (
    HELD,
    NOT_HELD,
    NOT_MEASURED,
    Claim,
    Verdict,
    beyond,
    every,
    rises_with,
    values,
)
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, spread
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainSpec, train
from bindbench.experiments.objects.setup import (
    BINDING_METRICS,
    BINDING_TRAIN,
    SetSpec,
    binding_plot,
    check_sets,
    make_task,
)
from bindbench.models.readouts import QueryLinear, QueryMLP
from bindbench.tasks.binding import evaluation_sets, orthonormal_roles, random_roles, score_queries


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


class ReadoutSpec(Spec):
    factory: FactoryPath | None = factory_field("code_dim, query_dim, answers")


class BindingCodesSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization, training data and roles")
    sets: SetSpec = SetSpec()
    code: CodeSpec = CodeSpec()
    model: ReadoutSpec = Field(ReadoutSpec(), json_schema_extra={"omit_at_default": True})
    train: TrainSpec = BINDING_TRAIN
    eval_items: int = Field(2000, ge=10, description="evaluation sets per score")
    REFERENCE = ReferenceKeys(kept=("kind", "role_dim"), part="code")  # a user's readout: no code.readout


# what a readout of the user's must be (docs/models.md)
INTERFACE = "model(code, query): (batch, code_dim), (batch, query_dim) -> (batch, answers) logits"


def check(spec: BindingCodesSpec) -> None:
    """Rejects specs whose sets or codes cannot be made, before any run; a user's readout is
    built and called on an example batch."""
    check_sets(spec.sets)
    code = spec.code
    if code.readout == "unbind" and not code.kind.startswith("tpr"):
        raise ValueError(f"code.readout='unbind' needs a tensor-product code, not code.kind={code.kind!r}")
    if code.kind == "tpr_orthonormal" and code.role_dim < spec.sets.shapes:
        raise ValueError(
            f"code.role_dim={code.role_dim} must be >= sets.shapes={spec.sets.shapes} for orthonormal roles"
        )
    if spec.model.factory is not None:
        task, encode = make_encoder(spec)
        draw = torch.Generator().manual_seed(0)
        sets = task.sample(2, draw)
        codes, queries = encode(sets, draw), task.query_vector(task.query(sets, draw))
        path, model = spec.model.factory, make_readout(spec, codes.shape[1])
        out = factory.try_forward(path, model, (codes, queries), INTERFACE)
        factory.expect_tensor(path, out, (2, task.num_answers), INTERFACE)


def roles_of(spec: BindingCodesSpec) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A tensor product's roles and fillers (None: one-hot fillers, or no tensor product):
    orthonormal roles, or random roles and fillers, drawn from the seed."""
    code = spec.code
    if not code.kind.startswith("tpr"):
        return None, None
    draw = generator(spec.seed, "roles")
    if code.kind == "tpr_orthonormal":
        return orthonormal_roles(spec.sets.shapes, code.role_dim, draw), None
    roles = random_roles(spec.sets.shapes, code.role_dim, draw)
    return roles, random_roles(spec.sets.colours, code.role_dim, draw)


def make_encoder(spec: BindingCodesSpec):
    """The task and `encode(sets, generator) -> codes (batch, code_dim)` for the spec's code."""
    task, kind = make_task(spec.sets), spec.code.kind
    roles, fillers = roles_of(spec)

    def encode(sets, generator):
        if kind == "bag":
            return task.bag_of_features(sets)
        if kind == "slot":
            return task.slot_code(sets, generator)
        return task.tensor_product(sets, roles, fillers)

    return task, encode


def make_readout(spec: BindingCodesSpec, code_dim: int) -> torch.nn.Module | None:
    """The trained readout: the user's (model.factory), a linear map per query or an MLP;
    None for unbinding, which trains nothing."""
    task, code = make_task(spec.sets), spec.code
    sizes = (code_dim, task.query_dim, task.num_answers)
    if spec.model.factory is not None:
        return factory.build(spec.model.factory, **dict(zip(("code_dim", "query_dim", "answers"), sizes)))
    if code.readout == "unbind":
        return None
    if code.readout == "linear":
        return QueryLinear(*sizes)
    return QueryMLP(*sizes, code.width, code.depth)


def readout_of(spec: BindingCodesSpec) -> torch.nn.Module | None:
    """A run's untrained readout, as its checkpoint holds it (`Experiment.make_model`)."""
    task, encode = make_encoder(spec)
    draw = torch.Generator().manual_seed(0)
    return make_readout(spec, encode(task.sample(1, draw), draw).shape[1])


def run(spec: BindingCodesSpec, ctx) -> RunResult:
    seed_init(spec.seed)
    data = generator(spec.seed, "data")
    task, encode = make_encoder(spec)
    roles, fillers = roles_of(spec)

    shared = generator(None, "eval")  # the evaluation sets: the same for every run
    draws, swaps = evaluation_sets(task, spec.eval_items, shared)
    codes = {}  # each evaluation set's code, drawn once (the slot code's order is random)

    def code_of(sets):
        if id(sets) not in codes:
            codes[id(sets)] = encode(sets, shared)
        return codes[id(sets)]

    code_dim = code_of(draws["seen"][0]).shape[1]
    model = make_readout(spec, code_dim)
    if model is None:  # unbinding with the roles
        metrics = score_queries(lambda s, q: task.unbind(code_of(s), q, roles, fillers), draws, swaps)
        return RunResult(metrics={**metrics, "code_dim": float(code_dim)})

    def sample_batch(step):
        sets = task.sample(spec.train.batch_size, data)
        queries = task.query(sets, data)
        return encode(sets, data), task.query_vector(queries), queries.answer

    trained = train(
        model,
        spec.train,
        sample_batch,
        lambda m, batch: torch.nn.functional.cross_entropy(m(batch[0], batch[1]), batch[2]),
        lambda m: score_queries(lambda s, q: m(code_of(s), task.query_vector(q)), draws, swaps),
        ctx.on_eval,
    )
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    metrics = {**trained.final, "code_dim": float(code_dim), "seconds_training": trained.seconds}
    return RunResult(metrics=metrics, curve=trained.curve, model=model)


# ----------------------------------------------------------------------------- plots


def _label(spec: dict) -> str:
    code = spec["code"]
    name = code["kind"] + (f" d={code['role_dim']}" if code["kind"].startswith("tpr") else "")
    return f"{name}, {spec.get('model', {}).get('factory') or code['readout']}"


def _sweep(spec: dict) -> bool:
    """The cross-talk sweep's runs (random roles read by unbinding, sets of one fixed size),
    apart from the main table."""
    code, sets = spec["code"], spec["sets"]
    fixed = sets["min_objects"] == sets["max_objects"]
    return code["kind"] == "tpr_random" and code.get("readout") == "unbind" and fixed


def crosstalk_plot(runs: list[dict]) -> Plot | None:
    """Random-role tensor products read by unbinding: query accuracy against the number of
    objects, a line per role dimension."""
    done = [r for r in runs if r["status"] == "done" and _sweep(r["spec"])]
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
    objects = sorted({n for points in curves.values() for n in points})
    rows = [
        [f"d = {dim}", *(spread(p[n]) if n in p else "" for n in objects)]
        for dim, p in sorted(curves.items())
    ]
    table = {"columns": ["roles \\ objects", *map(str, objects)], "rows": rows}
    return Plot("Cross-talk of random roles: accuracy against objects and dimension", fig, data, table)


def plots(runs: list[dict]) -> list[Plot]:
    title = "Binding queries and swap tests on codes (swap floor 0.5 drawn)"
    main = binding_plot(runs, lambda spec: None if _sweep(spec) else _label(spec), "code, readout", title)
    made = [main, crosstalk_plot(runs)]
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


def _bag_at_chance(runs: list[dict]) -> Verdict:
    bag = [r for r in runs if r["spec"]["code"]["kind"] == "bag"]
    found = values(bag, "swap_seen") + values(bag, "swap_held_out")
    if not found:
        return Verdict(NOT_MEASURED, {}, "no finished bag-of-features run")
    worst = max(abs(v - 0.5) for v in found)
    numbers = {"swap accuracies": len(found), "largest distance from 0.5": worst}
    held = worst < 1e-9
    return Verdict(
        HELD if held else NOT_HELD, numbers, f"{len(found)} swap accuracies, at most {worst:.2g} from 0.5"
    )


def _unbinding_exact(runs: list[dict]) -> Verdict:
    mine = [
        r
        for r in runs
        if r["spec"]["code"]["kind"] == "tpr_orthonormal" and r["spec"]["code"].get("readout") == "unbind"
    ]
    return every({m: beyond(values(mine, m), 1.0, m) for m in ("accuracy_held_out", "swap_held_out")})


def _crosstalk(runs: list[dict]) -> Verdict:
    # the cross-talk grid: random roles read by unbinding, sets of exactly n objects
    mine = [
        r
        for r in runs
        if r["spec"]["code"]["kind"] == "tpr_random"
        and r["spec"]["code"].get("readout") == "unbind"
        and r["spec"]["sets"]["min_objects"] == r["spec"]["sets"]["max_objects"]
    ]
    return rises_with(mine, "accuracy_seen", "code.role_dim")


CLAIMS = (
    Claim(
        "bag_loses_binding",
        "A bag of features loses the binding: swapped sets get the same code, so swap accuracy "
        "is 0.5 exactly, whatever the readout",
        "the superposition catastrophe (Greff et al. 2020, section 4.2); an argument, no figure",
        _bag_at_chance,
    ),
    Claim(
        "orthonormal_roles_keep_it",
        "A tensor product with orthonormal roles keeps it: unbinding answers every query and "
        "swap, held-out colour-shape pairs included (accuracy 1)",
        "exact unbinding with orthonormal roles (Smolensky 1990); no figure",
        _unbinding_exact,
    ),
    Claim(
        "random_roles_crosstalk",
        "Random roles add cross-talk: unbinding accuracy rises with the roles' dimension at "
        "every number of objects",
        "cross-talk of random (non-orthogonal) roles falls with their dimension (Smolensky "
        "1990; Plate 1995); no figure",
        _crosstalk,
    ),
)


QUICK = {"train.steps": 1000, "train.eval_every": 1000, "eval_items": 500}

EXPERIMENT = register(
    Experiment(
        name="binding_codes",
        title="Binding codes: which codes keep the binding of attributes to objects",
        spec=BindingCodesSpec,
        run=run,
        check=check,
        plots=plots,
        make_model=readout_of,
        profiles={
            "quick": [{**block, **QUICK} for block in CODES + crosstalk((2, 8, 32), (4, 16, 64))],
            "full": [
                {**block, "seed": [0, 1, 2]}
                for block in CODES + crosstalk((2, 4, 8, 16, 32), (4, 8, 16, 32, 64))
            ],
        },
        columns=("code.kind", "code.readout", "model.factory", "code.role_dim", "seed"),
        metrics=(*BINDING_METRICS, "code_dim"),
        tiny={"train.steps": 20, "train.batch_size": 16, "train.eval_every": 10, "eval_items": 100},
        claims=CLAIMS,
    )
)
