"""The report's McNemar table: which models differ in accuracy on the same test images.
The test itself (mcnemar, discordant) lives in mnist_dist/evaluation.py, which sweeps use
too (an ensemble against its best trial)."""
from __future__ import annotations

import itertools

import numpy as np

from ..evaluation import EXACT_BELOW, McNemar, binom_two_sided, chi2_sf_1df, discordant, mcnemar  # noqa: F401
from .tables import markdown_row  # escapes the names in cells (arch, image-folder dataset)

ALPHA = 0.05


def verdict(name_a: str, name_b: str, m: McNemar) -> str:
    if m.p_value >= ALPHA or m.b == m.c:
        return "no significant difference"
    return f"{name_a} beats {name_b}" if m.b > m.c else f"{name_b} beats {name_a}"


def common_prefix(src_a, src_b) -> int | None:
    """How many test images both models were scored on, or None when not comparable.

    predictions.npz lists the test set in order, possibly only its first N images (smoke
    runs), so the first min(N_a, N_b) images are the same images for both; the labels
    must agree there, which catches a different dataset or image folder behind one name."""
    pa, pb = src_a.predictions, src_b.predictions
    if pa is None or pb is None or src_a.dataset != src_b.dataset:
        return None
    n = min(len(pa["labels"]), len(pb["labels"]))
    if n == 0 or not np.array_equal(pa["labels"][:n], pb["labels"][:n]):
        return None
    return n


def pairwise(sources: list) -> list[dict]:
    """McNemar for every pair of models evaluated on the same test images."""
    rows = []
    for a, b in itertools.combinations(sources, 2):
        n = common_prefix(a, b)
        if n is None:
            continue
        labels = a.predictions["labels"][:n]
        pred_a, pred_b = a.predictions["predictions"][:n], b.predictions["predictions"][:n]
        m = mcnemar(*discordant(labels, pred_a, pred_b))
        rows.append({"dataset": a.dataset, "a": a.arch, "b": b.arch, "a_source": a.name, "b_source": b.name,
                     "n": n, "acc_a": float((pred_a == labels).mean()), "acc_b": float((pred_b == labels).mean()),
                     "b_count": m.b, "c_count": m.c, "method": m.method, "statistic": m.statistic,
                     "p_value": m.p_value, "verdict": verdict(a.arch, b.arch, m)})
    return rows


HEADERS = ("Dataset", "Model A", "Model B", "Test images", "A right, B wrong", "A wrong, B right",
           "Test", "p-value", "Verdict (p < 0.05)")


def display(r: dict) -> tuple:
    return (r["dataset"], f"{r['a']} ({r['acc_a']:.2%})", f"{r['b']} ({r['acc_b']:.2%})", f"{r['n']:,}",
            str(r["b_count"]), str(r["c_count"]), r["method"], f"{r['p_value']:.2g}", r["verdict"])


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ("No pair of models was evaluated on the same test images "
                "(McNemar's test needs two models on the same dataset).")
    lines = [markdown_row(HEADERS), "|" + "---|" * len(HEADERS)]
    lines += [markdown_row(display(r)) for r in rows]
    return "\n".join(lines)
