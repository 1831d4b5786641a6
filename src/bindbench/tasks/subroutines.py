"""Tasks made of two subroutines, for asking whether a network holds a subnetwork for each.

Both tasks list every possible input once, split the list into train, val and test items
with a seeded permutation (so no test input is ever trained on), and draw labelled sets
of a named kind from one split. The kinds follow Lepori, Serre & Pavlick (2023; research
note break-it-down.md, section 1):

- "task": the compositional task the base model is trained on;
- one kind per subroutine (e.g. "A"): the set a mask for that subroutine is trained on,
  labelled by that subroutine alone while the other one varies freely;
- "+/-A" per subroutine: test sets in which only that subroutine's outcome varies.

`AndTask` (Lepori's design on symbols): four one-hot symbols (a1, a2, b1, b2); subroutine A
is a1 == a2, B is b1 == b2, and the label is A and B. Its "task" negatives break exactly one
of the two (half A, half B), so both must be computed.
`AddMulTask` (Csordas et al. 2021): two 2-digit numbers and an operation flag; the label is
a + b or a * b mod 100, the subroutines are the two operations.

Axes: n items, s symbol.
"""

from __future__ import annotations

import torch

SPLITS = ("train", "val", "test")


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
    input_dim: int
    kinds: dict[str, tuple[dict, str]]  # kind -> ({cell: weight}, label name)

    def __init__(self, cells: dict, labels: dict[str, torch.Tensor], splits: dict):
        # cells: cell name -> bool (n,) over all items; labels: label name -> (n,) long
        self.labels = labels
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

    def sample(self, kind: str, n: int, generator: torch.Generator, split: str = "train"):
        """n labelled items of `kind` from `split`: inputs (n, input_dim) float and labels (n,) long."""
        if kind not in self.kinds:
            raise ValueError(f"kind={kind!r} must be one of {tuple(self.kinds)}")
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        _check_int("n", n, 1)
        weights, label = self.kinds[kind]
        cells = list(weights)
        which = torch.multinomial(torch.tensor([weights[c] for c in cells]), n, True, generator=generator)
        index = torch.empty(n, dtype=torch.long)
        for i, cell in enumerate(cells):
            chosen = which == i
            pool = self.items[cell, split]
            index[chosen] = pool[torch.randint(len(pool), (int(chosen.sum()),), generator=generator)]
        return self.encode(index), self.labels[label][index]

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        """Inputs (n, input_dim) float of the items `index` (n,)."""
        raise NotImplementedError


class AndTask(_Task):
    """label = (a1 == a2) and (b1 == b2) over four one-hot symbols out of `symbols`."""

    subroutines = ("A", "B")
    num_classes = 2

    def __init__(self, symbols: int = 20, val: float = 0.15, test: float = 0.15, seed: int = 0):
        _check_int("symbols", symbols, 2)
        self.symbols, self.input_dim = symbols, 4 * symbols
        self.codes = codes = torch.cartesian_prod(*[torch.arange(symbols)] * 4)  # (s^4, 4): a1 a2 b1 b2
        a, b = codes[:, 0] == codes[:, 1], codes[:, 2] == codes[:, 3]
        cells = {"A&B": a & b, "A&~B": a & ~b, "~A&B": ~a & b, "~A&~B": ~a & ~b}
        labels = {"task": (a & b).long(), "A": a.long(), "B": b.long()}
        self.kinds = {
            "task": ({"A&B": 0.5, "~A&B": 0.25, "A&~B": 0.25}, "task"),  # negatives break one subroutine
            "A": ({"A&B": 0.25, "A&~B": 0.25, "~A&B": 0.25, "~A&~B": 0.25}, "A"),  # B varies freely
            "B": ({"A&B": 0.25, "A&~B": 0.25, "~A&B": 0.25, "~A&~B": 0.25}, "B"),
            "+/-A": ({"A&B": 0.5, "~A&B": 0.5}, "A"),  # only A varies; B holds
            "+/-B": ({"A&B": 0.5, "A&~B": 0.5}, "B"),
        }
        super().__init__(cells, labels, _split_items(len(codes), val, test, seed))

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.codes[index], self.symbols).flatten(1).float()


class AddMulTask(_Task):
    """label = a + b or a * b mod 100 for 2-digit a, b; one-hot digits of a and b and the operation."""

    subroutines = ("add", "mul")
    num_classes = 100

    def __init__(self, val: float = 0.15, test: float = 0.15, seed: int = 0):
        a, b, op = torch.cartesian_prod(torch.arange(100), torch.arange(100), torch.arange(2)).unbind(1)
        digits = torch.stack([a // 10, a % 10, b // 10, b % 10], dim=1)  # (n, 4)
        one_hot = torch.nn.functional.one_hot
        self.inputs = torch.cat([one_hot(digits, 10).flatten(1), one_hot(op, 2)], dim=1).float()  # (n, 42)
        result = torch.where(op == 0, a + b, a * b) % 100
        self.input_dim = self.inputs.shape[1]
        cells = {"add": op == 0, "mul": op == 1}
        self.kinds = {
            "task": ({"add": 0.5, "mul": 0.5}, "result"),
            "add": ({"add": 1.0}, "result"),
            "mul": ({"mul": 1.0}, "result"),
            "+/-add": ({"add": 1.0}, "result"),  # only the addition varies: add problems
            "+/-mul": ({"mul": 1.0}, "result"),
        }
        super().__init__(cells, {"result": result}, _split_items(len(result), val, test, seed))

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        return self.inputs[index]
