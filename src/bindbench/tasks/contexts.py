"""In-context binding: which attribute did the context bind to the entity the query names?

A context lists k bindings, each an entity and its attribute, separated by ".", then asks
for one entity's attribute:

    E3 A7 . E1 A2 . E5 A0 ? E1 ->        answered by A2

the task of Feng & Steinhardt (2024), procedural. The entities of a context are distinct, and
so are its attributes, so the answer is the one attribute written after the queried entity.
Two kinds of generalization are held out of training, both seeded:
- pairs: a fraction of the entity-attribute pairs never appears in a training context
  (never one that would leave an entity or attribute without a training pair); in the
  `held_out_pairs` split the queried binding is a held-out pair, the others training pairs;
- lengths: contexts of `held_out_lengths` bindings are never trained on (`held_out_lengths`
  split), only the `lengths` are.
Axes: b batch, k binding, t token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from bindbench.core.patching import Contexts
from bindbench.tasks.prompts import held_out_combinations

SEPARATOR, QUERY, ARROW = ".", "?", "->"
SPLITS = ("train", "held_out_pairs", "held_out_lengths")


@dataclass(frozen=True)
class ContextBatch:
    tokens: torch.Tensor  # (b, 3k + 2) long: the context and the query, indices into vocab
    entities: torch.Tensor  # (b, k) long: each binding's entity (0 .. entities - 1)
    attributes: torch.Tensor  # (b, k) long: each binding's attribute (0 .. attributes - 1)
    queried: torch.Tensor  # (b,) long: the binding the query asks about
    answer: torch.Tensor  # (b,) long: its attribute's token (an index into vocab)


class BindingContexts:
    """Contexts of bindings with a query, over `entities` x `attributes`; `sample` draws a
    split's contexts, `describe` writes them out."""

    def __init__(
        self,
        entities: int = 20,
        attributes: int = 20,
        lengths: tuple[int, ...] = (2, 3, 4, 5),
        held_out_lengths: tuple[int, ...] = (6,),
        held_out_pairs: float = 0.1,
        seed: int = 0,
    ):
        lengths, held_out_lengths = tuple(lengths), tuple(held_out_lengths)
        if not lengths or any(not isinstance(k, int) or k < 1 for k in lengths + held_out_lengths):
            raise ValueError(f"lengths={lengths} and held_out_lengths={held_out_lengths}: bindings >= 1 each")
        if set(lengths) & set(held_out_lengths):
            both = sorted(set(lengths) & set(held_out_lengths))
            raise ValueError(f"lengths {both} are both trained and held out")
        longest = max(lengths + held_out_lengths)
        if entities < longest or attributes < longest:
            raise ValueError(
                f"entities={entities} and attributes={attributes} must be >= {longest}, the longest "
                "context's bindings (a context's entities are distinct, and so are its attributes)"
            )
        if not 0 <= held_out_pairs < 1:
            raise ValueError(f"held_out_pairs={held_out_pairs} must be a fraction in [0, 1)")
        self.entities, self.attributes, self.seed = entities, attributes, seed
        self.lengths, self.held_out_lengths = lengths, held_out_lengths
        pairs = torch.cartesian_prod(torch.arange(entities), torch.arange(attributes))  # (e * a, 2)
        self.held = held_out_combinations(pairs, held_out_pairs, seed).reshape(entities, attributes)
        self.vocab = (
            SEPARATOR,
            QUERY,
            ARROW,
            *(f"E{i}" for i in range(entities)),
            *(f"A{i}" for i in range(attributes)),
        )
        self.first_entity, self.first_attribute = 3, 3 + entities

    def sample(
        self, batch_size: int, generator: torch.Generator, split: str = "train", bindings: int | None = None
    ) -> ContextBatch:
        """batch_size contexts of the split, all of `bindings` bindings (default: drawn
        uniformly from the split's lengths, one for the batch)."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        allowed = self.held_out_lengths if split == "held_out_lengths" else self.lengths
        if bindings is None:
            if not allowed:
                raise ValueError("split='held_out_lengths' has no lengths (held_out_lengths=())")
            bindings = allowed[int(torch.randint(len(allowed), (), generator=generator))]
        elif bindings not in allowed:
            raise ValueError(f"bindings={bindings}: split {split!r} has contexts of {allowed} bindings")
        b, k = batch_size, bindings
        # the queried binding first: a held-out pair, or a training pair
        pool = (self.held if split == "held_out_pairs" else ~self.held).nonzero()  # (p, 2)
        if len(pool) == 0:
            raise ValueError(f"split={split!r} has no pairs (held_out_pairs=0 holds none out)")
        first = pool[torch.randint(len(pool), (b,), generator=generator)]  # (b, 2)
        # the other entities: distinct, none the queried one
        scores = torch.rand(b, self.entities, generator=generator)
        scores[torch.arange(b), first[:, 0]] = 2.0
        entities = torch.cat([first[:, :1], scores.argsort(1)[:, : k - 1]], 1)  # (b, k)
        attributes = self._attributes(entities, first[:, 1], generator)
        # the bindings in a random order; the queried one is wherever the first went
        order = torch.rand(b, k, generator=generator).argsort(1)  # order[:, j]: the binding at j
        entities, attributes = entities.gather(1, order), attributes.gather(1, order)
        queried = (order == 0).int().argmax(1)
        answer = self.first_attribute + attributes[torch.arange(b), queried]
        return ContextBatch(
            self.tokenize(entities, attributes, queried), entities, attributes, queried, answer
        )

    def _attributes(self, entities: torch.Tensor, first: torch.Tensor, generator: torch.Generator):
        """Attributes (b, k) for the entities: `first` for binding 0, then for each binding in
        turn a random attribute not yet used in the row whose pair is a training pair."""
        b, k = entities.shape
        chosen, used = [first], torch.zeros(b, self.attributes, dtype=torch.bool)
        used[torch.arange(b), first] = True
        for j in range(1, k):
            scores = torch.rand(b, self.attributes, generator=generator)
            scores[used | self.held[entities[:, j]]] = 2.0
            pick = scores.argmin(1)
            if (scores[torch.arange(b), pick] > 1).any():  # every attribute used or held out
                raise ValueError(
                    "an entity has fewer training pairs than a context has bindings: lower held_out_pairs"
                )
            used[torch.arange(b), pick] = True
            chosen.append(pick)
        return torch.stack(chosen, 1)

    def tokenize(
        self, entities: torch.Tensor, attributes: torch.Tensor, queried: torch.Tensor
    ) -> torch.Tensor:
        """The tokens (b, 3k + 2): E A . E A . ... E A ? E ->, the query naming binding `queried`."""
        b, k = entities.shape
        dot = torch.full((b, k), self.vocab.index(SEPARATOR))
        body = torch.stack([self.first_entity + entities, self.first_attribute + attributes, dot], 2)
        body = body.reshape(b, 3 * k)[:, :-1]  # no separator after the last binding
        asked = self.first_entity + entities[torch.arange(b), queried]
        query, arrow = (torch.full((b,), self.vocab.index(word)) for word in (QUERY, ARROW))
        tail = torch.stack([query, asked, arrow], 1)
        return torch.cat([body, tail], 1)

    def for_patching(self, batch: ContextBatch) -> Contexts:
        """The batch as the causal tests of `core.patching` read it: binding i's entity at
        3i, its attribute at 3i + 1, the query's entity at 3k."""
        k = batch.entities.shape[1]
        return Contexts(
            tokens=batch.tokens,
            entity_positions=torch.arange(k) * 3,
            attribute_positions=torch.arange(k) * 3 + 1,
            query_position=3 * k,
            context_end=3 * k - 1,
            attributes=self.first_attribute + batch.attributes,
            queried=batch.queried,
        )

    def describe(self, tokens: torch.Tensor) -> list[str]:
        """The contexts as text, one per row of tokens."""
        return [" ".join(self.vocab[i] for i in row) for row in tokens.tolist()]


class TextContexts:
    """Contexts of bindings written in words for a pretrained model's tokenizer,

        Alice lives in Paris. Bob lives in Rome. Therefore, Bob lives in

    (the `statement` once per binding, then the `query`), drawn as `core.patching.Contexts`.
    The tokenizer is Hugging Face-style: `tokenizer(text, add_special_tokens=False)` gives
    `{"input_ids": [...]}`. Every word must be one token, so that all contexts share one
    layout; a space before a placeholder goes with the word (" Paris", as byte-pair
    tokenizers write a word inside a sentence)."""

    def __init__(
        self,
        tokenizer,
        entities: list[str],
        attributes: list[str],
        statement: str = " {entity} lives in {attribute}.",
        query: str = " Therefore, {entity} lives in",
    ):
        for name, template, wanted in (
            ("statement", statement, ["{entity}", "{attribute}"]),
            ("query", query, ["{entity}"]),
        ):
            if re.findall(r"\{entity\}|\{attribute\}", template) != wanted:
                raise ValueError(f"{name}={template!r} must hold {' then '.join(wanted)}, each once")
        self.tokenizer = tokenizer
        self.words = {"entity": list(dict.fromkeys(entities)), "attribute": list(dict.fromkeys(attributes))}
        if min(len(words) for words in self.words.values()) < 3:
            raise ValueError("TextContexts needs at least 3 distinct entities and 3 distinct attributes")
        self.statement, self.query = self._parse(statement), self._parse(query)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _parse(self, template: str) -> list[tuple[str, object]]:
        """The template as items: ("text", token id), or (kind, token ids of its words)."""
        parts = re.split(r"(\{entity\}|\{attribute\})", template)
        items: list[tuple[str, object]] = []
        for i, part in enumerate(parts):
            if i % 2 == 0:  # text; a space before a placeholder goes with the word
                text = part[:-1] if i + 1 < len(parts) and part.endswith(" ") else part
                items += [("text", token) for token in self._ids(text)]
                continue
            kind, space = part[1:-1], " " if parts[i - 1].endswith(" ") else ""
            ids = []
            for word in self.words[kind]:
                got = self._ids(space + word)
                if len(got) != 1:
                    raise ValueError(
                        f"{kind} {space + word!r} is {len(got)} tokens for this tokenizer: each must be one"
                    )
                ids.append(got[0])
            items.append((kind, torch.tensor(ids)))
        return items

    def sample(self, batch_size: int, generator: torch.Generator, bindings: int = 3) -> Contexts:
        """batch_size contexts of `bindings` bindings (distinct entities, distinct attributes)."""
        order, queried = self._drawn(batch_size, generator, bindings)
        return self._written({kind: ranks[:, :bindings] for kind, ranks in order.items()}, queried)

    def sample_with_donors(
        self, batch_size: int, generator: torch.Generator, bindings: int = 3
    ) -> tuple[Contexts, Contexts]:
        """Contexts, and a donor for each (the same query slot) whose words are all other than
        its context's where there are words enough (2 x bindings of each kind), so that every
        donor brings new words to the factorizability tests."""
        k = bindings
        order, queried = self._drawn(batch_size, generator, bindings)
        donor = {
            kind: ranks[:, k : 2 * k]
            if ranks.shape[1] >= 2 * k
            else torch.rand(ranks.shape, generator=generator).argsort(1)[:, :k]
            for kind, ranks in order.items()
        }
        first = {kind: ranks[:, :k] for kind, ranks in order.items()}
        return self._written(first, queried), self._written(donor, queried)

    def _drawn(self, batch_size: int, generator: torch.Generator, bindings: int):
        """Each row's words of each kind in a random order (b, words), and the queried slot (b,)."""
        if not 2 <= bindings <= min(len(words) for words in self.words.values()):
            raise ValueError(f"bindings={bindings} must be in [2, the number of entities and of attributes]")
        order = {
            kind: torch.rand(batch_size, len(words), generator=generator).argsort(1)
            for kind, words in self.words.items()
        }
        return order, torch.randint(bindings, (batch_size,), generator=generator)

    def _written(self, drawn: dict[str, torch.Tensor], queried: torch.Tensor) -> Contexts:
        """The contexts of the drawn words (b, k) of each kind, the query naming `queried`."""
        b, k = queried.shape[0], drawn["entity"].shape[1]
        columns, at = [], {"entity": [], "attribute": [], "query": []}
        attributes = None
        for j in [*range(k), None]:  # the statements, then the query (j = None)
            for kind, value in self.statement if j is not None else self.query:
                if kind == "text":
                    columns.append(torch.full((b,), value))
                    continue
                slot = drawn[kind][:, j] if j is not None else drawn[kind][torch.arange(b), queried]
                at["query" if j is None else kind].append(len(columns))
                columns.append(value[slot])
                if kind == "attribute" and attributes is None:
                    attributes = value[drawn[kind]]  # (b, k): the statements' attribute tokens
            if j == k - 1:
                context_end = len(columns)
        return Contexts(
            tokens=torch.stack(columns, 1),
            entity_positions=torch.tensor(at["entity"]),
            attribute_positions=torch.tensor(at["attribute"]),
            query_position=at["query"][0],
            context_end=context_end,
            attributes=attributes,
            queried=queried,
        )
