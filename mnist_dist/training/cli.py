"""`mnist-dist train ARCH`: one local run with the source baseline, then the test set.

Writes results/<name>/: run.json (summary), config.json (resolved config),
history.csv/json (per epoch), model.pt (best epoch, self-describing),
evaluation.json and predictions.npz (test set). Shows each epoch's progress as
it trains (images, images/s, the epoch's and the run's ETA) and a line per epoch.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import layout
from ..config import add_config_flags, flags_to_overrides, load_yaml, resolve
from ..layout import HISTORY_CSV, save_json, write_csv
from ..progress import Progress, format_seconds
from ..models.checkpoint import atomic_save
from ..evaluation import evaluate_checkpoint, format_evaluation, save_evaluation
from .loop import Trainer, load_data, run_epochs, select_device
from .reporting import LocalReporter


def add_arguments(p) -> None:
    p.add_argument("arch", help="architecture name (see `mnist-dist models`)")
    p.add_argument("--config", help="YAML file of TrainConfig keys, applied over the baseline")
    p.add_argument("--results-dir", default="results", help="where the run folder goes (default: results)")
    p.add_argument("--name", help="run folder name (default: train-ARCH-DATASET-TIMESTAMP)")
    p.add_argument("--smoke-test", action="store_true",
                   help="2,000 training images, 1 epoch: checks the whole path in seconds")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="when stdout is not a terminal, a progress line every SECONDS within an "
                        "epoch (default: 30); a terminal gets a live bar")
    add_config_flags(p)


def write_history(history: list[dict], out_dir: Path) -> None:
    save_json(history, out_dir / layout.HISTORY_JSON)
    if history:
        write_csv(history, out_dir / HISTORY_CSV)


class EpochProgress:
    """What `mnist-dist train` shows while it trains: a Progress per epoch fed by
    `Trainer.on_progress`, with the run's ETA, replaced by the epoch's line at its end."""

    def __init__(self, epochs: int, every: float, live: bool | None = None):
        self.epochs, self.every, self.live = epochs, every, live
        self.epoch, self.epoch_s, self.bar = 0, None, None  # epoch_s: the last one's seconds

    def on_progress(self, done: int, total: int) -> None:
        if self.bar is None:  # the epoch's first call
            self.bar = Progress(total, f"epoch {self.epoch + 1}/{self.epochs}", " img", live=self.live,
                                every=self.every, leave=False)
        self.bar.done = done  # the run's ETA below uses the new count
        eta = self.run_eta()
        postfix = ", ".join(p for p in (eta and f"run ETA {eta}", done >= total and "validating") if p)
        self.bar.update(done, postfix=postfix)

    def run_eta(self) -> str:
        """This epoch's rest plus the epochs after it, each as long as the last one (its
        training time while there is none); early stopping may end the run sooner."""
        left = self.bar.remaining_s
        if left is None:
            return ""
        per_epoch = self.epoch_s or self.bar.total / self.bar.rate
        return format_seconds(left + (self.epochs - self.epoch - 1) * per_epoch)

    def on_epoch(self, m: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.epoch, self.epoch_s = m["epoch"], m["epoch_seconds"]
        print(f"  epoch {m['epoch']:3d}  loss {m['train_loss']:.4f}  acc {m['train_acc']:.4f}  "
              f"val_loss {m['val_loss']:.4f}  val_acc {m['val_acc']:.4f}  lr {m['lr']:.2e}  "
              f"{m['epoch_seconds']:.1f}s  {m['images_per_sec']:,.0f} img/s", flush=True)


def run(args) -> int:
    overrides = load_yaml(args.config) if args.config else {}
    overrides.update(flags_to_overrides(args))
    if args.smoke_test:
        overrides = {"train_limit": 2000, "test_limit": 1000, "epochs": 1, **overrides}
    cfg = resolve(args.arch, overrides, source=args.config or "CLI")
    data_name = Path(cfg.images).name if cfg.images else cfg.dataset
    name = args.name or f"train-{cfg.arch}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.results_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    save_json(cfg.to_dict(), out / layout.CONFIG_JSON)
    say = (lambda *a: None) if args.quiet else print
    say(f"training {cfg.arch} on {data_name} -> {out}")
    say(f"  {cfg.to_dict()}")

    t0 = time.perf_counter()
    device, data = select_device(), load_data(cfg)
    trainer = Trainer(cfg, device, data)
    reporter = LocalReporter()
    if not args.quiet:
        progress = EpochProgress(cfg.epochs, args.progress_every)
        trainer.on_progress, reporter.on_epoch = progress.on_progress, progress.on_epoch
    state = run_epochs(cfg, trainer, reporter)
    train_time = time.perf_counter() - t0
    write_history(state.history, out)
    final = state.history[-1]
    summary = {"kind": "run", "name": name, "arch": cfg.arch, "dataset": data_name,
               "status": final["status"], "epochs_run": final["epoch"], "train_time_s": train_time,
               "images_per_sec": sum(h["images_per_sec"] for h in state.history) / len(state.history),
               "best_val_acc": final["best_val_acc"], "best_epoch": final["best_epoch"]}
    if final["status"] == layout.DIVERGED and not state.best_state:
        summary["error"] = "loss became NaN/inf in the first epoch; lower the learning rate"
        save_json(summary, out / layout.RUN_JSON)
        print(f"diverged: {summary['error']}")
        return 1
    atomic_save(reporter.last_checkpoint["model"], out / layout.MODEL)
    ev = evaluate_checkpoint(out / layout.MODEL, data, device)
    save_evaluation(ev, out)
    summary.update(test_acc=ev["accuracy"], test_loss=ev["loss"], parameters=ev["parameters"])
    save_json(summary, out / layout.RUN_JSON)
    say(format_evaluation(ev))
    print(f"status {final['status']} after {final['epoch']} epochs, {train_time:.1f}s; "
          f"best epoch {final['best_epoch']} (val_acc {final['best_val_acc']:.4f}); "
          f"test accuracy {ev['accuracy']:.4f}, loss {ev['loss']:.4f}\nwrote {out}")
    return 0
