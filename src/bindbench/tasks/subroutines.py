"""Tasks made of two subroutines, for asking whether a network holds a subnetwork for each.

Both tasks list every possible input once, split the list into train, val and test items
with a seeded permutation (so no test input is ever trained on), and draw labelled sets
of a named kind from one split. The kinds follow Lepori, Serre & Pavlick (2023; research
note break-it-down.md, section 1):

- "task": the compositional task the base model is trained on;
- one kind per subroutine (e.g. "A"): the set a mask for that subroutine is trained on,
  labelled by that subroutine alone while the other one varies freely;
- "+/-A" per subroutine: test sets in which only that subroutine's outcome varies;
- "related": a different function of the same inputs, for pretraining on a related task.

`masked` draws the self-supervised pretraining set: the task's inputs with one position
replaced by a mask token, labelled by the token it hid (no task label is used).

An input is a sequence of tokens from one vocabulary (`length` positions, `vocab` ids, id
`vocab` being the mask token), given one-hot and flattened (`form="one_hot"`, for an MLP:
the mask token is all zeros) or as the ids themselves (`form="tokens"`, for a Transformer).

`AndTask` (Lepori's design on symbols): four one-hot symbols (a1, a2, b1, b2); subroutine A
is a1 == a2, B is b1 == b2, and the label is A and B. Its "task" negatives break exactly one
of the two (half A, half B), so both must be computed. Its related task is the same
conjunction over the other pairs: (a1 == b1) and (a2 == b2).
`AddMulTask` (Csordas et al. 2021): two 2-digit numbers and an operation flag; the label is
a + b or a * b mod 100, the subroutines are the two operations. Tokens: the four digits
(ids 0-9), then the operation (10: add, 11: mul). Its related task: a - b mod 100 for
add problems, the product's hundreds (a * b // 100) for mul problems.

Axes: n items, s symbol.
"""

from __future__ import annotations

import torch

SPLITS = ("train", "val", "test")
FORMS = ("one_hot", "tokens")


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def _split_items(count: int, val: float, test: float, seed: int) -> dict[str, torch.Tensor]:
    """Item indices per split: a seeded permutation of range(count), cut into train, val, test."""
    for name, fraction in (("val", val), ("test", test)):
        if not 0 < fraction < 1:
            raise ValueError(f"{name}={fraction} must be a fraction in (0, 1)")
    if val + test >= 1:
        raise ValueError(f"val={val} + test={test} must leave items for training")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(val * count), round(test * count)
    return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}


class _Task:
    """What both tasks share: cells of items per split, and kinds that mix cells."""

    subroutines: tuple[str, str]
    num_classes: int
    vocab: int  # token ids 0 .. vocab - 1; id `vocab` is the mask token
    kinds: dict[str, tuple[dict, str]]  # kind -> ({cell: weight}, label name)

    def __init__(self, tokens, cells: dict, labels: dict[str, torch.Tensor], splits: dict, form: str):
        # tokens: (n, length) long over all items; cells: cell name -> bool (n,) over all items;
        # labels: label name -> (n,) long
        if form not in FORMS:
            raise ValueError(f"form={form!r} must be one of {FORMS}")
        self.tokens, self.labels, self.form = tokens, labels, form
        self.length = tokens.shape[1]
        self.input_dim = self.length * self.vocab if form == "one_hot" else self.length
        self.items = {
            (cell, split): index[member[index]]
            for cell, member in cells.items()
            for split, index in splits.items()
        }
        for (cell, split), index in self.items.items():
            if len(index) == 0:
                raise ValueError(
                    f"the {split} split has no item of kind {cell}; raise its fraction or the symbols"
                )

    @property
    def chance(self) -> float:
        """Accuracy of guessing on a balanced test set: the floor of the Sub and Abl measures."""
        return 0.5 if self.num_classes == 2 else 1 / self.num_classes

    def draw(self, kind: str, n: int, generator: torch.Generator, split: str = "train") -> torch.Tensor:
        """Indices (n,) of items of `kind` drawn from `split`."""
        if kind not in self.kinds:
            raise ValueError(f"kind={kind!r} must be one of {tuple(self.kinds)}")
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        _check_int("n", n, 1)
        weights = self.kinds[kind][0]
        cells = list(weights)
        which = torch.multinomial(torch.tensor([weights[c] for c in cells]), n, True, generator=generator)
        index = torch.empty(n, dtype=torch.long)
        for i, cell in enumerate(cells):
            chosen = which == i
            pool = self.items[cell, split]
            index[chosen] = pool[torch.randint(len(pool), (int(chosen.sum()),), generator=generator)]
        return index

    def sample(self, kind: str, n: int, generator: torch.Generator, split: str = "train"):
        """n labelled items of `kind` from `split`: inputs (n, input_dim) and labels (n,) long."""
        index = self.draw(kind, n, generator, split)
        return self.encode(self.tokens[index]), self.labels[self.kinds[kind][1]][index]

    def masked(self, n: int, generator: torch.Generator, split: str = "train"):
        """n of the task's inputs from `split`, each with one uniformly chosen position replaced
        by the mask token, and the token it hid (n,): the self-supervised pretraining set."""
        tokens = self.tokens[self.draw("task", n, generator, split)]
        position = torch.randint(self.length, (n,), generator=generator)
        hidden = tokens[torch.arange(n), position]
        tokens[torch.arange(n), position] = self.vocab
        return self.encode(tokens), hidden

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inputs of token sequences (n, length): one-hot (n, length * vocab) float, or the ids."""
        if self.form == "tokens":
            return tokens
        return torch.nn.functional.one_hot(tokens, self.vocab + 1)[..., : self.vocab].flatten(1).float()


class AndTask(_Task):
    """label = (a1 == a2) and (b1 == b2) over four symbols out of `symbols`."""

    subroutines = ("A", "B")
    num_classes = 2

    def __init__(
        self, symbols: int = 20, val: float = 0.15, test: float = 0.15, seed: int = 0, form: str = "one_hot"
    ):
        _check_int("symbols", symbols, 2)
        self.symbols = self.vocab = symbols
        codes = torch.cartesian_prod(*[torch.arange(symbols)] * 4)  # (s^4, 4): a1 a2 b1 b2
        a, b = codes[:, 0] == codes[:, 1], codes[:, 2] == codes[:, 3]
        x, y = codes[:, 0] == codes[:, 2], codes[:, 1] == codes[:, 3]  # the related task's pairs
        cells = {"A&B": a & b, "A&~B": a & ~b, "~A&B": ~a & b, "~A&~B": ~a & ~b}
        cells |= {"X&Y": x & y, "X&~Y": x & ~y, "~X&Y": ~x & y}
        labels = {"task": (a & b).long(), "A": a.long(), "B": b.long(), "related": (x & y).long()}
        self.kinds = {
            "task": ({"A&B": 0.5, "~A&B": 0.25, "A&~B": 0.25}, "task"),  # negatives break one subroutine
            "A": ({"A&B": 0.25, "A&~B": 0.25, "~A&B": 0.25, "~A&~B": 0.25}, "A"),  # B varies freely
            "B": ({"A&B": 0.25, "A&~B": 0.25, "~A&B": 0.25, "~A&~B": 0.25}, "B"),
            "+/-A": ({"A&B": 0.5, "~A&B": 0.5}, "A"),  # only A varies; B holds
            "+/-B": ({"A&B": 0.5, "A&~B": 0.5}, "B"),
            "related": ({"X&Y": 0.5, "~X&Y": 0.25, "X&~Y": 0.25}, "related"),
        }
        super().__init__(codes, cells, labels, _split_items(len(codes), val, test, seed), form)


class AddMulTask(_Task):
    """label = a + b or a * b mod 100 for 2-digit a, b; tokens: the four digits and the operation."""

    subroutines = ("add", "mul")
    num_classes = 100
    vocab = 12  # digits 0-9, then add and mul

    def __init__(self, val: float = 0.15, test: float = 0.15, seed: int = 0, form: str = "one_hot"):
        a, b, op = torch.cartesian_prod(torch.arange(100), torch.arange(100), torch.arange(2)).unbind(1)
        tokens = torch.stack([a // 10, a % 10, b // 10, b % 10, 10 + op], dim=1)  # (n, 5)
        labels = {
            "result": torch.where(op == 0, a + b, a * b) % 100,
            "related": torch.where(op == 0, (a - b) % 100, a * b // 100),
        }
        cells = {"add": op == 0, "mul": op == 1}
        self.kinds = {
            "task": ({"add": 0.5, "mul": 0.5}, "result"),
            "add": ({"add": 1.0}, "result"),
            "mul": ({"mul": 1.0}, "result"),
            "+/-add": ({"add": 1.0}, "result"),  # only the addition varies: add problems
            "+/-mul": ({"mul": 1.0}, "result"),
            "related": ({"add": 0.5, "mul": 0.5}, "related"),
        }
        super().__init__(tokens, cells, labels, _split_items(len(tokens), val, test, seed), form)
