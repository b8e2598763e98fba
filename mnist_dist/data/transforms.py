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


# Augmentation strengths (`augment: off | light | strong`), on whole batches on the device.
# Digits and characters: a mirrored 2, 3, 7 or kana is not that class, so never a flip.
# light = the original shifts (px) and rotations (degrees); strong = larger, + scale (fraction).
DIGIT_AUGMENT = {"light": {"max_shift": 2.0, "max_degrees": 10.0},
                 "strong": {"max_shift": 3.0, "max_degrees": 15.0, "max_scale": 0.1}}
# Clothing: a mirrored shirt is a shirt. Random crop of the zero-padded image (a shift by
# whole pixels) and a horizontal flip; strong crops wider and erases a square (cutout).
FASHION_AUGMENT = {"light": {"pad": 2}, "strong": {"pad": 4, "erase": 8}}


def mirror_safe(dataset: str) -> bool:
    """Whether a horizontal flip keeps the class: only clothing (Fashion-MNIST, or an image
    folder named like it). Digits (mnist, kmnist, any other folder) are never flipped."""
    return "fashion" in dataset.lower()


def augment_level(augment) -> str:
    """off | light | strong; True/False (configs written as a bool) mean light/off."""
    if isinstance(augment, bool) or augment is None:
        return "light" if augment else "off"
    if augment not in ("off", "light", "strong"):
        raise ValueError(f"augment={augment!r}; expected off, light or strong")
    return augment


def _uniform(b: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """U(-1, 1) per image, drawn on the generator's device (no host-device copy when the
    generator lives on the training device)."""
    gen_device = generator.device if generator is not None else "cpu"
    return (torch.rand(b, generator=generator, device=gen_device) * 2 - 1).to(device)


def _randint(high: int, b: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randint(high, (b, 1), generator=generator, device=gen_device).to(device)


def augment_batch(x: torch.Tensor, max_shift: float = 2.0, max_degrees: float = 10.0,
                  max_scale: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shifts (pixels), rotations (degrees) and scaling (+-fraction, 0 = none) of a
    float batch (B, 1, H, W); what is moved in from outside the frame is black."""
    b, _, h, w = x.shape
    rand = lambda: _uniform(b, generator, x.device).to(x.dtype)[:, None, None]  # noqa: E731 (B, 1, 1)
    angle = rand() * math.radians(max_degrees)
    shift_x, shift_y = rand() * (2 * max_shift / h), rand() * (2 * max_shift / h)  # grid units: 2 = full width
    cos, sin = angle.cos(), angle.sin()
    if max_scale:  # the grid maps output to input: dividing it by s draws the image s times larger
        inv = 1 / (1 + rand() * max_scale)
        cos, sin = cos * inv, sin * inv
    # The sampling grid of F.affine_grid(theta, align_corners=False), as broadcast
    # multiply-adds: affine_grid's batched matrix product took 2/3 of the augmentation's
    # time on a CPU, and an MLP's augmented epoch twice its plain one (performance.md).
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1  # pixel centres, -1..1
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1)[:, None]
    grid = torch.stack([cos * xs - sin * ys + shift_x, sin * xs + cos * ys + shift_y], -1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def crop_flip_batch(x: torch.Tensor, pad: int = 2, erase: int = 0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of the zero-padded batch (B, 1, H, W) with a horizontal flip of half the
    images, as one gather; `erase` > 0 blacks out one erase x erase square per image."""
    b, _, h, w = x.shape
    draw = lambda high: _randint(high, b, generator, x.device)  # noqa: E731 (B, 1) in [0, high)
    dy, dx, flip = draw(2 * pad + 1), draw(2 * pad + 1), draw(2).bool()
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = r + dy  # (B, H) and (B, W): where each output pixel comes from in the padded image
    cols = torch.where(flip, w - 1 - c, c) + dx
    padded = F.pad(x[:, 0], (pad, pad, pad, pad))
    out = padded[torch.arange(b, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if erase:  # the square's centre is anywhere in the image: it may reach out of the frame
        top, left = draw(h) - erase // 2, draw(w) - erase // 2  # (B, 1) each
        in_r = (r >= top) & (r < top + erase)  # (B, H)
        in_c = (c >= left) & (c < left + erase)  # (B, W)
        out = out.masked_fill(in_r[:, :, None] & in_c[:, None, :], 0)
    return out.unsqueeze(1)


def augment_images(x: torch.Tensor, level: str, dataset: str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One augmentation of a batch (B, 1, H, W) on the 0..255 scale, chosen by the dataset:
    crop and flip for clothing, shifts/rotations (never flips) for everything else."""
    if mirror_safe(dataset):
        return crop_flip_batch(x, **FASHION_AUGMENT[level], generator=generator)
    return augment_batch(x, **DIGIT_AUGMENT[level], generator=generator)


def _pad(x: torch.Tensor, size: int, value: float) -> torch.Tensor:
    pad = size - x.shape[-1]
    return F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=value)


def prepare_batch(x: torch.Tensor, spec: InputSpec, mean: float, std: float,
                  augment: str | bool = "off", generator: torch.Generator | None = None,
                  dataset: str = "") -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, C, S, S), normalised, in the architecture's shape.

    This runs every training step, so the usual case is three small kernels: scale the
    uint8 pixels into a new float tensor, shift, then pad with normalised black.
    Augmentation (`augment` off | light | strong, of the kind `dataset`'s name calls for)
    and resizing work on the 0..255 scale (black = 0) before normalising."""
    scale, shift = 1.0 / (255.0 * std), mean / std  # (x / 255 - mean) / std == x * scale - shift
    level = augment_level(augment)
    x = x.unsqueeze(1)
    if level != "off" or spec.resize:
        x = x.to(torch.float32, copy=True)  # never modify the caller's tensor in place
        if level != "off":
            x = augment_images(x, level, dataset, generator)
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
