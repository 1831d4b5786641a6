"""Activation patching for in-context binding: the causal tests of Feng & Steinhardt (2024).

A model that maps token ids (b, t) to logits (a tensor (b, t, v), or an object with
`.logits`, as Hugging Face causal LMs return) reads contexts of k bindings, each an entity
token and an attribute token, and answers a query naming one entity with its attribute at
the last position. The binding-ID account says that the activation of each entity and of
each attribute is its content plus a vector for its binding (slot), and that the query is
answered by matching those vectors. Each test edits the output of one layer (a forward
hook; later layers recompute from the edit) and scores the fraction of contexts whose
answer moves as the account predicts:

- `factorizability_entity`: the queried entity's activation replaced by the same slot's
  entity from a donor context, and the query naming the donor's entity: the answer is the
  queried slot's attribute (the donor's entity took the binding with it);
- `factorizability_attribute`: the queried slot's attribute replaced by the donor's: the
  answer is the donor's attribute;
- `position`: the activations of two attributes swapped between their positions: the answer
  does not change (the binding travels with the activation, not its position);
- `additivity_entity`, `additivity_attribute`: the mean difference between two slots'
  activations (fit on separate contexts) added to one binding's entity (or attribute) and
  subtracted from the other's: the queried entity now answers with the other slot's
  attribute.

Beside each, a control applies the same edit at random positions of the context that hold
no entity or attribute (separators, filler words; contexts need two of them), to the same
tokens. For the tests that predict a move its score is how often the answer lands on the
predicted one anyway, the floor: near 0, except for `factorizability_entity`, whose query
names an entity the context does not hold, where a model that guesses among the context's
attributes lands there 1 / k of the time. For `position`, which predicts "unchanged", the
control's score is the fraction of answers that moved at all, which should be 0. `read` is
the fraction of answers that the donor's attribute moves at all: where it is near 0 (a
last block, whose outputs at the context's positions no later layer reads) no edit there
can move anything, and `position`'s "unchanged" is empty. Answers are read as the argmax
over the attributes of the context and its donor. Axes: b context, k binding (slot), t position, d feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from bindbench.core.device import model_device
from bindbench.core.probes import _first_tensor, capture, evaluating

TESTS = (
    "factorizability_entity",
    "factorizability_attribute",
    "position",
    "additivity_entity",
    "additivity_attribute",
)


@dataclass(frozen=True)
class Contexts:
    """Contexts as the tests read them; every context shares one layout (the positions)."""

    tokens: torch.Tensor  # (b, t) long: the contexts and their queries; the answer is due after the last
    entity_positions: torch.Tensor  # (k,) long: where each binding's entity token sits
    attribute_positions: torch.Tensor  # (k,) long: where each binding's attribute token sits
    query_position: int  # where the query's entity token sits
    context_end: int  # the context's tokens are [0, context_end); the query's start there
    attributes: torch.Tensor  # (b, k) long: each binding's attribute token (the candidate answers)
    queried: torch.Tensor  # (b,) long: the binding the query names

    def __post_init__(self):
        b, t = self.tokens.shape
        k = len(self.entity_positions)
        if (
            len(self.attribute_positions) != k
            or self.attributes.shape != (b, k)
            or self.queried.shape != (b,)
        ):
            raise ValueError(
                f"contexts: tokens {tuple(self.tokens.shape)}, {k} entity and "
                f"{len(self.attribute_positions)} attribute positions, attributes "
                f"{tuple(self.attributes.shape)} and queried {tuple(self.queried.shape)} disagree"
            )
        if k < 2:
            raise ValueError(f"contexts of {k} binding: the tests need at least 2")
        body = torch.cat([self.entity_positions, self.attribute_positions])
        if (
            int(body.min()) < 0
            or int(body.max()) >= self.context_end
            or not (self.context_end <= self.query_position < t)
        ):
            raise ValueError(
                f"contexts: bindings at {body.tolist()} must lie before context_end={self.context_end}, "
                f"and the query's entity at {self.query_position} after it, within the {t} tokens"
            )

    def answers(self) -> torch.Tensor:
        """(b,) the attribute token of the queried binding."""
        return self.attributes[torch.arange(len(self.queried)), self.queried]


def logits_of(model: Callable, tokens: torch.Tensor) -> torch.Tensor:
    """The model's logits (b, t, v) for tokens (b, t), whatever it returns them in."""
    out = model(tokens)
    return out.logits if hasattr(out, "logits") else _first_tensor(out)


@contextmanager
def edited(model: nn.Module, layer: str, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, `layer`'s output (its first tensor, (b, t, d)) is replaced by
    `edit(output)`."""
    module = dict(model.named_modules())[layer]

    def hook(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            return edit(out)
        first = next(i for i, item in enumerate(out) if isinstance(item, torch.Tensor))
        return (*out[:first], edit(out[first]), *out[first + 1 :])

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _answer(model, tokens: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(b,) the candidate token (b, c) with the highest logit at the last position (on the CPU,
    where the contexts are; the model runs on its own device)."""
    with evaluating(model), torch.no_grad():
        last = logits_of(model, tokens.to(model_device(model)))[:, -1].cpu()  # (b, v)
    return candidates.gather(1, last.gather(1, candidates).argmax(1, keepdim=True))[:, 0]


def _put(h: torch.Tensor, positions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """h (b, t, d) with row i's position positions[i] set to values[i] (b, d)."""
    h = h.clone()
    h[torch.arange(len(h)), positions] = values.to(h.dtype)
    return h


def _rows(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(b, d): row i's activation at positions[i]."""
    return h[torch.arange(len(h)), positions]


def binding_tests(
    model: nn.Module,
    layers: list[str],
    contexts: Contexts,
    donors: Contexts,
    fit: Contexts,
    generator: torch.Generator,
) -> dict[str, dict[str, float]]:
    """{layer: {"accuracy": unpatched, "read", test: score, test + "_control": its control}} for
    every test of the module docstring. `donors` (the same layout, other entities and
    attributes) give the replacements; `fit` contexts give the slot means for additivity."""
    if donors.tokens.shape != contexts.tokens.shape or not (
        torch.equal(donors.entity_positions, contexts.entity_positions)
        and torch.equal(donors.attribute_positions, contexts.attribute_positions)
    ):
        raise ValueError("donors must share the contexts' layout (the same shape and positions)")
    b, t = contexts.tokens.shape
    k = len(contexts.entity_positions)
    rows = torch.arange(b)
    j = contexts.queried
    other = (j + 1 + torch.randint(k - 1, (b,), generator=generator)) % k  # another slot per row
    entity_at, attribute_at = contexts.entity_positions, contexts.attribute_positions
    candidates = torch.cat([contexts.attributes, donors.attributes], 1)  # (b, 2k)
    truth = contexts.answers()
    everyone = torch.ones(b, dtype=torch.bool)

    # the query naming the donor's entity of the queried slot
    asks_donor = contexts.tokens.clone()
    asks_donor[:, contexts.query_position] = donors.tokens[rows, entity_at[j]]
    # positions a control may edit: the context's that hold no binding's token (separators, filler)
    free = torch.ones(contexts.context_end, dtype=torch.bool)
    free[entity_at], free[attribute_at] = False, False
    free = free.nonzero()[:, 0]
    if len(free) < 2:
        raise ValueError(
            f"the controls need two context positions that hold no entity or attribute, got {len(free)}: "
            "use contexts of more bindings"
        )

    # the factorizability tests count the contexts where the donor's entity and attribute are
    # new to the context (else the swapped-in token is there twice)
    body = contexts.tokens[:, : contexts.context_end]
    fresh = ~(
        (body == donors.tokens[rows, entity_at[j]][:, None]).any(1)
        | (body == donors.attributes[rows, j][:, None]).any(1)
    )
    if not fresh.any():
        raise ValueError("no donor brings an entity and attribute new to its context: draw other donors")

    def random_others() -> tuple[torch.Tensor, torch.Tensor]:
        """Two distinct free positions per row, (b,) each."""
        first, second = torch.rand(b, len(free), generator=generator).topk(2, 1).indices.unbind(1)
        return free[first], free[second]

    donor = capture(model, donors.tokens.to(model_device(model)), layers)  # a missing layer fails here
    fitted = capture(model, fit.tokens.to(model_device(model)), layers)
    before = _answer(model, contexts.tokens, candidates)
    results = {}
    for layer in layers:
        slot_mean = {  # (k, d): the mean activation of each slot's entity / attribute
            "entity": fitted[layer][:, fit.entity_positions].mean(0),
            "attribute": fitted[layer][:, fit.attribute_positions].mean(0),
        }
        from_donor = donor[layer]
        tests = {  # name: (tokens, edit, predicted answer, control edit, the contexts counted)
            "factorizability_entity": (
                asks_donor,
                _replaced(entity_at[j], _rows(from_donor, entity_at[j])),
                truth,
                _replaced(spare := random_others()[0], _rows(from_donor, spare)),
                fresh,
            ),
            "factorizability_attribute": (
                contexts.tokens,
                _replaced(attribute_at[j], _rows(from_donor, attribute_at[j])),
                donors.attributes[rows, j],
                _replaced(spare := random_others()[0], _rows(from_donor, spare)),
                fresh,
            ),
            "position": (
                contexts.tokens,
                _swapped(attribute_at[j], attribute_at[other]),
                truth,
                _swapped(*random_others()),
                everyone,
            ),
        }
        for kind, at in (("entity", entity_at), ("attribute", attribute_at)):
            delta = slot_mean[kind][other] - slot_mean[kind][j]  # (b, d): moves slot j's ID to other's
            tests[f"additivity_{kind}"] = (
                contexts.tokens,
                _shifted(at[j], at[other], delta),
                contexts.attributes[rows, other],
                _shifted(*random_others(), delta),
                everyone,
            )
        scores = {"accuracy": float((before == truth).float().mean())}
        for name, (tokens, edit, predicted, control, counted) in tests.items():
            with edited(model, layer, edit):
                got = _answer(model, tokens, candidates)
            with edited(model, layer, control):
                got_control = _answer(model, tokens, candidates)
            if name == "factorizability_attribute":
                scores["read"] = float((got != before)[counted].float().mean())
            if name == "position":  # predicts "unchanged": the control shows the edit elsewhere is harmless
                found, floor = got == predicted, got_control != before
            else:  # predicts a move: the control is how often the edit elsewhere lands there anyway
                found, floor = got == predicted, got_control == predicted
            scores[name] = float(found[counted].float().mean())
            scores[f"{name}_control"] = float(floor[counted].float().mean())
        results[layer] = scores
    return results


def _replaced(at: torch.Tensor, values: torch.Tensor):
    """An edit: row i's activation at position at[i] becomes values[i]."""
    return lambda out: _put(out, at, values)


def _swapped(at: torch.Tensor, to: torch.Tensor):
    """An edit: row i's activations at at[i] and to[i] trade places."""
    return lambda out: _put(_put(out, at, _rows(out, to)), to, _rows(out, at))


def _shifted(at: torch.Tensor, to: torch.Tensor, delta: torch.Tensor):
    """An edit: delta[i] added at at[i] and subtracted at to[i]."""
    return lambda out: _put(_put(out, at, _rows(out, at) + delta), to, _rows(out, to) - delta)


def block_names(model: nn.Module) -> list[str]:
    """The names of the model's blocks (the children of its longest `nn.ModuleList`, as
    `blocks.0` of BindBench's Transformers or `transformer.h.0` of GPT-2): the layers whose
    outputs are the residual stream."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks: name the layers to test")
    name, blocks = max(lists, key=lambda item: len(item[1]))
    return [f"{name}.{i}" if name else str(i) for i in range(len(blocks))]
