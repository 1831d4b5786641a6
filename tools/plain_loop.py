"""A plain PyTorch training loop on the hyperteacher, for `bindbench bench --compare`.

Usage: python tools/plain_loop.py [--width 256] [--depth 4] [--steps 300] [--threads N]
Prints "<number> steps/s". What a researcher would write without BindBench: nn.Sequential,
torch.optim.AdamW on all parameters, a fresh batch of 128 tasks x 16 samples each step.
"""

import argparse
import time

import torch
from torch import nn

from bindbench.core.device import threads_per_worker
from bindbench.tasks.hyperteacher import HyperTeacher

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, default=256)
parser.add_argument("--depth", type=int, default=4)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--threads", type=int, default=None)
args = parser.parse_args()
torch.set_num_threads(args.threads or threads_per_worker(1))

teacher = HyperTeacher()
generator = torch.Generator().manual_seed(0)
torch.manual_seed(0)
dims = [teacher.encoding_dim + teacher.input_dim] + [args.width] * args.depth
layers = [m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
model = nn.Sequential(*layers, nn.Linear(dims[-1], teacher.output_dim))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=3e-3)

start = time.perf_counter()
for _ in range(args.steps):
    batch = teacher.sample(128, "train", generator)
    inputs = torch.cat([batch.encoding.unsqueeze(1).expand(-1, batch.x.shape[1], -1), batch.x], -1)
    loss = nn.functional.mse_loss(model(inputs), batch.y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"{args.steps / (time.perf_counter() - start):.2f} steps/s")
