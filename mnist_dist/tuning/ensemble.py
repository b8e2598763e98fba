"""A free ensemble from every sweep: the k best trials' models, averaged.

The candidates are the sweep's usable trials ranked by its metric; k (1 to MAX_MEMBERS) is
the count whose averaged probabilities score best on the validation split the trials were
tuned on, never on the test set. The ensemble is saved as an ordinary `model.pt`
(`results/NAME/ensemble/`) that predict, evaluate and export load like any model, evaluated
on the test set, and compared with the best single model by McNemar's test.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .. import layout
from ..evaluation import discordant, evaluate_checkpoint, mcnemar, predict_proba, save_evaluation
from ..models.checkpoint import Ensemble, atomic_save, input_spec, load_model, load_payload
from .results import fetch_model, ranked, sweep_data

MAX_MEMBERS = 5


def validation_accuracy(models: list, payload: dict, data, base: dict) -> float:
    """Accuracy of the averaged probabilities on the trials' own validation split."""
    from ..config import TrainConfig
    from ..training.loop import train_val_indices

    _, val_idx = train_val_indices(TrainConfig.from_dict(base), len(data.train_x))
    x, y = data.train_x[val_idx], data.train_y[val_idx]
    probs = torch.stack([predict_proba(m, x, input_spec(payload), data.mean, data.std) for m in models]).mean(0)
    return float((probs.argmax(1) == y).float().mean())


def build_ensemble(rows: list[dict], spec, sweep_dir: Path, base: dict, best: dict) -> dict | None:
    """Choose k on validation, save and evaluate the ensemble; None with fewer than 2 trials."""
    candidates = ranked(rows, spec.metric, spec.mode)[:MAX_MEMBERS]
    if len(candidates) < 2:
        return None
    out = sweep_dir / "ensemble"
    shutil.rmtree(out, ignore_errors=True)
    paths = [fetch_model(r["checkpoint_path"], out / "members" / r["trial_id"]) for r in candidates]
    models = [load_model(p)[0] for p in paths]
    payload = load_payload(paths[0])
    data = sweep_data(base)
    val = [validation_accuracy(models[:k], payload, data, base) for k in range(1, len(models) + 1)]
    k = max(range(len(val)), key=lambda i: (val[i], -i)) + 1  # ties: fewer members
    ensemble = Ensemble(models[:k])
    metrics = {"members": [r["trial_id"] for r in candidates[:k]], "val_acc": val[k - 1]}
    atomic_save({**payload, "members": k, "metrics": metrics, "state_dict": {
        name: t.detach().cpu().clone() for name, t in ensemble.state_dict().items()}}, out / layout.MODEL)
    shutil.rmtree(out / "members", ignore_errors=True)
    ev = evaluate_checkpoint(out / layout.MODEL, data)
    save_evaluation(ev, out)
    single = evaluate_checkpoint(sweep_dir / layout.BEST / layout.MODEL, data)
    b, c = discordant(ev["labels"], ev["predictions"], single["predictions"])
    test = mcnemar(b, c)
    return {"k": k, "members": metrics["members"], "val_acc_by_k": val, "val_acc": val[k - 1],
            "test_acc": ev["accuracy"], "test_loss": ev["loss"], "best_single_test_acc": single["accuracy"],
            "mcnemar_vs_best_single": {"ensemble_right_single_wrong": b, "ensemble_wrong_single_right": c,
                                       "p_value": test.p_value, "method": test.method},
            "model": str(out / layout.MODEL)}
