"""Binding IDs: does a small Transformer trained from scratch bind entities to attributes
the way large pretrained LMs do?

Feng & Steinhardt (2024) found that LLaMA and Pythia models attach to each entity and its
attribute a binding-ID vector, additive and independent of position, by three causal tests.
Here a decoder-only Transformer (models.lm) learns in-context binding from scratch
(tasks.contexts: `E3 A7 . E1 A2 ? E1 ->` answered by `A2`, 2 to `bindings` bindings, a
seeded 10% of the entity-attribute pairs and the next length held out), and the same tests
(core.patching) run on the residual stream after its embedding and after each block,
during training and at its end, each beside a control edit at positions that hold no
binding. A run is one model (depth, width, bindings, seed).

The loss is the answer's cross-entropy plus `lm_weight` times the next-token loss on the
context's own tokens: with the answer's loss alone the models here sat at chance (1 / k)
for 4,000 steps; the next-token loss (which asks, after "?", for one of the context's
entities) gets them past the plateau. With 20 entities and attributes the plateau lasted
about 2,500 steps, with 10 about 700 (depth 2, width 64, 2 to 5 bindings): 10 is the default.
"""

from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np
import torch
from pydantic import Field, model_validator

from bindbench.core.claims import Claim, beyond, every, in_every, per_setting, values
from bindbench.core.config import Spec
from bindbench.core.device import model_device
from bindbench.core.patching import TESTS, Contexts, binding_tests
from bindbench.core.probes import capture, logistic_probe
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, panels
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainSpec, train
from bindbench.models.lm import DecoderLM
from bindbench.tasks.contexts import BindingContexts

LEARNED = 0.99  # in-distribution accuracy a run must reach (the bar)
# a test that predicts a move passes with a score of at least MOVES and at least MARGIN above its
# control (the floor); position passes at MOVES where the attributes are read (read >= MOVES) with
# its control (answers moved by a swap elsewhere) below STILL; all at one block: binding_id_score
MOVES, MARGIN, STILL = 0.5, 0.3, 0.1
HELD = ("entity_at_attribute", "slot_at_attribute")  # probes of what an attribute's activation holds
SHORT = {  # the tests' names in plots and tables
    "factorizability_entity": "factorizability (entity)",
    "factorizability_attribute": "factorizability (attribute)",
    "position": "position independence",
    "additivity_entity": "additivity (entity)",
    "additivity_attribute": "additivity (attribute)",
}
# Feng & Steinhardt 2024's qualitative findings on LLaMA and Pythia, per test
PAPER = {
    "factorizability_entity": "swapping entity activations swaps the answer",
    "factorizability_attribute": "swapping attribute activations swaps the answer",
    "position": "binding is unchanged when positions change",
    "additivity_entity": "adding the mean difference rebinds",
    "additivity_attribute": "adding the mean difference rebinds",
}


class ContextsSpec(Spec):
    entities: int = Field(10, ge=6, description="entity tokens")
    attributes: int = Field(10, ge=6, description="attribute tokens")
    bindings: int = Field(
        5, ge=3, description="training contexts hold 2 .. bindings bindings; bindings + 1 are held out"
    )
    held_out_pairs: float = Field(0.1, ge=0.0, lt=0.5, description="entity-attribute pairs never trained on")

    @model_validator(mode="after")
    def _room_for_the_held_out_length(self) -> ContextsSpec:
        if min(self.entities, self.attributes) < self.bindings + 1:
            raise ValueError(
                f"task.entities={self.entities} and task.attributes={self.attributes} must be at least "
                f"task.bindings + 1 = {self.bindings + 1} (the held-out length's distinct tokens)"
            )
        return self


class LMSpec(Spec):
    d_model: int = Field(64, ge=4, description="width of the residual stream")
    depth: int = Field(2, ge=1, description="Transformer blocks")
    heads: int = Field(4, ge=1, description="attention heads per block")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LMSpec:
        if self.d_model % self.heads:
            raise ValueError(f"model.d_model={self.d_model} must be a multiple of model.heads={self.heads}")
        return self


class TestsSpec(Spec):
    contexts: int = Field(256, ge=8, description="contexts tested (and as many donors and fitting contexts)")
    bindings: int = Field(
        3, ge=3, description="bindings per tested context (3 or more: the controls need 2 separators)"
    )
    evaluations: int = Field(512, ge=8, description="contexts per length and split scored for accuracy")


class BindingIdsSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization, data order and the held-out pairs")
    task: ContextsSpec = ContextsSpec()
    model: LMSpec = LMSpec()
    lm_weight: float = Field(0.3, ge=0.0, description="weight of the next-token loss on the context's tokens")
    tests: TestsSpec = TestsSpec()
    train: TrainSpec = TrainSpec(
        steps=3000,
        batch_size=128,
        lr=1e-3,
        weight_decay=0.01,
        warmup_steps=200,
        clip_norm=1.0,
        eval_every=500,
    )

    @model_validator(mode="after")
    def _tested_length_is_trained(self) -> BindingIdsSpec:
        if self.tests.bindings > self.task.bindings:
            raise ValueError(
                f"tests.bindings={self.tests.bindings} must be at most task.bindings={self.task.bindings} "
                "(the tests read a trained length)"
            )
        return self


def make_task(spec: BindingIdsSpec) -> BindingContexts:
    t = spec.task
    return BindingContexts(
        t.entities,
        t.attributes,
        lengths=tuple(range(2, t.bindings + 1)),
        held_out_lengths=(t.bindings + 1,),
        held_out_pairs=t.held_out_pairs,
        seed=spec.seed,
    )


def make_model(spec: BindingIdsSpec) -> DecoderLM:
    t, m = spec.task, spec.model
    vocab = len(make_task(spec).vocab)
    return DecoderLM(vocab, 3 * (t.bindings + 1) + 2, d_model=m.d_model, depth=m.depth, heads=m.heads)


def layers_of(spec: BindingIdsSpec) -> list[str]:
    """The patched layers: the token embedding (a patch there swaps the token), then each block."""
    return ["embed", *(f"blocks.{i}" for i in range(spec.model.depth))]


def check(spec: BindingIdsSpec) -> None:
    make_task(spec).sample(2, torch.Generator().manual_seed(0))  # too many pairs held out fails here


def merit(scores: dict[str, float], test: str) -> float:
    """How far a test passes at one layer: its score above its control, or for `position`
    (whose prediction is "unchanged") its score where the attributes are read (read >= MOVES;
    elsewhere no edit moves anything and "unchanged" is empty), else read - 1 (below 0)."""
    if test == "position":
        return scores["position"] if scores["read"] >= MOVES else scores["read"] - 1
    return scores[test] - scores[f"{test}_control"]


def best_block(per_layer: dict[str, dict[str, float]], test: str) -> str:
    """The block (never the embedding, where a patch swaps the token itself) where the test
    passes furthest (`merit`)."""
    return max((name for name in per_layer if name != "embed"), key=lambda name: merit(per_layer[name], test))


def summary(per_layer: dict[str, dict[str, float]], layers: list[str]) -> dict[str, float]:
    """Each test and its control at the test's best block, which block that is (its index in
    `layers`), the attributes' read and probes at position's block; and `binding_id_score`,
    the best over blocks of the weakest test's merit there (all tests at one block)."""
    out = {}
    for test in TESTS:
        best = best_block(per_layer, test)
        out[test], out[f"{test}_control"] = per_layer[best][test], per_layer[best][f"{test}_control"]
        out[f"{test}_layer"] = float(layers.index(best))
    at = per_layer[best_block(per_layer, "position")]
    out["position_read"] = at["read"]
    for key in HELD:
        if key in at:
            out[key] = at[key]
    weakest = {name: min(merit(scores, test) for test in TESTS) for name, scores in per_layer.items()}
    one = max((name for name in per_layer if name != "embed"), key=weakest.get)
    out["binding_id_score"], out["binding_id_layer"] = weakest[one], float(layers.index(one))
    return out


def held_at_attributes(
    model, layers: list[str], fit: Contexts, test: Contexts, first_entity: int
) -> dict[str, dict[str, float]]:
    """What an attribute's activation holds, per layer: the accuracy of a logistic probe (fit
    on `fit`, scored on `test`) for its binding's entity (the lexical account: the entity's
    identity copied onto the attribute) and for its slot (the binding-ID account: an index
    of the binding). Chance: 1 / entities and 1 / k. In contexts of one layout the slot is
    also the position, so the slot probe cannot tell a binding ID from a position code."""
    found = {}
    for kind, contexts in (("fit", fit), ("test", test)):
        b, k = contexts.attributes.shape
        acts = capture(model, contexts.tokens.to(model_device(model)), layers)
        entity = (contexts.tokens[:, contexts.entity_positions] - first_entity).flatten()  # (b k,)
        slot = torch.arange(k).repeat(b)
        found[kind] = {
            layer: (h[:, contexts.attribute_positions].flatten(0, 1).cpu(), entity, slot)
            for layer, h in acts.items()
        }
    out = {}
    for layer in layers:
        x, entity, slot = found["fit"][layer]
        tx, tentity, tslot = found["test"][layer]
        out[layer] = {
            "entity_at_attribute": logistic_probe(x, entity, {"test": (tx, tentity)})["test"],
            "slot_at_attribute": logistic_probe(x, slot, {"test": (tx, tslot)})["test"],
        }
    return out


def run(spec: BindingIdsSpec, ctx) -> RunResult:
    device = ctx.device
    task = make_task(spec)
    seed_init(spec.seed)
    model = make_model(spec).to(device)
    data, held = generator(spec.seed, "data"), generator(spec.seed, "eval")
    n, k = spec.tests.evaluations, spec.tests.bindings
    scored = {
        "accuracy": [task.sample(n, held, "train", length) for length in task.lengths],
        "accuracy_held_out_pairs": [
            task.sample(n, held, "held_out_pairs", length) for length in task.lengths
        ],
        "accuracy_held_out_lengths": [
            task.sample(n, held, "held_out_lengths", length) for length in task.held_out_lengths
        ],
    }
    tested = [task.for_patching(task.sample(spec.tests.contexts, held, "train", k)) for _ in range(3)]
    patches = generator(spec.seed, "control")
    layers = layers_of(spec)

    def sample_batch(step):
        batch = task.sample(spec.train.batch_size, data)
        return batch.tokens.to(device), batch.answer.to(device)

    def loss(m, batch):
        tokens, answer = batch
        logits = m(tokens)  # (b, t, v)
        answered = torch.nn.functional.cross_entropy(logits[:, -1], answer)
        context = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        return answered + spec.lm_weight * context

    def evaluate(m) -> dict[str, float]:
        out = {}
        for name, batches in scored.items():
            right = [
                (m(b.tokens.to(device))[:, -1].argmax(-1).cpu() == b.answer).double().mean() for b in batches
            ]
            out[name] = float(np.mean(right))
        return out | summary(binding_tests(m, layers, *tested, patches), layers)

    trained = train(model, spec.train, sample_batch, loss, evaluate, ctx.on_eval)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    model.eval()
    per_layer = binding_tests(model, layers, *tested, patches)
    for layer, held in held_at_attributes(model, layers, tested[2], tested[0], task.first_entity).items():
        per_layer[layer].update(held)
    metrics = {**trained.final, **summary(per_layer, layers)}  # this last test, not the curve's
    metrics.update(
        parameters=float(sum(p.numel() for p in model.parameters())),
        seconds_training=trained.seconds,
    )
    return RunResult(metrics=metrics, curve=trained.curve, extra={"per_layer": per_layer}, model=model)


# --------------------------------------------------------------------------- report


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] == "done" and "per_layer" in r["extra"]]


def _setting(run: dict) -> str:
    s = run["spec"]
    return f"depth {s['model']['depth']}, width {s['model']['d_model']}, {s['task']['bindings']} bindings"


def _by_setting(runs: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for r in sorted(
        runs,
        key=lambda r: (
            r["spec"]["model"]["depth"],
            r["spec"]["model"]["d_model"],
            r["spec"]["task"]["bindings"],
        ),
    ):
        groups[_setting(r)].append(r)
    return dict(groups)


def _mean_sd(found: list[float]) -> str:
    return f"{np.mean(found):.2f}" + (f" ± {np.std(found):.2f}" if len(found) > 1 else "")


def _layer_mean(part: list[dict], names: list[str], key: str) -> np.ndarray:
    """A per-layer score, mean over the runs."""
    return np.mean([[r["extra"]["per_layer"][n][key] for n in names] for r in part], 0)


def layers_plot(runs: list[dict]) -> Plot | None:
    """Each test's score per layer (solid) and its control's (dashed), and how much the
    attributes' activations are read at all, mean over seeds; with the table of each test at
    its best block beside the paper's finding."""
    done = _done(runs)
    if not done:
        return None
    shown = [*TESTS, "read"]
    fig, axes = panels(len(shown) + 1, height=2.6)
    holds = axes.pop()  # the probes of what an attribute's activation holds
    data, groups = {}, _by_setting(done)
    for i, (label, part) in enumerate(groups.items()):
        names = list(part[0]["extra"]["per_layer"])
        x = np.arange(len(names))
        mean = functools.partial(_layer_mean, part, names)
        for ax, test in zip(axes, shown):
            ax.plot(x, mean(test), "o-", color=f"C{i % 10}", ms=3, label=label)
            data.setdefault(label, {"layers": names})[test] = mean(test).tolist()
            if test != "read":
                ax.plot(x, mean(f"{test}_control"), "x--", color=f"C{i % 10}", ms=3, lw=0.8)
                data[label][f"{test}_control"] = mean(f"{test}_control").tolist()
        ticks = ["tokens" if n == "embed" else f"block {n.split('.')[-1]}" for n in names]
        for ax in [*axes, holds]:
            ax.set_xticks(x, ticks)
        if all(key in part[0]["extra"]["per_layer"][names[0]] for key in HELD):
            for key, style in zip(HELD, ("s-", "^--")):
                holds.plot(x, mean(key), style, color=f"C{i % 10}", ms=3, lw=1)
                data[label][key] = mean(key).tolist()
    for ax, test in zip(axes, shown):
        ax.set_title(SHORT.get(test, "attribute's activation read (moved at all)"), fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.axhline(MOVES, color="grey", lw=0.5, ls=":")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    holds.set_title("what the attribute's activation holds", fontsize=8)
    holds.set_ylim(-0.03, 1.03)
    holds.set_ylabel("probe accuracy (held-out contexts)", fontsize=7)
    holds.plot([], [], "s-", color="grey", ms=3, label="its entity")
    holds.plot([], [], "^--", color="grey", ms=3, label="its slot (here also its position)")
    holds.legend(fontsize=6)
    holds.tick_params(labelsize=7)
    holds.grid(alpha=0.3)
    axes[0].set_ylabel("contexts moved as predicted")
    axes[0].plot([], [], "x--", color="grey", lw=0.8, label="control (the edit at separators)")
    axes[0].legend(fontsize=6)
    rows = []
    for test in TESTS:
        for label, part in groups.items():
            found = [r["metrics"][test] for r in part if test in r["metrics"]]
            controls = [r["metrics"][f"{test}_control"] for r in part if test in r["metrics"]]
            rows.append([SHORT[test], PAPER[test], label, _mean_sd(found), _mean_sd(controls)])
    for key, account in zip(HELD, ("the lexical account's code", "the binding-ID account's code")):
        for label, part in groups.items():
            found = [r["metrics"][key] for r in part if key in r["metrics"]]
            if found:
                what = "its entity" if key == HELD[0] else "its slot (= its position)"
                rows.append([f"attribute holds {what} (probe)", account, label, _mean_sd(found), ""])
    table = {
        "columns": ["test", "Feng & Steinhardt 2024 (LLaMA, Pythia)", "setting", "best block", "control"],
        "rows": rows,
    }
    return Plot("the causal tests per layer, and at the best block beside the paper", fig, data, table)


def plots(runs: list[dict]) -> list[Plot]:
    plot = layers_plot(runs)  # the learning curves are the report's own (the metrics' curves)
    return [plot] if plot is not None else []


def _learns(runs: list[dict]):
    return in_every(
        per_setting(runs), lambda part: beyond(values(part, "accuracy"), LEARNED, "in-distribution accuracy")
    )


def _passes(runs: list[dict], tests: tuple[str, ...]):
    """Per setting (means over seeds): each test that predicts a move at least MOVES and at least
    MARGIN above its control; position at least MOVES where read is at least MOVES, its control
    below STILL."""

    def one(part):
        verdicts = {}
        for test in tests:
            verdicts[test] = beyond(values(part, test), MOVES, SHORT[test])
            if test == "position":
                verdicts["read"] = beyond(values(part, "position_read"), MOVES, "attributes read there")
                verdicts["control"] = beyond(
                    values(part, "position_control"), STILL, "answers moved by the control", above=False
                )
                continue
            gaps = [
                r["metrics"][test] - r["metrics"][f"{test}_control"] for r in part if test in r["metrics"]
            ]
            verdicts[f"{test}_margin"] = beyond(gaps, MARGIN, f"{SHORT[test]} above its control")
        return every(verdicts)

    return in_every(per_setting(runs), one)


def _one_block(runs: list[dict]):
    return in_every(
        per_setting(runs),
        lambda part: beyond(values(part, "binding_id_score"), MARGIN, "the weakest test at the best block"),
    )


ANCHOR = "Feng & Steinhardt 2024, 'How do language models bind entities in context?' (LLaMA, Pythia)"
CLAIMS = (
    Claim(
        "learns_binding",
        f"The model learns in-context binding: in-distribution accuracy at least {LEARNED}",
        "BindBench's bar for reading the tests (a model at chance has no binding to test)",
        _learns,
    ),
    Claim(
        "factorizability",
        f"Entity and attribute activations carry the binding: swapping either from another context "
        f"moves at least {MOVES} of the answers as predicted, at some block, and {MARGIN} more than "
        "the same swap at positions holding no binding",
        ANCHOR,
        functools.partial(_passes, tests=("factorizability_entity", "factorizability_attribute")),
    ),
    Claim(
        "position_independence",
        f"The binding travels with the activation, not its position: swapping two attributes' "
        f"activations leaves at least {MOVES} of the answers unchanged at a block whose attribute "
        f"activations are read (replacing one moves at least {MOVES}), and a swap elsewhere moves "
        f"fewer than {STILL}",
        ANCHOR,
        functools.partial(_passes, tests=("position",)),
    ),
    Claim(
        "additivity",
        f"Binding IDs are additive vectors: adding the mean difference between two slots rebinds at "
        f"least {MOVES} of the answers, for entities and for attributes, and {MARGIN} more than the "
        "same shift at positions holding no binding",
        ANCHOR,
        functools.partial(_passes, tests=("additivity_entity", "additivity_attribute")),
    ),
    Claim(
        "binding_ids",
        f"One mechanism: at one block, every test passes at once (the weakest test at least {MARGIN} "
        "above its control; position at least that where the attributes are read)",
        ANCHOR + ": binding-ID vectors are factorizable, position-independent and additive together",
        _one_block,
    ),
)


EXPERIMENT = register(
    Experiment(
        name="binding_ids",
        title="Binding IDs: causal tests of how a small Transformer binds entities to attributes",
        spec=BindingIdsSpec,
        run=run,
        check=check,
        plots=plots,
        make_model=make_model,
        profiles={
            "quick": {"task.bindings": 3, "train.steps": 1500},
            # full: 6k steps, because at 3k 2 of the first 8 runs with 2-5 bindings were still
            # on their plateau (accuracy 0.72 and 0.92)
            "full": {
                "model.depth": [2, 3],
                "model.d_model": [32, 64],
                "task.bindings": [3, 5],
                "seed": [0, 1, 2],
                "train.steps": 6000,
                "train.eval_every": 1000,
            },
        },
        columns=("model.depth", "model.d_model", "task.bindings", "seed"),
        metrics=(
            "accuracy",
            "accuracy_held_out_pairs",
            "accuracy_held_out_lengths",
            *TESTS,
            "binding_id_score",
        ),
        tiny={
            "task.entities": 6,
            "task.attributes": 6,
            "task.bindings": 3,
            "model.d_model": 8,
            "model.depth": 1,
            "model.heads": 2,
            "tests.contexts": 16,
            "tests.evaluations": 16,
            "train.steps": 4,
            "train.batch_size": 8,
            "train.warmup_steps": 0,
            "train.eval_every": 2,
        },
        claims=CLAIMS,
    )
)
