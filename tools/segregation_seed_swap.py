"""Does a failing Slot Attention seed fail from its initialization or from its data?

    python tools/segregation_seed_swap.py INIT_SEED DATA_SEED    (about 4.5 minutes on one thread)

trains the first recipe of the `segregation_recipes` suite (Slot Attention, 2,400 steps, the
full backward pass) with the initialization of one seed and the training scenes and slot
noise of another, and prints its validation FG-ARI (at every evaluation, then the last).
INIT_SEED = DATA_SEED gives the suite's own run, to the digit.
"""

from __future__ import annotations

import sys

import torch

import bindbench.experiments  # noqa: F401  (registers the experiments)
from bindbench.core import seeds
from bindbench.core.config import build_spec
from bindbench.core.worker import RunContext
from bindbench.experiments.objects import segregation, setup

RECIPE = {  # the quick profile with the suite's first entry (segregation_recipes.yaml)
    "model.kind": "slot_attention",
    "model.implicit": False,
    "train.steps": 2400,
    "train.warmup_steps": 100,
    "train.eval_every": 600,
    "eval_scenes": 128,
    "more_objects": None,  # evaluations that do not touch training, left out for speed
    "pictures": 0,
    "test_iters": [],
}


def main(init_seed: int, data_seed: int) -> None:
    torch.set_num_threads(1)
    stream = seeds.generator
    # the autoencoder's streams: "init" through seed_init, "data" and "noise" through generator
    setup.seed_init = lambda seed: seeds.seed_init(init_seed)
    setup.generator = lambda seed, name, *index, device="cpu": stream(
        data_seed if name in ("data", "noise") else seed, name, *index, device=device
    )
    spec = build_spec(segregation.SegregationSpec, {}, RECIPE)
    result = segregation.run(spec, RunContext(device=torch.device("cpu")))
    curve = [round(point["val_fg_ari"], 3) for point in result.curve]
    last = result.metrics["val_fg_ari"]
    print(f"init {init_seed}, data {data_seed}: validation FG-ARI {curve}, last {last:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(int(sys.argv[1]), int(sys.argv[2]))
