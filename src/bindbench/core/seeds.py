"""One rule for a run's random streams: each stream has a name, and its seed comes from the
run's seed, that name and an optional index through numpy's SeedSequence (a hash built for
this), so no two streams coincide: not within a run, not across runs or experiments.

    generator(seed, "data")        the training data of the run with this seed
    generator(seed, "masks", i)    its i-th mask search
    generator(None, "eval")        a set every run shares (the same evaluation scenes)
    seed_init(seed)                torch's global generator, for initialization

A task is built from the run's seed itself (`HyperTeacher(seed=...)`, SCAN's simple split):
the teacher or split of seed 0 is the one `bindbench data` writes for seed 0.
"""

from __future__ import annotations

import numpy as np
import torch

# the order is part of the rule: a stream's position is its key (append, never reorder)
STREAMS = (
    "init",
    "data",
    "eval",
    "noise",
    "probe",
    "roles",
    "masks",
    "mask_data",
    "control",
    "judge",
    "samples",
    "pretrain",
)
RUN, SHARED = 0, 1  # a stream of one run, or one that every run shares


def stream_seed(seed: int | None, stream: str, *index: int) -> int:
    """The 64-bit seed of a named stream of the run with this seed (None: shared by all runs)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}: known are {', '.join(STREAMS)}")
    kind, entropy = (SHARED, 0) if seed is None else (RUN, seed)
    sequence = np.random.SeedSequence(entropy, spawn_key=(kind, STREAMS.index(stream), *index))
    return int(sequence.generate_state(1, np.uint64)[0])


def generator(seed: int | None, stream: str, *index: int, device: torch.device | str = "cpu"):
    """A torch.Generator on `device` seeded for that stream."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *index))


def seed_init(seed: int) -> None:
    """Seeds torch's global generator (what module constructors draw from) for the run."""
    torch.manual_seed(stream_seed(seed, "init"))
