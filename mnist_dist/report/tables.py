"""The comparison tables: one row per source, the best per architecture x dataset,
and their CSV / Markdown forms."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .. import layout
from ..tuning.outputs.summary import COUNTED, SweepSummary
from .collect import Source

# (key, Markdown/HTML header); the CSV uses the keys and raw numbers.
COLUMNS = (
    ("arch", "Architecture"), ("dataset", "Dataset"), ("test_acc", "Test acc"),
    ("diff_vs_published", "Ours - published"), ("published", "Published (source)"),
    ("test_loss", "Test loss"), ("val_acc", "Val acc"), ("test_images", "Test images"),
    ("train_time_s", "Train time"), ("images_per_sec", "Images/s"), ("parameters", "Params"),
    ("trials", "Trials"), ("best_config", "Best hyperparameters"), ("source", "Source"),
)
CSV_KEYS = ("arch", "dataset", "kind", "source", "test_acc", "test_acc_mean", "test_acc_std", "seeds",
            "test_loss", "val_acc", "test_images", "train_time_s", "images_per_sec", "parameters",
            "trials_run", "completed", "stopped_by_patience", "stopped_by_scheduler", "diverged", "failed",
            "best_config", "published", "published_acc", "diff_vs_published")


NOTES = ("Test acc: the best model of each sweep (best trial by validation accuracy) or the run's model, "
         "on the test images listed (smoke runs use only the first few hundred). Train time: sum of "
         "epoch times of that model. Trials: run / stopped by patience / stopped by ASHA / failed. "
         "Ours - published: percentage points, only where the source measured on the same dataset.")


def num(v) -> float | None:
    """A finite float, else None (missing keys, strings, NaN)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def accuracy(v) -> float | None:
    """An accuracy in [0, 1], else None (the training loop's -1 means 'none yet')."""
    f = num(v)
    return f if f is not None and 0.0 <= f <= 1.0 else None


def published(arch: str, dataset: str) -> tuple[str, float | None, str]:
    """The source's published result, and its accuracy only when measured on this dataset:
    a number from MNIST says nothing about the same network on Fashion-MNIST."""
    from ..models import get_entry
    from ..models.registry import UnknownModelError

    try:
        e = get_entry(arch)
    except UnknownModelError:
        return "", None, ""
    same = e.published_acc is not None and e.published_dataset == dataset
    return e.published, e.published_acc if same else None, e.published_dataset


def history_train_time(src: Source) -> float | None:
    """Sum of epoch times: what a sweep's best_train_time_s measures, so runs and sweeps
    compare like with like (run.json's train_time_s also counts data loading)."""
    h = src.history
    if h is None or "epoch_seconds" not in h.columns:
        return None
    return num(h["epoch_seconds"].sum())


def seed_columns(src: Source) -> dict:
    """The best config's test accuracy over the seeds of --final-seeds, where a sweep has them."""
    final = SweepSummary.from_dict(src.summary).final_seeds if src.kind == "sweep" else None
    best = final.best if final else None
    if best is None or not best.test_acc:
        return {"test_acc_mean": None, "test_acc_std": None, "seeds": None}
    return {"test_acc_mean": accuracy(best.test_acc_mean), "test_acc_std": num(best.test_acc_std),
            "seeds": len(best.test_acc)}


def source_row(src: Source) -> dict:
    s = src.summary
    sweep = src.kind == "sweep"
    pub_text, pub_acc, pub_dataset = published(src.arch, src.dataset)
    test_acc = accuracy(s.get("test_acc"))
    row = {
        "arch": src.arch, "dataset": src.dataset, "kind": src.kind, "source": src.name,
        "test_acc": test_acc, **seed_columns(src),
        "test_loss": num(s.get("test_loss")), "val_acc": accuracy(s.get("best_val_acc")),
        "test_images": src.test_images,
        "train_time_s": num(s.get("best_train_time_s")) if sweep else
        (history_train_time(src) or num(s.get("train_time_s"))),
        "images_per_sec": num(s.get("best_images_per_sec" if sweep else "images_per_sec")),
        "parameters": s.get("parameters"),
        "trials_run": s.get("trials_run", 1 if not sweep else None),
        **{status: s.get(status) for status in COUNTED},  # trials per status
        # a partial sweep: Ctrl-C before its last trial
        "incomplete": (sweep and SweepSummary.from_dict(s).incomplete) or None,
        "best_config": s.get("best_config") if sweep else run_config(src),
        "published": pub_text, "published_acc": pub_acc, "published_dataset": pub_dataset,
        "diff_vs_published": None if pub_acc is None or test_acc is None else test_acc - pub_acc,
    }
    return row


# The TrainConfig keys worth showing for a single run (the rest is bookkeeping).
RUN_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "dropout", "batch_size", "epochs")


def run_config(src: Source) -> dict | None:
    cfg = src.config
    if not cfg:
        return None
    out = {k: cfg[k] for k in RUN_KEYS if cfg.get(k) is not None}
    if cfg.get("optimizer") not in ("sgd", "rmsprop"):
        out.pop("momentum", None)  # Adam ignores it; showing it would suggest otherwise
    return out


def rank_key(row: dict) -> tuple:
    """Best first: highest test accuracy; rows without one go last."""
    return (row["test_acc"] is None, -(row["test_acc"] or 0.0), row["source"])


def all_rows(sources: list[Source]) -> list[dict]:
    return sorted((source_row(s) for s in sources), key=lambda r: (r["dataset"], *rank_key(r)))


def best_rows(rows: list[dict]) -> list[dict]:
    """One row per architecture x dataset: the highest test accuracy among its sources."""
    best: dict[tuple, dict] = {}
    for r in sorted(rows, key=rank_key):
        best.setdefault((r["arch"], r["dataset"]), r)
    return sorted(best.values(), key=lambda r: (r["dataset"], *rank_key(r)))


# --- formatting -------------------------------------------------------------------------

def pct(v, digits: int = 2) -> str:
    return "-" if num(v) is None else f"{100 * float(v):.{digits}f}%"


def fmt_config(cfg) -> str:
    if not cfg:
        return "-"
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in cfg.items())


def fmt_value(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}"
    return str(v)


def fmt_seeds(row: dict) -> str:
    if row["test_acc_mean"] is None or not row["seeds"]:
        return ""
    return (f"mean {100 * row['test_acc_mean']:.2f} ± {100 * (row['test_acc_std'] or 0):.2f}% "
            f"over {row['seeds']} seeds")


def fmt_acc(row: dict) -> str:
    seeds = fmt_seeds(row)
    return pct(row["test_acc"]) + (f" ({seeds})" if seeds else "")


def fmt_trials(row: dict) -> str:
    if row["kind"] == "run":
        return "single run"
    parts = [row["trials_run"], row["stopped_by_patience"], row["stopped_by_scheduler"], row["failed"]]
    text = " / ".join("-" if p is None else str(p) for p in parts)
    return text + (f" ({row['diverged']} diverged)" if row["diverged"] else "")


def fmt_diff(row: dict) -> str:
    d = row["diff_vs_published"]
    return "-" if d is None else f"{100 * d:+.2f} pp"


def fmt_published(row: dict) -> str:
    if not row["published"]:
        return "-"
    if row["published_acc"] is None and row["published_dataset"] != row["dataset"]:
        return f"{row['published']} (not on {row['dataset']})"
    return row["published"]


def display(row: dict) -> dict:
    """The row as the strings the Markdown and HTML tables show."""
    n = lambda v, f: "-" if num(v) is None else f.format(float(v))  # noqa: E731
    return {
        "arch": row["arch"], "dataset": row["dataset"], "test_acc": fmt_acc(row),
        "test_loss": n(row["test_loss"], "{:.4f}"), "val_acc": pct(row["val_acc"]),
        "test_images": n(row["test_images"], "{:,.0f}"), "train_time_s": n(row["train_time_s"], "{:.1f} s"),
        "images_per_sec": n(row["images_per_sec"], "{:,.0f}"), "parameters": n(row["parameters"], "{:,.0f}"),
        "trials": fmt_trials(row), "best_config": fmt_config(row["best_config"]),
        "published": fmt_published(row), "diff_vs_published": fmt_diff(row),
        "source": f"{row['source']} ({row['kind']})",
    }


def md_cell(text) -> str:
    """Text shown literally in a Markdown table cell: names are the user's (a run called
    `a<b|c`), so a `|` must not split the cell nor a `<` open an HTML tag."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return text.replace("\r", " ").replace("\n", " ")


def markdown_row(cells) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    lines = [markdown_row(h for _, h in columns), "|" + "---|" * len(columns)]
    lines += [markdown_row(display(r)[k] for k, _ in columns) for r in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    flat = [{**r, "best_config": json.dumps(r["best_config"]) if r["best_config"] else ""} for r in rows]
    layout.write_csv(flat, path, columns=list(CSV_KEYS))
