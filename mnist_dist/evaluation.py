"""Test-set evaluation: accuracy, loss, confusion matrix, per-class accuracy,
classification report and the predicted probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import layout
from .data.transforms import InputSpec, prepare_batch
from .layout import save_json


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
    from sklearn.metrics import classification_report, confusion_matrix  # slow import: only here

    probs = predict_proba(model, x, spec, mean, std, device)
    labels = y.cpu().numpy()
    preds = probs.argmax(1).numpy()
    # NLL of the softmax output; clamp so one confidently wrong image cannot make it inf
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y.cpu()))
    k = len(classes)
    cm = confusion_matrix(labels, preds, labels=list(range(k)))
    per_class = cm.diagonal() / np.maximum(cm.sum(1), 1)
    report = classification_report(labels, preds, labels=list(range(k)), target_names=list(classes),
                                   output_dict=True, zero_division=0)
    return {"accuracy": float((preds == labels).mean()), "loss": loss, "n": int(len(labels)),
            "classes": list(classes), "confusion_matrix": cm.tolist(),
            "per_class_accuracy": {c: float(a) for c, a in zip(classes, per_class)},
            "classification_report": report, "probabilities": probs.numpy(),
            "labels": labels, "predictions": preds}


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

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, payload = load_model(model_path, device)
    if list(data.classes) != list(payload["classes"]):
        raise DataError(f"the model's classes ({', '.join(payload['classes'])}) are not those of "
                        f"{data.name} ({', '.join(data.classes)}); evaluate it on the data it was "
                        f"trained for ({payload.get('dataset')})")
    x, y = data.test_x[:limit], data.test_y[:limit]  # limit None: all of them
    ev = evaluate(model, x, y, input_spec(payload), data.mean, data.std, data.classes, device)
    ev["parameters"] = count_parameters(model)
    return ev
