"""Sweep definitions: `sweeps/<arch>.yaml` <- CLI flags, validated before Ray starts.

The YAML's top level: dataset, metric, mode, trials, max_concurrent, baseline_first,
seed, sampler, scheduler {type, grace_period, reduction_factor, compare_within,
perturbation_interval}, fixed, space, points and objectives. A search-space entry is one of
    {loguniform: [lo, hi]}  {uniform: [lo, hi]}  {int: [lo, hi]}  {choice: [a, b, ...]}
(uniform and loguniform for number fields, int for integer ones, choice for any),
optionally with `when: {param: [values]}` to make it conditional (momentum only
for sgd/rmsprop, say): `param` is searched with choice above it, the values among its
choices. Keys of `space` and `fixed` are TrainConfig fields, each value within that
field's range (config.RANGES); `points` are configs of searched values to try first.
Every key and value is checked here, into the SweepSpec the sweep runs from.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import (FIELDS, ONECYCLE_PCT_START, ConfigError, Range, check_value, coerce,
                      coerce_value, fail, load_yaml, resolve, unknown_key_error)
from ..models import get_entry

# The shipped sweep configs are package data, so a wheel install has them too;
# the repository's sweeps/ARCH.yaml are links to them.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
KINDS = ("loguniform", "uniform", "int", "choice")
# What a trial reports every epoch that a sweep can rank trials by, with the mode that
# makes sense for it. best_*: the best epoch so far, so a trial is ranked by its best model.
METRICS = {"best_val_acc": "max", "best_val_loss": "min", "val_acc": "max", "val_loss": "min",
           "train_acc": "max", "train_loss": "min"}
# What several objectives can weigh the metrics against: a cost every trial reports
OBJECTIVES = {**METRICS, "train_time_s": "min"}
SEARCHABLE = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "dropout",
              "batch_size", "epochs", "lr_plateau_factor", "early_stopping_patience", "augment",
              "val_fraction", "lr_schedule", "warmup_epochs", "label_smoothing")
# Optuna's search algorithms a sweep can use (runner.make_searcher builds each)
SAMPLERS = ("tpe", "gp", "cmaes", "random")


@dataclass
class SchedulerSpec:
    type: str = "asha"  # asha | pbt | none
    grace_period: int = 1  # epochs every trial runs before it may be stopped
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    compare_within: str | None = None  # a searched param: rank trials only against its same value
    perturbation_interval: int = 2  # pbt: epochs between two exploit-and-explore steps


@dataclass
class SweepSpec:
    arch: str
    dataset: str = "mnist"
    metric: str = "best_val_acc"
    mode: str = "max"
    trials: int = 20
    max_concurrent: int | None = None  # default: as many as the cluster's resources fit
    baseline_first: bool = True  # evaluate the source's baseline config as trial 1
    seed: int = 0  # seeds the sampler and every trial's training
    sampler: str = "tpe"  # the search algorithm: one of SAMPLERS
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    fixed: dict = field(default_factory=dict)  # TrainConfig values held constant
    space: dict = field(default_factory=dict)  # param -> distribution
    points: list = field(default_factory=list)  # configs to evaluate first, after the baseline
    # several objectives (names in OBJECTIVES, each with its natural mode), the first the metric
    objectives: list = field(default_factory=list)

    def directions(self) -> list[tuple[str, str]]:
        """(objective, mode) for each objective; the one metric when there are not several."""
        return [(o, OBJECTIVES[o]) for o in self.objectives] if self.objectives else [(self.metric, self.mode)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TYPES = {f.name: f.type for f in dataclasses.fields(SweepSpec)}
SCHEDULER_TYPES = {f.name: f.type for f in dataclasses.fields(SchedulerSpec)}
# The sweep's own values; dataset and seed are a trial's, so TrainConfig's ranges hold
RANGES = {
    "metric": Range(what="a metric name"),  # the names and a did-you-mean: _check_metric
    "mode": Range(choices=("max", "min")),
    "trials": Range(1),
    "max_concurrent": Range(1),
    "baseline_first": Range(),
    "sampler": Range(choices=SAMPLERS),
}
SCHEDULER_RANGES = {
    "type": Range(choices=("asha", "pbt", "none")),
    "grace_period": Range(1, note="(epochs before ASHA may stop a trial)"),
    "reduction_factor": Range(2, note="(ASHA keeps 1/reduction_factor at each rung)"),
    "compare_within": Range(what="a parameter the space searches with choice"),
    "perturbation_interval": Range(1, note="(epochs between PBT's exploit-and-explore steps)"),
}
MAPPINGS = {  # what each nested section looks like, for its error
    "scheduler": "a mapping like {type: asha, grace_period: 4}",
    "fixed": "a mapping of TrainConfig keys to values, like {epochs: 15}",
    "space": "a mapping of parameters to distributions, like {lr: {loguniform: [1.0e-4, 1.0e-2]}}",
}


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


def baseline_point(spec: SweepSpec, where: str | None = None) -> dict:
    """The source's published config, in search-space terms, to enqueue as trial 1."""
    base = resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset}).to_dict()
    if base.get("dropout") is None:
        base["dropout"] = get_entry(spec.arch).dropout
    point = {}
    for name, d in spec.space.items():
        if all(base.get(p) in vals for p, vals in (d.get("when") or {}).items()):
            if base.get(name) is None or not in_range(base[name], d):
                raise ConfigError(f"{where or 'sweep ' + spec.arch}: the baseline {name}={base.get(name)!r} is "
                                  f"outside space.{name} {d}; widen the range or set baseline_first: false")
            point[name] = base[name]
    return point


def load_spec(arch: str, path: str | Path | None = None, overrides: dict | None = None) -> SweepSpec:
    """sweeps/<arch>.yaml (or `path`) <- overrides; every key and value checked."""
    get_entry(arch)
    if path is None and not (CONFIGS_DIR / f"{arch}.yaml").is_file():
        raise ConfigError(f"no sweep config is shipped for {arch!r} (expected {CONFIGS_DIR / (arch + '.yaml')}); "
                          "pass --config FILE")
    path = Path(path).expanduser() if path else CONFIGS_DIR / f"{arch}.yaml"
    raw = load_yaml(path)  # a missing, unreadable, empty or malformed file is an error naming it
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    where = str(path)
    spec = parse_spec(arch, raw, where)
    validate(spec, where)
    return spec


def saved_spec(arch: str, config_json: Path) -> SweepSpec:
    """The sweep a started sweep saved (config.json's "sweep"), checked as a YAML is: the only
    definition `--resume` runs, whatever the YAML says now."""
    import json

    where = str(config_json)
    try:
        raw = json.loads(Path(config_json).read_text())["sweep"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{where}: not a sweep's saved config ({type(e).__name__}: {e}); "
                          "--resume needs the config.json the sweep wrote when it started") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'sweep' is not a mapping; --resume needs the config.json the sweep wrote")
    spec = parse_spec(arch, raw, where)
    validate(spec, where)
    return spec


def parse_spec(arch: str, raw: dict, where: str) -> SweepSpec:
    """The YAML's top level as a SweepSpec: known keys only, each value of its type and range."""
    known = [k for k in TYPES if k != "arch"]
    values = {"arch": arch}
    for key, value in raw.items():
        if key == "arch":  # the command line names it; a YAML naming another is a mistake
            if value != arch:
                fail(where, key, value, f"{arch!r}, the architecture on the command line, or no arch key")
            continue
        if key not in known:
            raise unknown_key_error(key, known, where)
        if key in ("dataset", "seed"):
            values[key] = coerce_value(key, value, where)
        elif key in RANGES:
            values[key] = check_value(value, TYPES[key], RANGES[key], where, key)
    scheduler = mapping(raw, "scheduler", where)
    for key in scheduler:
        if key not in SCHEDULER_TYPES:
            raise unknown_key_error(key, list(SCHEDULER_TYPES), f"{where}: scheduler")
    values["scheduler"] = SchedulerSpec(**{k: check_value(v, SCHEDULER_TYPES[k], SCHEDULER_RANGES[k], where,
                                                          f"scheduler.{k}") for k, v in scheduler.items()})
    values["fixed"] = coerce(mapping(raw, "fixed", where), where, "fixed.")
    values["space"] = mapping(raw, "space", where)
    values["objectives"] = _objectives(raw, values, where)
    values["points"] = raw.get("points") or []
    if not isinstance(values["points"], list) or not all(isinstance(p, dict) for p in values["points"]):
        fail(where, "points", raw["points"], "a list of mappings of searched params to values, "
             "like [{lr: 3.0e-3, optimizer: adam}]")
    return SweepSpec(**values)


def _objectives(raw: dict, values: dict, where: str) -> list:
    """`objectives: [best_val_acc, train_time_s]`: two or more metrics, each once, the first one
    ranking trials (ASHA cuts on it, the best model is picked by it): it sets metric and mode."""
    given = raw.get("objectives")
    if given is None or given == []:
        return []
    accepted = f"a list of two or more of {', '.join(OBJECTIVES)}, like [best_val_acc, train_time_s]"
    if not isinstance(given, list) or len(given) < 2 or not all(isinstance(o, str) for o in given) \
            or len(set(given)) < len(given):
        fail(where, "objectives", given, accepted)
    for o in given:
        if o not in OBJECTIVES:
            close = difflib.get_close_matches(o, list(OBJECTIVES), n=1)
            raise ConfigError(f"{where}: objectives: {o!r} is not something trials report"
                              f"{f' (did you mean {close[0]!r}?)' if close else ''}; known: {', '.join(OBJECTIVES)}")
    for key, value in (("metric", given[0]), ("mode", OBJECTIVES[given[0]])):
        if key in raw and values.get(key) != value:
            raise ConfigError(f"{where}: {key}: {values.get(key)} with objectives {given}: the first objective sets "
                              f"the {key} ({value}); drop {key} or list {values.get(key)} first")
        values[key] = value
    return list(given)


def mapping(raw: dict, key: str, where: str) -> dict:
    """A nested section (empty when left out or blank), or the error saying what it should be."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(where, key, value, MAPPINGS[key], f"is a {type(value).__name__}, not a mapping")
    return value


def validate(spec: SweepSpec, where: str) -> None:
    """What no single value shows: the metric and mode agree, every searched distribution and
    condition fits its parameter, the fixed values, the baseline and the points are valid."""
    _check_metric(spec, where)
    if not spec.space:
        raise ConfigError(f"{where}: space is empty; a sweep searches at least one parameter, expected "
                          f"{MAPPINGS['space']}")
    for key in ("arch", "dataset", "seed"):
        if key in spec.fixed:  # base_config would silently take the top-level value instead
            raise ConfigError(f"{where}: fixed.{key} is not allowed; set {key} at the top level "
                              f"({'the command line names the architecture' if key == 'arch' else key + ': ...'})")
    for name, d in spec.space.items():
        spec.space[name] = _check_dist(name, d, spec.space, where)
    overlap = set(spec.fixed) & set(spec.space)
    if overlap:
        raise ConfigError(f"{where}: {sorted(overlap)} both fixed and searched; keep one")
    _check_compare_within(spec, where)
    if spec.scheduler.type == "pbt":
        _check_pbt(spec, where)
    if spec.objectives and spec.sampler == "cmaes":
        raise ConfigError(f"{where}: sampler cmaes with objectives {spec.objectives}: Optuna's CMA-ES searches one "
                          "objective; use tpe, gp or random for several")
    base = resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset, "seed": spec.seed}, source=where).to_dict()
    _check_warmup_fits(spec, base, where)
    if spec.baseline_first:
        baseline_point(spec, where)
    for i, point in enumerate(spec.points):
        _check_point(spec, i, point, where)


def _check_metric(spec: SweepSpec, where: str) -> None:
    if spec.metric not in METRICS:
        close = difflib.get_close_matches(spec.metric, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: metric {spec.metric!r} is not something trials report{hint}; "
                          f"known: {', '.join(METRICS)}")
    if spec.mode != METRICS[spec.metric]:
        raise ConfigError(f"{where}: metric {spec.metric} with mode {spec.mode} would pick the worst trial; "
                          f"use mode: {METRICS[spec.metric]}")


# What a PBT trial can change between two epochs without starting over: the rates (under a
# schedule, lr scales the rest of it), the regularisers and the data's augmentation. Batch
# size, epochs and the optimizer or schedule kind fix the run's shape and stay as drawn.
MUTABLE = ("lr", "weight_decay", "dropout", "augment", "label_smoothing")


def mutable(spec: SweepSpec) -> list[str]:
    """The searched parameters PBT perturbs: mutable ones searched whatever else is drawn."""
    return [n for n, d in spec.space.items() if n in MUTABLE and not d.get("when")]


def _check_pbt(spec: SweepSpec, where: str) -> None:
    """PBT steers a random population itself: no sampler, one objective, something to perturb."""
    if spec.sampler != "tpe":
        raise ConfigError(f"{where}: sampler {spec.sampler} with scheduler.type pbt: PBT draws its population at "
                          "random and steers it itself, so no sampler applies; drop sampler or use type: asha")
    if spec.objectives:
        raise ConfigError(f"{where}: objectives with scheduler.type pbt: PBT ranks trials by one metric; "
                          "use type: asha for several objectives")
    if not mutable(spec):
        raise ConfigError(f"{where}: scheduler.type pbt: the space searches none of {', '.join(MUTABLE)} "
                          "unconditionally, so PBT would have nothing to change mid-run")


def _check_compare_within(spec: SweepSpec, where: str) -> None:
    within = spec.scheduler.compare_within
    choices = [k for k, d in spec.space.items() if "choice" in d]
    if within is not None and (within not in choices or spec.scheduler.type != "asha"):
        # a continuous parameter would give every trial rungs of its own: ASHA would stop none
        raise ConfigError(f"{where}: scheduler.compare_within={within!r} must name a parameter the space "
                          f"searches with choice, under type: asha; this space's: {', '.join(choices) or 'none'}")


def _check_dist(name, d, space: dict, where: str) -> dict:
    """One space entry, its values converted to the parameter's type (as trials get them)."""
    if name not in FIELDS:
        raise unknown_key_error(name, SEARCHABLE, f"{where}: space")
    if name not in SEARCHABLE:
        raise ConfigError(f"{where}: space.{name} cannot be searched; searchable: {', '.join(SEARCHABLE)}")
    if not isinstance(d, dict):
        fail(where, f"space.{name}", d, "a mapping like {loguniform: [1.0e-4, 1.0e-2]} or {choice: [a, b]}")
    kinds = [k for k in d if k in KINDS]
    extra = [k for k in d if k not in KINDS and k != "when"]
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{where}: space.{name} needs exactly one of {', '.join(KINDS)} "
                          f"(optionally with 'when'); got keys {list(d)}")
    kind = kinds[0]
    checked = {kind: _check_choices(name, d[kind], where) if kind == "choice" else
               _check_bounds(name, kind, d[kind], where)}
    if "when" in d:
        checked["when"] = _check_when(name, d["when"], space, where)
    return checked


def _check_choices(name: str, values, where: str) -> list:
    label = f"space.{name}.choice"
    if not isinstance(values, list) or not values:
        fail(where, label, values, f"a non-empty list of {name} values, like [a, b]")
    return [coerce_value(name, v, where, label) for v in values]


def _check_bounds(name: str, kind: str, values, where: str) -> list:
    label, type_name = f"space.{name}.{kind}", str(FIELDS[name].type).split("|")[0].strip()
    fits = {"int": ("int",), "float": ("loguniform", "uniform")}.get(type_name, ())
    if kind not in fits:  # a float drawn for an integer (or a text) field fails in every trial
        raise ConfigError(f"{where}: {label}: {name} takes {type_name} values; search it with "
                          f"{' or '.join(fits + ('choice',))}")
    if not isinstance(values, list) or len(values) != 2:
        fail(where, label, values, "[low, high]")
    lo, hi = (coerce_value(name, v, where, f"{label}[{i}]") for i, v in enumerate(values))
    if lo is None or hi is None or not lo < hi or (kind == "loguniform" and lo <= 0):
        fail(where, label, values, "[low, high] with low < high" + (", both > 0" if kind == "loguniform" else ""))
    return [lo, hi]


def _check_when(name: str, when, space: dict, where: str) -> dict:
    """`when` conditions on choice parameters listed above `name` (the order values are
    drawn in), each with values among that parameter's choices."""
    label = f"space.{name}.when"
    above = list(space)[:list(space).index(name)]
    candidates = [p for p in above if "choice" in space[p]]
    if not isinstance(when, dict) or not when:
        fail(where, label, when, "a mapping of a choice parameter above it to some of its values, "
             "like {optimizer: [sgd, rmsprop]}")
    checked = {}
    for param, values in when.items():
        if param not in candidates:
            raise ConfigError(f"{where}: {label}.{param}: `when` needs a parameter searched with choice "
                              f"above {name} in space; these are: {', '.join(candidates) or 'none'}")
        choices = space[param]["choice"]
        if not isinstance(values, list) or not values:
            fail(where, f"{label}.{param}", values, f"a non-empty list of values among {choices}")
        checked[param] = [coerce_value(param, v, where, f"{label}.{param}") for v in values]
        outside = [v for v in checked[param] if v not in choices]
        if outside:
            fail(where, f"{label}.{param}", values, f"values among space.{param}.choice {choices}")
    return checked


def _check_warmup_fits(spec: SweepSpec, base: dict, where: str) -> None:
    """The longest warm-up the sweep can draw ends before the shortest run it can draw."""
    def ends(name: str) -> list:
        d = spec.space.get(name)
        return (d[kind_of(d)] if d else [base[name]])
    warmup, epochs = max(ends("warmup_epochs")), min(ends("epochs"))
    if warmup > 0 and warmup >= epochs:
        raise ConfigError(f"{where}: warmup_epochs up to {warmup} with epochs from {epochs}; expected a "
                          "warm-up that ends before the run does (warmup_epochs < epochs)")


def _check_point(spec: SweepSpec, i: int, point: dict, where: str) -> None:
    """One of `points`: searched params only, each value one the space can draw, consistent
    with the `when` conditions, and a valid config over the fixed values and the baseline."""
    label = f"points[{i}]"
    for name, value in point.items():
        if name not in spec.space:
            raise ConfigError(f"{where}: {label}.{name} is not in space; points set searched "
                              f"params only ({', '.join(spec.space)})")
        d = spec.space[name]
        point[name] = coerce_value(name, value, where, f"{label}.{name}")
        if not in_range(point[name], d):
            fail(where, f"{label}.{name}", point[name], f"a value space.{name} can draw: {kind_of(d)} "
                 f"{d[kind_of(d)]}", "is outside the space")
    for name in point:
        for param, values in (spec.space[name].get("when") or {}).items():
            if param in point and point[param] not in values:
                raise ConfigError(f"{where}: {label} sets {name}, which is searched only when {param} is "
                                  f"one of {values}, but sets {param}={point[param]!r}")
    resolve(spec.arch, {**spec.fixed, **point, "dataset": spec.dataset}, source=f"{where}: {label}")


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
