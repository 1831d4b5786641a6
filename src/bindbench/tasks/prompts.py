"""Prompts that name objects by their attributes, and the scenes they describe, for generation.

A prompt is a combination of attribute values, written as tokens:
- one object (`form="object"`): "a large red circle", a combination of size x colour x shape;
- two objects (`form="pair"`): "a red circle left of a blue square", a combination of the
  left object's colour and shape and the right one's (sizes are drawn, not prompted).
The image is a `Scenes` render of exactly what the prompt says, with the rest random: the
position and the exact hue (within HUE_JITTER of the named colour's). A seeded fraction of
the combinations (default 30%, as the reference's 70/30 split) is held out of training, never
one that would leave an attribute value without a training combination: every held-out
prompt is a new combination of known parts.

Concepts are what a probe decodes and a judge reads back: one per attribute slot (the size,
colour and shape of the object; or colour and shape of the left and of the right object),
each with its values. `concepts_hot` gives the k-hot form the reference's per-concept
logistic probes use (one bit per slot value).
"""

import itertools
from dataclasses import dataclass

import torch
from matplotlib.colors import rgb_to_hsv

from bindbench.tasks.scenes import SHAPES, SIZES, SceneBatch, Scenes, hsv_to_rgb

FORMS = ("object", "pair")
SIZE_WORDS = ("small", "medium", "large")  # SIZES in order
DEFAULT_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
PAIR_SIZE = 1  # a pair's objects are medium (SIZES[1]): two fit side by side at any draw
GAP = 0.02  # the smallest space between the left object's box and the right one's, image fraction
HUE_JITTER = 0.03  # an object's hue is its colour's, moved uniformly by up to this many turns


@dataclass(frozen=True)
class PromptBatch:
    tokens: torch.Tensor  # (b, t) long: the prompt's words, indices into Prompts.vocab
    values: torch.Tensor  # (b, c) long: each concept's value index (c concepts, Prompts.concepts)
    combination: torch.Tensor  # (b,) long: index into Prompts.combinations
    held_out: torch.Tensor  # (b,) bool: the combination is held out of training
    scenes: SceneBatch  # what the prompts describe


class Prompts:
    """A prompt language over scene attributes with its held-out combinations; `sample` draws
    prompts with their renders, `describe` turns values into words."""

    def __init__(
        self,
        form: str = "object",
        colours: tuple[str, ...] = DEFAULT_COLOURS,
        shapes: tuple[str, ...] = SHAPES,
        resolution: int = 32,
        held_out: float = 0.3,
        seed: int = 0,
        hue_jitter: float = HUE_JITTER,  # 0: every object of a colour has exactly its RGB
        device: str | torch.device = "cpu",
    ):
        if form not in FORMS:
            raise ValueError(f"form={form!r} must be one of {FORMS}")
        if not isinstance(held_out, (int, float)) or isinstance(held_out, bool) or not 0 <= held_out < 1:
            raise ValueError(f"held_out={held_out!r} must be a fraction in [0, 1)")
        if (
            not isinstance(hue_jitter, (int, float))
            or isinstance(hue_jitter, bool)
            or not 0 <= hue_jitter <= 0.1
        ):
            raise ValueError(f"hue_jitter={hue_jitter!r} must be in [0, 0.1] (turns of the hue circle)")
        if form == "pair" and len(colours) * len(shapes) < 2:
            raise ValueError("form='pair' needs at least two colour-shape pairs")
        max_objects = 1 if form == "object" else 2
        self.scenes = Scenes(
            resolution=resolution,
            min_objects=max_objects,
            max_objects=max_objects,
            shapes=shapes,
            colours=colours,
            device=device,
        )
        self.form, self.seed, self.hue_jitter, self.device = form, seed, hue_jitter, torch.device(device)
        self.hsv = torch.tensor(rgb_to_hsv(self.scenes.rgb.cpu().numpy()), device=self.device)  # (colour, 3)
        self.colour_words, self.shapes = tuple(colours), self.scenes.shapes
        if form == "object":
            self.concepts = {"size": SIZE_WORDS, "colour": self.colour_words, "shape": self.shapes}
        else:
            self.concepts = {
                "left colour": self.colour_words,
                "left shape": self.shapes,
                "right colour": self.colour_words,
                "right shape": self.shapes,
            }
        self.vocab = ("a", "left", "of", *SIZE_WORDS, *self.colour_words, *self.shapes)
        self.combinations = torch.tensor(
            list(itertools.product(*(range(len(v)) for v in self.concepts.values()))), device=self.device
        )  # (n, c): every combination of concept values
        self.is_held = held_out_combinations(self.combinations.cpu(), held_out, seed).to(self.device)
        self.train_index = (~self.is_held).nonzero().squeeze(1)
        self.test_index = self.is_held.nonzero().squeeze(1)

    def words(self, values: torch.Tensor) -> list[list[str]]:
        """The prompt's words for concept values (b, c)."""
        names = list(self.concepts.values())
        rows = [[names[i][v] for i, v in enumerate(row)] for row in values.tolist()]
        if self.form == "object":
            return [["a", size, colour, shape] for size, colour, shape in rows]
        return [["a", c1, s1, "left", "of", "a", c2, s2] for c1, s1, c2, s2 in rows]

    def describe(self, values: torch.Tensor) -> list[str]:
        """The prompts as text, one per row of concept values (b, c)."""
        return [" ".join(w) for w in self.words(values)]

    def tokenize(self, values: torch.Tensor) -> torch.Tensor:
        """Token indices (b, t) of the prompts for concept values (b, c)."""
        index = {word: i for i, word in enumerate(self.vocab)}
        ids = [[index[w] for w in row] for row in self.words(values)]
        return torch.tensor(ids, dtype=torch.long, device=self.device).reshape(len(values), -1)

    def concepts_hot(self, values: torch.Tensor) -> torch.Tensor:
        """The k-hot form (b, sum of concept sizes) float: one bit per concept value."""
        sizes = [len(v) for v in self.concepts.values()]
        parts = [torch.nn.functional.one_hot(values[:, i], size) for i, size in enumerate(sizes)]
        return torch.cat(parts, dim=1).float()

    def sample(
        self, batch_size: int, generator: torch.Generator, split: str = "train", render: bool = True
    ) -> PromptBatch:
        """batch_size prompts, uniform over the split's combinations ("train", "test" for the
        held-out ones, "all"), each with a render of what it says."""
        pool = {"train": self.train_index, "test": self.test_index}.get(split)
        if split == "all":
            pool = torch.arange(len(self.combinations), device=self.device)
        if pool is None:
            raise ValueError(f"split={split!r} must be one of ('train', 'test', 'all')")
        if len(pool) == 0:
            raise ValueError(f"split={split!r} has no combinations (held_out=0 holds none out)")
        combination = pool[torch.randint(len(pool), (batch_size,), generator=generator, device=self.device)]
        values = self.combinations[combination]
        scenes = self.render(values, generator) if render else None
        return PromptBatch(self.tokenize(values), values, combination, self.is_held[combination], scenes)

    def render(self, values: torch.Tensor, generator: torch.Generator) -> SceneBatch:
        """Scenes of what concept values (b, c) say, positions (and hues) drawn from generator."""
        b, device = len(values), self.device

        def uniform(low, high):  # (b,) each row in its own [low, high)
            return low + (high - low) * torch.rand(b, generator=generator, device=device)

        if self.form == "object":
            size, colour, shape = (values[:, i : i + 1] for i in range(3))
            extent = self.scenes.size_values[size[:, 0]]
            x, y = uniform(extent / 2, 1 - extent / 2)[:, None], uniform(extent / 2, 1 - extent / 2)[:, None]
        else:
            colour, shape = values[:, [0, 2]], values[:, [1, 3]]
            size = torch.full_like(colour, PAIR_SIZE)
            e = SIZES[PAIR_SIZE]
            # the left box's right edge at most the right box's left edge minus GAP: centres
            # x1 in [e/2, 1 - 3e/2 - GAP], x2 in [x1 + e + GAP, 1 - e/2]
            x1 = uniform(e / 2, torch.full((b,), 1 - 1.5 * e - GAP, device=device))
            x2 = uniform(x1 + e + GAP, torch.full((b,), 1 - e / 2, device=device))
            x = torch.stack([x1, x2], dim=1)
            y = torch.stack([uniform(e / 2, torch.full((b,), 1 - e / 2, device=device)) for _ in range(2)], 1)
        valid = torch.ones_like(colour, dtype=torch.bool)
        rgb = None
        if self.hue_jitter:
            hue, saturation, value = self.hsv[colour].unbind(-1)  # (b, k) each
            shift = self.hue_jitter * (2 * torch.rand(hue.shape, generator=generator, device=device) - 1)
            rgb = hsv_to_rgb((hue + shift) % 1, saturation, value)
        return self.scenes.render(colour, shape, size, x, y, valid, rgb)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def held_out_combinations(combinations: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Which combinations (n, c) are held out (n,) bool: a seeded `fraction` of them, drawn in a
    random order, skipping any whose removal would leave some concept value in no training
    combination."""
    n, c = combinations.shape
    held = torch.zeros(n, dtype=torch.bool)
    # training combinations that hold each (concept, value)
    left = {(i, int(v)): int((combinations[:, i] == v).sum()) for i in range(c) for v in combinations[:, i]}
    wanted = int(fraction * n)
    for index in torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist():
        if int(held.sum()) == wanted:
            break
        keys = [(i, int(combinations[index, i])) for i in range(c)]
        if all(left[key] > 1 for key in keys):
            held[index] = True
            for key in keys:
                left[key] -= 1
    return held
