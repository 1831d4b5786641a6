"""A small text-to-image generator: a conditional U-Net trained by flow matching.

Flow matching (rectified flow, Lipman et al. 2023; Liu et al. 2023) because it is the field's
current recipe (Stable Diffusion 3, FLUX) in its simplest form: an image x1 in [-1, 1] and
noise x0 ~ N(0, I) are joined by the straight line x_t = (1 - t) x0 + t x1, the network
predicts its velocity x1 - x0 from (x_t, t, prompt), and sampling integrates that velocity
from t = 0 to 1 with Euler steps. One loss, no noise schedule to tune, few sampling steps.

The prompt is read as the reference's text-to-image models read it: token embeddings
through a small Transformer encoder, attended to by the U-Net's low-resolution blocks
(cross-attention), its mean also shifting and scaling every block's features with the time
(FiLM). Classifier-free guidance: the prompt is replaced by a learned null prompt in a
fraction of training steps, and sampling mixes the two predictions with `guidance`.
Axes: b batch, c channel, h w pixels, t token, d feature.
"""

import math

import torch
from torch import nn


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (b, dim) of times t (b,) in [0, 1]."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None] * frequencies[None]  # (b, half): periods from 2 pi / 1000 to 2 pi * 10
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class PromptEncoder(nn.Module):
    """Tokens (b, t) -> token features (b, t, d): embeddings, learned positions, a Transformer."""

    def __init__(self, vocab: int, length: int, dim: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(length, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.null = nn.Parameter(torch.zeros(length, dim))  # the empty prompt of guidance
        nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoder(self.embed(tokens) + self.position)
        if drop is not None:  # (b,) bool: these rows get the null prompt
            features = torch.where(drop[:, None, None], self.null.expand_as(features), features)
        return features


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual, FiLM-modulated by a condition vector."""

    def __init__(self, into: int, out: int, cond: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, into), into), nn.Conv2d(into, out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, out), out), nn.Conv2d(out, out, 3, padding=1)
        self.film = nn.Linear(cond, 2 * out)
        self.skip = nn.Conv2d(into, out, 1) if into != out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(nn.functional.silu(h))


class CrossAttention(nn.Module):
    """Pixels attend to the prompt's tokens; added to the features (a residual)."""

    def __init__(self, channels: int, dim: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.attention = nn.MultiheadAttention(channels, heads, kdim=dim, vdim=dim, batch_first=True)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        queries = self.norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        attended, _ = self.attention(queries, tokens, tokens, need_weights=False)
        return x + attended.transpose(1, 2).reshape(b, c, h, w)


PATCH = 2  # the U-Net sees 2x2 patches of pixels (as DiT's patch size 2): a quarter of the cost


class FlowUNet(nn.Module):
    """The velocity model v(x_t, t, prompt): a U-Net over 3 resolutions of PATCH x PATCH pixel
    patches (1/2, 1/4 and 1/8 of the image side), `width` channels at the top and twice that
    below, cross-attention at 1/4 and 1/8."""

    def __init__(self, vocab: int, length: int, width: int = 32, dim: int = 64):
        super().__init__()
        self.prompt = PromptEncoder(vocab, length, dim)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        w, cond = width, dim
        self.stem = nn.Sequential(nn.PixelUnshuffle(PATCH), nn.Conv2d(3 * PATCH**2, w, 3, padding=1))
        self.down1 = ResBlock(w, w, cond)
        self.down2 = ResBlock(w, 2 * w, cond)
        self.attend2 = CrossAttention(2 * w, dim)
        self.down3 = ResBlock(2 * w, 2 * w, cond)
        self.attend3 = CrossAttention(2 * w, dim)
        self.middle = ResBlock(2 * w, 2 * w, cond)
        self.attend_middle = CrossAttention(2 * w, dim)
        self.up2 = ResBlock(4 * w, 2 * w, cond)
        self.up1 = ResBlock(3 * w, w, cond)
        self.out = nn.Sequential(
            nn.GroupNorm(min(8, w), w),
            nn.SiLU(),
            nn.Conv2d(w, 3 * PATCH**2, 3, padding=1),
            nn.PixelShuffle(PATCH),
        )
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The velocity (b, 3, h, w) at x_t (b, 3, h, w), times t (b,) and prompt tokens (b, t);
        `drop` (b,) bool puts the null prompt in those rows."""
        words = self.prompt(tokens, drop)  # (b, t, d)
        cond = self.time(time_features(t, words.shape[-1])) + words.mean(1)  # (b, d)
        h1 = self.down1(self.stem(x), cond)  # (b, w, h/2, w/2)
        h2 = self.down2(nn.functional.avg_pool2d(h1, 2), cond)  # (b, 2w, h/4, w/4)
        h2 = self.attend2(h2, words)
        h3 = self.attend3(self.down3(nn.functional.avg_pool2d(h2, 2), cond), words)  # (b, 2w, h/8, w/8)
        m = self.attend_middle(self.middle(h3, cond), words)
        u2 = self.up2(torch.cat([nn.functional.interpolate(m, scale_factor=2.0), h2], 1), cond)
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2.0), h1], 1), cond)
        return self.out(u1)


def flow_loss(
    model: FlowUNet,
    images: torch.Tensor,
    tokens: torch.Tensor,
    generator: torch.Generator,
    drop_prompt: float = 0.1,
) -> torch.Tensor:
    """The flow-matching loss on images (b, 3, h, w) in [0, 1]: the mean squared error of the
    predicted velocity at a uniform time, the prompt dropped with probability `drop_prompt`."""
    b, device = len(images), images.device
    x1 = images * 2 - 1
    x0 = torch.randn(x1.shape, generator=generator, device=device)
    t = torch.rand(b, generator=generator, device=device)
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1
    drop = torch.rand(b, generator=generator, device=device) < drop_prompt
    return (model(xt, t, tokens, drop) - (x1 - x0)).pow(2).mean()


@torch.no_grad()
def sample(
    model: FlowUNet,
    tokens: torch.Tensor,
    generator: torch.Generator,
    steps: int = 20,
    guidance: float = 2.0,
    resolution: int = 32,
    keep: tuple[float, ...] = (),
) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Images (b, 3, h, w) in [0, 1] for prompt tokens (b, t), by `steps` Euler steps from
    noise, guided (`guidance` 1: none); also x_t at the times in `keep` (fractions of the
    schedule, rounded to a step), {fraction: (b, 3, h, w)}, for probing the generator there."""
    b, device = len(tokens), tokens.device
    x = torch.randn(b, 3, resolution, resolution, generator=generator, device=device)
    kept, at = {}, {min(steps, round(f * steps)): f for f in keep}
    nobody = torch.zeros(b, dtype=torch.bool, device=device)
    everybody = ~nobody
    for i in range(steps + 1):
        if i in at:
            kept[at[i]] = x.clone()
        if i == steps:
            break
        t = torch.full((b,), i / steps, device=device)
        velocity = model(x, t, tokens, nobody)
        if guidance != 1:
            free = model(x, t, tokens, everybody)
            velocity = free + guidance * (velocity - free)
        x = x + velocity / steps
    return ((x + 1) / 2).clamp(0, 1), kept
