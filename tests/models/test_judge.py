import time

import torch

from bindbench.core.seeds import seed_init
from bindbench.models.judge import AttributeJudge, train_judge
from bindbench.tasks.prompts import Prompts


def test_the_judge_reads_every_concept_of_true_renders_of_a_small_case_exactly():
    torch.set_num_threads(1)
    seed_init(0)
    prompts = Prompts(form="pair", colours=("red", "green", "blue"), shapes=("square", "triangle"))
    judge = AttributeJudge(tuple(len(v) for v in prompts.concepts.values()), channels=16, hidden=64)
    draws = torch.Generator().manual_seed(0)

    def draw(n):
        batch = prompts.sample(n, draws, "all")
        return batch.scenes.images, batch.values

    start = time.time()
    losses = train_judge(judge, draw, steps=200, batch_size=32)
    assert losses[-1] < losses[0] / 10
    held = prompts.sample(512, torch.Generator().manual_seed(1), "test")  # renders it never saw
    assert torch.equal(judge.read(held.scenes.images), held.values)
    assert judge.training and time.time() - start < 60  # read() restores the mode
