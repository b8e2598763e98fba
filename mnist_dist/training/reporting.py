"""Where a worker's per-epoch metrics and checkpoints go: Ray Train, or memory.

The training loop calls `report(metrics, make_checkpoint)` once per epoch; the
checkpoint is built lazily (a callable) so a local run builds it only once, at
the end, while a Ray run persists one per epoch for failure recovery.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .. import layout
from ..models.checkpoint import atomic_save


def write_checkpoint(ckpt: dict, folder: str | Path) -> None:
    """An epoch's checkpoint (`EpochRun.checkpoint()`) as files: resume.pt, what training
    resumes from, and model.pt, the best model so far as an ordinary model file. The best
    epoch's weights go into model.pt only: in resume.pt too they were a fifth of what
    alexnet wrote per epoch (1.17 GB with Adam)."""
    folder, resume = Path(folder), ckpt["resume"]
    state = {k: v for k, v in resume["state"].items() if k != "best_state"}
    atomic_save({**resume, "state": state}, folder / layout.RESUME)
    atomic_save(ckpt["model"], folder / layout.MODEL)


def read_checkpoint(folder: str | Path, best_weights: bool = True) -> dict:
    """resume.pt back, with the best epoch's weights from model.pt beside it (left out when
    only the history is wanted)."""
    folder = Path(folder)
    resume = torch.load(folder / layout.RESUME, map_location="cpu", weights_only=True)
    state = resume["state"]
    if best_weights and state.get("best_epoch") and state.get("best_state") is None:
        state["best_state"] = torch.load(folder / layout.MODEL, map_location="cpu", weights_only=True)["state_dict"]
    return resume


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


def write_history(history: list[dict], folder: Path) -> None:
    """history.json and history.csv: one entry per finished epoch."""
    layout.save_json(history, folder / layout.HISTORY_JSON)
    if history:
        layout.write_csv(history, folder / layout.HISTORY_CSV)


class FolderReporter(LocalReporter):
    """A local run's epochs, kept in its folder as they end: the checkpoint (resume.pt, and
    the best model so far in model.pt) and the history so far. An interrupted run keeps its
    finished epochs, and `resume=True` continues after the last one. `hold` is a context
    manager under which the epoch's files are written (the CLI's holds off Ctrl-C there, so a
    signal never leaves resume.pt of one epoch beside model.pt of another)."""

    def __init__(self, folder: str | Path, resume: bool = False, on_epoch: Callable[[dict], None] | None = None,
                 hold: Callable = contextlib.nullcontext):
        super().__init__(on_epoch)
        self.folder, self.resume, self.hold = Path(folder), resume, hold
        self.restored_epoch = 0  # the epoch the run continued after (0: from the start)
        self.saved_epoch = 0  # the last epoch whose files are in the folder
        self.on_restore: Callable[[int], None] | None = None

    def restore(self) -> dict | None:
        if not (self.resume and (self.folder / layout.RESUME).is_file()):
            return None  # a run stopped before its first epoch ended starts from the start
        saved = read_checkpoint(self.folder)
        self.restored_epoch = self.saved_epoch = saved["state"]["epoch"]
        if self.on_restore:
            self.on_restore(self.restored_epoch)
        return saved

    def report(self, metrics, make_checkpoint):
        with self.hold():
            ckpt = make_checkpoint()
            write_checkpoint(ckpt, self.folder)
            write_history(ckpt["resume"]["state"]["history"], self.folder)  # every epoch, restored ones too
            self.saved_epoch = metrics["epoch"]
        super().report(metrics, make_checkpoint)

    def finished(self) -> None:
        """The run's results are written: what it would resume from is no longer needed."""
        (self.folder / layout.RESUME).unlink(missing_ok=True)


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
            return read_checkpoint(d)

    def report(self, metrics, make_checkpoint):
        if self.rank != 0:  # every rank must call report; only one uploads files
            self.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            write_checkpoint(make_checkpoint(), tmp)
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
