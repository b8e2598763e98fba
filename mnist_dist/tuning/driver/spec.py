"""Sweep definitions: `sweeps/<arch>.yaml` <- CLI flags, validated before Ray starts.

A search-space entry is one of
    {loguniform: [lo, hi]}  {uniform: [lo, hi]}  {int: [lo, hi]}  {choice: [a, b, ...]}
optionally with `when: {param: [values]}` to make it conditional (momentum only
for sgd/rmsprop, say). Keys of `space` and `fixed` are TrainConfig fields.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...config import (FIELDS, ONECYCLE_PCT_START, ConfigError, coerce, load_yaml, resolve,
                      unknown_key_error)
from ...models import get_entry

# The shipped sweep configs are package data, so a wheel install has them too;
# the repository's sweeps/ARCH.yaml are links to them.
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
KINDS = ("loguniform", "uniform", "int", "choice")
# What a trial reports every epoch that a sweep can rank trials by, with the mode that
# makes sense for it. best_*: the best epoch so far, so a trial is ranked by its best model.
METRICS = {"best_val_acc": "max", "best_val_loss": "min", "val_acc": "max", "val_loss": "min",
           "train_acc": "max", "train_loss": "min"}
SEARCHABLE = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "dropout",
              "batch_size", "epochs", "lr_plateau_factor", "early_stopping_patience", "augment",
              "val_fraction", "lr_schedule", "warmup_epochs", "label_smoothing")


@dataclass
class SchedulerSpec:
    type: str = "asha"  # asha | none
    grace_period: int = 1  # epochs every trial runs before it may be stopped
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    compare_within: str | None = None  # a searched param: rank trials only against its same value


@dataclass
class SweepSpec:
    arch: str
    dataset: str = "mnist"
    metric: str = "best_val_acc"
    mode: str = "max"
    trials: int = 20
    max_concurrent: int | None = None  # default: as many as the cluster's resources fit
    baseline_first: bool = True  # evaluate the source's baseline config as trial 1
    seed: int = 0  # seeds the TPE sampler and every trial's training
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    fixed: dict = field(default_factory=dict)  # TrainConfig values held constant
    space: dict = field(default_factory=dict)  # param -> distribution
    points: list = field(default_factory=list)  # configs to evaluate first, after the baseline

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TOP_KEYS = {f.name for f in dataclasses.fields(SweepSpec)}


def _check_dist(name: str, d, where: str) -> None:
    if name not in SEARCHABLE:
        raise ConfigError(f"{where}: space.{name} cannot be searched; searchable: {', '.join(SEARCHABLE)}")
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: space.{name} must be a mapping like {{loguniform: [1e-4, 1e-2]}}")
    kinds = [k for k in d if k in KINDS]
    extra = [k for k in d if k not in KINDS and k != "when"]
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{where}: space.{name} needs exactly one of {', '.join(KINDS)} "
                          f"(optionally with 'when'); got keys {list(d)}")
    values = d[kinds[0]]
    if kinds[0] == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: space.{name}.choice must be a non-empty list")
        for v in values:
            coerce({name: v}, f"{where}: space.{name}")
    else:
        if not (isinstance(values, list) and len(values) == 2):
            raise ConfigError(f"{where}: space.{name}.{kinds[0]} must be [low, high]")
        lo, hi = (float(v) for v in values)
        if not lo < hi or (kinds[0] == "loguniform" and lo <= 0):
            raise ConfigError(f"{where}: space.{name}.{kinds[0]} range [{lo}, {hi}] is empty"
                              + (" or not positive" if kinds[0] == "loguniform" else ""))
    for param in d.get("when", {}) or {}:
        if param not in FIELDS:
            raise unknown_key_error(param, FIELDS, f"{where}: space.{name}.when")


def kind_of(d: dict) -> str:
    return next(k for k in d if k in KINDS)


def suggest(trial, name: str, d: dict):
    """Draw one value from an Optuna trial (works on Ray's captor object too)."""
    kind, v = kind_of(d), d[kind_of(d)]
    if kind == "loguniform":
        return trial.suggest_float(name, float(v[0]), float(v[1]), log=True)
    if kind == "uniform":
        return trial.suggest_float(name, float(v[0]), float(v[1]))
    if kind == "int":
        return trial.suggest_int(name, int(v[0]), int(v[1]))
    return trial.suggest_categorical(name, v)


class DefineByRun:
    """The Optuna define-by-run space: conditional params only when their `when` holds.
    A class, not a closure, because Tune pickles the searcher into its checkpoints."""

    def __init__(self, space: dict):
        self.space = space

    def __call__(self, trial) -> None:
        sample(trial, self.space)  # Ray's OptunaSearch reads the values from the trial


def sample(trial, space: dict) -> dict:
    """One config from the space: conditional params only when their `when` holds."""
    chosen = {}
    for name, d in space.items():
        if all(chosen.get(p) in vals for p, vals in (d.get("when") or {}).items()):
            chosen[name] = suggest(trial, name, d)
    return chosen


def in_range(value, d: dict) -> bool:
    kind, v = kind_of(d), d[kind_of(d)]
    if kind == "choice":
        return value in v
    return float(v[0]) <= float(value) <= float(v[1])


def baseline_point(spec: SweepSpec) -> dict:
    """The source's published config, in search-space terms, to enqueue as trial 1."""
    base = resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset}).to_dict()
    if base.get("dropout") is None:
        base["dropout"] = get_entry(spec.arch).dropout
    point = {}
    for name, d in spec.space.items():
        if all(base.get(p) in vals for p, vals in (d.get("when") or {}).items()):
            if base.get(name) is None or not in_range(base[name], d):
                raise ConfigError(f"sweep {spec.arch}: the baseline {name}={base.get(name)!r} is outside "
                                  f"space.{name} {d}; widen the range or set baseline_first: false")
            point[name] = base[name]
    return point


def load_spec(arch: str, path: str | Path | None = None, overrides: dict | None = None) -> SweepSpec:
    """sweeps/<arch>.yaml (or `path`) <- overrides; every key and value checked."""
    get_entry(arch)
    if path is None and not (CONFIGS_DIR / f"{arch}.yaml").is_file():
        raise ConfigError(f"no sweep config is shipped for {arch!r} (expected {CONFIGS_DIR / (arch + '.yaml')}); "
                          "pass --config FILE")
    path = Path(path).expanduser() if path else CONFIGS_DIR / f"{arch}.yaml"
    raw = load_yaml(path)  # a missing, unreadable or malformed file is an error naming it
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    where = str(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown_key_error(key, sorted(TOP_KEYS), where)
    sched = raw.pop("scheduler", None) or {}
    bad = set(sched) - {f.name for f in dataclasses.fields(SchedulerSpec)}
    if bad:
        raise ConfigError(f"{where}: unknown scheduler key(s) {sorted(bad)}; known: "
                          f"{', '.join(f.name for f in dataclasses.fields(SchedulerSpec))}")
    spec = SweepSpec(**{**raw, "arch": arch}, scheduler=SchedulerSpec(**sched))
    validate(spec, where)
    return spec


def validate(spec: SweepSpec, where: str) -> None:
    if spec.metric not in METRICS:
        close = difflib.get_close_matches(str(spec.metric), list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: metric {spec.metric!r} is not something trials report{hint}; "
                          f"known: {', '.join(METRICS)}")
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"{where}: mode={spec.mode!r}; expected max or min")
    if spec.mode != METRICS[spec.metric]:
        raise ConfigError(f"{where}: metric {spec.metric} with mode {spec.mode} would pick the worst trial; "
                          f"use mode: {METRICS[spec.metric]}")
    if not isinstance(spec.trials, int) or spec.trials < 1:
        raise ConfigError(f"{where}: trials={spec.trials!r}; expected an integer >= 1")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise ConfigError(f"{where}: max_concurrent={spec.max_concurrent!r}; expected >= 1")
    if spec.scheduler.type not in ("asha", "none"):
        raise ConfigError(f"{where}: scheduler.type={spec.scheduler.type!r}; expected asha or none")
    for key, least in (("grace_period", 1), ("reduction_factor", 2)):  # ASHA's rungs: grace x factor^k
        value = getattr(spec.scheduler, key)
        if spec.scheduler.type == "asha" and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"{where}: scheduler.{key}={value!r}; expected an integer >= {least}")
    within = spec.scheduler.compare_within
    choices = [k for k, d in (spec.space or {}).items() if isinstance(d, dict) and "choice" in d]
    if within is not None and (within not in choices or spec.scheduler.type != "asha"):
        # a continuous parameter would give every trial rungs of its own: ASHA would stop none
        raise ConfigError(f"{where}: scheduler.compare_within={within!r} must name a parameter the space "
                          f"searches with choice, under type: asha; this space's: {', '.join(choices) or 'none'}")
    spec.fixed = coerce(spec.fixed or {}, f"{where}: fixed")
    for name, d in (spec.space or {}).items():
        _check_dist(name, d, where)
    overlap = set(spec.fixed) & set(spec.space)
    if overlap:
        raise ConfigError(f"{where}: {sorted(overlap)} both fixed and searched; keep one")
    resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset}, source=where)  # fixed values valid
    if spec.baseline_first:
        baseline_point(spec)
    for i, point in enumerate(spec.points or []):
        if not isinstance(point, dict):
            raise ConfigError(f"{where}: points[{i}] must be a mapping of searched params to values")
        for name, value in point.items():
            if name not in spec.space:
                raise ConfigError(f"{where}: points[{i}].{name} is not in space; points set searched "
                                  f"params only ({', '.join(spec.space)})")
            point[name] = coerce({name: value}, f"{where}: points[{i}]")[name]


def min_grace_period(spec: SweepSpec) -> int:
    """The first epoch at which ASHA may fairly compare every trial the space can propose: past
    one-cycle's rise to its peak and past the longest warm-up. Judged earlier, a trial still
    warming up (its rate below the peak) loses to a constant-rate trial it would overtake:
    a fashion_cnn trial stopped at 88.4% after 3 of 15 epochs reached 93.6% when run out."""
    def values(name: str) -> list:
        if name in spec.fixed:
            return [spec.fixed[name]]
        d = spec.space.get(name) or {}
        return list(d.get("choice", [])) or ([d[kind_of(d)][1]] if d else [])
    epochs = max_epochs(spec)
    need = [max([float(w) for w in values("warmup_epochs")] or [0.0])]
    if "onecycle" in values("lr_schedule"):
        need.append(ONECYCLE_PCT_START * epochs)
    return max(1, min(epochs, math.ceil(max(need))))


def schedule_warning(spec: SweepSpec) -> str | None:
    """A line for the console when ASHA's first cut comes before the schedules have warmed up."""
    if spec.scheduler.type != "asha" or spec.scheduler.grace_period >= min_grace_period(spec):
        return None
    return (f"warning: scheduler.grace_period {spec.scheduler.grace_period} judges trials before "
            f"their learning-rate warm-up ends (one-cycle peaks at {ONECYCLE_PCT_START:.0%} of the "
            f"run); set it to at least {min_grace_period(spec)} for a fair search")


def initial_points(spec: SweepSpec) -> list[dict]:
    """What Optuna evaluates before it starts proposing: the baseline, then `points`."""
    return ([baseline_point(spec)] if spec.baseline_first else []) + list(spec.points or [])


def max_epochs(spec: SweepSpec) -> int:
    """The largest epoch count a trial can have: ASHA's max_t."""
    d = spec.space.get("epochs")
    if d:
        return int(max(d["choice"]) if "choice" in d else d[kind_of(d)][1])
    return resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset}).epochs
