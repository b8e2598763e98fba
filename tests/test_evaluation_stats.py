"""The statistics in mnist_dist/evaluation.py: McNemar's test and the classification report,
against numbers worked out by hand, and the lazy import of the libraries behind them."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from mnist_dist.evaluation import EXACT_BELOW, classification_report, mcnemar


def test_importing_evaluation_imports_neither_scipy_nor_sklearn():
    """Every sweep imports mnist_dist.evaluation at its start; scipy and scikit-learn cost
    1-2 s to import, so only the functions that use them import them."""
    code = ("import sys, mnist_dist.evaluation; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mcnemar_exact_binomial_p_values():
    # b=0, c=10: both tails of Binomial(10, 1/2) at their extremes, 2 * 0.5^10
    m = mcnemar(0, 10)
    assert m.method == "exact binomial" and m.statistic is None
    assert m.p_value == pytest.approx(2 * 0.5 ** 10, rel=1e-12) and m.p_value == pytest.approx(0.001953125)
    assert mcnemar(10, 0).p_value == m.p_value  # the test is symmetric in A and B
    # b=10, c=2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12
    assert mcnemar(10, 2).p_value == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12, rel=1e-12)
    # no discordant images, or as many each way: no evidence at all
    assert mcnemar(0, 0).p_value == 1.0 and mcnemar(7, 7).p_value == 1.0


def test_mcnemar_chi_square_p_values():
    b, c = 60, 40
    assert b + c >= EXACT_BELOW
    m = mcnemar(b, c)
    stat = (abs(b - c) - 1) ** 2 / (b + c)  # continuity-corrected: 19^2 / 100 = 3.61
    assert m.method == "chi-square, continuity-corrected"
    assert m.statistic == pytest.approx(3.61, rel=1e-12)
    # chi-square with 1 degree of freedom is a squared standard normal: P(Z^2 > x) = erfc(sqrt(x / 2))
    assert m.p_value == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-9)
    assert m.p_value == pytest.approx(0.057433, abs=1e-6)
    assert isinstance(m.p_value, float) and isinstance(m.statistic, float)  # json-serialisable


def test_classification_report_exact_numbers():
    # rows true, columns predicted; c is never predicted, d never present nor predicted
    cm = np.array([[3, 1, 0, 0],
                   [1, 2, 0, 0],
                   [1, 1, 0, 0],
                   [0, 0, 0, 0]])
    rep = classification_report(cm, ["a", "b", "c", "d"])
    assert list(rep) == ["a", "b", "c", "d", "accuracy", "macro avg", "weighted avg"]
    expected = {  # precision = tp / predicted, recall = tp / support, F1 their harmonic mean
        "a": (3 / 5, 3 / 4, 2 / 3, 4),
        "b": (2 / 4, 2 / 3, 4 / 7, 3),
        "c": (0, 0, 0, 2),
        "d": (0, 0, 0, 0),
        "macro avg": ((3 / 5 + 1 / 2) / 4, (3 / 4 + 2 / 3) / 4, (2 / 3 + 4 / 7) / 4, 9),
        "weighted avg": ((4 * 3 / 5 + 3 * 1 / 2) / 9, 5 / 9, (4 * 2 / 3 + 3 * 4 / 7) / 9, 9),
    }
    for name, (p, r, f, n) in expected.items():
        assert rep[name] == pytest.approx({"precision": p, "recall": r, "f1-score": f, "support": n}), name
    assert rep["accuracy"] == pytest.approx(5 / 9)
    # the shape evaluation.json has always had: plain floats throughout
    assert all(type(v) is float for name in expected for v in rep[name].values())
    assert type(rep["accuracy"]) is float
