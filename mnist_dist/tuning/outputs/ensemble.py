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

import numpy as np
import torch

from ... import layout
from ...evaluation import discordant, eval_device, evaluate_checkpoint, mcnemar, predict_proba, save_evaluation
from ...models.checkpoint import Ensemble, atomic_save, input_spec, load_model, load_payload
from .results import fetch_model, ranked, sweep_data
from .summary import EnsembleResult, McNemarSummary

MAX_MEMBERS = 5


def member_probabilities(paths: list[Path], data, base: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each candidate's class probabilities on the trials' own validation split, and its
    labels: computed once per model, on the GPU when there is one, one model there at a time.
    Every k averages the first k of them (recomputing them per k evaluated alexnet's 6,000
    validation images 15 times on the CPU: more than the 300 s left of an H200 run)."""
    from ...config import TrainConfig
    from ...training.loop import train_val_indices

    _, val_idx = train_val_indices(TrainConfig.from_dict(base), len(data.train_x))
    x, y = data.train_x[val_idx], data.train_y[val_idx]
    device = eval_device()
    probs = []
    for path in paths:
        model, payload = load_model(path, device)
        probs.append(predict_proba(model, x, input_spec(payload), data.mean, data.std, device))
        del model  # before the next one is loaded: alexnet is 233 MB a member
    if device.type == "cuda":  # the final seeds' trials may share this GPU next
        torch.cuda.empty_cache()
    return probs, y


def accuracy_by_k(probs: list[torch.Tensor], y: torch.Tensor) -> list[float]:
    """Validation accuracy of the averaged probabilities of the first k members, k = 1..n."""
    return [float((torch.stack(probs[:k]).mean(0).argmax(1) == y).float().mean())
            for k in range(1, len(probs) + 1)]


def build_ensemble(rows: list[dict], spec, sweep_dir: Path, base: dict,
                   best_test_acc: float) -> EnsembleResult | None:
    """Choose k on validation, save and evaluate the ensemble; None with fewer than 2 trials.
    `best_test_acc` is the sweep's best model's, already evaluated (best/predictions.npz)."""
    candidates = ranked(rows, spec.metric, spec.mode)[:MAX_MEMBERS]
    if len(candidates) < 2:
        return None
    out = sweep_dir / layout.ENSEMBLE
    shutil.rmtree(out, ignore_errors=True)
    paths = [fetch_model(r["checkpoint_path"], out / layout.MEMBERS / r["trial_id"]) for r in candidates]
    data = sweep_data(base)
    val = accuracy_by_k(*member_probabilities(paths, data, base))
    k = max(range(len(val)), key=lambda i: (val[i], -i)) + 1  # ties: fewer members
    ensemble = Ensemble([load_model(p)[0] for p in paths[:k]])
    payload = load_payload(paths[0])
    metrics = {"members": [r["trial_id"] for r in candidates[:k]], "val_acc": val[k - 1]}
    atomic_save({**payload, "members": k, "metrics": metrics, "state_dict": {
        name: t.detach().cpu().clone() for name, t in ensemble.state_dict().items()}}, out / layout.MODEL)
    shutil.rmtree(out / layout.MEMBERS, ignore_errors=True)
    ev = evaluate_checkpoint(out / layout.MODEL, data)
    save_evaluation(ev, out)
    # the best model's test predictions, as the sweep's summary saved them a moment ago
    single = np.load(sweep_dir / layout.BEST / layout.PREDICTIONS)["predictions"]
    b, c = discordant(ev["labels"], ev["predictions"], single)
    test = mcnemar(b, c)
    return EnsembleResult(k=k, members=tuple(metrics["members"]), val_acc_by_k=tuple(val), val_acc=val[k - 1],
                          test_acc=ev["accuracy"], test_loss=ev["loss"], best_single_test_acc=best_test_acc,
                          mcnemar_vs_best_single=McNemarSummary(int(b), int(c), float(test.p_value), test.method),
                          model=str(out / layout.MODEL))
