"""Layer-by-layer summary of an architecture (like Keras' model.summary()), from one
forward pass of a dummy input with hooks on every leaf module; no extra packages."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class Layer:
    name: str  # module path inside the model, e.g. "3" or "features.0"
    type: str
    output_shape: tuple  # without the batch dimension
    parameters: int


@dataclass
class ArchSummary:
    arch: str
    input_shape: tuple  # (C, H, W)
    layers: list[Layer]
    total_parameters: int
    trainable_parameters: int


def leaves(model: nn.Module):
    return [(name, m) for name, m in model.named_modules() if not list(m.children())]


@torch.no_grad()
def summarize(arch: str, num_classes: int = 10) -> ArchSummary:
    from ..models import create_model, get_entry

    entry = get_entry(arch)
    model = create_model(arch, num_classes).eval()
    layers, hooks = [], []

    def record(name):
        def hook(module, _inputs, output):
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            own = sum(p.numel() for p in module.parameters(recurse=False))
            layers.append(Layer(name, type(module).__name__, shape, own))
        return hook

    for name, m in leaves(model):
        hooks.append(m.register_forward_hook(record(name)))
    try:
        # batch of 2, not 1: BatchNorm in eval mode is fine with 1, but some layers are not
        model(torch.zeros(2, *entry.input.shape))
    finally:
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ArchSummary(arch, tuple(entry.input.shape), layers, total, trainable)
