"""McNemar's test: do two classifiers differ in accuracy on the same test images?

Only the discordant images count: b = A right and B wrong, c = A wrong and B
right. Under "equally good" each discordant image is a fair coin, so for small
b + c the exact binomial test is used; for larger counts the chi-square test
with continuity correction, (|b - c| - 1)^2 / (b + c) with 1 degree of freedom.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .tables import markdown_row  # escapes the names in cells (arch, image-folder dataset)

EXACT_BELOW = 25  # discordant pairs; the usual rule for when the chi-square approximation is poor
ALPHA = 0.05


@dataclass
class McNemar:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float | None  # chi-square statistic; None for the exact test
    p_value: float
    method: str  # "exact binomial" | "chi-square, continuity-corrected"


def binom_two_sided(k: int, n: int) -> float:
    """Two-sided exact p-value of k successes out of n for p = 1/2 (math only)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def chi2_sf_1df(x: float) -> float:
    """Survival function of chi-square with 1 degree of freedom: P(Z^2 > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2))


def mcnemar(b: int, c: int, exact_below: int = EXACT_BELOW) -> McNemar:
    b, c = int(b), int(c)
    n = b + c
    try:  # scipy when installed (faster for big n), else the same formulas in math
        from scipy.stats import binomtest, chi2
    except ImportError:
        binomtest = chi2 = None
    if n < exact_below:
        p = binomtest(min(b, c), n, 0.5).pvalue if binomtest and n else binom_two_sided(min(b, c), n)
        return McNemar(b, c, None, float(p), "exact binomial")
    stat = (abs(b - c) - 1) ** 2 / n
    p = chi2.sf(stat, 1) if chi2 else chi2_sf_1df(stat)
    return McNemar(b, c, float(stat), float(p), "chi-square, continuity-corrected")


def discordant(labels, pred_a, pred_b) -> tuple[int, int]:
    right_a, right_b = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    return int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())


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
