"""A sweep's summary.json: what it holds, as types, and the one function that writes it.

    SweepSummary     the search: trials per status, times, whether it ran every trial
      BestTrial      the best trial and its model on the test set (best/)
      EnsembleResult the k best trials averaged (ensemble/), McNemar's test against the best
      FinalSeeds     --final-seeds: the best and the baseline config over the same seeds
        SeedStats    one config's test accuracy per seed, mean and std

The best model's figures and the per-status counts sit at the top level of summary.json
(`test_acc`, `best_config`, `completed`, ...). `from_dict` reads a summary of any sweep: a
missing key takes its default, and so does a value of the wrong type (the report reads
folders it did not write). It also takes the other layout found in existing sweep folders:
the search's flag under the key `interrupted` (the name of a trial status, hence
`incomplete` here) and `final_seeds` holding the best config's seed statistics at its top
level instead of under `best`.

Free of torch and Ray, like layout.py, so anything can read a summary with it.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path

from ... import layout

COUNTED = tuple(s for s in layout.ENDED if s != layout.INTERRUPTED)  # `interrupted_trials` counts the rest
INCOMPLETE_ALIAS = "interrupted"  # `incomplete` in summaries of the other layout


def _num(value, default=None):
    """A number as JSON holds one (a bool is not one); anything else is `default`."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _text(value, default=None):
    return value if isinstance(value, str) else default


def _dict(value) -> dict | None:
    return value if isinstance(value, dict) else None


def _items(value) -> tuple:
    return tuple(value) if isinstance(value, list) else ()


def _incomplete(d: dict) -> bool:
    return bool(d["incomplete"] if "incomplete" in d else d.get(INCOMPLETE_ALIAS))


@dataclass(frozen=True)
class SeedStats:
    """One config retrained with the same seeds as the other: its test accuracy per seed run
    that finished (in seed order), their mean and standard deviation (0 for one value)."""
    seeds: tuple[int, ...] = ()
    test_acc: tuple[float, ...] = ()
    test_acc_mean: float | None = None  # None when no seed run finished
    test_acc_std: float = 0.0
    config: dict | None = None  # the searched hyperparameters it was trained with

    @classmethod
    def measure(cls, seeds: list[int], accs: dict[int, float], config: dict | None = None) -> SeedStats:
        values = [accs[s] for s in seeds if s in accs]  # a cut seed run has none
        return cls(tuple(seeds), tuple(values), statistics.mean(values) if values else None,
                   statistics.stdev(values) if len(values) > 1 else 0.0, config)

    def to_dict(self) -> dict:
        return {"config": self.config, "seeds": list(self.seeds), "test_acc": list(self.test_acc),
                "test_acc_mean": self.test_acc_mean, "test_acc_std": self.test_acc_std}

    @classmethod
    def from_dict(cls, d) -> SeedStats | None:
        if not isinstance(d, dict):
            return None
        return cls(_items(d.get("seeds")), _items(d.get("test_acc")), _num(d.get("test_acc_mean")),
                   _num(d.get("test_acc_std"), 0.0), _dict(d.get("config")))


@dataclass(frozen=True)
class FinalSeeds:
    """--final-seeds K: the best config and the source's baseline config, K seeds each."""
    best: SeedStats = field(default_factory=SeedStats)
    baseline: SeedStats | None = None  # None when the sweep has no baseline config
    gain_over_baseline: float | None = None  # best - baseline, mean test accuracy
    beats_baseline: bool | None = None  # the gain exceeds twice the larger std
    incomplete: bool = False  # a seed run was cut or never started: it is not in the means
    wall_time_s: float | None = None
    error: str | None = None  # why no seeds were retrained

    def to_dict(self) -> dict:
        return {"best": self.best.to_dict(), "baseline": self.baseline and self.baseline.to_dict(),
                "gain_over_baseline": self.gain_over_baseline, "beats_baseline": self.beats_baseline,
                "incomplete": self.incomplete, "wall_time_s": self.wall_time_s, "error": self.error}

    @classmethod
    def from_dict(cls, d) -> FinalSeeds | None:
        if not isinstance(d, dict):
            return None
        # the other layout holds the best config's statistics at the top of the block
        best = SeedStats.from_dict(d["best"] if isinstance(d.get("best"), dict) else d)
        beats = d.get("beats_baseline")
        return cls(best, SeedStats.from_dict(d.get("baseline")), _num(d.get("gain_over_baseline")),
                   beats if isinstance(beats, bool) else None, _incomplete(d),
                   _num(d.get("wall_time_s")), _text(d.get("error")))


@dataclass(frozen=True)
class McNemarSummary:
    """The ensemble against the best single model on the same test images."""
    ensemble_right_single_wrong: int = 0
    ensemble_wrong_single_right: int = 0
    p_value: float | None = None
    method: str | None = None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d) -> McNemarSummary | None:
        if not isinstance(d, dict):
            return None
        return cls(_num(d.get("ensemble_right_single_wrong"), 0), _num(d.get("ensemble_wrong_single_right"), 0),
                   _num(d.get("p_value")), _text(d.get("method")))


@dataclass(frozen=True)
class EnsembleResult:
    """The k best trials' models averaged, k chosen on validation; or why there is none."""
    k: int | None = None
    members: tuple[str, ...] = ()  # trial ids, best first
    val_acc_by_k: tuple[float, ...] = ()
    val_acc: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    best_single_test_acc: float | None = None
    mcnemar_vs_best_single: McNemarSummary | None = None
    model: str | None = None  # its model.pt
    error: str | None = None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        mcnemar = self.mcnemar_vs_best_single
        return {**d, "members": list(self.members), "val_acc_by_k": list(self.val_acc_by_k),
                "mcnemar_vs_best_single": mcnemar and mcnemar.to_dict()}

    @classmethod
    def from_dict(cls, d) -> EnsembleResult | None:
        if not isinstance(d, dict):
            return None
        return cls(_num(d.get("k")), _items(d.get("members")), _items(d.get("val_acc_by_k")),
                   *(_num(d.get(k)) for k in ("val_acc", "test_acc", "test_loss", "best_single_test_acc")),
                   McNemarSummary.from_dict(d.get("mcnemar_vs_best_single")), _text(d.get("model")),
                   _text(d.get("error")))


@dataclass(frozen=True)
class BestTrial:
    """The search's best trial (by its metric) and its model on the test set. Its keys sit
    at the top of summary.json, under these names."""
    best_trial: str | None = None  # the trial id
    best_val_acc: float | None = None
    best_metric: float | None = None  # the sweep's metric, as the search ranked it
    best_config: dict | None = None  # its searched hyperparameters
    test_acc: float | None = None
    test_loss: float | None = None
    parameters: int | None = None
    best_images_per_sec: float | None = None
    best_train_time_s: float | None = None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> BestTrial | None:
        """None for a sweep without a usable model (none of these keys)."""
        names = [f.name for f in fields(cls)]
        if not any(n in d for n in names):
            return None
        return cls(_text(d.get("best_trial")), *(_num(d.get(n)) for n in names[1:3]), _dict(d.get("best_config")),
                   *(_num(d.get(n)) for n in names[4:]))


@dataclass(frozen=True)
class SweepSummary:
    """summary.json: the search, its best model, and what ran after it."""
    name: str = ""
    arch: str = ""
    dataset: str = ""
    metric: str = ""
    mode: str = ""
    sampler: str = "tpe"  # the search algorithm (spec.SAMPLERS); summaries that predate it used TPE
    scheduler: str = "asha"  # what stopped or steered trials: asha, pbt or none
    trials_run: int = 0  # this sweep's trials (not those a warm start imported)
    counts: dict[str, int] = field(default_factory=dict)  # trials per status in COUNTED
    workers: int | None = None  # per trial
    wall_time_s: float = 0.0  # the search, all its runs (a resumed one's too)
    overhead_per_trial_s: float | None = None  # a trial's wall time less its epochs' time
    # the same, for trials run by an already-started trial process (the first trial of
    # each process also pays for its start-up)
    overhead_per_reused_trial_s: float | None = None
    trial_processes: int = 0
    train_time_s: float = 0.0  # every trial's epochs
    incomplete: bool = False  # the search did not run every trial: --resume runs the rest
    interrupted_trials: int = 0  # trials cut by Ctrl-C or SIGTERM (status `interrupted`)
    best: BestTrial | None = None
    error: str | None = None  # why there is no best model
    ensemble: EnsembleResult | None = None
    final_seeds: FinalSeeds | None = None
    # --warm-start: {source, kind (history or points), trials, skipped_values}
    warm_start: dict | None = None
    # several objectives: [{metric, mode}], and the finished trials on their Pareto front
    objectives: list | None = None
    pareto_front: list | None = None
    kind: str = "sweep"  # tells the report a sweep's summary.json from a run's run.json

    @property
    def unfinished(self) -> bool:
        """The search or its seed runs stopped short: --resume has work left."""
        return self.incomplete or bool(self.final_seeds and self.final_seeds.incomplete)

    def to_dict(self) -> dict:
        """summary.json's object; the best model's keys, the error, the ensemble and the
        final seeds are there only when the sweep has them."""
        head = {"kind": self.kind, **{n: getattr(self, n) for n in ("name", "arch", "dataset", "metric", "mode",
                                                                     "sampler", "scheduler", "trials_run")}}
        tail = {n: getattr(self, n) for n in ("workers", "wall_time_s", "overhead_per_trial_s",
                                              "overhead_per_reused_trial_s", "trial_processes",
                                              "train_time_s", "incomplete", "interrupted_trials")}
        optional = {"error": self.error, "ensemble": self.ensemble and self.ensemble.to_dict(),
                    "final_seeds": self.final_seeds and self.final_seeds.to_dict(), "warm_start": self.warm_start,
                    "objectives": self.objectives, "pareto_front": self.pareto_front}
        return {**head, **self.counts, **tail, **(self.best.to_dict() if self.best else {}),
                **{k: v for k, v in optional.items() if v is not None}}

    @classmethod
    def from_dict(cls, d) -> SweepSummary:
        if not isinstance(d, dict):
            raise ValueError(f"a sweep summary is a JSON object, not {type(d).__name__}")
        counts = layout.upgrade_counts(d)  # old files name two statuses differently
        texts = {n: _text(d.get(n), "") for n in ("name", "arch", "dataset", "metric", "mode")}
        return cls(**texts, sampler=_text(d.get("sampler"), "tpe"), scheduler=_text(d.get("scheduler"), "asha"),
                   warm_start=d.get("warm_start") if isinstance(d.get("warm_start"), dict) else None,
                   objectives=_list(d.get("objectives")), pareto_front=_list(d.get("pareto_front")), trials_run=_num(d.get("trials_run"), 0),
                   counts={s: counts[s] for s in COUNTED if _num(counts.get(s)) is not None},
                   workers=_num(d.get("workers")), wall_time_s=_num(d.get("wall_time_s"), 0.0),
                   overhead_per_trial_s=_num(d.get("overhead_per_trial_s")),
                   overhead_per_reused_trial_s=_num(d.get("overhead_per_reused_trial_s")),
                   trial_processes=_num(d.get("trial_processes"), 0), train_time_s=_num(d.get("train_time_s"), 0.0),
                   incomplete=_incomplete(d),
                   interrupted_trials=_num(d.get("interrupted_trials"), 0), best=BestTrial.from_dict(d),
                   error=_text(d.get("error")), ensemble=EnsembleResult.from_dict(d.get("ensemble")),
                   final_seeds=FinalSeeds.from_dict(d.get("final_seeds")), kind=_text(d.get("kind"), "sweep"))


def _list(v) -> list | None:
    return v if isinstance(v, list) else None


def write_summary(summary: SweepSummary, sweep_dir: str | Path) -> Path:
    """summary.json in `sweep_dir`, whole or not at all: the only writer of that file."""
    return layout.save_json(summary.to_dict(), Path(sweep_dir) / layout.SUMMARY_JSON)


def read_summary(sweep_dir: str | Path) -> SweepSummary:
    """summary.json of `sweep_dir`; OSError when it cannot be read, ValueError when it is
    not a JSON object."""
    return SweepSummary.from_dict(json.loads((Path(sweep_dir) / layout.SUMMARY_JSON).read_text()))
