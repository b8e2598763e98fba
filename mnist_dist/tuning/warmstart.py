"""`--warm-start results/OTHER`: what an earlier sweep gives a new one.

From a sweep of the same architecture, data and metric, the earlier trials' scores mean the
same thing here: every trial whose parameters fit this sweep's space joins the new Optuna
study as history, so the sampler models it from the first trial on (Tune's OptunaSearch
refuses given scores with a define-by-run space, hence the study itself). From any other
sweep the scores are not comparable: its best few configs become starting points, tried
right after this sweep's baseline. Either way only values this space can draw are kept;
the others are skipped and counted.

Nothing here imports Ray: the command line reads and checks the source before Ray starts.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import layout
from ..config import ConfigError, coerce_value, resolve
from .spec import SweepSpec, in_range, kind_of

STARTING_POINTS = 3  # the best configs of a sweep that is not comparable, tried after the baseline
HISTORY, POINTS = "history", "points"
KEEP = {layout.COMPLETED: "complete", layout.STOPPED_BY_PATIENCE: "complete",
        layout.STOPPED_BY_SCHEDULER: "pruned", layout.DIVERGED: "complete"}  # source status -> Optuna's


@dataclass
class WarmStart:
    source: str  # the earlier sweep's folder
    kind: str  # HISTORY or POINTS
    trials: list[dict] = field(default_factory=list)  # {trial_id, params, value, state, epochs}
    skipped_values: int = 0  # parameter values outside this space or of another type
    skipped_trials: int = 0  # trials with nothing usable (failed, no value, no parameter left)

    def to_dict(self) -> dict:
        return asdict(self)

    def points(self) -> list[dict]:
        """The starting points, best first (none for history)."""
        return [t["params"] for t in self.trials] if self.kind == POINTS else []

    def describe(self) -> str:
        what = (f"{len(self.trials)} trials as the sampler's history" if self.kind == HISTORY else
                f"its best {len(self.trials)} configs as starting points after the baseline (another "
                "architecture, dataset or metric: its scores do not compare)")
        skipped = f"; {self.skipped_values} parameter values outside this sweep's space skipped" \
            if self.skipped_values else ""
        return f"warm start from {Path(self.source).name}: {what}{skipped}"


def read(folder: str | Path, spec: SweepSpec) -> WarmStart:
    """The earlier sweep in `folder`, as `spec`'s sweep takes it; a ConfigError if the folder
    holds no finished sweep."""
    folder = Path(folder).expanduser().resolve()
    source = _source_sweep(folder)
    # one score each: a sweep of several objectives takes starting points only
    comparable = not spec.objectives and (source.get("arch"), source.get("dataset"), source.get("metric"),
                                          (source.get("fixed") or {}).get("images")) == \
        (spec.arch, spec.dataset, spec.metric, spec.fixed.get("images"))
    rows = _rows(folder)
    metric, mode = source.get("metric", spec.metric), source.get("mode", spec.mode)
    ws = WarmStart(str(folder), HISTORY if comparable else POINTS)
    for row in _best_first(rows, metric, mode):
        params, skipped = fitting_params(row, spec)
        ws.skipped_values += skipped
        state, value = KEEP.get(row.get("status")), _number(row.get(metric))
        if not params or state is None or value is None or (ws.kind == POINTS and not _buildable(params, spec)):
            ws.skipped_trials += 1
            continue
        ws.trials.append({"trial_id": row["trial_id"], "params": params, "value": value, "state": state,
                          "epochs": int(_number(row.get("epochs_run")) or 1)})
    if ws.kind == POINTS:
        ws.trials = _distinct(ws.trials)[:STARTING_POINTS]
    if not ws.trials:
        raise ConfigError(f"--warm-start {folder}: none of its {len(rows)} trials has a finished value and "
                          "parameters this sweep's space can draw; nothing to start from")
    return ws


def _source_sweep(folder: Path) -> dict:
    if not (folder / layout.TRIALS_CSV).is_file() or not (folder / layout.CONFIG_JSON).is_file():
        raise ConfigError(f"--warm-start {folder}: not a sweep's folder (expected {layout.TRIALS_CSV} and "
                          f"{layout.CONFIG_JSON}, as a finished `mnist-dist sweep` leaves)")
    try:
        sweep = json.loads((folder / layout.CONFIG_JSON).read_text())["sweep"]
        if not isinstance(sweep, dict):
            raise TypeError("'sweep' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--warm-start {folder}: {layout.CONFIG_JSON} is not a sweep's saved config "
                          f"({type(e).__name__}: {e})") from None
    return sweep


def _rows(folder: Path) -> list[dict]:
    import csv

    try:
        with open(folder / layout.TRIALS_CSV, newline="") as f:
            return [r for r in csv.DictReader(f) if r.get("trial_id")]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"--warm-start {folder}: cannot read {layout.TRIALS_CSV} ({type(e).__name__}: {e})") from None


def _number(text) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _best_first(rows: list[dict], metric: str, mode: str) -> list[dict]:
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: sign * v if (v := _number(r.get(metric))) is not None else math.inf)


def fitting_params(row: dict, spec: SweepSpec) -> tuple[dict, int]:
    """The row's searched values this space can draw, in the space's order, each conditional one
    only where its `when` holds among the kept values; and how many values were skipped."""
    given = {k[len("config/"):]: v for k, v in row.items() if k.startswith("config/") and v not in ("", None)}
    kept, skipped = {}, 0
    for name, d in spec.space.items():
        if name not in given:
            continue
        try:
            value = coerce_value(name, given[name], "warm start", name)
        except ConfigError:  # another type (a string where this space has numbers, say)
            skipped += 1
            continue
        active = all(kept.get(p) in values for p, values in (d.get("when") or {}).items())
        if not active or not in_range(value, d) or (kind_of(d) == "choice" and not _exact_choice(value, d)):
            skipped += 1
            continue
        kept[name] = value
    skipped += sum(1 for name in given if name not in spec.space)
    return kept, skipped


def _exact_choice(value, d: dict) -> bool:
    """A choice Optuna can store: the same type as the choice (True == 1 in Python, not here)."""
    return any(type(value) is type(c) and value == c for c in d["choice"])


def _buildable(params: dict, spec: SweepSpec) -> bool:
    """A starting point makes a valid config with this sweep's fixed values (a warm-up that
    ends before the run does, say)."""
    try:
        resolve(spec.arch, {**spec.fixed, **params, "dataset": spec.dataset})
    except ConfigError:
        return False
    return True


def _distinct(trials: list[dict]) -> list[dict]:
    seen, out = [], []
    for t in trials:
        if t["params"] not in seen:
            seen.append(t["params"])
            out.append(t)
    return out


def distributions(spec: SweepSpec) -> dict:
    """The space as Optuna's distributions, as `spec.suggest` draws them."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for name, d in spec.space.items():
        kind, v = kind_of(d), d[kind_of(d)]
        out[name] = (CategoricalDistribution(v) if kind == "choice" else
                     IntDistribution(int(v[0]), int(v[1])) if kind == "int" else
                     FloatDistribution(float(v[0]), float(v[1]), log=kind == "loguniform"))
    return out


def add_history(ws: WarmStart, spec: SweepSpec, storage, study_name: str) -> None:
    """The comparable trials into the sweep's new study, before its searcher loads it: a
    finished one COMPLETE with its value, one ASHA stopped PRUNED at its last epoch (as the
    sweep's own searcher tells them), each tagged with where it came from."""
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                direction="maximize" if spec.mode == "max" else "minimize")
    dists = distributions(spec)
    for t in ws.trials:
        pruned = t["state"] == "pruned"
        study.add_trial(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=None if pruned else t["value"],
            params=t["params"], distributions={k: dists[k] for k in t["params"]},
            intermediate_values={t["epochs"]: t["value"]},
            user_attrs={"imported_from": Path(ws.source).name, "source_trial_id": t["trial_id"]}))


def imported_rows(ws: WarmStart, metric: str) -> list[dict]:
    """trials.csv's rows of the trials a history warm start imported: marked, never a model."""
    return [{"trial_id": t["trial_id"], "status": layout.IMPORTED, "imported_from": Path(ws.source).name,
             **{f"config/{k}": v for k, v in t["params"].items()}, "epochs_run": t["epochs"], metric: t["value"],
             "checkpoint_path": ""} for t in ws.trials] if ws.kind == HISTORY else []


def mark_starting_points(rows: list[dict], ws: WarmStart) -> None:
    """Mark the trials that ran a starting point: the first trial whose config holds each point."""
    for t in ws.trials if ws.kind == POINTS else []:
        match = next((r for r in rows if not r.get("imported_from")
                      and all(r.get(f"config/{k}") == v for k, v in t["params"].items())), None)
        if match is not None:
            match["imported_from"] = f"{Path(ws.source).name}/{t['trial_id']}"


def saved(sweep_dir: Path) -> WarmStart | None:
    """The warm start a sweep started with (its config.json), if any."""
    try:
        found = json.loads((Path(sweep_dir) / layout.CONFIG_JSON).read_text()).get("warm_start")
    except (OSError, ValueError):
        return None
    return WarmStart(**found) if isinstance(found, dict) else None
