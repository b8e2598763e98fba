"""Per-batch input transforms, applied on the training device.

Datasets stay as 28x28 uint8 tensors; each architecture declares the input it
wants (InputSpec) and every batch is converted on the fly. That is how alexnet
gets 227x227x3 images without the 227x227 dataset ever existing (60,000 x 3 x
227 x 227 float32 would be 37 GB).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class InputSpec:
    size: int = 28  # the model sees size x size images
    channels: int = 1  # 3 = the grey image stacked into RGB
    resize: bool = False  # False: zero-pad 28 -> size (LeNet style); True: bilinear resize

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def to_dict(self) -> dict:
        return asdict(self)


def augment_batch(x: torch.Tensor, max_shift: float = 2.0, max_degrees: float = 10.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random small shifts (pixels) and rotations (degrees) of a float batch (B, 1, H, W)."""
    b, _, h, _ = x.shape
    rand = lambda: torch.rand(b, generator=generator).to(x.device) * 2 - 1  # noqa: E731 U(-1, 1)
    angle = rand() * math.radians(max_degrees)
    shift = torch.stack([rand(), rand()], 1) * (2 * max_shift / h)  # grid units: 2 = full width
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _pad(x: torch.Tensor, size: int, value: float) -> torch.Tensor:
    pad = size - x.shape[-1]
    return F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=value)


def prepare_batch(x: torch.Tensor, spec: InputSpec, mean: float, std: float,
                  augment: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, C, S, S), normalised, in the architecture's shape.

    This runs every training step, so the usual case is three small kernels: scale the
    uint8 pixels into a new float tensor, shift, then pad with normalised black.
    Augmentation and resizing work on the 0..255 scale (black = 0) before normalising."""
    scale, shift = 1.0 / (255.0 * std), mean / std  # (x / 255 - mean) / std == x * scale - shift
    x = x.unsqueeze(1)
    if augment or spec.resize:
        x = x.to(torch.float32, copy=True)  # never modify the caller's tensor in place
        if augment:
            x = augment_batch(x, generator=generator)
        if spec.size != x.shape[-1]:
            x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False) \
                if spec.resize else _pad(x, spec.size, 0.0)
        x = x.mul_(scale).sub_(shift)
    else:
        x = x.mul(scale).sub_(shift)  # uint8 * float -> a new float32 tensor
        if spec.size != x.shape[-1]:  # zero padding = black background, as LeNet-5's 32x32 input
            x = _pad(x, spec.size, -shift)
    if spec.channels != 1:
        x = x.expand(-1, spec.channels, -1, -1)
    return x
