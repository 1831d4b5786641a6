import atexit
import os
import shutil
import tempfile

import pytest
import torch

import bindbench.experiments  # noqa: F401  (registers experiments and suites)

# `bindbench list`'s cache (bindbench.catalog) goes to a folder of the test session's own
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bindbench-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)  # not left in /tmp

# Sized so one run trains in about a second on one CPU core.
TINY = [
    "model.width=8",
    "model.depth=1",
    "task.num_modules=6",
    "task.num_hot=2",
    "task.frac_ood=0.3",
    "train.steps=30",
    "train.batch_size=8",
    "train.eval_every=10",
    "eval_tasks=16",
]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)
