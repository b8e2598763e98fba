"""`mnist-dist train ARCH`: one local run with the source baseline, then the test set.

Writes results/<name>/: config.json (resolved config) first; after every epoch
history.csv/json, model.pt (the best epoch so far, self-describing) and resume.pt
(what the run continues from); at the end run.json (summary), evaluation.json and
predictions.npz (test set), and resume.pt is removed. Ctrl-C or SIGTERM stops it
with the finished epochs kept; `mnist-dist train --resume RUN_DIR` continues it.
Shows each epoch's progress as it trains (images, images/s, the epoch's and the
run's ETA) and a line per epoch.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..config import (ConfigError, TrainConfig, add_config_flags, flags_to_overrides, load_config,
                      non_negative_float, resolve)
from ..layout import save_json
from ..progress import Progress, format_seconds
from ..models.checkpoint import atomic_save
from ..evaluation import evaluate_checkpoint, format_evaluation, save_evaluation
from .interrupt import StopSignals
from .loop import Trainer, load_data, run_epochs, select_device
from .reporting import FolderReporter


def add_arguments(p) -> None:
    p.add_argument("arch", nargs="?", help="architecture name (see `mnist-dist models`)")
    p.add_argument("--config", help="YAML file of TrainConfig keys, applied over the baseline")
    p.add_argument("--results-dir", help="where the run folder goes (default: results)")
    p.add_argument("--name", help="run folder name (default: train-ARCH-DATASET-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run in RUN_DIR from its last finished epoch, with its config")
    p.add_argument("--smoke-test", action="store_true",
                   help="2,000 training images, 1 epoch: checks the whole path in seconds")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--progress-every", type=non_negative_float, default=30.0, metavar="SECONDS",
                   help="when stdout is not a terminal, a progress line every SECONDS within an "
                        "epoch (default: 30; 0: every update); a terminal gets a live bar")
    add_config_flags(p)


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

    def restored(self, epoch: int) -> None:
        """A resumed run: the next epoch is the one after `epoch`."""
        self.epoch = epoch

    def close(self) -> None:
        """End the epoch's bar (at the epoch's end, or when the run is interrupted)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch(self, m: dict) -> None:
        self.close()
        self.epoch, self.epoch_s = m["epoch"], m["epoch_seconds"]
        print(f"  epoch {m['epoch']:3d}  loss {m['train_loss']:.4f}  acc {m['train_acc']:.4f}  "
              f"val_loss {m['val_loss']:.4f}  val_acc {m['val_acc']:.4f}  lr {m['lr']:.2e}  "
              f"{m['epoch_seconds']:.1f}s  {m['images_per_sec']:,.0f} img/s", flush=True)


@dataclass
class RunPlan:
    """One `mnist-dist train`: its config, its folder, and how far it has got."""
    cfg: TrainConfig
    out: Path
    resuming: bool = False
    made: bool = False  # the folder holds this run's config.json
    reporter: FolderReporter | None = None
    progress: EpochProgress | None = None

    @property
    def data_name(self) -> str:
        return Path(self.cfg.images).name if self.cfg.images else self.cfg.dataset


def new_run(args) -> RunPlan:
    """A new run's config and folder, all checked before anything is written."""
    if not args.arch:
        raise ConfigError("give the architecture to train (ARCH, see `mnist-dist models`), "
                          "or --resume RUN_DIR to continue an interrupted run")
    if args.name is not None:
        layout.check_name(args.name)
    results_dir = layout.check_results_dir(args.results_dir or "results")
    overrides = load_config(args.config) if args.config else {}  # keys and values checked, naming the file
    overrides.update(flags_to_overrides(args))
    if args.smoke_test:
        overrides = {"train_limit": 2000, "test_limit": 1000, "epochs": 1, **overrides}
    plan = RunPlan(resolve(args.arch, overrides, source=args.config or "command line"), Path())
    default = f"train-{plan.cfg.arch}-{plan.data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan.out = results_dir / (args.name or default)
    if plan.out.exists() and not plan.out.is_dir():
        raise ConfigError(f"{plan.out} is a file, not a run folder; pass another --name")
    if (plan.out / layout.RESUME).is_file() and not (plan.out / layout.RUN_JSON).is_file():
        raise ConfigError(f"{plan.out} holds an interrupted run; continue it with "
                          f"`{continue_command(plan.out)}`, or pass another --name")
    return plan


def resumed_run(args) -> RunPlan:
    """An interrupted run's folder and config; a folder that is not one, or a run that has
    ended, is an error."""
    given = [flag for flag, value in (("ARCH", args.arch), ("--config", args.config), ("--name", args.name),
                                      ("--results-dir", args.results_dir), ("--smoke-test", args.smoke_test))
             if value] + [f"--{k.replace('_', '-')}" for k in flags_to_overrides(args) if k != "arch"]
    if given:
        raise ConfigError(f"--resume continues a run with the config it was started with; drop {', '.join(given)}")
    out = Path(args.resume)
    config = out / layout.CONFIG_JSON
    if not out.is_dir():
        raise ConfigError(f"--resume {out}: no such folder")
    if not config.is_file() or (out / layout.SUMMARY_JSON).exists():  # a sweep's folder has a config.json too
        raise ConfigError(f"--resume {out}: not a training run folder "
                          f"(no {layout.CONFIG_JSON} of `mnist-dist train`)")
    if (out / layout.RUN_JSON).exists():
        raise ConfigError(f"--resume {out}: this run has already ended ({layout.RUN_JSON} is written); "
                          "nothing to continue")
    try:
        cfg = TrainConfig.from_dict(json.loads(config.read_text()), source=str(config))
    except (OSError, ValueError, TypeError) as e:  # ConfigError and bad JSON are ValueErrors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--resume {out}: not a training run folder ({layout.CONFIG_JSON}: {reason})") from None
    return RunPlan(cfg, out, resuming=True, made=True)


def continue_command(out: Path) -> str:
    return f"mnist-dist train --resume {shlex.quote(str(out))}"


def interrupted_message(plan: RunPlan) -> str:
    """The one line an interrupted run ends with."""
    if not plan.made:
        return "interrupted before training started; nothing was written"
    if plan.reporter is None and plan.resuming:  # still loading: its saved epochs are untouched
        return f"interrupted before training continued; continue with: {continue_command(plan.out)}"
    done = plan.reporter.saved_epoch if plan.reporter else 0
    kept = (f"after epoch {done}/{plan.cfg.epochs}: its history and best model so far are in {plan.out}"
            if done else "before its first epoch ended")
    return f"interrupted {kept}; continue with: {continue_command(plan.out)}"


def run(args) -> int:
    plan = resumed_run(args) if args.resume else new_run(args)
    stops = StopSignals()
    with stops.installed():
        try:
            return train(plan, args, stops)
        except KeyboardInterrupt:
            if plan.progress:
                plan.progress.close()
            print(interrupted_message(plan), flush=True)
            return stops.exit_code()


def make_folder(plan: RunPlan) -> None:
    """A new run's folder and config.json. A finished run's summary found there is removed:
    it would no longer describe what the folder holds."""
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / layout.RUN_JSON).unlink(missing_ok=True)
    save_json(plan.cfg.to_dict(), plan.out / layout.CONFIG_JSON)
    plan.made = True


def train(plan: RunPlan, args, stops: StopSignals) -> int:
    cfg, out = plan.cfg, plan.out
    say = (lambda *a: None) if args.quiet else print
    say(f"{'resuming' if plan.resuming else 'training'} {cfg.arch} on {plan.data_name} -> {out}")
    say(f"  {cfg.to_dict()}")
    t0 = time.perf_counter()
    device, data = select_device(), load_data(cfg)  # a missing dataset fails before the folder is made
    if not plan.resuming:
        make_folder(plan)
    trainer = Trainer(cfg, device, data)
    plan.reporter = reporter = FolderReporter(out, resume=plan.resuming, hold=stops.held)
    if not args.quiet:
        plan.progress = EpochProgress(cfg.epochs, args.progress_every)
        trainer.on_progress, reporter.on_epoch = plan.progress.on_progress, plan.progress.on_epoch
        reporter.on_restore = plan.progress.restored
    state = run_epochs(cfg, trainer, reporter)
    earlier = sum(h["epoch_seconds"] for h in state.history[:reporter.restored_epoch])
    return finish(plan, state, data, device, earlier + time.perf_counter() - t0, say)


def finish(plan: RunPlan, state, data, device, train_time: float, say) -> int:
    """The run's results once its epochs are done: the best model's test-set evaluation,
    then run.json. A folder without run.json holds a run that can be resumed."""
    cfg, out, reporter = plan.cfg, plan.out, plan.reporter
    final = state.history[-1]
    summary = {"kind": "run", "name": out.name, "arch": cfg.arch, "dataset": plan.data_name,
               "status": final["status"], "epochs_run": final["epoch"], "train_time_s": train_time,
               "images_per_sec": sum(h["images_per_sec"] for h in state.history) / len(state.history),
               "best_val_acc": final["best_val_acc"], "best_epoch": final["best_epoch"]}
    if reporter.restored_epoch:
        summary["resumed_after_epoch"] = reporter.restored_epoch
    if final["status"] == layout.DIVERGED and not state.best_state:
        summary["error"] = "loss became NaN/inf in the first epoch; lower the learning rate"
        save_json(summary, out / layout.RUN_JSON)
        reporter.finished()
        print(f"diverged: {summary['error']}")
        return 1
    atomic_save(reporter.last_checkpoint["model"], out / layout.MODEL)
    ev = evaluate_checkpoint(out / layout.MODEL, data, device)
    save_evaluation(ev, out)
    summary.update(test_acc=ev["accuracy"], test_loss=ev["loss"], parameters=ev["parameters"])
    save_json(summary, out / layout.RUN_JSON)
    reporter.finished()
    say(format_evaluation(ev))
    print(f"status {final['status']} after {final['epoch']} epochs, {train_time:.1f}s; "
          f"best epoch {final['best_epoch']} (val_acc {final['best_val_acc']:.4f}); "
          f"test accuracy {ev['accuracy']:.4f}, loss {ev['loss']:.4f}\nwrote {out}")
    return 0
