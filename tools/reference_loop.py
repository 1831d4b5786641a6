"""The hyperteacher reference's own training loop, timed, for `bindbench bench --compare`.

Usage, in the reference's environment (JAX, Flax, optax; its checkout is not shipped here):

    python tools/reference_loop.py --reference PATH [--width 256] [--depth 4] [--steps 300]

PATH is a checkout of smonsays/scale-compositionality. The experiment is built by its own
`run.setup_experiment` from its `configs/teacher.py` (batch 128, M = 16, K = 3, frac_ood
0.25, AdamW 3e-4 / 3e-3 with its decay mask, MSE, seed 43) with only the MLP's width and
depth set, no probing callback and no loggers. `--warmup` steps (compilation) are not
timed; then `--steps` steps of its loop body: the next batch from its data loader (data
generated on the fly) and its jitted `train_step`, blocking once at the end. Prints
"<number> steps/s" on stdout; everything else goes to stderr.
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--reference", required=True, help="checkout of smonsays/scale-compositionality")
parser.add_argument("--width", type=int, default=256)
parser.add_argument("--depth", type=int, default=4)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation)")
args = parser.parse_args()


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


for needed in ("run.py", "configs/teacher.py"):
    if not os.path.isfile(os.path.join(args.reference, needed)):
        fail(f"--reference {args.reference}: no {needed} (not a checkout of smonsays/scale-compositionality)")
try:
    import jax
except ImportError:
    fail("jax is not installed here: run this in the reference's own environment")

stdout = os.dup(1)
os.dup2(2, 1)  # the reference's own prints and logs must not reach stdout
os.chdir(args.reference)
sys.path.insert(0, os.path.abspath(args.reference))

import run  # noqa: E402  (the reference's run.py)
from configs import teacher  # noqa: E402

config = teacher.get_config()
config.model.d_mlp, config.model.num_hidden_layers = args.width, args.depth
config.dataset.num_train = config.batch_size * (args.steps + args.warmup)
config.callbacks.mlp_probing = False
config.logger_types = ()
experiment = run.setup_experiment(config, logger_list=(), callbacks=())
state = experiment.reset(jax.random.key(config.seed))
batches = iter(experiment.train_loader)


def steps(n: int):
    global state
    for _ in range(n):
        state, _ = experiment.train_step(state, next(batches))
    jax.block_until_ready(state.params)


steps(args.warmup)
start = time.perf_counter()
steps(args.steps)
speed = args.steps / (time.perf_counter() - start)
print(f"jax {jax.__version__} on {jax.default_backend()}", file=sys.stderr)
os.dup2(stdout, 1)
print(f"{speed:.2f} steps/s")
