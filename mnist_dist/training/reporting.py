"""Where a worker's per-epoch metrics and checkpoints go: Ray Train, or memory.

The training loop calls `report(metrics, make_checkpoint)` once per epoch; the
checkpoint is built lazily (a callable) so a local run builds it only once, at
the end, while a Ray run persists one per epoch for failure recovery.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch

from .. import layout
from ..models.checkpoint import atomic_save



class Reporter:
    def restore(self) -> dict | None:
        return None

    def report(self, metrics: dict, make_checkpoint: Callable[[], dict]) -> None:
        raise NotImplementedError


class LocalReporter(Reporter):
    """Keeps the history in memory; the checkpoint is built on first access."""

    def __init__(self, on_epoch: Callable[[dict], None] | None = None):
        self.history: list[dict] = []
        self._make: Callable[[], dict] | None = None
        self.on_epoch = on_epoch

    def report(self, metrics, make_checkpoint):
        self.history.append(metrics)
        self._make = make_checkpoint
        if self.on_epoch:
            self.on_epoch(metrics)

    @property
    def last_checkpoint(self) -> dict:
        return self._make()


class RayReporter(Reporter):
    """Reports to Ray Train; rank 0 attaches the checkpoint (resume state + best model)."""

    def __init__(self):
        import logging

        import ray.train

        logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per report
        self.train = ray.train
        self.rank = ray.train.get_context().get_world_rank()

    def restore(self) -> dict | None:
        ckpt = self.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return torch.load(Path(d) / layout.RESUME, map_location="cpu", weights_only=True)

    def report(self, metrics, make_checkpoint):
        if self.rank != 0:  # every rank must call report; only one uploads files
            self.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = make_checkpoint()
            atomic_save(ckpt["resume"], Path(tmp) / layout.RESUME)
            atomic_save(ckpt["model"], Path(tmp) / layout.MODEL)
            self.train.report(metrics, checkpoint=self.train.Checkpoint.from_directory(tmp))


def in_ray_train() -> bool:
    try:
        import ray.train

        ray.train.get_context()
        return True
    except Exception:  # outside a Ray Train worker get_context raises
        return False


def make_reporter() -> Reporter:
    return RayReporter() if in_ray_train() else LocalReporter()
