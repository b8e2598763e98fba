"""Test-set evaluation: accuracy, loss, confusion matrix, per-class accuracy,
classification report and the predicted probabilities."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import layout
from .data.transforms import InputSpec, prepare_batch
from .layout import save_json


def eval_device() -> torch.device:
    """Where a finished model is evaluated: the GPU when this process sees one (alexnet's
    227x227 images want it), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, spec: InputSpec, mean: float, std: float,
                  device: torch.device | str = "cpu", batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 images (N, 28, 28)."""
    model.eval().to(device)
    out = []
    for start in range(0, len(x), batch_size):
        xb = prepare_batch(x[start:start + batch_size].to(device), spec, mean, std)
        out.append(F.softmax(model(xb).float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: InputSpec, mean: float,
             std: float, classes, device: torch.device | str = "cpu") -> dict:
    probs = predict_proba(model, x, spec, mean, std, device)
    labels = y.cpu().numpy()
    preds = probs.argmax(1).numpy()
    # NLL of the softmax output; clamp so one confidently wrong image cannot make it inf
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y.cpu()))
    k = len(classes)
    cm = np.bincount(labels.astype(np.int64) * k + preds, minlength=k * k).reshape(k, k)
    per_class = cm.diagonal() / np.maximum(cm.sum(1), 1)
    return {"accuracy": float((preds == labels).mean()), "loss": loss, "n": int(len(labels)),
            "classes": list(classes), "confusion_matrix": cm.tolist(),
            "per_class_accuracy": {c: float(a) for c, a in zip(classes, per_class)},
            "classification_report": classification_report(cm, classes), "probabilities": probs.numpy(),
            "labels": labels, "predictions": preds}


def classification_report(cm: np.ndarray, classes) -> dict:
    """scikit-learn's classification_report(output_dict=True, zero_division=0) for the confusion
    matrix (rows true, columns predicted): precision, recall, F1 and support per class, their
    macro and support-weighted means, and the accuracy. A class never predicted or never
    present scores 0 there."""
    # imported here: sklearn.metrics costs 1-2 s, which importing this module must not pay
    from sklearn.metrics import classification_report as sklearn_report

    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    # one (true, predicted) pair per image, rebuilt from the counts
    y_true = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(k), k), cm.ravel())
    return sklearn_report(y_true, y_pred, labels=list(range(k)), target_names=list(classes),
                          output_dict=True, zero_division=0)


def save_evaluation(ev: dict, out_dir: Path) -> None:
    """evaluation.json (everything but the arrays) and predictions.npz (the arrays)."""
    out_dir = Path(out_dir)
    arrays = ("probabilities", "labels", "predictions")
    save_json({k: v for k, v in ev.items() if k not in arrays}, out_dir / layout.EVALUATION)
    layout.atomic_write(out_dir / layout.PREDICTIONS,
                        lambda f: np.savez_compressed(f, **{k: ev[k] for k in arrays}), binary=True)


def format_evaluation(ev: dict) -> str:
    lines = [f"test accuracy {ev['accuracy']:.4f}  loss {ev['loss']:.4f}  ({ev['n']} images)",
             "per-class accuracy: " + "  ".join(f"{c}:{a:.3f}" for c, a in ev["per_class_accuracy"].items()),
             "confusion matrix (rows = true, columns = predicted):"]
    lines += ["  " + " ".join(f"{v:5d}" for v in row) for row in ev["confusion_matrix"]]
    rep = ev["classification_report"]
    lines.append(f"{'class':>12} precision recall f1 support")
    for c in ev["classes"]:
        r = rep[c]
        lines.append(f"{c:>12} {r['precision']:9.3f} {r['recall']:6.3f} {r['f1-score']:.3f} {int(r['support'])}")
    return "\n".join(lines)


def evaluate_checkpoint(model_path: str | Path, data, device: torch.device | str | None = None,
                        limit: int | None = None) -> dict:
    """A saved model on the test split of `data` (a standard dataset or an image folder, as
    training loads it): the one evaluation behind `mnist-dist train`, every sweep's best model
    and --final-seeds, and `mnist-dist evaluate --dataset`. The model's parameter count is
    added. On a GPU when there is one (alexnet's 227x227 test set wants it)."""
    from .data import DataError
    from .models import count_parameters
    from .models.checkpoint import input_spec, load_model

    device = device or eval_device()
    model, payload = load_model(model_path, device)
    if list(data.classes) != list(payload["classes"]):
        raise DataError(f"the model's classes ({', '.join(payload['classes'])}) are not those of "
                        f"{data.name} ({', '.join(data.classes)}); evaluate it on the data it was "
                        f"trained for ({payload.get('dataset')})")
    x, y = data.test_x[:limit], data.test_y[:limit]  # limit None: all of them
    ev = evaluate(model, x, y, input_spec(payload), data.mean, data.std, data.classes, device)
    ev["parameters"] = count_parameters(model)
    return ev


# --- McNemar's test: do two classifiers differ in accuracy on the same test images? ------
# Only the discordant images count: b = A right and B wrong, c = A wrong and B right. Under
# "equally good" each is a fair coin: the exact binomial test for small b + c, else the
# chi-square test with continuity correction, (|b - c| - 1)^2 / (b + c), 1 degree of freedom.

EXACT_BELOW = 25  # discordant pairs; the usual rule for when the chi-square approximation is poor


@dataclass
class McNemar:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float | None  # chi-square statistic; None for the exact test
    p_value: float
    method: str  # "exact binomial" | "chi-square, continuity-corrected"


def binom_two_sided(k: int, n: int) -> float:
    """Two-sided exact p-value of k successes out of n for p = 1/2: twice the smaller tail,
    the binomial being symmetric there (what scipy.stats.binomtest gives)."""
    # scipy.special, not scipy.stats: same function, a fraction of scipy.stats' import time,
    # which every sweep's ensemble step would pay
    from scipy.special import bdtr

    return min(1.0, 2 * float(bdtr(min(k, n - k), n, 0.5)))


def chi2_sf_1df(x: float) -> float:
    """Survival function of chi-square with 1 degree of freedom, P(chi2_1 > x)."""
    from scipy.special import chdtrc  # see binom_two_sided for why not scipy.stats

    return float(chdtrc(1, max(x, 0.0)))


def mcnemar(b: int, c: int, exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test on the discordant pairs: A right and B wrong (b), A wrong and B right (c)."""
    b, c = int(b), int(c)
    n = b + c
    if n < exact_below:
        return McNemar(b, c, None, binom_two_sided(min(b, c), n), "exact binomial")
    stat = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, float(stat), chi2_sf_1df(stat), "chi-square, continuity-corrected")


def discordant(labels, pred_a, pred_b) -> tuple[int, int]:
    right_a, right_b = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    return int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())


def beats_over_seeds(best_mean: float, best_std: float, base_mean: float, base_std: float) -> tuple[float, bool]:
    """(gain, beats): one config beats another over seeds when its mean test accuracy is
    higher by more than twice the larger of the two standard deviations; a smaller gain
    could be the seeds' noise."""
    gain = best_mean - base_mean
    return gain, gain > 2 * max(best_std, base_std)
