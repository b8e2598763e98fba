"""What steered a sweep, for its section of the report: the sampler, the scheduler (ASHA,
PBT or none), a warm start from an earlier sweep, and the objectives of a sweep of several.

    steering(src)          (sampler, scheduler) as the sweep's summary.json names them
    notes(src)             the lines about its warm start, imported trials, starting points
                           and objectives (the page and comparison.md both show them)
    mutations(src, path)   PBT: each trial's mutated values over its epochs, a panel per parameter
    pareto(src, path)      several objectives: every finished trial on the first two, the front marked
    front_table(src)       the Pareto front of summary.json as (headers, rows)

A summary written before these keys existed names no scheduler: its sweep ran ASHA, as the
summary's reader (SweepSummary) takes it. Rows a history warm start imported are kept apart
by collect.py (Source.imported): they never count as this sweep's trials."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from .. import layout
from ..tuning.outputs.summary import SweepSummary
from .plots import STATUS_COLORS, Skip, accuracy_axis, plt, save

SCHEDULERS = {"asha": "ASHA (stops trials that fall behind their peers)",
              "pbt": "PBT (population-based training: trials copy better ones and perturb their values)",
              "none": "none (every trial runs its epochs)"}
FINISHED = (layout.COMPLETED, layout.STOPPED_BY_PATIENCE)  # the trials a Pareto front is made of
MUTATIONS_CAPTION = ("One line per trial: the value each epoch ran with; a jump is PBT replacing a trial's "
                     "values (it copied a better trial and perturbed that trial's values). lr is the rate "
                     "actually used, on a log axis, so a learning-rate schedule shows too.")
PARETO_CAPTION = ("Every finished trial (completed, or stopped by its own early stopping) on the sweep's "
                  "first two objectives. Ringed and joined by the step line: the Pareto front of "
                  "summary.json, the finished trials no other finished trial beats on every objective. "
                  "Trials ASHA stopped are left out of the front (grey crosses): they are cheap because "
                  "they were cut, not because their config is.")


def typed(src) -> SweepSummary:
    return SweepSummary.from_dict(src.summary)


def steering(src) -> tuple[str, str]:
    """(sampler, scheduler); a summary without them: tpe and asha, what such a sweep ran."""
    s = typed(src)
    return s.sampler, s.scheduler


def scheduler_text(name: str) -> str:
    return SCHEDULERS.get(name, name)


def warm_start_text(ws) -> str:
    """'warm-started from X: N trials as history' (or 'N starting points'), with the
    parameter values skipped; '' for a sweep that did not warm start."""
    if not isinstance(ws, dict):
        return ""
    source, n, kind = ws.get("source") or "?", ws.get("trials"), ws.get("kind")
    n = n if isinstance(n, int) else "?"
    what = {"history": f"{n} trials as history", "points": f"{n} starting points"}.get(kind, f"{n} trials ({kind})")
    skipped = ws.get("skipped_values")
    skipped = skipped if isinstance(skipped, int) else 0
    return (f"warm-started from {source}: {what}; {skipped} parameter "
            f"value{'' if skipped == 1 else 's'} outside this sweep's space skipped")


def imported_count(src) -> int:
    return 0 if src.imported is None else len(src.imported)


def starting_points(src) -> list[tuple[str, str]]:
    """(trial id, SOURCE/TRIAL) of each trial of this sweep that ran a warm start's starting point."""
    t = src.trials
    if t is None or "imported_from" not in t.columns or "trial_id" not in t.columns:
        return []
    return [(str(tid), str(origin)) for tid, origin in zip(t["trial_id"], t["imported_from"])
            if isinstance(origin, str) and "/" in origin]


def objectives(src) -> list[tuple[str, str]]:
    """(metric, mode) of each objective of a sweep of several; [] for a sweep of one metric."""
    out = [(o["metric"], o.get("mode") if o.get("mode") in ("min", "max") else "max")
           for o in typed(src).objectives or () if isinstance(o, dict) and isinstance(o.get("metric"), str)]
    return out if len(out) >= 2 else []


def front(src) -> list[dict]:
    """summary.json's Pareto front: its entries that name a trial."""
    return [p for p in typed(src).pareto_front or () if isinstance(p, dict) and "trial_id" in p]


def notes(src) -> list[str]:
    """What the sweep's section says beyond its sampler and scheduler: the warm start, the
    imported trials left out, the trials that ran a starting point, the objectives."""
    out = []
    ws = warm_start_text(typed(src).warm_start)
    if ws:
        out.append(ws)
    n = imported_count(src)
    if n:
        origin = sorted({str(v) for v in src.imported.get("imported_from", pd.Series(dtype=object)).dropna()})
        out.append(f"{n} trial{'' if n == 1 else 's'} imported from {', '.join(origin) or 'an earlier sweep'} "
                   "(status imported: run there, not here) are left out of this sweep's trials, counts, "
                   "tables and figures")
    points = starting_points(src)
    if points:
        out.append("trials that ran a starting point: " + ", ".join(f"{t} (from {o})" for t, o in points))
    objs = objectives(src)
    if objs:
        out.append("objectives: " + ", ".join(f"{m} ({'higher' if mode == 'max' else 'lower'} is better)"
                                              for m, mode in objs)
                   + f"; {len(front(src))} finished trials on the Pareto front")
    return out


# --- PBT: the values each trial ran with, epoch by epoch ----------------------------------------

def histories(src) -> dict[str, pd.DataFrame]:
    """Each of this sweep's trials' per-epoch history (histories/TRIAL.csv) that can be read,
    by epoch."""
    t = src.trials
    if t is None or "trial_id" not in t.columns:
        return {}
    out = {}
    for tid in t["trial_id"].astype(str):
        path = Path(src.path) / layout.HISTORIES / layout.TRIAL_HISTORY.format(trial_id=tid)
        try:
            df = pd.read_csv(path)
        except Exception:  # noqa: BLE001 - a missing or unreadable history: that trial has no line
            continue
        if "epoch" in df.columns:
            df["epoch"] = pd.to_numeric(df["epoch"], errors="coerce")
            out[tid] = df.dropna(subset=["epoch"]).sort_values("epoch")
    return out


def mutated(hists: dict[str, pd.DataFrame]) -> list[str]:
    """The parameters whose config/PARAM value changes within some trial's history, in the
    order of the history's columns."""
    columns = dict.fromkeys(str(c) for df in hists.values() for c in df.columns if str(c).startswith("config/"))
    changed = {c for df in hists.values() for c in columns
               if c in df.columns and df[c].dropna().astype(str).nunique() > 1}
    return [c.removeprefix("config/") for c in columns if c in changed]


def mutations(src, path: Path) -> list[str]:
    """PBT: one panel per parameter that changes in some trial's history, one line per trial;
    the parameters drawn."""
    hists = histories(src)
    if not hists:
        raise Skip("no per-trial histories (histories/TRIAL.csv)")
    names = mutated(hists)
    if not names:
        raise Skip("no trial's hyperparameters changed over its epochs (no config/PARAM column of the "
                   "histories holds two values)")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.5 * rows), squeeze=False)
    palette = plt.cm.tab20.colors if len(hists) > 10 else plt.cm.tab10.colors
    colors = {tid: palette[i % len(palette)] for i, tid in enumerate(hists)}
    for ax, name in zip(axes.flat, names):
        mutation_panel(ax, name, hists, colors)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    bottom = 0.0
    if len(hists) <= 12:  # more trials: the colours alone tell them apart
        handles = [plt.Line2D([], [], color=c, marker="o", ms=4, label=tid) for tid, c in colors.items()]
        legend_rows = math.ceil(len(handles) / 6)
        bottom = min(0.4, (0.2 + 0.25 * legend_rows) / fig.get_figheight())
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=False,
                   title="trial", bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{src.name}: each trial's hyperparameters over its epochs (PBT, {len(hists)} trials)",
                 fontweight="bold")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    save(fig, path)
    return names


def mutation_panel(ax, name: str, hists: dict[str, pd.DataFrame], colors: dict) -> None:
    lr = name == "lr"
    series = {}
    for tid, df in hists.items():
        col = "lr" if lr and "lr" in df.columns else f"config/{name}"
        if col in df.columns and df[col].notna().any():
            ok = df[col].notna()
            series[tid] = (df.loc[ok, "epoch"], df.loc[ok, col])
    numeric = all(pd.to_numeric(v, errors="coerce").notna().all() and v.map(_not_bool).all()
                  for _, v in series.values())
    if numeric:
        values = {tid: (x, pd.to_numeric(v)) for tid, (x, v) in series.items()}
    else:  # categories (optimizer, augment): one row each, in first-seen order
        order = list(dict.fromkeys(str(c) for _, v in series.values() for c in v))
        values = {tid: (x, v.astype(str).map(order.index)) for tid, (x, v) in series.items()}
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(-0.5, len(order) - 0.5)
    for tid, (x, y) in values.items():
        # a value holds from its epoch to the next one the trial reported
        ax.plot(x, y, "-o", ms=3, lw=1.3, alpha=0.85, color=colors[tid], drawstyle="steps-post")
    if numeric and values:
        every = np.concatenate([y.to_numpy(float) for _, y in values.values()])
        positive = every[every > 0]
        if len(positive) and (lr or positive.max() / positive.min() > 20):
            if (every > 0).all():
                ax.set_yscale("log")
            else:  # a choice of 0 beside small positive values (weight decay)
                ax.set_yscale("symlog", linthresh=float(positive.min()))
    ax.set_title(name + (" (rate used)" if lr else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.xaxis.get_major_locator().set_params(integer=True)


def _not_bool(v) -> bool:
    return not isinstance(v, (bool, np.bool_))


# --- several objectives: the Pareto front ---------------------------------------------------------

def better(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def fmt_objective(metric: str, v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(f):
        return "-"
    if metric.endswith("_acc") and 0.0 <= f <= 1.0:
        return f"{100 * f:.2f}%"
    return f"{f:.4g}"


def front_table(src) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): summary.json's Pareto front, one row per trial, each objective's value."""
    metrics = [m for m, _ in objectives(src)]
    rows = [[str(p["trial_id"]), *(fmt_objective(m, p.get(m)) for m in metrics)] for p in front(src)]
    return ["trial", *(f"{m} ({better(mode)})" for m, mode in objectives(src))], rows


def pareto(src, path: Path) -> Path:
    """Every finished trial on the first two objectives (the first on the y axis, the second on
    x), the Pareto front of summary.json ringed and joined by a step line; trials ASHA stopped
    as grey crosses, apart from the front."""
    objs, t = objectives(src), src.trials
    if not objs:
        raise Skip("the sweep has one objective")
    if t is None or "status" not in t.columns:
        raise Skip("no trials.csv")
    (ym, ymode), (xm, xmode) = objs[0], objs[1]
    missing = [m for m in (ym, xm) if m not in t.columns]
    if missing:
        raise Skip(f"trials.csv has no column {', '.join(missing)}")
    x, y = (pd.to_numeric(t[m], errors="coerce").replace([np.inf, -np.inf], np.nan) for m in (xm, ym))
    ok = x.notna() & y.notna()
    finished, cut = ok & t["status"].isin(FINISHED), ok & (t["status"] == layout.STOPPED_BY_SCHEDULER)
    if not finished.any():
        raise Skip(f"no finished trial has both {ym} and {xm}")
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(x[finished], y[finished], s=40, color=STATUS_COLORS[layout.COMPLETED], alpha=0.8, zorder=3,
               label=f"finished trial ({int(finished.sum())})")
    if cut.any():
        ax.scatter(x[cut], y[cut], s=40, marker="x", color="#9aa5b1", zorder=2,
                   label=f"stopped by ASHA ({int(cut.sum())}, left out of the front)")
    pts = [(float(p[xm]), float(p[ym]), str(p["trial_id"])) for p in front(src)
           if _finite(p.get(xm)) and _finite(p.get(ym))]
    if pts:
        pts.sort()
        fx, fy = [p[0] for p in pts], [p[1] for p in pts]
        ax.step(fx, fy, where="post" if xmode == "min" else "pre", color="#c0392b", lw=1.5, ls="--", zorder=2)
        ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="#c0392b", lw=1.8, zorder=4,
                   label=f"Pareto front ({len(pts)})")
        for i, (px, py, tid) in enumerate(pts):
            ax.annotate(tid, (px, py), xytext=(6, (6, -12)[i % 2]), textcoords="offset points", fontsize=7,
                        color="#333")
    for metric, axis in ((xm, "x"), (ym, "y")):
        if metric.endswith("_acc"):
            accuracy_axis(ax, axis)
            values = (x if axis == "x" else y)[ok]
            if len(values) and values.max() <= 1:
                (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel(f"{xm} ({better(xmode)})")
    ax.set_ylabel(f"{ym} ({better(ymode)})")
    more = f"; {len(objs) - 2} more objective(s) in the table" if len(objs) > 2 else ""
    ax.set_title(f"{src.name}: {ym} against {xm}{more}")
    ax.legend(loc="best")
    return save(fig, path)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
