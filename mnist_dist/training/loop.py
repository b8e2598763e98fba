"""The training function every worker runs, locally or under Ray Train.

`train_func_per_worker(config)` takes a plain dict (TrainConfig fields). Under
Ray Train it shards the data by rank, wraps the model in DDP, reports every
epoch's metrics with a checkpoint and resumes from the last checkpoint after a
failure; locally it runs the same loop with an in-memory reporter.

Speed: the whole dataset sits on the device as uint8 (47 MB for MNIST); a
batch is an index into it, converted to the architecture's input on the
device. Loss and accuracy are summed as device tensors so the loop never waits
for the GPU except at a divergence check every DIVERGENCE_CHECK_EVERY steps.
Augmentation noise is drawn on the device; the learning-rate schedule is a
Python function of the step count, set once per optimizer step.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .. import layout
from ..config import ONECYCLE_PCT_START, TrainConfig
from ..data import Dataset, load_dataset, load_image_folder, prepare_batch, split_indices
from ..models import create_model, get_entry
from ..models.checkpoint import model_payload
from .reporting import Reporter, make_reporter

DIVERGENCE_CHECK_EVERY = 50  # steps; one host sync per check
PROGRESS_EVERY_S = 0.5  # wall seconds between Trainer.on_progress calls within an epoch
# One-cycle as torch.optim.lr_scheduler.OneCycleLR draws it (cosine phases): from lr/25
# (its div_factor) up to lr over the first ONECYCLE_PCT_START of the run (config.py), then
# down to lr/25/1e4 (final_div_factor). Its momentum cycling is left out: it would override
# the `momentum` being tuned.
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4


@dataclass
class TrainState:
    """Everything needed to resume training at the next epoch."""
    epoch: int = 0
    history: list = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict | None = None
    best_val_loss: float = math.inf
    monitor_best: float = math.inf  # in "lower is better" units (accuracies negated)
    bad_epochs: int = 0
    status: str = layout.RUNNING  # then COMPLETED, STOPPED_BY_PATIENCE or DIVERGED


def load_data(cfg: TrainConfig) -> Dataset:
    ds = load_image_folder(cfg.images) if cfg.images else load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.test_limit:
        ds = copy.copy(ds)
        ds.test_x, ds.test_y = ds.test_x[:cfg.test_limit], ds.test_y[:cfg.test_limit]
    return ds


_LOADED: dict[tuple, Dataset] = {}


def cached_data(cfg: TrainConfig) -> Dataset:
    """load_data, kept for the next caller with the same data: a reused trial process serves
    many trials, and a sweep's driver evaluates the best model, the ensemble and every final
    seed (each load decompresses the whole dataset). One dataset at a time."""
    key = (cfg.images, cfg.dataset, cfg.data_dir, cfg.test_limit)
    if key not in _LOADED:
        _LOADED.clear()  # a different dataset: free the old one
        _LOADED[key] = load_data(cfg)
    return _LOADED[key]


def train_val_indices(cfg: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    if cfg.train_limit:  # keep the validation share of the smaller set
        train_idx = train_idx[:cfg.train_limit]
        val_idx = val_idx[:max(10, int(cfg.train_limit * cfg.val_fraction))]
    return train_idx, val_idx


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
                               and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _cos_anneal(start: float, end: float, t: float) -> float:
    """From start (t = 0) to end (t = 1) along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * t))


class LRSchedule:
    """The learning-rate multiplier for optimizer step s (0-based) of a `total`-step run:
    LambdaLR's lambda. An object, not a closure, so its numbers go into the scheduler's
    state_dict and so into every checkpoint."""

    def __init__(self, kind: str, total: int, warmup: int = 0):
        self.kind, self.total = kind, max(total, 1)
        self.warmup = min(warmup, self.total)  # a warm-up longer than the run is the whole run

    def __call__(self, s: int) -> float:
        if self.kind == "onecycle":
            return self.onecycle(s)
        if s < self.warmup:
            return (s + 1) / self.warmup  # linear from ~0: 1/warmup at the first step, 1 at the last
        if self.kind == "cosine":  # 1 at the end of the warm-up, 0 after the run's last step
            return _cos_anneal(1.0, 0.0, min((s - self.warmup) / max(self.total - self.warmup, 1), 1.0))
        return 1.0

    def onecycle(self, s: int) -> float:
        peak = ONECYCLE_PCT_START * self.total - 1  # the step at lr, counted as OneCycleLR does
        if s <= peak:
            return _cos_anneal(1 / ONECYCLE_DIV, 1.0, s / peak) if peak > 0 else 1.0
        t = min((s - peak) / (self.total - 1 - peak), 1.0)
        return _cos_anneal(1.0, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV), t)


def make_schedule(cfg: TrainConfig, opt: torch.optim.Optimizer,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The per-step learning-rate schedule over the planned run; None when the rate is constant."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule == "constant" and warmup == 0:
        return None
    fn = LRSchedule(cfg.lr_schedule, cfg.epochs * steps_per_epoch, warmup)
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def node_ids() -> str:
    """The Ray nodes this run's workers are on ('' outside Ray), for multi-node results."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # no Ray at all
        node = ""
    nodes = [node]
    if world()[1] > 1:
        nodes = [None] * world()[1]
        dist.all_gather_object(nodes, node)
    return ",".join(sorted(set(n for n in nodes if n)))


def all_sum(*values: torch.Tensor) -> list[float]:
    """Sum scalars over all workers (one collective), returned as Python floats."""
    device = values[0].device  # the first is the device's (NCCL reduces CUDA tensors only)
    t = torch.stack([v.detach().float().to(device) for v in values])
    if world()[1] > 1:
        dist.all_reduce(t)
    return t.tolist()


class Trainer:
    """One worker's share of a training run."""

    def __init__(self, cfg: TrainConfig, device: torch.device, data: Dataset):
        self.cfg, self.device, self.data = cfg, device, data
        self.rank, self.world_size = world()
        if device.type == "cuda":  # fixed batch shapes: cuDNN times its kernels once, then uses the fastest
            torch.backends.cudnn.benchmark = True
        self.entry = get_entry(cfg.arch)
        self.train_idx, self.val_idx = train_val_indices(cfg, len(data.train_x))
        # Each worker holds the whole (small) uint8 dataset and reads its own slice.
        self.x = data.train_x.to(device)
        self.y = data.train_y.to(device)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model = create_model(cfg.arch, data.num_classes, cfg.dropout).to(device)
        self.ddp = self.model
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.opt = make_optimizer(cfg, self.model.parameters())
        per_rank = len(self.train_idx) // self.world_size  # as shard() cuts it
        self.steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
        self.schedule = make_schedule(cfg, self.opt, self.steps_per_epoch)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="min", factor=cfg.lr_plateau_factor, patience=cfg.lr_plateau_patience)
            if cfg.lr_plateau_factor > 0 else None)
        self.label_smoothing = cfg.label_smoothing  # the training loss only
        amp = self.entry.amp if cfg.amp is None else cfg.amp  # None: where it is faster
        self.use_amp = amp and device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        # fp16 needs loss scaling against underflow; bf16 has fp32's range and does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # augmentation noise, drawn on the device: no host-device copy per step
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * self.rank)
        self.node_ids = node_ids()
        # Set by a caller that shows progress: on_progress(images done, images total) of this
        # rank's share, at the epoch's start, at most every progress_every s, and at its end.
        self.on_progress: Callable[[int, int], None] | None = None
        self.progress_every = PROGRESS_EVERY_S

    def batch(self, idx: torch.Tensor, augment: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
        x = prepare_batch(self.x[idx], self.entry.input, self.data.mean, self.data.std,
                          augment=augment, generator=self.gen, dataset=self.data.name)
        return x, self.y[idx]

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's equal-sized slice of a per-epoch shuffle, identical on every rank."""
        perm = self.train_idx[torch.randperm(len(self.train_idx),
                                             generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch))]
        per_rank = len(perm) // self.world_size  # equal sizes: DDP needs equal step counts
        return perm[self.rank * per_rank:(self.rank + 1) * per_rank].to(self.device)

    def train_epoch(self, epoch: int) -> tuple[float, float, float, bool]:
        """(loss, accuracy, images seen by all workers, diverged)."""
        self.ddp.train()
        idx = self.shard(epoch)
        # Per step only the loss tensor and the predicted labels are kept (no host sync,
        # one extra kernel); they are summed once at the end of the epoch.
        losses, preds, diverged = [], [], False
        bs, progress = self.cfg.batch_size, self.on_progress
        if progress:  # a clock read per step, no host sync: counts are of steps queued
            progress(0, len(idx))
            next_progress = time.perf_counter() + self.progress_every
        for step, start in enumerate(range(0, len(idx), bs)):
            out, loss = self.step(*self.batch(idx[start:start + bs], augment=self.cfg.augment))
            losses.append(loss.detach())
            preds.append(out.detach().argmax(1))
            if progress and time.perf_counter() >= next_progress:
                progress(min(start + bs, len(idx)), len(idx))
                next_progress = time.perf_counter() + self.progress_every
            # a non-finite loss poisons the weights, so every later loss is non-finite too
            if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(losses[-1]):
                diverged = True
                break
        if progress:
            progress(min(len(losses) * bs, len(idx)), len(idx))
        if not losses:  # more workers than training images: every rank got none
            return 0.0, 0.0, 0.0, False
        sizes = torch.full((len(losses),), float(bs), device=self.device)
        sizes[-1] = min(bs, len(idx) - bs * (len(losses) - 1))  # the last batch may be short
        pred = torch.cat(preds)
        loss_sum = (torch.stack(losses).float() * sizes).sum()
        correct = (pred == self.y[idx[:len(pred)]]).sum()
        total_loss, total_correct, n = all_sum(loss_sum, correct, torch.tensor(float(len(idx))))
        diverged = diverged or not math.isfinite(total_loss)
        return total_loss / max(n, 1), total_correct / max(n, 1), n, diverged

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step and the schedule's step; returns (logits, loss)."""
        self.opt.zero_grad(set_to_none=True)
        if not self.use_amp:  # fp32: skip the autocast and grad-scaler bookkeeping
            out = self.ddp(x)
            loss = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
            loss.backward()
            self.opt.step()
        else:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                out = self.ddp(x)
                loss = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        if self.schedule is not None:  # a few Python operations: sets the next step's lr
            self.schedule.step()
        return out, loss

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        self.model.eval()
        idx = self.val_idx[self.rank::self.world_size].to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for start in range(0, len(idx), self.cfg.eval_batch_size):
            x, y = self.batch(idx[start:start + self.cfg.eval_batch_size])
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                out = self.model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
        total_loss, total_correct, n = all_sum(loss_sum, correct, torch.tensor(float(len(idx))))
        return total_loss / max(n, 1), total_correct / max(n, 1)

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def reduce_on_plateau(self, val_loss: float) -> None:
        """ReduceLROnPlateau's epoch step. Under a schedule its cut scales the rest of the
        schedule (otherwise the schedule's next step would set the rate back)."""
        before = self.lr()
        self.plateau.step(val_loss)
        if self.schedule is not None and 0 < self.lr() < before:
            self.schedule.base_lrs = [b * self.lr() / before for b in self.schedule.base_lrs]

    def resume_state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau else None,
                "schedule": self.schedule.state_dict() if self.schedule else None,
                "scaler": self.scaler.state_dict(), "rng": self.rng_state()}

    def load_resume_state(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        if self.plateau and s.get("plateau"):
            self.plateau.load_state_dict(s["plateau"])
        if self.schedule and s.get("schedule"):  # its step count and (plateau-scaled) base rates
            self.schedule.load_state_dict(s["schedule"])
        if s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        if s.get("rng"):  # checkpoints written before the random state was kept have none
            self.load_rng_state(s["rng"])

    def set_rates(self, lr: float, weight_decay: float) -> None:
        """Train on at `lr` (the peak a schedule scales, the rest of the schedule kept) and
        `weight_decay`, whatever the loaded optimizer state held."""
        for group in self.opt.param_groups:
            group["weight_decay"] = weight_decay
        if self.schedule is None:
            for group in self.opt.param_groups:
                group["lr"] = lr
            return
        self.schedule.base_lrs = [lr for _ in self.schedule.base_lrs]
        for group, factor in zip(self.opt.param_groups, self.schedule.lr_lambdas):
            group["lr"] = lr * factor(self.schedule.last_epoch)

    def rng_state(self) -> dict:
        """The random state the next epoch draws from: dropout's (torch's global generators)
        and the augmentation noise's. The epoch's shuffle needs none: it is seeded per epoch."""
        state = {"device": self.device.type, "torch": torch.get_rng_state(), "augment": self.gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_rng_state(self, state: dict) -> None:
        """Back to `rng_state()`'s state, where it fits: on the same kind of device, and in a
        single-worker run (a checkpoint holds rank 0's state; DDP ranks draw noise apart)."""
        if state.get("device") != self.device.type or self.world_size > 1:
            return
        torch.set_rng_state(state["torch"])
        self.gen.set_state(state["augment"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)


def monitored(metrics: dict, key: str) -> float:
    """The monitored value in lower-is-better form."""
    return -metrics[key] if key.endswith("acc") else metrics[key]


class EpochRun:
    """A training run advanced one epoch per `step()`. The one epoch loop of the project:
    `mnist-dist train`, every Ray Train worker and a reused Tune trial process drive it."""

    def __init__(self, cfg: TrainConfig, trainer: Trainer):
        self.cfg, self.trainer, self.state = cfg, trainer, TrainState()

    @property
    def done(self) -> bool:
        return self.state.status != layout.RUNNING or self.state.epoch >= self.cfg.epochs

    def restore(self, saved: dict) -> None:
        """Continue where a checkpoint (`checkpoint()["resume"]`) left off. One written under
        other rates (another trial's, taken over by population-based training) gives its
        weights, optimizer and schedule state; the rates stay this run's."""
        self.trainer.load_resume_state(saved["trainer"])
        self.state = TrainState(**saved["state"])
        written = saved.get("config") or {}
        if any(k in written and written[k] != getattr(self.cfg, k) for k in ("lr", "weight_decay")):
            self.trainer.set_rates(self.cfg.lr, self.cfg.weight_decay)

    def step(self) -> dict:
        """Train and validate one epoch; returns its metrics (what every reporter gets)."""
        cfg, trainer, state = self.cfg, self.trainer, self.state
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        train_loss, train_acc, n_seen, diverged = trainer.train_epoch(epoch)
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = trainer.validate() if not diverged else (math.nan, 0.0)
        diverged = diverged or not math.isfinite(val_loss)
        m = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
             "val_loss": val_loss, "val_acc": 0.0 if diverged else val_acc, "lr": trainer.lr(),
             "epoch_seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
             # every epoch's time so far: what a sweep can weigh accuracy against (objectives)
             "train_time_s": sum(h["epoch_seconds"] for h in state.history) + time.perf_counter() - t0,
             "images_per_sec": n_seen / max(train_seconds, 1e-9), "world_size": trainer.world_size,
             "node_ids": trainer.node_ids}
        state.epoch = epoch
        if diverged:
            state.status = layout.DIVERGED
        else:
            self._track_best(m)
        if state.status == layout.RUNNING and epoch == cfg.epochs:
            state.status = layout.COMPLETED
        m.update(best_val_acc=max(state.best_val_acc, 0.0), best_epoch=state.best_epoch,
                 best_val_loss=state.best_val_loss, status=state.status, finished=self.done)
        state.history.append(m)
        return m

    def _track_best(self, m: dict) -> None:
        """Best model so far, ReduceLROnPlateau and early stopping, after a healthy epoch."""
        cfg, state = self.cfg, self.state
        if m["val_acc"] > state.best_val_acc:
            state.best_val_acc, state.best_epoch = m["val_acc"], m["epoch"]
            state.best_state = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
        state.best_val_loss = min(state.best_val_loss, m["val_loss"])
        if self.trainer.plateau:
            self.trainer.reduce_on_plateau(m["val_loss"])
        value = monitored(m, cfg.early_stopping_monitor)
        if value < state.monitor_best:
            state.monitor_best, state.bad_epochs = value, 0
        else:
            state.bad_epochs += 1
        if cfg.early_stopping_patience and state.bad_epochs >= cfg.early_stopping_patience:
            state.status = layout.STOPPED_BY_PATIENCE

    def checkpoint(self) -> dict:
        """What goes into an epoch's checkpoint: the resume state and the best model so far."""
        state, trainer = self.state, self.trainer
        best = state.history[state.best_epoch - 1] if state.best_epoch else state.history[-1]
        payload = model_payload(trainer.model, self.cfg.to_dict(), trainer.data.classes, trainer.data.mean,
                                trainer.data.std, trainer.data.name, best,
                                state.best_state or trainer.model.state_dict())
        resume = {"trainer": trainer.resume_state(), "state": dict(vars(state)), "config": self.cfg.to_dict()}
        return {"resume": resume, "model": payload}


def run_epochs(cfg: TrainConfig, trainer: Trainer, reporter: Reporter) -> TrainState:
    run = EpochRun(cfg, trainer)
    saved = reporter.restore()
    if saved:  # restarted after a failure: continue where the last checkpoint left off
        run.restore(saved)
    while not run.done:
        metrics = run.step()
        reporter.report(metrics, run.checkpoint)
    return run.state


def select_device() -> torch.device:
    try:
        import ray.train.torch

        return ray.train.torch.get_device()
    except Exception:  # not inside a Ray Train worker
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_func_per_worker(config: dict, reporter: Reporter | None = None) -> TrainState:
    """Train one model from a plain config dict. Under Ray Train, call with the dict alone."""
    cfg = TrainConfig.from_dict(config)
    reporter = reporter or make_reporter()
    device = select_device()
    trainer = Trainer(cfg, device, load_data(cfg))
    return run_epochs(cfg, trainer, reporter)
