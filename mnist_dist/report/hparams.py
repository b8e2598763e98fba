"""Hyperparameter figures of a sweep: the metric against each searched parameter,
with the tuning playbook's boundary check, and Optuna's parameter importances.

Boundary check: when the best value sits in the outer 10% of a numeric range
(or is the smallest/largest of numeric choices), the optimum may lie outside
the range searched, so the range should be widened and the sweep repeated -
unless that edge is already the field's own bound (config.RANGES: weight_decay 0,
dropout 0, epochs 1, ...), beyond which nothing can be searched. Fields whose
values are categories (optimizer, lr_schedule, augment, booleans) have no edges."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import FIELDS, RANGES
from ..tuning.spec import KINDS
from .plots import STATUS_COLORS, STATUS_LABELS, WARN_COLOR, Skip, accuracy_axis, plt, save

EDGE = 0.10  # outer share of a range that counts as "at the edge"
RANGE_KINDS = ("loguniform", "uniform", "int")


def kind_of(dist: dict) -> str | None:
    """A search-space entry's kind (spec.KINDS), None for something else: a config.json
    written by another version may hold anything."""
    return next((k for k in KINDS if k in dist), None)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def varied(space: dict) -> dict:
    """The searched parameters that can take more than one value."""
    out = {}
    for name, dist in space.items():
        kind = kind_of(dist) if isinstance(dist, dict) else None
        values = dist.get(kind) if kind else None
        if isinstance(values, list) and len(values) >= 2 and (kind != "choice" or len(set(map(str, values))) > 1):
            out[name] = dist
    return out


def range_position(value: float, kind: str, lo: float, hi: float) -> float:
    """Where value lies in [lo, hi], 0..1; log scale for loguniform, as it was sampled."""
    if kind == "loguniform":
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (value - lo) / (hi - lo)


def categorical(name: str) -> bool:
    """A field whose values are categories, numbers or not (optimizer, augment, nesterov):
    nothing lies beyond its first or last choice."""
    rng, field = RANGES.get(name), FIELDS.get(name)
    return bool(rng and rng.choices) or (field is not None and "bool" in str(field.type))


def widenable(name: str, edge: float, side: str) -> bool:
    """Whether the field accepts values beyond `edge` on `side` ("lower" or "upper"): not
    when the edge is already its own bound in config.RANGES (weight_decay 0, dropout 0).
    A parameter the config does not know (a folder from another version) has no bounds."""
    rng = RANGES.get(name)
    bound = None if rng is None else (rng.low if side == "lower" else rng.high)
    if bound is None:
        return True
    past = edge < bound if side == "lower" else edge > bound
    return not (past or math.isclose(edge, bound, rel_tol=1e-9, abs_tol=1e-12))


def edge_warning(name: str, value, dist: dict) -> str | None:
    kind = kind_of(dist)
    if categorical(name):
        return None
    if kind in RANGE_KINDS and is_number(value):
        lo, hi = (float(v) for v in dist[kind])
        if hi <= lo or (kind == "loguniform" and (lo <= 0 or value <= 0)):
            return None
        pos = range_position(float(value), kind, lo, hi)
        if pos <= EDGE or pos >= 1 - EDGE:
            side = "lower" if pos <= EDGE else "upper"
            if widenable(name, lo if side == "lower" else hi, side):
                return (f"best {name}={value:.3g} is at the {side} edge of the search range [{lo:g}, {hi:g}]"
                        " - widen the range and re-run")
    if kind == "choice" and is_number(value):
        nums = [v for v in dist["choice"] if is_number(v)]
        if len(nums) == len(dist["choice"]) and len(set(nums)) > 1 and value in (min(nums), max(nums)):
            side = "lower" if value == min(nums) else "upper"
            if widenable(name, float(value), side):
                return (f"best {name}={value:g} is the {'smallest' if side == 'lower' else 'largest'} of the "
                        f"choices {sorted(nums)} - add values beyond it and re-run")
    return None


def edge_warnings(src) -> list[str]:
    best = src.summary.get("best_config") or {}
    out = []
    for name, dist in varied(src.space).items():
        w = edge_warning(name, best.get(name), dist) if name in best else None
        if w:
            out.append(w)
    return out


def metric_column(src) -> str:
    m = src.summary.get("metric") or "best_val_acc"
    return m if src.trials is not None and m in src.trials.columns else "best_val_acc"


def hyperparameters(src, path: Path) -> Path:
    space, trials = varied(src.space), src.trials
    if not space:
        raise Skip("no search space in config.json (or nothing was varied)")
    if trials is None or "status" not in trials.columns:
        raise Skip("no trials.csv")
    metric = metric_column(src)
    # conditional params no trial drew (momentum when only adam ran) would be empty panels
    unused = [k for k in space if f"config/{k}" not in trials.columns or trials[f"config/{k}"].isna().all()]
    space = {k: v for k, v in space.items() if k not in unused}
    if not space:
        raise Skip("no trial recorded a value of any searched hyperparameter")
    cols = min(3, len(space))
    rows = math.ceil(len(space) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    for ax, (name, dist) in zip(axes.flat, space.items()):
        param_axis(ax, src, name, dist, metric)
    for ax in axes.flat[len(space):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=STATUS_LABELS[s])
               for s, c in STATUS_COLORS.items() if s in set(trials["status"])]
    handles.append(plt.Line2D([], [], marker="*", ls="", ms=14, color="gold", mec="k", label="best trial"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.04))
    never = f"\n(never drawn by a trial: {', '.join(unused)})" if unused else ""
    fig.suptitle(f"{src.name}: {metric} against each hyperparameter ({len(trials)} trials){never}",
                 fontweight="bold", y=1.0)
    fig.tight_layout(rect=(0, 0.03, 1, 0.98))
    return save(fig, path)


def param_axis(ax, src, name: str, dist: dict, metric: str) -> None:
    t, kind = src.trials, kind_of(dist)
    col = f"config/{name}"
    y = pd.to_numeric(t[metric], errors="coerce") if metric in t.columns else pd.Series(np.nan, t.index)
    best_id = src.summary.get("best_trial")
    ok = y.notna() & t[col].notna() if col in t.columns else pd.Series(False, t.index)
    if kind in RANGE_KINDS:
        x = pd.to_numeric(t[col], errors="coerce") if col in t.columns else y * np.nan
        ok &= x.notna()
        range_axis(ax, kind, [float(v) for v in dist[kind]], name)
    else:
        x = choice_positions(t[col] if col in t.columns else y, dist["choice"], ax)
        ok &= x.notna()
        x = x + np.random.default_rng(0).uniform(-0.12, 0.12, len(x))  # jitter: ties stay visible
    colors = [STATUS_COLORS.get(s, "gray") for s in t["status"]]
    ax.scatter(x[ok], y[ok], c=[c for c, k in zip(colors, ok) if k], s=40, alpha=0.85, zorder=3)
    is_best = ok & (t["trial_id"].astype(str) == str(best_id)) if "trial_id" in t.columns else ok & False
    ax.scatter(x[is_best], y[is_best], marker="*", s=320, color="gold", edgecolor="k", zorder=4)
    if not ok.any():
        ax.text(0.5, 0.5, "no trial with a value", transform=ax.transAxes, ha="center", color="gray")
    best = (src.summary.get("best_config") or {}).get(name)
    warn = edge_warning(name, best, dist) if best is not None else None
    ax.set_title(f"{name} ({kind})" + ("\nWARNING: best value at the edge" if warn else ""),
                 color=WARN_COLOR if warn else "black")
    ax.set_xlabel(name + (" (log scale)" if kind == "loguniform" else ""))
    ax.set_ylabel(metric)
    if metric.endswith("_acc"):
        accuracy_axis(ax)


def range_axis(ax, kind: str, bounds: list[float], name: str = "") -> None:
    """The searched range, with its outer 10% on each side shaded (the warning zones),
    except on a side that is already the field's own bound."""
    lo, hi = bounds
    if kind == "loguniform":
        ax.set_xscale("log")
        edge = lambda p: math.exp(math.log(lo) + p * (math.log(hi) - math.log(lo)))  # noqa: E731
    else:
        edge = lambda p: lo + p * (hi - lo)  # noqa: E731
    for a, b, side in ((lo, edge(EDGE), "lower"), (edge(1 - EDGE), hi, "upper")):
        if widenable(name, lo if side == "lower" else hi, side):
            ax.axvspan(a, b, color=WARN_COLOR, alpha=0.07, lw=0)
    for v in (lo, hi):
        ax.axvline(v, color="gray", ls=":", lw=1)
    if kind == "loguniform":
        ax.set_xlim(lo / 1.3, hi * 1.3)
    else:
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))


def choice_positions(values: pd.Series, choices: list, ax) -> pd.Series:
    """Map each trial's value to its choice's index (numeric choices in numeric order)."""
    order = sorted(choices) if all(is_number(c) for c in choices) else list(choices)
    ax.set_xticks(range(len(order)), [str(c) for c in order])
    ax.set_xlim(-0.6, len(order) - 0.4)

    def index(v):
        for i, c in enumerate(order):
            if is_number(c) and _float(v) is not None and math.isclose(_float(v), c, rel_tol=1e-9,
                                                                           abs_tol=1e-15):
                return i
            if str(v) == str(c):
                return i
        return np.nan
    return values.map(index).astype(float)


def _float(v) -> float | None:
    try:
        return None if isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


# --- importance -------------------------------------------------------------------------

def load_study(src):
    """The sweep's study, opened read-only (no table creation, no schema upgrade)."""
    import optuna

    from .collect import read_only_sqlite_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(read_only_sqlite_url(src.study_path), skip_table_creation=True)
    names = [s.study_name for s in storage.get_all_studies()]
    # the study is named after the sweep; a renamed folder keeps the old name inside
    for name in (src.name, src.summary.get("name")):
        if name in names:
            return optuna.load_study(study_name=name, storage=storage)
    if len(names) == 1:
        return optuna.load_study(study_name=names[0], storage=storage)
    raise Skip(f"optuna.db holds studies {names}, none named {src.name!r}")


def own_trials(study):
    """The study without the trials a warm start imported from an earlier sweep (tagged
    `imported_from`): those the sweep ran itself. The study itself when it imported none."""
    import optuna

    own = [t for t in study.trials if "imported_from" not in t.user_attrs]
    if len(own) == len(study.trials):
        return study
    copy = optuna.create_study(directions=study.directions)  # in memory: the file stays as it is
    copy.add_trials([t for t in own if t.state.is_finished()])
    return copy


def importances(src) -> tuple[dict, int]:
    """Optuna's parameter importances (default evaluator, PED-ANOVA) over the trials the sweep
    ran, and the number of completed trials they rest on; for a sweep of several objectives,
    the importance of reaching their Pareto front. Skip with the reason when they cannot be
    computed."""
    import optuna

    if src.summary.get("scheduler") == "pbt":
        raise Skip("PBT chose the values of this sweep's trials, not an Optuna sampler: no study to read")
    if src.study_path is None:
        raise Skip("no optuna.db in the sweep folder")
    try:
        study = own_trials(load_study(src))
    except Skip:
        raise
    except Exception as e:  # locked or corrupt database, schema from another Optuna version
        raise Skip(f"optuna.db could not be read ({type(e).__name__}: {e})") from e
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values
            and all(v is not None for v in t.values)]
    params = {k for t in done for k in t.params}
    if len(done) < 2 or not any(len({repr(t.params.get(k)) for t in done}) > 1 for k in params):
        raise Skip(f"needs at least 2 completed trials with different hyperparameters "
                   f"(found {len(done)} completed)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning etc. would clutter the CLI
            imp = optuna.importance.get_param_importances(study)
    except Exception as e:  # e.g. all values equal: nothing to attribute
        raise Skip(f"Optuna could not compute importances ({type(e).__name__}: {e})") from e
    if not imp:
        raise Skip("Optuna returned no importances")
    return {k: float(v) for k, v in imp.items()}, len(done)


def importance_plot(src, path: Path) -> Path:
    imp, n = importances(src)
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(names)))
    ax.barh(names, [imp[k] for k in names], color="#457b9d")
    for i, k in enumerate(names):
        ax.text(imp[k] + 0.01, i, f"{imp[k]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(imp.values()) * 1.2 or 1)
    ax.set_xlabel("importance (normalized, sums to 1)")
    note = " - few trials: treat as noise" if n < 10 else ""
    objectives = src.summary.get("objectives")
    front = ", for reaching the Pareto front" if isinstance(objectives, list) and len(objectives) > 1 else ""
    ax.set_title(f"{src.name}: hyperparameter importance{front}\n(Optuna PED-ANOVA, {n} completed trials{note})")
    return save(fig, path)
