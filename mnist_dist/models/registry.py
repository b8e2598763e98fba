"""One registry: architecture name -> constructor, input spec and source baseline.

Register with the decorator; everything else (CLI, sweeps, tests, reports)
iterates over `list_models()`, so a new architecture is picked up everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..data.transforms import InputSpec


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]  # build(num_classes=10, dropout=None) -> nn.Module
    input: InputSpec
    baseline: dict  # the source's published training config (TrainConfig fields)
    published: str  # the source's published result, verbatim
    description: str
    dropout: float | None = None  # default dropout, None when the source has no dropout
    published_acc: float | None = None  # as a fraction, for report comparisons
    published_dataset: str = "mnist"
    notes: dict = field(default_factory=dict)
    # Whether mixed precision (bf16 autocast) trains it faster on a GPU: what `amp: auto`
    # picks. Measured on an H200 (docs/performance.md#gpu-nvidia-h200): the small models are bound by
    # kernel launches, and autocast's casts made them 12-23% slower; cnn_bn and alexnet
    # gained 1.3x.
    amp: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError's repr-quoting makes the message unreadable
        return self.args[0]


def register(name: str, *, input: InputSpec, baseline: dict, published: str, description: str,
             dropout: float | None = None, published_acc: float | None = None,
             published_dataset: str = "mnist", amp: bool = False):
    def wrap(fn):
        _REGISTRY[name] = ModelEntry(name, fn, input, baseline, published, description,
                                     dropout, published_acc, published_dataset, amp=amp)
        return fn
    return wrap


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown architecture {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 10, dropout: float | None = None) -> nn.Module:
    entry = get_entry(name)
    if dropout is not None and entry.dropout is None:
        dropout = None  # the source has no dropout layer: nothing to tune
    return entry.build(num_classes=num_classes,
                       dropout=entry.dropout if dropout is None else dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
