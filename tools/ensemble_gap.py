"""How far vectorized-ensemble members land from the same runs trained alone.

Usage: python tools/ensemble_gap.py [--threads 1] [--set k=v ...]   (composition's --set)
Plans the composition sweep, trains each group of one width as one ensemble
(`run_group`) and each run alone (`run`), and prints per run and metric both values and
their absolute gap, then the worst gap. `--vs-threads N` compares solo runs at --threads
against solo runs at N threads instead (float sums in another order, no ensemble).
"""

import argparse

import torch

from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.hyperteacher.composition import run, run_group

parser = argparse.ArgumentParser()
parser.add_argument("--set", action="append", default=[], dest="sets")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--vs-threads", type=int, default=None)
args = parser.parse_args()

torch.set_num_threads(args.threads)
ctx = RunContext(torch.device("cpu"))
groups: dict[int, list] = {}
for job in make_plan("composition", sets=args.sets).jobs:
    groups.setdefault(job.spec.model.width, []).append(job.spec)
worst: dict[str, float] = {}
for width, specs in groups.items():
    if args.vs_threads is None:
        first = run_group(specs, ctx)
    else:
        first = [run(spec, ctx) for spec in specs]
        torch.set_num_threads(args.vs_threads)
    second = [run(spec, ctx) for spec in specs]
    torch.set_num_threads(args.threads)
    for spec, a, b in zip(specs, first, second):
        for key in ("ood_r2", "id_r2"):
            gap = abs(a.metrics[key] - b.metrics[key])
            worst[key] = max(worst.get(key, 0.0), gap)
            values = f"{a.metrics[key]:.6f} {b.metrics[key]:.6f} gap {gap:.1e}"
            print(f"width {width} seed {spec.seed} lr {spec.train.lr:g} {key}: {values}")
print("worst gap:", ", ".join(f"{key} {gap:.1e}" for key, gap in worst.items()))
