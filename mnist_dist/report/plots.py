"""Figures about results: learning curves, confusion matrices, per-class accuracy,
accuracy vs cost with the Pareto front, trial statuses. Each function draws one
figure into a PNG and raises `Skip` when there is nothing to draw, so the page can
say so instead of showing an empty frame."""
from __future__ import annotations

from pathlib import Path

from .. import layout

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, CI or Ray nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {"figure.dpi": 100, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 12,
         "axes.titleweight": "bold", "axes.labelsize": 11, "font.size": 10, "legend.fontsize": 9}
STATUS_COLORS = {layout.COMPLETED: "#2a9d8f", layout.STOPPED_BY_PATIENCE: "#8ab17d",
                 layout.STOPPED_BY_SCHEDULER: "#e9c46a", layout.DIVERGED: "#f4a261", layout.FAILED: "#e76f51",
                 layout.INTERRUPTED: "#adb5bd"}
STATUS_LABELS = layout.LABELS
WARN_COLOR = "#c0392b"


class Skip(Exception):
    """Nothing to draw; the message says why, for the page."""


def save(fig, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def series(df: pd.DataFrame | None, col: str) -> pd.Series | None:
    """A numeric column without NaN/inf, or None when absent or empty."""
    if df is None or col not in df.columns:
        return None
    s = pd.to_numeric(df[col], errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
    return s if len(s) else None


def accuracy_axis(ax, axis: str = "y") -> None:
    """End an accuracy axis at 100% at most: matplotlib's autoscaled limits, which keep a
    margin below the data, with the top capped at 1.0 (or 100 when the data are percentages,
    any value above 1). Values all at 100% get a 5% range ending there. Markers on the
    capped edge are drawn whole rather than cut in half."""
    get, set_lim = (ax.get_ylim, ax.set_ylim) if axis == "y" else (ax.get_xlim, ax.set_xlim)
    data_top = ax.dataLim.y1 if axis == "y" else ax.dataLim.x1
    top = 100.0 if np.isfinite(data_top) and data_top > 1 else 1.0
    lo, hi = get()  # autoscales first
    if hi <= top:
        return
    set_lim(lo if lo < top else top * 0.95, top)
    for artist in (*ax.lines, *ax.collections):
        artist.set_clip_on(False)


def learning_curves(history: pd.DataFrame | None, title: str, path: Path) -> Path:
    if history is None or series(history, "epoch") is None:
        raise Skip("no per-epoch history")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    drawn = 0
    for ax, metric in zip(axes, ("loss", "acc")):
        for split, style in (("train", "-o"), ("val", "--s")):
            y = series(history, f"{split}_{metric}")
            if y is None:
                continue
            x = pd.to_numeric(history.loc[y.index, "epoch"], errors="coerce")
            ax.plot(x, y, style, label="training" if split == "train" else "validation", ms=4)
            drawn += 1
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (cross-entropy)" if metric == "loss" else "accuracy")
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.xaxis.get_major_locator().set_params(integer=True)
        epochs = series(history, "epoch")
        if epochs.nunique() == 1:  # one epoch: a single point, not a range of 0.96..1.04
            ax.set_xlim(epochs.iloc[0] - 1, epochs.iloc[0] + 1)
        if metric == "acc":
            accuracy_axis(ax)
        if ax.lines:
            ax.legend()
    if not drawn:
        plt.close(fig)
        raise Skip("the history has no loss or accuracy columns")
    fig.suptitle(f"Learning curves: {title}", fontweight="bold")
    fig.tight_layout()
    return save(fig, path)


def confusion(ev: dict | None, title: str, path: Path) -> Path:
    import seaborn as sns

    if not ev or not ev.get("confusion_matrix"):
        raise Skip("no evaluation.json with a confusion matrix")
    cm = np.asarray(ev["confusion_matrix"], dtype=float)
    classes = ev.get("classes") or [str(i) for i in range(len(cm))]
    # colour by row share, so classes with few test images still read clearly; annotate counts
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(classes), 0.6 + 0.55 * len(classes)))
    sns.heatmap(share, annot=cm.astype(int), fmt="d", cmap="Blues", vmin=0, vmax=1, square=True,
                xticklabels=classes, yticklabels=classes, cbar_kws={"label": "share of the true class"},
                ax=ax, annot_kws={"fontsize": 8})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix: {title}\n(test set, {int(cm.sum()):,} images)")
    ax.grid(False)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    return save(fig, path)


def per_class(ev: dict | None, title: str, path: Path) -> Path:
    if not ev or not ev.get("per_class_accuracy"):
        raise Skip("no per-class accuracy in evaluation.json")
    names = list(ev["per_class_accuracy"])
    accs = np.array([np.nan if v is None else v for v in ev["per_class_accuracy"].values()], float)
    if np.isnan(accs).all():
        raise Skip("per-class accuracies are all missing")
    # Zoom the axis to the data: at 99% every bar from 0 looks the same. Dots, not bars,
    # because a bar's length would lie about a cut axis.
    lo = max(0.0, np.floor((np.nanmin(accs) - 0.02) * 20) / 20)
    y = np.arange(len(names))
    mean = np.nanmean(accs)
    colors = ["#c0392b" if a < mean - 0.02 else "#2a9d8f" for a in np.nan_to_num(accs, nan=1)]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * len(names)))
    ax.hlines(y, lo, np.nan_to_num(accs, nan=lo), color=colors, lw=2, alpha=0.5)
    ax.scatter(accs, y, color=colors, s=40, zorder=3, clip_on=False)  # whole at 100%, the axis' end
    for yi, a in zip(y, accs):
        ax.annotate("n/a" if np.isnan(a) else f"{a:.1%}", (lo if np.isnan(a) else a, yi),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
                    annotation_clip=False)  # a class at 100% sits on the axis' end, its label past it
    overall = ev.get("accuracy")
    if overall is not None:
        ax.axvline(overall, color="k", ls="--", lw=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(lo, 1.0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("test accuracy of the class" + ("" if overall is None else f"; dashed: overall {overall:.2%}")
                  + "\n(red: more than 2 pp below the class mean)")
    ax.set_title(f"Per-class accuracy: {title}")
    return save(fig, path)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both lower x and higher y, by x."""
    order = np.lexsort((-y, x))  # by x, ties: best y first
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def accuracy_vs(rows: list[dict], key: str, xlabel: str, title: str, path: Path) -> Path:
    """Test accuracy against a cost (time, parameters), one colour per dataset; the
    Pareto front is the set of models nothing else beats on both accuracy and cost."""
    pts = [r for r in rows if _finite(r.get(key)) and _finite(r.get("test_acc"))]
    if not pts:
        raise Skip(f"no model has both a test accuracy and {xlabel}")
    fig, ax = plt.subplots(figsize=(8, 5))
    for color, dataset in zip(plt.cm.tab10.colors, sorted({r["dataset"] for r in pts})):
        sub = [r for r in pts if r["dataset"] == dataset]
        x = np.array([float(r[key]) for r in sub])
        y = np.array([float(r["test_acc"]) for r in sub])
        ax.scatter(x, y, s=45, color=color, alpha=0.8, label=dataset, zorder=3)
        f = pareto_front(x, y)
        ax.step(x[f], y[f], where="post", color=color, lw=1.5, ls="--", zorder=2)
        ax.scatter(x[f], y[f], s=160, facecolors="none", edgecolors=color, lw=1.8, zorder=4)
        for j, (r, xi, yi) in enumerate(zip(sub, x, y)):
            # alternate label offsets: neighbours at near-equal accuracy would overprint
            dy = (6, -12, 14)[j % 3]
            ax.annotate(r["arch"], (xi, yi), xytext=(6, dy), textcoords="offset points", fontsize=8,
                        color="#333")
    xs = np.array([float(r[key]) for r in pts])
    if xs.min() > 0 and xs.max() / xs.min() > 20:
        ax.set_xscale("log")
    # 60k / 1.2M rather than 60000 / 1200000 or 10^1
    ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    accuracy_axis(ax)
    ax.scatter([], [], s=160, facecolors="none", edgecolors="gray", label="Pareto front (circled)")
    ax.legend(title="dataset", loc="best")
    ax.set_title(title)
    return save(fig, path)


def _finite(v) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def trial_status(sweeps: list, path: Path) -> Path:
    """Stacked bar of how each sweep's trials ended."""
    if not sweeps:
        raise Skip("no sweeps")
    names = [s.name for s in sweeps]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.45 * len(names)))
    left = np.zeros(len(names))
    for status, color in STATUS_COLORS.items():
        counts = np.array([_count(s, status) for s in sweeps], float)
        ax.barh(names, counts, left=left, color=color, label=STATUS_LABELS[status])
        for i, c in enumerate(counts):
            if c:
                ax.text(left[i] + c / 2, i, str(int(c)), ha="center", va="center", fontsize=8)
        left += counts
    ax.invert_yaxis()
    ax.set_xlabel("trials")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(names) < 3 else -0.12), ncol=3,
              frameon=False)
    ax.set_title("How each sweep's trials ended")
    return save(fig, path)


def _count(src, status: str) -> int:
    """From summary.json, else counted in trials.csv."""
    v = src.summary.get(status)
    if isinstance(v, (int, float)) and np.isfinite(v):
        return int(v)
    t = src.trials
    return int((t["status"] == status).sum()) if t is not None and "status" in t.columns else 0
