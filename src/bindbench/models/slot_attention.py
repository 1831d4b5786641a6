"""Slot Attention (Locatello et al. 2020), its object-discovery autoencoder, and the Slot-MLP ablation.

`SlotAttention` turns a set of inputs into K exchangeable slots by iterated attention in which the
slots compete for each input. `SlotAutoencoder` encodes an image with a CNN, forms slots with Slot
Attention and decodes every slot on its own with a spatial broadcast decoder; a softmax over slots
of the decoded alpha logits gives the masks (the segmentation) and the reconstruction is the
mask-weighted sum of the slots' RGB. `SlotMLPAutoencoder` is the same autoencoder with the slots read
off the pooled features by an MLP: the paper's slot-free ablation. Sized for small images, the
decoder broadcasts at full resolution; `Layout` chooses between the reference's layout (stride-1
encoder, 5 x 5 convolutional decoder) and a cheaper one (strided first convolution, per-pixel MLP
decoder that can decode a subset of pixels).

Axes: b batch, k slot, n input (pixel), d feature, c channel, h height, w width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1")


class SlotAttentionOutput(NamedTuple):
    slots: torch.Tensor  # (b, k, d)
    attention: torch.Tensor  # (b, k, n): the last iteration's softmax over slots, before renormalizing


class SlotAttention(nn.Module):
    """Slot Attention exactly as the reference code has it (research note 1.1).

    The initial slots are mu + exp(log_sigma) * noise, with one learned (mu, log_sigma) shared by all
    slots and fresh standard-normal noise per example (also in eval mode), so the slots are
    exchangeable. `implicit=True` (Chang et al. 2022) back-propagates through the last iteration
    only, from its detached input: the same forward pass, memory constant in `iters`, and no
    gradient reaches mu and log_sigma (when iters > 1).
    """

    def __init__(
        self,
        num_slots: int,
        dim: int,
        iters: int = 3,
        hidden: int = 128,  # the slot MLP's hidden width
        eps: float = 1e-8,
        implicit: bool = False,
        input_dim: int | None = None,  # d_in of the inputs; `dim` when None
    ):
        super().__init__()
        input_dim = dim if input_dim is None else input_dim
        _check_positive(num_slots=num_slots, dim=dim, iters=iters, hidden=hidden, input_dim=input_dim)
        self.num_slots, self.dim, self.iters, self.eps, self.implicit = num_slots, dim, iters, eps, implicit
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.to_k = nn.Linear(input_dim, dim, bias=False)
        self.to_v = nn.Linear(input_dim, dim, bias=False)
        # glorot-uniform as Keras draws it for a [1, 1, D] weight (fans 1 and D)
        self.mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, dim)).view(1, 1, dim))
        self.log_sigma = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, dim)).view(1, 1, dim))
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)  # reset gate after the matmul, as Keras' default GRUCell
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(
        self,
        inputs: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SlotAttentionOutput:
        """Slots (b, k, d) and the last attention (b, k, n) for inputs (b, n, d_in).

        `noise` (b, k, d) is the standard-normal draw behind the initial slots (its k may differ from
        num_slots); when None it is sampled here, from `generator` if one is given.
        """
        inputs = self.norm_inputs(inputs)
        keys, values = self.to_k(inputs), self.to_v(inputs)  # (b, n, d)
        if noise is None:
            shape = (inputs.shape[0], self.num_slots, self.dim)
            noise = torch.randn(shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        slots = self.mu + self.log_sigma.exp() * noise  # (b, k, d)
        # implicit: the earlier iterations build no graph, so the last one starts from detached slots
        implicit = self.implicit and self.iters > 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and not implicit):
            for _ in range(self.iters - 1):
                slots, _ = self.step(slots, keys, values)
        return self.step(slots, keys, values)

    def step(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> SlotAttentionOutput:
        """One refinement of slots (b, k, d) given the projected inputs: keys, values (b, n, d)."""
        b, num_slots, d = slots.shape
        q = self.to_q(self.norm_slots(slots)) * self.dim**-0.5  # (b, k, d)
        attention = torch.einsum("bnd,bkd->bkn", keys, q).softmax(dim=1)  # slots compete for each input
        weights = attention + self.eps
        weights = weights / weights.sum(dim=2, keepdim=True)  # a weighted mean over the inputs
        updates = torch.einsum("bkn,bnd->bkd", weights, values)
        slots = self.gru(updates.reshape(-1, d), slots.reshape(-1, d)).view(b, num_slots, d)
        return SlotAttentionOutput(slots + self.mlp(self.norm_mlp(slots)), attention)


def position_grid(height: int, width: int) -> torch.Tensor:
    """The 4-channel position code (y, x, 1 - y, 1 - x), each over [0, 1]: (4, h, w)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([y, x, 1 - y, 1 - x])


class SoftPositionEmbed(nn.Module):
    """Adds a learned linear map of the position grid to feature maps (b, c, h, w)."""

    def __init__(self, channels: int, size: tuple[int, int]):
        super().__init__()
        self.proj = nn.Linear(4, channels)
        self.register_buffer("grid", position_grid(*size).permute(1, 2, 0), persistent=False)  # (h, w, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.grid).permute(2, 0, 1)  # (c, h, w), broadcast over the batch


class Encoder(nn.Module):
    """Images (b, 3, h, w) -> a set of h*w feature vectors (b, n, slot_dim)."""

    def __init__(self, size: tuple[int, int], channels: int, slot_dim: int, stride: int = 1):
        super().__init__()
        layers = []
        for i, c_in in enumerate([3, channels, channels, channels]):
            step = stride if i == 0 else 1  # a strided first layer: 1/stride^2 of the later layers' work
            layers += [nn.Conv2d(c_in, channels, 5, stride=step, padding=2), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        out = tuple((side - 1) // stride + 1 for side in size)  # 5 x 5, padding 2
        self.position = SoftPositionEmbed(channels, out)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, slot_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.position(self.convs(images))  # (b, c, h, w)
        return self.mlp(self.norm(x.flatten(2).transpose(1, 2)))  # (b, n, slot_dim)


class SpatialBroadcastDecoder(nn.Module):
    """Slots (b, k, d) -> RGB (b, k, 3, h, w) and alpha logits (b, k, h, w), each slot decoded alone."""

    def __init__(self, size: tuple[int, int], slot_dim: int, channels: int):
        super().__init__()
        self.size = size
        self.position = SoftPositionEmbed(slot_dim, size)
        layers = []
        for c_in in [slot_dim, channels, channels]:
            layers += [nn.Conv2d(c_in, channels, 5, padding=2), nn.ReLU()]
        self.convs = nn.Sequential(*layers, nn.Conv2d(channels, 4, 3, padding=1))

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, d = slots.shape
        tiled = slots.reshape(b * k, d, 1, 1).expand(-1, -1, *self.size)  # (b*k, d, h, w)
        out = self.convs(self.position(tiled)).view(b, k, 4, *self.size)
        return out[:, :, :3], out[:, :, 3]


class MLPBroadcastDecoder(nn.Module):
    """Slots (b, k, d) -> RGB (b, k, 3, h, w) and alpha logits (b, k, h, w) by a per-pixel MLP.

    The spatial broadcast decoder with 1 x 1 convolutions: each pixel of each slot sees only its
    slot and its own position, as in the MLP decoders of DINOSAUR and Invariant Slot Attention.
    Its first layer is linear in (slot + position embedding), so it is computed as W slot + W pos
    without building the (b, k, h*w, d) broadcast: about a tenth of the 5 x 5 decoder's work.
    """

    def __init__(
        self, size: tuple[int, int], slot_dim: int, hidden: int, layers: int = 3, frequencies: int = 0
    ):
        super().__init__()
        _check_positive(hidden=hidden, layers=layers)
        self.size = size
        grid = position_grid(*size).flatten(1).T  # (h*w, 4)
        if frequencies:  # sines and cosines of y, then of x, at 1/2, 1, 2, ... cycles per image
            angles = (grid[:, :2, None] * torch.pi * 2.0 ** torch.arange(frequencies)).flatten(1)
            grid = torch.cat([grid, angles.sin(), angles.cos()], dim=1)
        self.register_buffer("grid", grid, persistent=False)  # (h*w, 4 + 4 * frequencies)
        self.position = nn.Linear(grid.shape[1], slot_dim)
        self.first = nn.Linear(slot_dim, hidden)
        rest = []
        for _ in range(layers - 1):
            rest += [nn.ReLU(), nn.Linear(hidden, hidden)]
        self.rest = nn.Sequential(*rest, nn.ReLU(), nn.Linear(hidden, 4))

    def forward(
        self, slots: torch.Tensor, pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With `pixels`, flat pixel indices (p,), decodes only those: RGB (b, k, 3, p), alpha (b, k, p)."""
        b, k, _ = slots.shape
        grid = self.grid if pixels is None else self.grid[pixels]
        positions = self.first(self.position(grid))  # (n, hidden): W pos + bias
        x = slots @ self.first.weight.T  # (b, k, hidden): W slot
        out = self.rest(x.unsqueeze(2) + positions).transpose(2, 3)  # (b, k, 4, n)
        if pixels is None:
            out = out.reshape(b, k, 4, *self.size)
        return out[:, :, :3], out[:, :, 3]


@dataclass(frozen=True)
class Layout:
    """The encoder's and decoder's cost-setting choices; the defaults are the reference's small-image
    version (stride 1, three 5 x 5 convolutions per slot at full resolution)."""

    encoder_stride: int = 1  # of the first convolution; 2 gives Slot Attention (h/2) * (w/2) inputs
    decoder: str = "conv"  # "conv": 5 x 5 convolutions; "mlp": a per-pixel MLP (MLPBroadcastDecoder)
    decoder_hidden: int = 64  # the MLP decoder's hidden units
    decoder_layers: int = 3  # the MLP decoder's hidden layers
    decoder_frequencies: int = 0  # Fourier features of position for the MLP decoder (0: none)


@dataclass
class AutoencoderOutput:  # with `pixels`, (p,) stands for (h, w)
    reconstruction: torch.Tensor  # (b, 3, h, w): sum over slots of masks * slot_rgb
    masks: torch.Tensor  # (b, k, h, w): softmax over slots of the alpha logits
    slot_rgb: torch.Tensor  # (b, k, 3, h, w)
    slots: torch.Tensor  # (b, k, d)
    attention: torch.Tensor | None = None  # (b, k, n = h*w): Slot Attention's last; None for the Slot MLP


class ObjectDiscoveryAutoencoder(nn.Module):
    """What both autoencoders share: the encoder, the decoder and the alpha compositing.

    A subclass says how the slots come from the encoder's features, in `slots_from`. The loss is the
    MSE of `reconstruction` to the images, left to the caller.
    """

    def __init__(self, resolution: int | tuple[int, int], channels: int, slot_dim: int, layout: Layout):
        super().__init__()
        size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        _check_positive(height=size[0], width=size[1], channels=channels, slot_dim=slot_dim)
        self.size = size
        self.encoder = Encoder(size, channels, slot_dim, stride=layout.encoder_stride)
        if layout.decoder == "conv":
            self.decoder = SpatialBroadcastDecoder(size, slot_dim, channels)
        elif layout.decoder == "mlp":
            self.decoder = MLPBroadcastDecoder(
                size, slot_dim, layout.decoder_hidden, layout.decoder_layers, layout.decoder_frequencies
            )
        else:
            raise ValueError(f"decoder={layout.decoder!r} must be 'conv' or 'mlp'")

    def slots_from(self, features, noise, generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Slots (b, k, d) and an attention (b, k, n) or None, from features (b, n, d)."""
        raise NotImplementedError

    def forward(
        self,
        images: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        pixels: torch.Tensor | None = None,
    ) -> AutoencoderOutput:
        """Decoding of images (b, 3, h, w); `noise` and `generator` go to Slot Attention's initial
        slots (see `SlotAttention.forward`), the Slot MLP has no use for them.

        `pixels`, flat indices (p,) into h * w, decodes only those pixels (the MLP decoder only): the
        output's images and masks are then (b, c, p) and (b, k, p). A training loss on a random
        subset of pixels is an unbiased estimate of the full one at a fraction of the decoder's cost.
        """
        if tuple(images.shape[-2:]) != self.size:
            raise ValueError(
                f"images of size {tuple(images.shape[-2:])} but the model was built for {self.size}"
            )
        slots, attention = self.slots_from(self.encoder(images), noise, generator)
        if pixels is None:
            slot_rgb, alpha = self.decoder(slots)
        elif isinstance(self.decoder, MLPBroadcastDecoder):
            slot_rgb, alpha = self.decoder(slots, pixels)
        else:
            raise ValueError("only the MLP decoder decodes a subset of pixels")
        masks = alpha.softmax(dim=1)  # the slots compete for each pixel
        reconstruction = torch.einsum("bk...,bkc...->bc...", masks, slot_rgb)
        return AutoencoderOutput(reconstruction, masks, slot_rgb, slots, attention)


class SlotAutoencoder(ObjectDiscoveryAutoencoder):
    """The object-discovery autoencoder of Locatello et al. 2020 at full-resolution broadcast."""

    def __init__(
        self,
        resolution: int | tuple[int, int] = 32,
        num_slots: int = 4,  # max objects + 1 for the background
        channels: int = 32,
        slot_dim: int = 64,
        iters: int = 3,
        hidden: int = 128,
        implicit: bool = False,
        layout: Layout = Layout(),
    ):
        super().__init__(resolution, channels, slot_dim, layout)
        self.slot_attention = SlotAttention(num_slots, slot_dim, iters, hidden, implicit=implicit)

    def slots_from(self, features, noise, generator):
        return self.slot_attention(features, noise, generator)


class SlotMLPAutoencoder(ObjectDiscoveryAutoencoder):
    """The Slot-MLP ablation: an MLP on the mean encoder feature gives k ordered slots."""

    def __init__(
        self,
        resolution: int | tuple[int, int] = 32,
        num_slots: int = 4,
        channels: int = 32,
        slot_dim: int = 64,
        hidden: int = 128,
        layout: Layout = Layout(),
    ):
        super().__init__(resolution, channels, slot_dim, layout)
        _check_positive(num_slots=num_slots, hidden=hidden)
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.slot_mlp = nn.Sequential(
            nn.Linear(slot_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_slots * slot_dim)
        )

    def slots_from(self, features, noise, generator):
        slots = self.slot_mlp(features.mean(dim=1))  # (b, k*d)
        return slots.view(-1, self.num_slots, self.slot_dim), None
