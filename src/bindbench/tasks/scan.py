"""SCAN (Lake & Baroni 2018), regenerated from its grammar, with its standard splits.

    C -> S | S and S | S after S
    S -> V | V twice | V thrice
    V -> U | D | U opposite DIR | U around DIR | turn opposite DIR | turn around DIR
    D -> U DIR | turn DIR            DIR -> left | right
    U -> walk | look | run | jump

gives 34 V-phrases, 102 S-phrases and 20,910 commands, the same set (actions included) as
the published `tasks.txt`. Order, fixed and documented: the 102 S-phrases in grammar order
(each V, then V twice, then V thrice; V in the order of the rule above, U and DIR in the
order listed), then every `S1 and S2`, then every `S1 after S2`, S1 outer, S2 inner.

Every split but `simple` is defined by a rule and reproduces the published files as sets,
row counts included. `simple` is a random 80/20 split; the published seed is unknown,
so BindBench's is its own (seed 0 by default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

PRIMITIVES = ("walk", "look", "run", "jump")
DIRECTIONS = ("left", "right")
ACTION = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURN = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
INPUT_WORDS = (*PRIMITIVES, "turn", *DIRECTIONS, "around", "opposite", "twice", "thrice", "and", "after")
OUTPUT_TOKENS = (*ACTION.values(), *TURN.values())

# the bare primitive makes up this fraction of an add-primitive split's training rows
PRIMITIVE_SHARE = 0.1
MAX_TRAIN_ACTIONS = 22  # length split: train on output length <= 22, test on the rest


@dataclass(frozen=True)
class Example:
    command: str  # words separated by single spaces
    actions: str  # action tokens separated by single spaces

    def line(self) -> str:
        """The original file format."""
        return f"IN: {self.command} OUT: {self.actions}"


@dataclass(frozen=True)
class Split:
    name: str
    train: list[Example]  # rows; a repeated primitive appears as repeated rows
    test: list[Example]


def _verb_phrases() -> list[tuple[str, list[str]]]:
    """The 34 V-phrases with their meanings, in grammar order."""
    phrases = [(u, [ACTION[u]]) for u in PRIMITIVES]
    phrases += [(f"{u} {d}", [TURN[d], ACTION[u]]) for u in PRIMITIVES for d in DIRECTIONS]
    phrases += [(f"turn {d}", [TURN[d]]) for d in DIRECTIONS]
    phrases += [(f"{u} opposite {d}", [TURN[d], TURN[d], ACTION[u]]) for u in PRIMITIVES for d in DIRECTIONS]
    phrases += [(f"{u} around {d}", [TURN[d], ACTION[u]] * 4) for u in PRIMITIVES for d in DIRECTIONS]
    phrases += [(f"turn opposite {d}", [TURN[d]] * 2) for d in DIRECTIONS]
    phrases += [(f"turn around {d}", [TURN[d]] * 4) for d in DIRECTIONS]
    return phrases


def _sentences() -> list[tuple[str, list[str]]]:
    """The 102 S-phrases: each V, V twice, V thrice."""
    out = []
    for words, meaning in _verb_phrases():
        out += [(words, meaning), (f"{words} twice", meaning * 2), (f"{words} thrice", meaning * 3)]
    return out


def generate() -> list[Example]:
    """All 20,910 SCAN commands with their action sequences, in the documented order."""
    sentences = _sentences()
    pairs = [(a, b) for a in sentences for b in sentences]
    examples = [(w, m) for w, m in sentences]
    examples += [(f"{w1} and {w2}", m1 + m2) for (w1, m1), (w2, m2) in pairs]
    examples += [(f"{w1} after {w2}", m2 + m1) for (w1, m1), (w2, m2) in pairs]  # x after y: y first
    return [Example(words, " ".join(meaning)) for words, meaning in examples]


def _contains(command: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `command` as consecutive whole words."""
    return f" {phrase} " in f" {command} "


def _num_actions(example: Example) -> int:
    return len(example.actions.split())


def _add_primitive(examples: list[Example], primitive: str) -> tuple[list[Example], list[Example]]:
    """Train: every command without `primitive`, plus the bare primitive repeated to 10% of rows."""
    bare = next(e for e in examples if e.command == primitive)
    rest = [e for e in examples if not _contains(e.command, primitive)]
    test = [e for e in examples if _contains(e.command, primitive) and e is not bare]
    copies = round(len(rest) * PRIMITIVE_SHARE / (1 - PRIMITIVE_SHARE))
    return rest + [bare] * copies, test


def _template(examples: list[Example], held_out: list[str], dropped: str):
    """Test: commands with any `held_out` phrase; commands with `dropped` leave both sets."""
    kept = [e for e in examples if not _contains(e.command, dropped)]
    test = [e for e in kept if any(_contains(e.command, p) for p in held_out)]
    train = [e for e in kept if not any(_contains(e.command, p) for p in held_out)]
    return train, test


def _around_right_fillers(command: str) -> set[str]:
    words = command.split()
    return {words[i - 1] for i in range(1, len(words) - 1) if words[i : i + 2] == ["around", "right"]}


def _filler(examples: list[Example], num: int):
    """Filler split num0..3: around_right's train plus commands whose `X around right`
    fillers all lie in the first `num` of (look, walk, run); tested on jump around right."""
    train, _ = SPLITS["template_around_right"](examples, 0)
    _, test = SPLITS["template_jump_around_right"](examples, 0)
    allowed = set(("look", "walk", "run")[:num])
    fillers = [_around_right_fillers(e.command) for e in examples]
    extra = [
        e
        for e, f in zip(examples, fillers)
        if f and f <= allowed and not _contains(e.command, "turn around right")
    ]
    return train + extra, test


def _simple(examples: list[Example], seed: int):
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = round(0.8 * len(examples))
    return [examples[i] for i in sorted(order[:cut])], [examples[i] for i in sorted(order[cut:])]


def _length(examples: list[Example]):
    train = [e for e in examples if _num_actions(e) <= MAX_TRAIN_ACTIONS]
    test = [e for e in examples if _num_actions(e) > MAX_TRAIN_ACTIONS]
    return train, test


SPLITS = {
    "simple": lambda ex, seed: _simple(ex, seed),
    "length": lambda ex, seed: _length(ex),
    "addprim_jump": lambda ex, seed: _add_primitive(ex, "jump"),
    "addprim_turn_left": lambda ex, seed: _add_primitive(ex, "turn left"),
    "template_around_right": lambda ex, seed: _template(
        ex, [f"{u} around right" for u in PRIMITIVES], "turn around right"
    ),
    "template_jump_around_right": lambda ex, seed: _template(ex, ["jump around right"], "turn around right"),
    "template_opposite_right": lambda ex, seed: _template(
        ex, [f"{u} opposite right" for u in PRIMITIVES], "turn opposite right"
    ),
    "template_right": lambda ex, seed: _template(ex, [f"{u} right" for u in PRIMITIVES], "turn right"),
    **{f"filler_num{n}": (lambda ex, seed, n=n: _filler(ex, n)) for n in range(4)},
}


def make_split(name: str, seed: int = 0) -> Split:
    """The train rows and test rows of a standard split (`seed` matters for `simple` only)."""
    if name not in SPLITS:
        raise ValueError(f"split={name!r} is not a SCAN split; choose from {', '.join(SPLITS)}")
    train, test = SPLITS[name](generate(), seed)
    return Split(name, train, test)


def file_names(split: str) -> tuple[str, str]:
    """The published file names of a split's train and test files."""
    return f"tasks_train_{split}.txt", f"tasks_test_{split}.txt"


def write_split(split: Split, folder: Path) -> list[Path]:
    """Writes both files in the original line format; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rows, name in zip((split.train, split.test), file_names(split.name)):
        path, partial = folder / name, folder / f".{name}.partial"
        partial.write_text("".join(e.line() + "\n" for e in rows))
        partial.replace(path)  # a file is there whole or not at all
        paths.append(path)
    return paths


def read_examples(path: Path) -> list[Example]:
    """Parses a file of `IN: <command> OUT: <actions>` lines; a bad line raises ValueError
    naming the file and the line."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not an ASCII SCAN file ({error.reason} at byte {error.start})") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        head, sep, actions = line.partition(" OUT: ")
        command = head[len("IN: ") :] if head.startswith("IN: ") else ""
        words, tokens = command.split(), actions.split()
        problem = None
        if not sep or not words or not tokens:
            problem = "expected 'IN: <command> OUT: <actions>'"
        elif unknown := sorted(set(words) - set(INPUT_WORDS)):
            problem = f"unknown command word {unknown[0]!r}"
        elif unknown := sorted(set(tokens) - set(OUTPUT_TOKENS)):
            problem = f"unknown action {unknown[0]!r}"
        if problem:
            raise ValueError(f"{path}:{number}: {problem}")
        examples.append(Example(" ".join(words), " ".join(tokens)))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def read_split(train: Path, test: Path, name: str = "from_file") -> Split:
    """A split from two files in the original format (e.g. official MCD or simple files)."""
    return Split(name, read_examples(train), read_examples(test))


# token ids: the source has padding only; the target also has begin and end of sequence
PAD, BOS, EOS = 0, 1, 2
SOURCE_VOCAB = ("<pad>", *INPUT_WORDS)
TARGET_VOCAB = ("<pad>", "<bos>", "<eos>", *OUTPUT_TOKENS)
_SOURCE_ID = {w: i for i, w in enumerate(SOURCE_VOCAB)}
_TARGET_ID = {t: i for i, t in enumerate(TARGET_VOCAB)}


def encode(examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids: source (n, longest command), target (n, 2 + longest action
    sequence) as <bos> actions <eos> <pad>..."""
    commands = [[_SOURCE_ID[w] for w in e.command.split()] for e in examples]
    actions = [[BOS, *(_TARGET_ID[t] for t in e.actions.split()), EOS] for e in examples]
    source = torch.full((len(examples), max(map(len, commands))), PAD, dtype=torch.long)
    target = torch.full((len(examples), max(map(len, actions))), PAD, dtype=torch.long)
    for i, (c, a) in enumerate(zip(commands, actions)):
        source[i, : len(c)] = torch.tensor(c)
        target[i, : len(a)] = torch.tensor(a)
    return source, target


def decode(ids: torch.Tensor) -> list[str]:
    """Action strings from target ids (one row per sequence), cut at the first <eos>."""
    out = []
    for row in ids.tolist():
        tokens = []
        for i in row:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                tokens.append(TARGET_VOCAB[i])
        out.append(" ".join(tokens))
    return out
