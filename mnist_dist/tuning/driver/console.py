"""What a sweep prints: live progress while it runs, a short table when it ends.

Tune's own status tables and Ray's worker logs are off by default (`--ray-logs` brings
them back; Ray keeps its full logs on disk either way). In their place: a progress line
(trials done / running / stopped / failed, best so far, the time left) that is a live bar
on a terminal and plain lines elsewhere, one line per finished trial when not on a terminal,
and at the end the trials as a table and where the results and report are.
"""
from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Callable

from ray.tune import Callback

from ...progress import Progress, format_seconds, is_terminal
from ... import layout
from ...layout import LABELS, ended_status
from ..outputs.summary import EnsembleResult, FinalSeeds, SweepSummary



def _epoch(result: dict | None) -> float:
    """Epochs a trial has trained, from its last result (none yet: 0)."""
    return float((result or {}).get("epoch") or 0)


def better(a: float | None, b: float | None, mode: str) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return b is None or (a > b if mode == "max" else a < b)


class SweepProgress(Callback):
    """A Tune callback that keeps the person at the terminal informed.

    The time left comes from epochs, not trials: a sweep's trials differ in length (ASHA
    stops most early, and its first trials, with no rivals yet, run longest), so the count
    of trials gave no estimate for the first quarter hour of a cnn_regularized sweep and a
    poor one after. `epochs_left(epoch)` says how many more epochs a trial at `epoch` is
    expected to train (`estimate.epochs_to_go`); the rate is epochs per second since the
    display started, concurrency included."""

    def __init__(self, total: int, metric: str, mode: str, stream=None, live: bool | None = None,
                 epochs_left: Callable[[float], float] | None = None, desc: str = "trials"):
        self.stream = stream or sys.stdout
        self.metric, self.mode, self.desc = metric, mode, desc
        self.counts = {"done": 0, "stopped": 0, "failed": 0}
        self.running: set[str] = set()
        self.best = None
        self.live = is_terminal(self.stream) if live is None else live
        self.total, self.started = total, False
        self.epochs_left = epochs_left
        self.epochs: dict[str, float] = {}  # epochs trained, per trial this display has seen
        self.ended: set[str] = set()
        self.epochs_before = 0.0  # trained before this display started (a resumed sweep)
        self._bar: Progress | None = None

    @property
    def bar(self) -> Progress:
        """Made when first needed, so a resumed sweep's display starts at its finished trials."""
        if self._bar is None:
            self._bar = Progress(self.total, desc=self.desc, unit=" trials", stream=self.stream, every=30.0,
                                 unit_scale=False, live=self.live, initial=self.counts["done"],
                                 own_eta=self.epochs_left is not None)
        return self._bar

    def time_left(self) -> str:
        """'about 1:05:00 left (epoch 40 of ~280)': the epochs still expected over the rate
        at which this display has seen them trained ('' without epochs_left)."""
        if self.epochs_left is None:
            return ""
        from .estimate import epochs_ahead

        trained = sum(self.epochs.values())
        to_go = epochs_ahead(self.epochs, self.ended, self.total, self.epochs_left)
        span = f"epoch {trained:.0f} of ~{trained + to_go:.0f}"
        rate = (trained - self.epochs_before) / self.bar.elapsed if self.bar.elapsed > 0 else 0
        return f"about {format_seconds(to_go / rate)} left ({span})" if rate > 0 else span

    # Tune pickles its callbacks with the sweep and `--resume` unpickles them: the display
    # then starts afresh, on this process's console, and recounts on the first step.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_bar", "stream")}

    def __setstate__(self, state):
        old_bar = state.pop("bar", None)  # pickled by an older version, display and all
        self.__dict__.update(state)
        self.total = state.get("total", getattr(old_bar, "total", 0))
        self.stream, self.started, self._bar = sys.stdout, False, None
        self.live = is_terminal(self.stream)
        for key, default in (("epochs_left", None), ("epochs", {}), ("ended", set()), ("epochs_before", 0.0),
                             ("desc", "trials")):  # pickled by a version without them
            self.__dict__.setdefault(key, default)

    def on_step_begin(self, iteration, trials, **info):
        """The first step sees every trial the run knows: on `--resume`, those that ended
        before count as done (and not towards the rate), those restarted as running."""
        if self.started:
            return
        self.started = True
        self.counts = {"done": 0, "stopped": 0, "failed": 0}
        self.epochs, self.ended = {}, set()
        for trial in trials:
            self.epochs[trial.trial_id] = _epoch(trial.last_result)
            if trial.status in ("TERMINATED", "ERROR"):
                status = layout.FAILED if trial.status == "ERROR" else (
                    ended_status((trial.last_result or {}).get("status")) or layout.FAILED)
                self._count(status)
                self.ended.add(trial.trial_id)
            value = (trial.last_result or {}).get(self.metric)
            if better(value, self.best, self.mode):
                self.best = value
        self.epochs_before = sum(self.epochs.values())
        if self.counts["done"]:
            self._refresh()

    def _refresh(self) -> None:
        best = "-" if self.best is None else f"{self.best:.4f}"
        counts = (f"running {len(self.running)}, stopped {self.counts['stopped']}, failed {self.counts['failed']}, "
                  f"best so far: {self.metric}={best}")
        self.bar.update(self.counts["done"], postfix=", ".join(filter(None, [self.time_left(), counts])))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self.epochs.setdefault(trial.trial_id, 0.0)
        self._refresh()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs[trial.trial_id] = _epoch(result)
        if better(result.get(self.metric), self.best, self.mode):
            self.best = result[self.metric]
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        self._finish(trial, ended_status(last.get("status")) or layout.FAILED, last)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, layout.FAILED, trial.last_result or {})

    def _finish(self, trial, status: str, last: dict) -> None:
        self.running.discard(trial.trial_id)
        self.ended.add(trial.trial_id)
        self.epochs[trial.trial_id] = max(self.epochs.get(trial.trial_id, 0.0), _epoch(last))
        self._count(status)
        if not self.live:  # in a log, one line per finished trial says what happened
            value = last.get(self.metric)
            shown = "-" if value is None else f"{value:.4f}"
            one = "seed run" if self.desc == "final seeds" else "trial"
            print(f"{one} {self.counts['done']}/{self.bar.total} {trial.trial_id}: {LABELS.get(status, status)} "
                  f"after {last.get('epoch', 0)} epoch(s), {self.metric} {shown}", file=self.stream, flush=True)
        self._refresh()

    def _count(self, status: str) -> None:
        self.counts["done"] += 1
        self.counts["stopped"] += status == layout.STOPPED_BY_SCHEDULER
        self.counts["failed"] += status in (layout.FAILED, layout.DIVERGED)

    def on_experiment_end(self, trials, **info):
        self.on_step_begin(0, trials)  # a resumed sweep with nothing left to run has no step
        if not self.live and not self.bar.lines:  # a short sweep in a log still ends on its tally
            print(self.bar.line(), file=self.stream, flush=True)
        self.bar.close()


def summary_table(rows: list[dict], metric: str, limit: int = 20) -> str:
    """The trials as a short plain-text table, best first (the first `limit`)."""
    def key(r):
        v = r.get(metric)
        return (v is None or (isinstance(v, float) and math.isnan(v)), -(v or 0))

    shown = sorted(rows, key=key)[:limit]
    width = max([10] + [len(str(r["trial_id"])) + 2 for r in shown])  # Tune's ids: 8 characters, PBT's 11
    lines = [f"{'trial':<{width}}{'status':<26}{'epochs':>7}  {metric}"]
    for r in shown:
        v = r.get(metric)
        value = "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
        lines.append(f"{r['trial_id']:<{width}}{LABELS.get(r['status'], r['status']):<26}{int(r['epochs_run'] or 0):>7}  {value}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more in trials.csv")
    return "\n".join(lines)


def final_message(summary: SweepSummary, rows: list[dict], sweep_dir: Path, resume_hint: str) -> str:
    """The last lines of a sweep: what happened, the best model, where everything is."""
    n = {**summary.counts, layout.INTERRUPTED: summary.interrupted_trials}
    counts = ", ".join(f"{n.get(s, 0)} {LABELS[s]}" for s in layout.ENDED if n.get(s))
    steering = f", scheduler {summary.scheduler}" + (
        f", warm-started from {summary.warm_start['source']}" if summary.warm_start else "")
    out = [f"sweep {summary.name}: {summary.trials_run} trials ({counts}) in "
           f"{summary.wall_time_s:.0f} s, sampler {summary.sampler}{steering}", summary_table(rows, summary.metric)]
    out += pareto_lines(summary)
    best = summary.best
    if best is not None and best.test_acc is not None:
        out.append(f"best trial {best.best_trial}: {summary.metric} {best.best_metric:.4f}, "
                   f"test accuracy {best.test_acc:.4f} -> {sweep_dir / layout.BEST / layout.MODEL}")
        out += ensemble_lines(summary.ensemble)
    elif summary.error:
        out.append(f"no usable model: {summary.error}")
    out += final_seeds_lines(summary.final_seeds)
    if summary.unfinished:
        out.append(f"interrupted: the finished trials are kept. Resume with:\n  {resume_hint}")
    out.append(f"results: {sweep_dir}  (report: mnist-dist report {shlex.quote(str(sweep_dir.parent))})")
    return "\n".join(out)


def pareto_lines(summary: SweepSummary) -> list[str]:
    """A sweep of several objectives: the trials on its Pareto front, one line each."""
    if not summary.objectives:
        return []
    names = [o["metric"] for o in summary.objectives]
    head = "Pareto front (" + ", ".join(f"{o['metric']} {'up' if o['mode'] == 'max' else 'down'}"
                                        for o in summary.objectives) + "; finished trials only):"
    return [head] + [f"  {p['trial_id']}  " + "  ".join(f"{n} {p[n]:.4g}" for n in names)
                     for p in summary.pareto_front or []]


def ensemble_lines(e: EnsembleResult | None) -> list[str]:
    if e is None:
        return []
    if e.error:
        return [e.error]
    p = e.mcnemar_vs_best_single.p_value if e.mcnemar_vs_best_single else None
    return [f"ensemble of the {e.k} best (k chosen on validation): test accuracy {e.test_acc:.4f} "
            f"(McNemar p={'-' if p is None else f'{p:.3f}'} against the best trial) -> {e.model}"]


def final_seeds_lines(final: FinalSeeds | dict | None) -> list[str]:
    """--final-seeds: the best and the baseline config over the same seeds (summary.json's
    block, of any age, is read as it is)."""
    if isinstance(final, dict):
        final = FinalSeeds.from_dict(final)
    if final is None:
        return []
    cut = ["final seeds interrupted: only the seed runs that finished are counted"] if final.incomplete else []
    best, base = final.best, final.baseline
    if best.test_acc_mean is None:
        return cut + ([f"final seeds: {final.error}"] if final.error else [])
    pm = lambda f: f"{100 * f.test_acc_mean:.2f} +/- {100 * f.test_acc_std:.2f}%"  # noqa: E731
    lines = [f"final seeds {', '.join(map(str, best.seeds))}: best config {pm(best)} test accuracy"]
    if base is not None and base.test_acc_mean is not None and final.gain_over_baseline is not None:
        verdict = "beats it" if final.beats_baseline else "within 2 std of it"
        lines.append(f"  the source's baseline config {pm(base)}: best - baseline "
                     f"{100 * final.gain_over_baseline:+.2f} pp, {verdict}")
    return lines + cut
