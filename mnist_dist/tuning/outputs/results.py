"""Turn a finished Tune run into results/<sweep>/: trials.csv, histories/, best/, summary.json."""
from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path

from ... import layout
from ...layout import write_csv
from ...evaluation import evaluate_checkpoint, save_evaluation
from .. import internals, warmstart
from ..execution import recovery
from ..options import data_label
from ..execution.events import ended_trials, read_events, trial_wall_times
from ...layout import ended_status
from .summary import COUNTED, BestTrial, SweepSummary, write_summary

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
                   "train_seconds", "images_per_sec", "world_size", "node_ids", "best_val_acc", "status")


def trial_status(result) -> str:
    if result.error is not None:
        return layout.FAILED
    status = (result.metrics or {}).get("status")
    if status is None:
        return layout.FAILED  # never reported an epoch
    return ended_status(status)


def checkpoint_path(result) -> str:
    """Where the trial's last checkpoint (holding its best model) is: a Ray Train run reports
    it in its metrics, a reused trial process's checkpoints are Tune's own."""
    m = result.metrics or {}
    if m.get("checkpoint_path"):
        return m["checkpoint_path"]
    return result.checkpoint.path if result.checkpoint is not None else ""


def checkpoint_history(result):
    """Every epoch's metrics from the trial's last checkpoint, for a trial whose result
    files a hard-killed driver never wrote (a reused trial process's checkpoint holds them)."""
    import pandas as pd

    from ...training.reporting import read_checkpoint

    folder = Path(checkpoint_path(result) or "")
    if not (folder / layout.RESUME).is_file():
        return None
    history = read_checkpoint(folder, best_weights=False)["state"]["history"]
    return pd.DataFrame(history) if history else None


def trial_row(result, histories: Path, walls: dict | None = None) -> dict:
    m = result.metrics or {}
    trial_id = m.get("trial_id") or Path(result.path).name
    df = result.metrics_dataframe
    if df is None or "epoch" not in df.columns:
        df = checkpoint_history(result)
    if df is not None and "epoch" in df.columns:  # a replayed final report repeats its epoch
        df = df.drop_duplicates("epoch", keep="last")
    # and each epoch's config: a PBT trial's values change over its epochs
    cols = [c for c in HISTORY_COLUMNS if df is not None and c in df.columns] + \
        [c for c in (df.columns if df is not None else ()) if str(c).startswith("config/")]
    epoch_seconds = 0.0
    if cols:
        layout.write_csv(df[cols].to_dict("records"), histories / layout.TRIAL_HISTORY.format(trial_id=trial_id), columns=cols)
        epoch_seconds = float(df["epoch_seconds"].sum())
    # the driver's start-to-end time, process start-up included; else Tune's own count
    trial_time = float((walls or {}).get(trial_id) or m.get("time_total_s", 0.0))
    params = {k: v for k, v in (result.config or {}).items()}
    return {"trial_id": trial_id, "status": trial_status(result), **{f"config/{k}": v for k, v in params.items()},
            "epochs_run": m.get("epoch", 0), "val_acc": m.get("val_acc"), "val_loss": m.get("val_loss"),
            "best_val_acc": m.get("best_val_acc"), "best_val_loss": m.get("best_val_loss"),
            "train_acc": m.get("train_acc"), "train_loss": m.get("train_loss"), "best_epoch": m.get("best_epoch"),
            "world_size": m.get("world_size"), "node_ids": _nodes(df), "pid": m.get("pid"),
            "images_per_sec": _mean(df, "images_per_sec"),
            "train_time_s": epoch_seconds, "trial_time_s": trial_time,
            "overhead_s": max(trial_time - epoch_seconds, 0.0) if trial_time else None,
            "error": str(result.error).splitlines()[0][:300] if result.error else "",
            "checkpoint_path": checkpoint_path(result)}


def _nodes(df) -> str:
    """Every node the trial's workers ran on, over all epochs (a restart may move them)."""
    if df is None or "node_ids" not in df.columns:
        return ""
    return ",".join(sorted({n for v in df["node_ids"].dropna() for n in str(v).split(",") if n}))


def _mean(df, col):
    return float(df[col].mean()) if df is not None and col in df.columns and len(df) else None


def ranked(rows: list[dict], metric: str, mode: str) -> list[dict]:
    """Usable trials, best first by the sweep's metric and mode (the last reported value:
    what Tune's scheduler and Optuna were told too). Ties, common with accuracies on a
    6,000-image validation split, go to the lower best validation loss, then the higher best
    validation accuracy, then the trial id: the same order however Tune lists the trials (a
    resumed sweep lists them differently)."""
    def low_first(v, sign: float = 1.0) -> float:  # a missing or NaN value goes last
        return sign * v if v is not None and math.isfinite(v) else math.inf

    def key(r):
        return (low_first(r[metric], 1.0 if mode == "min" else -1.0), low_first(r.get("best_val_loss")),
                low_first(r.get("best_val_acc"), -1.0), str(r["trial_id"]))

    ok = [r for r in rows if r["status"] in layout.USABLE and r["checkpoint_path"]
          and r.get(metric) is not None and math.isfinite(r[metric])]
    return sorted(ok, key=key)


def pick_best(rows: list[dict], metric: str, mode: str) -> dict | None:
    """The trial `ranked` puts first."""
    ok = ranked(rows, metric, mode)
    return ok[0] if ok else None


def fetch_model(checkpoint_path: str, dest: Path) -> Path:
    """Copy the trial's best model out of its Train checkpoint (local path or cloud URI).

    A checkpoint keeps the trial's best model so far, and a trial keeps one checkpoint. A DDP
    trial stopped by ASHA may have written the next epoch's before the stop reached it,
    replacing the one its last result names: the newest one beside it is then used."""
    import ray.train

    local = Path(checkpoint_path)
    if "://" not in checkpoint_path and not (local / layout.MODEL).is_file():
        newer = internals.newest_checkpoint(local.parent, layout.MODEL)
        if newer:
            checkpoint_path = str(newer)
    dest.mkdir(parents=True, exist_ok=True)
    with ray.train.Checkpoint(checkpoint_path).as_directory() as d, open(Path(d) / layout.MODEL, "rb") as src:
        layout.atomic_write(dest / layout.MODEL, lambda f: shutil.copyfileobj(src, f), binary=True)
    return dest / layout.MODEL


def sweep_data(base: dict):
    """The data the sweep's trials trained on (loaded once per driver)."""
    from ...config import TrainConfig
    from ...training.loop import cached_data

    return cached_data(TrainConfig.from_dict(base))


def evaluate_model(model_path: Path, base: dict) -> dict:
    """The model on the test split of the data its sweep trained on (a dataset or an image
    folder, cut to test_limit as the trials were)."""
    return evaluate_checkpoint(model_path, sweep_data(base))


def process_reuse(rows: list[dict], events: Path) -> tuple[list[float], int]:
    """The overheads of trials that ran in a trial process an earlier trial had started,
    and how many trial processes there were (none for DDP trials: Ray Train's workers)."""
    seen, reused = set(), []
    for r in in_start_order(rows, events):
        if r.get("pid") is None:
            continue
        process = (r.get("node_ids"), r["pid"])
        if process in seen and r["overhead_s"] is not None:
            reused.append(r["overhead_s"])
        seen.add(process)
    return reused, len(seen)


def in_start_order(rows: list[dict], events: Path) -> list[dict]:
    """The trials in the order the sweep created them (the event log's: when the driver first saw
    each, then Tune's own order), whatever order Tune lists them in: a continued sweep's earlier
    runs come first, the baseline stays trial 1."""
    first = {}
    for e in read_events(events):
        if e["event"] == "start":
            first.setdefault(e["trial_id"], (e.get("queued") or e["time"], e.get("order") or 0, e["time"]))
    return sorted(rows, key=lambda r: first.get(r["trial_id"], (math.inf, 0, 0)))


def mark_interrupted(rows: list[dict], events: Path) -> set[str]:
    """Trials the event log never saw end were cut by Ctrl-C or SIGTERM: neither failed nor
    stopped by a scheduler. Marks them `interrupted` and returns their ids."""
    unfinished = {r["trial_id"] for r in rows} - ended_trials(events)
    for r in rows:
        if r["trial_id"] in unfinished:
            r["status"] = layout.INTERRUPTED
    return unfinished


def collect(grid, spec, opts, sweep_dir: Path, base: dict, wall_time: float) -> SweepSummary:
    """trials.csv, histories/, best/ (the best trial's model, evaluated) and summary.json."""
    histories = sweep_dir / layout.HISTORIES
    histories.mkdir(exist_ok=True)
    walls = trial_wall_times(sweep_dir / layout.EVENTS)
    rows = [trial_row(r, histories, walls) for r in [*grid, *recovery.forgotten_trials(grid, sweep_dir, spec.space)]]
    rows = in_start_order(rows, sweep_dir / layout.EVENTS)
    unfinished = mark_interrupted(rows, sweep_dir / layout.EVENTS)
    ws = warmstart.saved(sweep_dir)
    if ws is not None:
        warmstart.mark_starting_points(rows, ws)
    write_csv([*(warmstart.imported_rows(ws, spec.metric) if ws else []), *rows], sweep_dir / layout.TRIALS_CSV)
    best = pick_best(rows, spec.metric, spec.mode)
    summary = SweepSummary(
        name=sweep_dir.name, arch=spec.arch, dataset=data_label(spec), metric=spec.metric, mode=spec.mode,
        # PBT's population is drawn at random, then steered by PBT: no sampler
        sampler="random" if spec.scheduler.type == "pbt" else spec.sampler, scheduler=spec.scheduler.type, trials_run=len(rows),
        warm_start=ws and {"source": Path(ws.source).name, "kind": ws.kind, "trials": len(ws.trials),
                           "skipped_values": ws.skipped_values},
        **several_objectives(rows, spec), counts={s: sum(r["status"] == s for r in rows) for s in COUNTED},
        workers=opts.scaling.workers, wall_time_s=wall_time, **overheads(rows, sweep_dir / layout.EVENTS),
        train_time_s=sum(r["train_time_s"] for r in rows),
        # Ctrl-C between two trials cuts none, but leaves the sweep short of its trials
        incomplete=bool(unfinished) or len(rows) < spec.trials, interrupted_trials=len(unfinished),
        best=best and evaluate_best(best, spec.metric, sweep_dir, base),
        error=None if best else "no trial finished with a usable model; see trials.csv for each trial's error")
    write_summary(summary, sweep_dir)
    return summary


def several_objectives(rows: list[dict], spec) -> dict:
    """summary.json's objectives and Pareto front, for a sweep of several objectives."""
    if not spec.objectives:
        return {}
    from .pareto import pareto_front

    return {"objectives": [{"metric": m, "mode": mode} for m, mode in spec.directions()],
            "pareto_front": pareto_front(rows, spec.directions())}


def overheads(rows: list[dict], events: Path) -> dict:
    """The mean time a trial spent outside its epochs, over every trial and over the trials
    that ran in an already-started trial process (each process's first trial also pays for
    the process's start-up), and how many trial processes there were."""
    every = [r["overhead_s"] for r in rows if r["overhead_s"] is not None]
    reused, processes = process_reuse(rows, events)
    return {"overhead_per_trial_s": statistics.mean(every) if every else None,
            "overhead_per_reused_trial_s": statistics.mean(reused) if reused else None,
            "trial_processes": processes}


def evaluate_best(best: dict, metric: str, sweep_dir: Path, base: dict) -> BestTrial:
    """The best trial's model copied to best/ and evaluated on the test split."""
    model_path = fetch_model(best["checkpoint_path"], sweep_dir / layout.BEST)
    ev = evaluate_model(model_path, base)
    save_evaluation(ev, sweep_dir / layout.BEST)
    return BestTrial(best_trial=best["trial_id"], best_val_acc=best["best_val_acc"], best_metric=best[metric],
                     best_config={k[7:]: v for k, v in best.items() if k.startswith("config/")},
                     test_acc=ev["accuracy"], test_loss=ev["loss"], parameters=ev["parameters"],
                     best_images_per_sec=best["images_per_sec"], best_train_time_s=best["train_time_s"])


def read_rows(path: Path) -> list[dict]:
    """trials.csv back as rows, numbers as numbers."""
    import csv

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return v or None

    with open(path) as f:
        return [{k: num(v) if k not in ("trial_id", "status") else v for k, v in r.items()}
                for r in csv.DictReader(f)]
