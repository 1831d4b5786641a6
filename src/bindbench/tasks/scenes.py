"""Procedural multi-object scenes with instance masks, for the segregation experiments.

Two generators draw batches of images together with their ground truth:
- `Scenes`: 1..N sprites (square, circle, triangle, heart) in a few colours and sizes at
  uniform positions, drawn back to front so that later objects occlude earlier ones
  (Multi-dSprites-like, 32 x 32 by default). Colour-shape pairs can be held out of training
  to test binding on unseen combinations.
- `Tetrominoes`: 3 non-overlapping Tetris pieces (19 shapes: the 7 tetrominoes in their
  distinct rotations) in 6 colours on a black 35 x 35 image, like the DeepMind dataset.

Both return a `SceneBatch`; `save_scenes` and `load_scenes` write and read one as PNGs and
an .npz file. All work is batched tensor operations on the generator's device; the only
Python loop runs over the object slots. Axes: b batch, k object slot, h w pixels, c channel.
"""

import itertools
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

SHAPES = ("square", "circle", "triangle", "heart")
PALETTE = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.2, 0.4, 1.0),  # pure blue is hard to see on black
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "orange": (1.0, 0.5, 0.0),
    "white": (1.0, 1.0, 1.0),
}
BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5)}  # or any palette colour
SIZES = (0.25, 0.35, 0.45)  # side of an object's bounding box, as a fraction of the image side
SPLITS = ("train", "test")
MIN_RESOLUTION = 16
MIN_OBJECT_PIXELS = 4  # the smallest bounding box must span at least this many pixels
# continuous colours (hues=n): hue uniform in the object's n-th of the circle, saturation and
# value uniform in these ranges (bright enough to stand out on black)
SATURATION, VALUE = (0.6, 1.0), (0.7, 1.0)
# textures: stripes or checks with a period of this fraction of the image side, at any angle;
# the background's second colour is a dim, greyish hue
PERIOD = (0.1, 0.25)
TEXTURES = ("none", "objects", "all")
BACKGROUND_SATURATION, BACKGROUND_VALUE = (0.2, 0.5), (0.25, 0.45)

SQUARE_HALF_SIDE = 0.8  # a square filling its whole box would look bigger than the others
# (x² + y² - 1)³ - x² y³ <= 0 spans x in ±1.14 and y in [-1, 1.24]; this maps it into [-1, 1]²
HEART_SCALE, HEART_SHIFT = 1.15, 0.118

TETROMINOES = {  # rows from top to bottom, '#' a block
    "I": ("####",),
    "O": ("##", "##"),
    "T": ("###", ".#."),
    "S": (".##", "##."),
    "Z": ("##.", ".##"),
    "J": ("#..", "###"),
    "L": ("..#", "###"),
}
TETROMINO_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")


# ----------------------------------------------------------------------------- shapes
# Each shape is a region of box coordinates (u, v) in [-1, 1]², u to the right, v upwards.


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= SQUARE_HALF_SIDE


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + v * v <= 1


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (v >= -1) & (2 * u.abs() + v <= 1)  # apex (0, 1), base corners (±1, -1)


def _heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    x, y = HEART_SCALE * u, HEART_SCALE * v + HEART_SHIFT
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


SHAPE_REGIONS = {"square": _square, "circle": _circle, "triangle": _triangle, "heart": _heart}


def shape_masks(
    shape: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    size: torch.Tensor,
    resolution: int,
    shapes: tuple[str, ...] = SHAPES,
) -> torch.Tensor:
    """Pixel masks (b, h, w) bool of one object per image: shapes[shape[b]] in a square box of
    side size[b] centred at (x[b], y[b]); all three are fractions of the image side, y downwards."""
    centres = (torch.arange(resolution, device=x.device) + 0.5) / resolution  # pixel centres
    half = (size / 2)[:, None, None]
    u = (centres[None, None, :] - x[:, None, None]) / half  # (b, 1, w)
    v = (y[:, None, None] - centres[None, :, None]) / half  # (b, h, 1), image rows run downwards
    u, v = torch.broadcast_tensors(u, v)
    masks = torch.stack([SHAPE_REGIONS[name](u, v) for name in shapes])  # (s, b, h, w)
    return masks[shape, torch.arange(len(shape), device=x.device)]


# ----------------------------------------------------------------------------- tetrominoes


def _rotations(rows: tuple[str, ...]) -> list[tuple[tuple[int, int], ...]]:
    """The distinct quarter-turn rotations of a piece, as sorted (row, col) block cells."""
    cells = [(r, c) for r, row in enumerate(rows) for c, char in enumerate(row) if char == "#"]
    found = []
    for _ in range(4):
        top, left = min(r for r, _ in cells), min(c for _, c in cells)
        normal = tuple(sorted((r - top, c - left) for r, c in cells))
        if normal not in found:
            found.append(normal)
        cells = [(c, -r) for r, c in cells]  # a quarter turn
    return found


def _pieces() -> tuple[tuple[str, ...], torch.Tensor]:
    names, cells = [], []
    for letter, rows in TETROMINOES.items():
        for turn, piece in enumerate(_rotations(rows)):
            names.append(f"{letter}{turn}")
            cells.append(piece)
    return tuple(names), torch.tensor(cells)


# 19 pieces: I 2, O 1, T 4, S 2, Z 2, J 4, L 4; cells (19, 4, 2) are (row, col) in the piece's box
PIECE_NAMES, PIECE_CELLS = _pieces()


# ----------------------------------------------------------------------------- batches


@dataclass
class SceneBatch:
    images: torch.Tensor  # (b, c=3, h, w) float in [0, 1]
    labels: torch.Tensor  # (b, h, w) long: 0 background, s + 1 where object slot s is visible
    shape: torch.Tensor  # (b, k) long index into the generator's shapes (pieces); -1 if invalid
    colour: torch.Tensor  # (b, k) long index into the generator's colours; -1 if invalid
    size: torch.Tensor  # (b, k) long index into the generator's sizes; -1 if invalid
    x: torch.Tensor  # (b, k) float: centre of the bounding box, fraction of the width
    y: torch.Tensor  # (b, k) float: centre of the bounding box, fraction of the height, downwards
    valid: torch.Tensor  # (b, k) bool: the slot holds an object
    visibility: torch.Tensor  # (b, k) float: visible fraction of the object's own pixels
    held_out: torch.Tensor  # (b, k) bool: the object's colour-shape pair is held out of training


def _paint(
    labels: torch.Tensor,
    background: torch.Tensor,
    rgb: torch.Tensor,
    second: torch.Tensor | None = None,
    pattern: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images (b, 3, h, w): the background colour (3,) at label 0, object colour rgb (b, k, 3) at
    s + 1; with a texture, second[b, l] (b, k + 1, 3) where pattern[b, l] (b, k + 1, h, w) is True."""
    b = len(labels)
    table = torch.cat([background.expand(b, 1, 3), rgb], dim=1)  # (b, k + 1, c)
    rows = torch.arange(b, device=labels.device)[:, None, None]
    images = table[rows, labels]  # (b, h, w, c)
    if pattern is not None:
        on = pattern.gather(1, labels[:, None]).squeeze(1)  # (b, h, w): the pattern of each pixel's owner
        images = torch.where(on[..., None], second[rows, labels], images)
    return images.permute(0, 3, 1, 2).contiguous()


def _uniform(low: float, high: float, shape, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3) in [0, 1] of colours given as hue, saturation, value (...,) in [0, 1]."""
    n = torch.tensor([5.0, 3.0, 1.0], device=hue.device)
    k = (n + hue[..., None] * 6) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value[..., None] * (1 - saturation[..., None] * ramp)


def _visible_pixels(labels: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Pixel count (b, k) of every slot's label."""
    return torch.stack([(labels == s + 1).sum((1, 2)) for s in range(num_slots)], dim=1)


def _pick(allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Index (b,) of one uniformly chosen True entry in every row of allowed (b, n)."""
    scores = torch.rand(allowed.shape, generator=generator, device=allowed.device)
    return scores.masked_fill(~allowed, -1.0).argmax(1)


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def _check_names(name: str, values, allowed) -> tuple[str, ...]:
    ok = isinstance(values, (tuple, list)) and len(values) > 0 and len(set(values)) == len(values)
    if not ok or not set(values) <= set(allowed):
        raise ValueError(
            f"{name}={values!r} must be a non-empty list of distinct names from {tuple(allowed)}"
        )
    return tuple(values)


def held_out_pairs(held_out, colours, shapes, generator) -> list[tuple[str, str]]:
    """The held-out (colour, shape) pairs: a given list, or a seeded fraction of all pairs."""
    if held_out is None:
        return []
    n_colours, n_shapes = len(colours), len(shapes)
    num_pairs = n_colours * n_shapes
    if isinstance(held_out, (int, float)) and not isinstance(held_out, bool):
        if not 0 <= held_out < 1:
            raise ValueError(f"held_out={held_out} must be a fraction in [0, 1) or a list of (colour, shape)")
        num_held = int(held_out * num_pairs)
        cover = max(n_colours, n_shapes)
        if num_held and num_pairs - num_held < cover:
            raise ValueError(
                f"held_out={held_out} leaves {num_pairs - num_held} of {num_pairs} pairs for training, "
                f"fewer than the {cover} needed to train every colour and every shape"
            )
        # Training keeps a random cover (every colour and every shape in some pair); the held-out
        # pairs are drawn from the rest, so every test pair is a new combination of known parts.
        cs, ss = torch.randperm(n_colours, generator=generator), torch.randperm(n_shapes, generator=generator)
        kept = {(int(cs[i % n_colours]), int(ss[i % n_shapes])) for i in range(cover)}
        rest = [p for p in itertools.product(range(n_colours), range(n_shapes)) if p not in kept]
        order = torch.randperm(len(rest), generator=generator)[:num_held].tolist()
        return [(colours[c], shapes[s]) for c, s in sorted(rest[i] for i in order)]
    if isinstance(held_out, str) or not isinstance(held_out, (tuple, list)):
        raise ValueError(f"held_out={held_out!r} must be a fraction in [0, 1) or a list of (colour, shape)")
    pairs = list(dict.fromkeys(tuple(p) if isinstance(p, (tuple, list)) else p for p in held_out))
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and pair[0] in colours and pair[1] in shapes):
            raise ValueError(
                f"held_out pair {pair!r} must be (colour, shape) with colour in {colours}, shape in {shapes}"
            )
    if len(pairs) == num_pairs:
        raise ValueError(
            f"held_out={held_out!r} holds out all {num_pairs} colour-shape pairs; keep one for training"
        )
    for colour in colours:
        if all((colour, shape) in pairs for shape in shapes):
            raise ValueError(
                f"held_out={held_out!r} holds out every shape of colour {colour!r}; keep one for training"
            )
    for shape in shapes:
        if all((colour, shape) in pairs for colour in colours):
            raise ValueError(
                f"held_out={held_out!r} holds out every colour of shape {shape!r}; keep one for training"
            )
    return pairs


# ----------------------------------------------------------------------------- generators


class Scenes:
    """A fixed distribution of sprite scenes with its colour-shape split; `sample` draws batches.

    A scene has min_objects..max_objects objects (uniform). Each object slot draws a colour-shape
    pair (uniform over the pairs of the split; with `distinct_colours`, over those whose colour no
    earlier slot of the scene has), a size from `sizes` and a centre uniform over the positions that
    keep its bounding box inside the image. Slots are drawn in order, later ones on top; since slots
    are exchangeable, the depth order is a random one.

    Distinct colours (as in Multi-dSprites, whose colours are continuous) make every object
    separable by colour; with repeats, two touching objects of one colour are one blob, and even a
    segmenter that knows every colour exactly stays near 0.88 FG-ARI on 2-3 objects of 8 colours.

    Two options take colour away as a shortcut to the objects. `hues=n` draws continuous colours:
    an object's colour index c (what held-out pairs and `colour` name) is the c-th of n bands of
    the hue circle, its hue uniform in the band, saturation and value uniform in SATURATION and
    VALUE. `texture="objects"` fills every object with a two-colour pattern, stripes or checks
    at a random angle, period (PERIOD) and phase: the object's colour and a second, random
    bright hue; `texture="all"` patterns the background too, in its colour and a dim greyish
    hue. Labels and masks are exactly as without: a texture only recolours an owner's pixels.
    """

    def __init__(
        self,
        resolution: int = 32,
        min_objects: int = 1,
        max_objects: int = 3,
        shapes: tuple[str, ...] = SHAPES,
        colours: tuple[str, ...] = tuple(PALETTE),
        sizes: tuple[float, ...] = SIZES,
        background: str = "black",  # "black", "grey", or a palette colour not among `colours`
        held_out=None,  # None, a fraction in [0, 1) of colour-shape pairs, or [(colour, shape), ...]
        seed: int = 0,  # chooses the held-out pairs when held_out is a fraction
        distinct_colours: bool = False,  # no two objects of a scene share a colour
        hues: int | None = None,  # continuous colours in this many hue bands, instead of `colours`
        texture: str = "none",  # two-colour patterns: "none", on the "objects", on "all" (and background)
        device: str | torch.device = "cpu",
    ):
        _check_int("resolution", resolution, MIN_RESOLUTION)
        _check_int("min_objects", min_objects, 1)
        _check_int("max_objects", max_objects, 1)
        if max_objects < min_objects:
            raise ValueError(f"max_objects={max_objects} must be >= min_objects={min_objects}")
        self.shapes = _check_names("shapes", shapes, SHAPES)
        self.colours = _check_names("colours", colours, PALETTE)
        if hues is not None:
            _check_int("hues", hues, 2)
            if background not in BACKGROUNDS:
                raise ValueError(f"background={background!r} with hues must be one of {tuple(BACKGROUNDS)}")
            self.colours = tuple(f"hue{i}" for i in range(hues))
        numbers = isinstance(sizes, (tuple, list)) and all(isinstance(s, (int, float)) for s in sizes)
        if not numbers or len(sizes) == 0 or not all(0 < s <= 1 for s in sizes):
            raise ValueError(f"sizes={sizes!r} must be a non-empty list of fractions in (0, 1]")
        if min(sizes) * resolution < MIN_OBJECT_PIXELS:
            raise ValueError(
                f"sizes={tuple(sizes)} at resolution={resolution} give objects under {MIN_OBJECT_PIXELS} "
                f"pixels wide; raise the resolution or the sizes"
            )
        if background not in BACKGROUNDS and (background not in PALETTE or background in colours):
            raise ValueError(
                f"background={background!r} must be one of {tuple(BACKGROUNDS)} or a palette colour "
                f"not among colours={self.colours}"
            )
        _check_int("seed", seed, 0)
        if texture not in TEXTURES:
            raise ValueError(f"texture={texture!r} must be one of {TEXTURES}")
        needed = max_objects + (held_out is not None)  # a test scene's others avoid its novel colour
        if distinct_colours and needed > len(self.colours):
            raise ValueError(
                f"distinct_colours with max_objects={max_objects} needs {needed} colours, "
                f"but colours has {len(self.colours)}"
            )

        self.resolution, self.min_objects, self.max_objects = resolution, min_objects, max_objects
        self.sizes, self.background, self.seed = tuple(sizes), background, seed
        self.distinct_colours, self.hues, self.texture = distinct_colours, hues, texture
        self.device = torch.device(device)
        self.held_out = held_out_pairs(
            held_out, self.colours, self.shapes, torch.Generator().manual_seed(seed)
        )

        is_held = torch.zeros(len(self.colours), len(self.shapes), dtype=torch.bool)
        for colour, shape in self.held_out:
            is_held[self.colours.index(colour), self.shapes.index(shape)] = True
        self.is_held = is_held.to(self.device)  # (colour, shape)
        self.train_pairs = (~is_held).nonzero().to(self.device)  # (p, 2) rows of (colour, shape)
        self.test_pairs = is_held.nonzero().to(self.device)
        if hues is None:
            self.rgb = torch.tensor([PALETTE[c] for c in self.colours], device=self.device)  # (colour, c)
        else:  # the middle of each band, for `render` without drawn colours
            middle = (torch.arange(hues, device=self.device) + 0.5) / hues
            self.rgb = hsv_to_rgb(middle, *(torch.full_like(middle, sum(r) / 2) for r in (SATURATION, VALUE)))
        self.background_rgb = torch.tensor({**PALETTE, **BACKGROUNDS}[background], device=self.device)
        self.size_values = torch.tensor(self.sizes, device=self.device)

    def sample(self, batch_size: int, generator: torch.Generator, split: str = "train") -> SceneBatch:
        """A batch of batch_size scenes drawn from generator (which lives on self.device).

        split="train": every object has a training colour-shape pair.
        split="test": exactly one object per scene has a held-out pair (uniform over the held-out
        pairs), and it is the top one, the last in depth order, so it is always fully visible;
        the other objects have training pairs. Needs held-out pairs.
        """
        _check_int("batch_size", batch_size, 1)
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        if split == "test" and not self.held_out:
            raise ValueError("split='test' needs held-out pairs; set held_out")
        b, k, device = batch_size, self.max_objects, self.device

        def randint(high, shape, low=0):
            return torch.randint(low, high, shape, generator=generator, device=device)

        slots = torch.arange(k, device=device)
        num_objects = randint(self.max_objects + 1, (b,), low=self.min_objects)
        valid = slots < num_objects[:, None]  # (b, k)
        if not self.distinct_colours:
            pair = self.train_pairs[randint(len(self.train_pairs), (b, k))]  # (b, k, 2)
        if split == "test":
            novel = self.test_pairs[randint(len(self.test_pairs), (b,))]  # (b, 2)
        if self.distinct_colours:  # the others avoid the novel object's colour
            pair = self._distinct_pairs(b, generator, taken=novel[:, 0] if split == "test" else None)
        if split == "test":
            top = slots == (num_objects - 1)[:, None]  # (b, k)
            pair = torch.where(top[..., None], novel[:, None], pair)
        colour, shape = pair.unbind(-1)  # (b, k) each
        size = randint(len(self.sizes), (b, k))
        extent = self.size_values[size]  # (b, k) side of the bounding box
        x = extent / 2 + (1 - extent) * torch.rand((b, k), generator=generator, device=device)
        y = extent / 2 + (1 - extent) * torch.rand((b, k), generator=generator, device=device)
        rgb = None if self.hues is None else self._hue_rgb(colour, generator)
        texture = self.draw_texture(b, generator) if self.texture != "none" else None
        return self.render(colour, shape, size, x, y, valid, rgb, texture)

    def _hue_rgb(self, colour: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Continuous colours (b, k, 3): a hue uniform in each object's band, saturation, value."""

        def uniform(low, high):
            return _uniform(low, high, colour.shape, generator, self.device)

        hue = (colour + uniform(0.0, 1.0)) / self.hues
        return hsv_to_rgb(hue, uniform(*SATURATION), uniform(*VALUE))

    def draw_texture(self, b: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Textures of b scenes: second colours (b, k + 1, 3) and patterns (b, k + 1, h, w) bool
        (where a pixel takes the second colour); index 0 is the background, s + 1 object slot s."""
        shape, device = (b, self.max_objects + 1), self.device

        def uniform(low, high):
            return _uniform(low, high, shape, generator, device)

        hue, saturation, value = uniform(0.0, 1.0), uniform(*SATURATION), uniform(*VALUE)
        saturation[:, 0] = uniform(*BACKGROUND_SATURATION)[:, 0]  # the background's: dim and greyish
        value[:, 0] = uniform(*BACKGROUND_VALUE)[:, 0]
        second = hsv_to_rgb(hue, saturation, value)
        angle, period = uniform(0.0, torch.pi), uniform(*PERIOD)
        phase_along, phase_across = uniform(0.0, 1.0), uniform(0.0, 1.0)
        checks = torch.rand(shape, generator=generator, device=device) < 0.5
        centres = (torch.arange(self.resolution, device=device) + 0.5) / self.resolution
        cos, sin = (f(angle)[..., None, None] for f in (torch.cos, torch.sin))
        x, y = centres[None, None, None, :], centres[None, None, :, None]
        scale = period[..., None, None]
        along = ((x * cos + y * sin) / scale + phase_along[..., None, None]) % 1 < 0.5  # (b, k + 1, h, w)
        across = ((y * cos - x * sin) / scale + phase_across[..., None, None]) % 1 < 0.5
        pattern = along ^ (across & checks[..., None, None])
        if self.texture == "objects":
            pattern[:, 0] = False  # the same draws, so an object's texture is the same with either
        return second, pattern

    def render(
        self,
        colour: torch.Tensor,
        shape: torch.Tensor,
        size: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        valid: torch.Tensor,
        rgb: torch.Tensor | None = None,
        texture: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> SceneBatch:
        """Draws given objects, (b, k) each, back to front (slot 0 at the bottom): colour, shape
        and size are indices into this generator's lists, x and y box centres as fractions of
        the image side (y downwards); slots where `valid` is False draw nothing. `rgb` (b, k, 3)
        gives the objects' colours (default: each colour index's, the middle of its band with
        hues), `texture` (as `draw_texture` returns) patterns them (default: flat colours)."""
        b, k = valid.shape
        extent = self.size_values[size.clamp(min=0)]
        labels = torch.zeros(b, self.resolution, self.resolution, dtype=torch.long, device=self.device)
        area = torch.zeros(b, k, device=self.device)  # pixels of each object before occlusion
        for s in range(k):  # back to front
            inside = shape_masks(
                shape[:, s].clamp(min=0), x[:, s], y[:, s], extent[:, s], self.resolution, self.shapes
            )
            inside &= valid[:, s, None, None]
            area[:, s] = inside.sum((1, 2))
            labels.masked_fill_(inside, s + 1)
        visibility = _visible_pixels(labels, k) / area.clamp(min=1)
        colour, shape = colour.clamp(min=0), shape.clamp(min=0)
        rgb = self.rgb[colour] if rgb is None else rgb
        images = _paint(labels, self.background_rgb, rgb, *(texture or ()))

        def mark(values, invalid):
            return torch.where(valid, values, invalid)

        return SceneBatch(
            images=images,
            labels=labels,
            shape=mark(shape, -1),
            colour=mark(colour, -1),
            size=mark(size, -1),
            x=mark(x, 0.0),
            y=mark(y, 0.0),
            valid=valid,
            visibility=visibility,
            held_out=self.is_held[colour, shape] & valid,
        )

    def _distinct_pairs(self, b: int, generator: torch.Generator, taken=None) -> torch.Tensor:
        """Training pairs (b, k, 2) with no colour twice in a scene, nor the colour `taken` (b,)."""
        rows = torch.arange(b, device=self.device)
        used = torch.zeros(b, len(self.colours), dtype=torch.bool, device=self.device)
        if taken is not None:
            used[rows, taken] = True
        pairs = []
        for _ in range(self.max_objects):  # every colour keeps a training pair, so one is free
            pair = self.train_pairs[_pick(~used[:, self.train_pairs[:, 0]], generator)]  # (b, 2)
            used[rows, pair[:, 0]] = True
            pairs.append(pair)
        return torch.stack(pairs, dim=1)


class Tetrominoes:
    """Tetrominoes-like scenes: num_pieces Tetris pieces on a black image; `sample` draws batches.

    The image is a grid x grid board of block x block pixel blocks (7 x 5 = 35 px by default).
    Each piece is one of the 19 PIECE_NAMES (uniform among those that still fit) in one of
    `colours` (uniform, repeats allowed), at a board position uniform among those where it
    overlaps no earlier piece, so every piece is fully visible.
    """

    def __init__(
        self,
        num_pieces: int = 3,
        grid: int = 7,  # blocks per image side
        block: int = 5,  # pixels per block side
        colours: tuple[str, ...] = TETROMINO_COLOURS,
        device: str | torch.device = "cpu",
    ):
        _check_int("num_pieces", num_pieces, 1)
        _check_int("grid", grid, 4)
        _check_int("block", block, 1)
        # Each placed piece rules out at most 16 of the (grid - 1)² positions of an O piece, so
        # this guarantees that some piece always fits.
        if (grid - 1) ** 2 <= 16 * (num_pieces - 1):
            raise ValueError(
                f"num_pieces={num_pieces} may not fit on grid={grid}; needs (grid - 1)² > 16 (num_pieces - 1)"
            )
        self.colours = _check_names("colours", colours, PALETTE)
        self.num_pieces, self.grid, self.block = num_pieces, grid, block
        self.resolution = grid * block
        self.shapes = PIECE_NAMES
        self.sizes = (1.0,)  # one size: every block is block x block pixels
        self.device = torch.device(device)
        self.rgb = torch.tensor([PALETTE[c] for c in self.colours], device=self.device)  # (colour, c)
        self.background_rgb = torch.zeros(3, device=self.device)

        # Every placement: piece p with the top-left of its box at board cell o = (row, col).
        offsets = torch.cartesian_prod(torch.arange(grid), torch.arange(grid))  # (o, 2)
        cells = offsets[None, :, None, :] + PIECE_CELLS[:, None, :, :]  # (p, o, 4, 2)
        self.fits = (cells < grid).all(-1).all(-1).to(self.device)  # (p, o) inside the board
        flat = (cells[..., 0] * grid + cells[..., 1]).clamp(max=grid * grid - 1)  # (p, o, 4)
        blocks = torch.zeros(len(PIECE_NAMES), grid * grid, grid * grid, dtype=torch.bool)
        self.blocks = blocks.scatter_(2, flat, True).to(self.device)  # (p, o, board cell)
        self.offsets = offsets.to(self.device)
        self.extent = (PIECE_CELLS.amax(1) + 1).to(self.device)  # (p, 2) box height, width in blocks

    def sample(self, batch_size: int, generator: torch.Generator) -> SceneBatch:
        """A batch of batch_size scenes drawn from generator (which lives on self.device).

        shape indexes PIECE_NAMES, size is always 0, visibility always 1, held_out always False.
        """
        _check_int("batch_size", batch_size, 1)
        b, k, g, device = batch_size, self.num_pieces, self.grid, self.device
        rows = torch.arange(b, device=device)
        board = torch.zeros(b, g * g, dtype=torch.long, device=device)  # label of each board cell
        piece = torch.zeros(b, k, dtype=torch.long, device=device)
        offset = torch.zeros(b, k, dtype=torch.long, device=device)
        for s in range(k):
            taken = (self.blocks[None] & (board > 0)[:, None, None]).any(-1)  # (b, p, o)
            free = self.fits[None] & ~taken
            piece[:, s] = _pick(free.any(-1), generator)
            offset[:, s] = _pick(free[rows, piece[:, s]], generator)
            board.masked_fill_(self.blocks[piece[:, s], offset[:, s]], s + 1)
        colour = torch.randint(len(self.colours), (b, k), generator=generator, device=device)

        pixels = board.view(b, g, g).repeat_interleave(self.block, 1).repeat_interleave(self.block, 2)
        corner = self.offsets[offset]  # (b, k, 2) top-left block (row, col)
        centre = (corner + self.extent[piece] / 2) / g  # (b, k, 2) fraction of the side
        return SceneBatch(
            images=_paint(pixels, self.background_rgb, self.rgb[colour]),
            labels=pixels,
            shape=piece,
            colour=colour,
            size=torch.zeros(b, k, dtype=torch.long, device=device),
            x=centre[..., 1],
            y=centre[..., 0],
            valid=torch.ones(b, k, dtype=torch.bool, device=device),
            visibility=torch.ones(b, k, device=device),
            held_out=torch.zeros(b, k, dtype=torch.bool, device=device),
        )


# ----------------------------------------------------------------------------- files


def save_scenes(batch: SceneBatch, folder: str | Path) -> Path:
    """The path of `scenes.npz` (every SceneBatch field) written to folder, beside one PNG per image."""
    import matplotlib.image  # here, so that drawing scenes never pays for importing matplotlib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f.name: getattr(batch, f.name).cpu().numpy() for f in fields(batch)}
    for i, image in enumerate(arrays["images"].transpose(0, 2, 3, 1)):  # (b, h, w, c)
        matplotlib.image.imsave(folder / f"{i:05d}.png", image)
    path = folder / "scenes.npz"
    np.savez_compressed(path, **arrays)
    return path


def load_scenes(path: str | Path, device: str | torch.device = "cpu") -> SceneBatch:
    """The SceneBatch stored by save_scenes at path (no pickle involved)."""
    with np.load(path, allow_pickle=False) as arrays:
        return SceneBatch(**{f.name: torch.from_numpy(arrays[f.name]).to(device) for f in fields(SceneBatch)})
