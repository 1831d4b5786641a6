"""Variable binding: sets of (colour, shape) objects, the codes that hold them, and queries
whose answers need to know which colour goes with which shape.

A set holds min_objects..max_objects objects with distinct colours and distinct shapes, so
both queries have exactly one answer: "which colour is the <shape>?" (COLOUR_OF) and "which
shape is the <colour> object?" (SHAPE_OF). Colour-shape pairs can be held out of training;
a test set holds exactly one held-out object and its queries ask about that object.

Codes (Greff et al. 2020, research note object-centric.md section 4):
- `bag_of_features`: the sum over objects of one-hot colour and one-hot shape. It forgets
  the binding: {red square, blue circle} and {red circle, blue square} get the same vector.
- `slot_code`: one object per slot (its one-hot colour and shape), slots in a random order.
- `tensor_product`: the sum over objects of role(shape) (x) filler(colour): orthonormal roles
  with one-hot fillers (exact unbinding), or random roles and random fillers of a chosen
  dimension, where every binding adds cross-talk to the others.

`swap` makes the pairs of a swap test: two sets that differ only in which colour goes with
which shape. `render` draws sets as images through `Scenes`, one object per grid cell.
Axes: b batch, n object, d role dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from bindbench.tasks.scenes import SceneBatch, Scenes, _check_int, _pick, held_out_pairs

COLOUR_OF, SHAPE_OF = 0, 1  # the query kinds
SPLITS = ("train", "test")
MAX_REDRAWS = 100  # rounds of redrawing the sets whose objects ran out of allowed pairs


@dataclass
class ObjectSets:
    colour: torch.Tensor  # (b, n) long, -1 where invalid
    shape: torch.Tensor  # (b, n) long, -1 where invalid
    valid: torch.Tensor  # (b, n) bool: the position holds an object
    held_out: torch.Tensor  # (b, n) bool: the object's colour-shape pair is held out of training


@dataclass
class Queries:
    kind: torch.Tensor  # (b,) COLOUR_OF or SHAPE_OF
    key: torch.Tensor  # (b,) the shape asked about (COLOUR_OF) or the colour (SHAPE_OF)
    target: torch.Tensor  # (b,) the position of the object asked about
    answer: torch.Tensor  # (b,) the class: a colour c, or colours + a shape s


@dataclass
class SwapPairs:
    """Two sets per row that differ only in the binding: `second` is `first` with the colours
    of two objects exchanged. Each set has its query (the same question for both), and each
    query's answer is the other's wrong alternative."""

    first: ObjectSets
    second: ObjectSets
    first_queries: Queries
    second_queries: Queries


class BindingTask:
    """A distribution of object sets with its colour-shape split, and the queries on them."""

    def __init__(
        self,
        colours: int = 8,
        shapes: int = 4,
        min_objects: int = 2,
        max_objects: int = 3,
        held_out=0.0,  # a fraction in [0, 1) of colour-shape pairs, or a list of (colour, shape)
        seed: int = 0,  # chooses the held-out pairs when held_out is a fraction
        device: str | torch.device = "cpu",
    ):
        for name, value, low in (
            ("colours", colours, 2),
            ("shapes", shapes, 2),
            ("min_objects", min_objects, 2),
            ("max_objects", max_objects, 2),
            ("seed", seed, 0),
        ):
            _check_int(name, value, low)
        if max_objects < min_objects:
            raise ValueError(f"max_objects={max_objects} must be >= min_objects={min_objects}")
        if max_objects > min(colours, shapes):
            raise ValueError(
                f"max_objects={max_objects} must be <= min(colours, shapes) = {min(colours, shapes)}: "
                f"the objects of a set have distinct colours and distinct shapes"
            )
        self.colours, self.shapes = colours, shapes
        self.min_objects, self.max_objects = min_objects, max_objects
        self.device = torch.device(device)
        self.held_out = held_out_pairs(
            held_out or None, tuple(range(colours)), tuple(range(shapes)), torch.Generator().manual_seed(seed)
        )
        is_held = torch.zeros(colours, shapes, dtype=torch.bool)
        for c, s in self.held_out:
            is_held[c, s] = True
        self.is_held = is_held.to(self.device)  # (colour, shape)
        self.train_pairs = (~is_held).nonzero().to(self.device)  # (p, 2) rows of (colour, shape)
        self.test_pairs = is_held.nonzero().to(self.device)

    @property
    def num_answers(self) -> int:
        return self.colours + self.shapes

    @property
    def query_dim(self) -> int:
        return self.shapes + self.colours

    # ------------------------------------------------------------------------- sets

    def sample(self, batch_size: int, generator: torch.Generator, split: str = "train") -> ObjectSets:
        """Sets whose objects have training pairs (split="train"), or one held-out object and
        the rest training pairs (split="test"); objects in a random order."""
        _check_int("batch_size", batch_size, 1)
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        if split == "test" and not self.held_out:
            raise ValueError("split='test' needs held-out pairs; set held_out")
        b, n, device = batch_size, self.max_objects, self.device
        count = torch.randint(self.min_objects, n + 1, (b,), generator=generator, device=device)
        valid = torch.arange(n, device=device) < count[:, None]
        first = None
        if split == "test":
            first = self.test_pairs[
                torch.randint(len(self.test_pairs), (b,), generator=generator, device=device)
            ]
        colour = torch.full((b, n), -1, dtype=torch.long, device=device)
        shape = colour.clone()
        todo = torch.arange(b, device=device)
        for _ in range(MAX_REDRAWS):
            pairs, ok = self._draw(valid[todo], generator, None if first is None else first[todo])
            done = todo[ok]
            colour[done], shape[done] = pairs[ok, :, 0], pairs[ok, :, 1]
            todo = todo[~ok]
            if len(todo) == 0:
                break
        else:
            raise ValueError(
                f"cannot draw {n} objects with distinct colours and shapes from the training pairs; "
                f"hold out fewer pairs"
            )
        colour, shape = colour.masked_fill(~valid, -1), shape.masked_fill(~valid, -1)
        # a random order of the valid objects (invalid ones stay last)
        keys = torch.rand((b, n), generator=generator, device=device).masked_fill(~valid, 2.0)
        order = keys.argsort(1)
        colour, shape = colour.gather(1, order), shape.gather(1, order)
        held = self.is_held[colour.clamp(min=0), shape.clamp(min=0)] & valid
        return ObjectSets(colour, shape, valid, held)

    def _draw(self, valid: torch.Tensor, generator: torch.Generator, first: torch.Tensor | None):
        """Pairs (b, n, 2) with distinct colours and shapes among the valid objects, the first
        one `first` (b, 2) if given, the others training pairs; and which rows succeeded (b,)."""
        b, n = valid.shape
        rows = torch.arange(b, device=self.device)
        used_colour = torch.zeros(b, self.colours, dtype=torch.bool, device=self.device)
        used_shape = torch.zeros(b, self.shapes, dtype=torch.bool, device=self.device)
        ok = torch.ones(b, dtype=torch.bool, device=self.device)
        pairs = []
        candidates = self.train_pairs
        for i in range(n):
            if i == 0 and first is not None:
                pair = first
            else:
                allowed = ~used_colour[:, candidates[:, 0]] & ~used_shape[:, candidates[:, 1]]  # (b, p)
                ok &= allowed.any(1) | ~valid[:, i]
                pair = candidates[_pick(allowed, generator)]
            used_colour[rows, pair[:, 0]] |= valid[:, i]
            used_shape[rows, pair[:, 1]] |= valid[:, i]
            pairs.append(pair)
        return torch.stack(pairs, 1), ok

    # ------------------------------------------------------------------------- queries

    def query(
        self, sets: ObjectSets, generator: torch.Generator, target: torch.Tensor | None = None
    ) -> Queries:
        """A query per set, of a random kind, about object `target` (b,): by default the held-out
        object where the set has one, else a random valid object."""
        b = len(sets.valid)
        if target is None:
            target = _pick(sets.valid, generator)
            target = torch.where(sets.held_out.any(1), sets.held_out.long().argmax(1), target)
        kind = torch.randint(2, (b,), generator=generator, device=self.device)
        return self._queries(sets, kind, target)

    def _queries(self, sets: ObjectSets, kind: torch.Tensor, target: torch.Tensor) -> Queries:
        rows = torch.arange(len(kind), device=self.device)
        colour, shape = sets.colour[rows, target], sets.shape[rows, target]
        colour_of = kind == COLOUR_OF
        key = torch.where(colour_of, shape, colour)
        answer = torch.where(colour_of, colour, self.colours + shape)
        return Queries(kind, key, target, answer)

    def query_vector(self, queries: Queries) -> torch.Tensor:
        """The query as input (b, shapes + colours): the one-hot of the shape asked about
        (COLOUR_OF), or of the colour (SHAPE_OF) in the second block."""
        index = torch.where(queries.kind == COLOUR_OF, queries.key, self.shapes + queries.key)
        return torch.nn.functional.one_hot(index, self.query_dim).float()

    def swap(self, sets: ObjectSets, generator: torch.Generator, seen: bool = True) -> SwapPairs:
        """Swap-test pairs from `sets`: the colours of two objects exchanged, the query about the
        first of them (its held-out object where a set has one). With `seen`, both swapped
        pairs are training pairs too (sets without such two objects are left out)."""
        b, n = sets.valid.shape
        both = (
            sets.valid[:, :, None]
            & sets.valid[:, None, :]
            & ~torch.eye(n, dtype=torch.bool, device=self.device)
        )
        if seen:  # object i takes colour j and object j colour i
            c, s = sets.colour.clamp(min=0), sets.shape.clamp(min=0)
            both &= ~self.is_held[c[:, None, :], s[:, :, None]] & ~self.is_held[c[:, :, None], s[:, None, :]]
        if sets.held_out.any():  # the held-out object is the one asked about
            both &= sets.held_out[:, :, None] | ~sets.held_out.any(1)[:, None, None]
        keep = both.flatten(1).any(1)
        chosen = _pick(both.flatten(1)[keep], generator)
        sets = ObjectSets(*(t[keep] for t in (sets.colour, sets.shape, sets.valid, sets.held_out)))
        i, j = chosen // n, chosen % n
        rows = torch.arange(len(i), device=self.device)
        colour = sets.colour.clone()
        colour[rows, i], colour[rows, j] = sets.colour[rows, j], sets.colour[rows, i]
        held = self.is_held[colour.clamp(min=0), sets.shape.clamp(min=0)] & sets.valid
        second = replace(sets, colour=colour, held_out=held)
        kind = torch.randint(2, (len(i),), generator=generator, device=self.device)
        first_queries = self._queries(sets, kind, i)
        # the same question about the swapped set: the shape of i keeps its place, the colour moved to j
        second_queries = self._queries(second, kind, torch.where(kind == COLOUR_OF, i, j))
        return SwapPairs(sets, second, first_queries, second_queries)

    # ------------------------------------------------------------------------- codes

    def bag_of_features(self, sets: ObjectSets) -> torch.Tensor:
        """(b, colours + shapes): per attribute value, how many objects have it."""
        return self._one_hots(sets).sum(1)

    def slot_code(self, sets: ObjectSets, generator: torch.Generator) -> torch.Tensor:
        """(b, max_objects * (colours + shapes)): one object per slot, slots in a random order,
        empty slots all zero."""
        one_hots = self._one_hots(sets)
        b, n, _ = one_hots.shape
        order = torch.rand((b, n), generator=generator, device=self.device).argsort(1)
        return one_hots.gather(1, order[:, :, None].expand_as(one_hots)).flatten(1)

    def tensor_product(self, sets: ObjectSets, roles: torch.Tensor, fillers: torch.Tensor | None = None):
        """(b, d * f): the sum over objects of roles[shape] (x) fillers[colour], roles (shapes, d)
        and fillers (colours, f); fillers None are the one-hot colours (f = colours)."""
        c, s = sets.colour.clamp(min=0), sets.shape.clamp(min=0)
        fillers = torch.eye(self.colours) if fillers is None else fillers
        bound = fillers.to(roles.device)[c] * sets.valid[..., None]  # (b, n, f)
        return torch.einsum("bnd,bnf->bdf", roles[s], bound).flatten(1)

    def unbind(
        self, code: torch.Tensor, queries: Queries, roles: torch.Tensor, fillers: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores (b, colours + shapes) read from a tensor-product code T without training: for
        COLOUR_OF, fillers . (roles[shape] T), one per colour; for SHAPE_OF, roles . (T
        fillers[colour]), one per shape; the other block is -inf. With orthonormal roles and
        fillers the true answer alone scores 1, the others 0."""
        b = len(code)
        fillers = torch.eye(self.colours) if fillers is None else fillers
        product = code.view(b, roles.shape[1], fillers.shape[1])  # (b, d, f)
        role = roles[queries.key.clamp(max=self.shapes - 1)]  # the shape asked about (COLOUR_OF)
        colour_scores = torch.einsum("bd,bdf->bf", role, product) @ fillers.T  # (b, colours)
        filler = fillers[queries.key.clamp(max=self.colours - 1)]  # the colour asked about (SHAPE_OF)
        shape_scores = torch.einsum("bdf,bf->bd", product, filler) @ roles.T  # (b, shapes)
        low = torch.full_like(colour_scores[:, :1], -math.inf)
        colour_of = (queries.kind == COLOUR_OF)[:, None]
        return torch.cat(
            [
                torch.where(colour_of, colour_scores, low.expand(b, self.colours)),
                torch.where(colour_of, low.expand(b, self.shapes), shape_scores),
            ],
            1,
        )

    def _one_hots(self, sets: ObjectSets) -> torch.Tensor:
        """(b, n, colours + shapes) per object, zero where invalid."""
        c = torch.nn.functional.one_hot(sets.colour.clamp(min=0), self.colours)
        s = torch.nn.functional.one_hot(sets.shape.clamp(min=0), self.shapes)
        return torch.cat([c, s], -1).float() * sets.valid[..., None]


def orthonormal_roles(shapes: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(shapes, dim) orthonormal rows in a random orientation; needs dim >= shapes."""
    if dim < shapes:
        raise ValueError(f"orthonormal roles need dim >= shapes: {dim} < {shapes}")
    q, r = torch.linalg.qr(torch.randn(dim, shapes, generator=generator, dtype=torch.float64))
    return (q * r.diagonal().sign()).T.float()


def random_roles(shapes: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(shapes, dim) Gaussian rows with variance 1/dim: unit length on average, nearly orthogonal
    when dim is large, with cross-talk ~ 1/sqrt(dim) between any two."""
    return torch.randn(shapes, dim, generator=generator) / math.sqrt(dim)


def swap_accuracy(
    first_scores: torch.Tensor,
    second_scores: torch.Tensor,
    first_answer: torch.Tensor,
    second_answer: torch.Tensor,
) -> torch.Tensor:
    """Two-alternative swap test, per set (2b,): does the true answer outscore the swapped one?
    A tie counts 1/2. A code that maps both sets of a pair to the same input gives the same
    scores to both, so exactly one of the two is right: 0.5 whatever the readout."""
    rows = torch.arange(len(first_answer), device=first_scores.device)

    def right(scores, answer, alternative):
        true, wrong = scores[rows, answer], scores[rows, alternative]
        return (true > wrong).float() + 0.5 * (true == wrong).float()

    return torch.cat(
        [right(first_scores, first_answer, second_answer), right(second_scores, second_answer, first_answer)]
    )


def evaluation_sets(task: BindingTask, items: int, generator: torch.Generator) -> tuple[dict, dict]:
    """Fixed evaluation draws: {split: (sets, queries)} for seen and (when the task holds pairs
    out) held-out sets, and {split: SwapPairs} of seen sets and of held-out sets."""
    seen = task.sample(items, generator)
    draws = {"seen": (seen, task.query(seen, generator))}
    swaps = {"seen": task.swap(seen, generator)}
    if task.held_out:
        held = task.sample(items, generator, "test")
        draws["held_out"] = (held, task.query(held, generator))
        swaps["held_out"] = task.swap(held, generator, seen=False)
    return draws, swaps


def score_queries(scores_of, draws: dict, swaps: dict) -> dict[str, float]:
    """Query accuracy and swap accuracy per split of `evaluation_sets`; `scores_of(sets, queries)`
    gives the answer scores (b, answers) of whatever reads the sets."""
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


# ----------------------------------------------------------------------------- images


def layout(sets: ObjectSets, scenes: Scenes, generator: torch.Generator):
    """Where to draw each object: (size, x, y), each (b, n), one object per cell of the
    smallest square grid with n cells, at a random cell and a random place inside it."""
    b, n = sets.valid.shape
    grid = math.ceil(math.sqrt(n))
    cell = 1 / grid
    if max(scenes.sizes) > cell:
        raise ValueError(
            f"sizes={scenes.sizes} must be <= {cell:.3f} so that {n} objects fit a {grid}x{grid} grid"
        )
    device = scenes.device
    cells = torch.rand((b, grid * grid), generator=generator, device=device).argsort(1)[:, :n]
    size = torch.randint(len(scenes.sizes), (b, n), generator=generator, device=device)
    extent = scenes.size_values[size]
    free = cell - extent
    x = (cells % grid) * cell + extent / 2 + free * torch.rand((b, n), generator=generator, device=device)
    y = (cells // grid) * cell + extent / 2 + free * torch.rand((b, n), generator=generator, device=device)
    return size, x, y


def render(sets: ObjectSets, scenes: Scenes, where) -> SceneBatch:
    """The sets as images: colour c and shape s are scenes.colours[c] and scenes.shapes[s];
    `where` is a `layout` (the same one draws both sets of a swap pair at the same places)."""
    if sets.colour.max() >= len(scenes.colours) or sets.shape.max() >= len(scenes.shapes):
        raise ValueError(
            f"the scenes have {len(scenes.colours)} colours and {len(scenes.shapes)} shapes, "
            f"fewer than the sets use"
        )
    size, x, y = where
    return scenes.render(sets.colour, sets.shape, size, x, y, sets.valid)
