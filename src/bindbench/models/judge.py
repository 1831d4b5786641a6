"""The judge of generated images: a classifier per concept, trained on true renders only.

`AttributeJudge` reads every concept of a prompt (the size, colour and shape of an object, or
the colour and shape of the left and the right one) back from an image: a small CNN whose
features are max-pooled onto a coarse grid (so that left and right stay apart), then
one linear head per concept. `train_judge` fits it on renders of every combination, so it
has seen each combination it will judge; it never sees a generated image.
Axes: b batch, c concept, v value.
"""

from collections.abc import Callable

import torch
from torch import nn

GRID = 4  # the features' places kept: a GRID x GRID max-pooled map


class AttributeJudge(nn.Module):
    def __init__(self, concept_sizes: tuple[int, ...], channels: int = 32, hidden: int = 128):
        super().__init__()

        def conv(into: int, out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(into, out, 3, stride=stride, padding=1), nn.BatchNorm2d(out), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(3, channels),
            *conv(channels, channels),
            *conv(channels, 2 * channels, stride=2),
            *conv(2 * channels, 2 * channels),
            *conv(2 * channels, 2 * channels, stride=2),
            nn.AdaptiveMaxPool2d(GRID),  # what is where, on a coarse grid: left and right stay apart
            nn.Flatten(),
            nn.Linear(2 * channels * GRID**2, hidden),
            nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, size) for size in concept_sizes)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits (b, v) of each concept, for images (b, 3, h, w) in [0, 1]."""
        features = self.features(images * 2 - 1)
        return [head(features) for head in self.heads]

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """The value (b, c) the judge reads for every concept."""
        was = self.training
        self.eval()
        try:
            parts = [torch.stack([lg.argmax(1) for lg in self(chunk)], 1) for chunk in images.split(batch)]
        finally:
            self.train(was)
        return torch.cat(parts)


def judge_loss(judge: AttributeJudge, images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The mean over concepts of the cross-entropy of the true values (b, c)."""
    logits = judge(images)
    return sum(nn.functional.cross_entropy(lg, values[:, i]) for i, lg in enumerate(logits)) / len(logits)


def train_judge(
    judge: AttributeJudge,
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> list[float]:
    """Trains the judge on `draw(batch_size)` -> (images, values) batches with Adam at `lr`
    (decayed to a tenth, cosine); returns the loss of each step."""
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 10)
    judge.train()
    losses = []
    for _ in range(steps):
        images, values = draw(batch_size)
        loss = judge_loss(judge, images, values)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses
