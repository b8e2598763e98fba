"""Self-describing model files: everything `predict` needs is inside the file.

The payload is a dict of plain Python values and tensors, so it loads with
`torch.load(path, weights_only=True)`, which refuses to unpickle code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..data.transforms import InputSpec
from ..layout import atomic_write
from .registry import create_model, get_entry

FORMAT = "mnist-dist-model/1"


def model_payload(model: nn.Module, config: dict, classes, mean: float, std: float,
                  dataset: str, metrics: dict | None = None, state_dict: dict | None = None) -> dict:
    entry = get_entry(config["arch"])
    return {
        "format": FORMAT,
        "arch": entry.name,
        "num_classes": len(classes),
        "dropout": config.get("dropout"),
        "input": entry.input.to_dict(),
        "normalization": {"mean": float(mean), "std": float(std)},
        "classes": list(classes),
        "dataset": dataset,
        "config": dict(config),
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in (state_dict or model.state_dict()).items()},
    }


def atomic_save(obj, path: Path) -> None:
    """torch.save via a temporary file and rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


class CheckpointError(ValueError):
    pass


def load_payload(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file (train one with `mnist-dist train` "
                              "or use results/<sweep>/best/model.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a torch file at all
        raise CheckpointError(f"{path}: not a loadable mnist-dist model ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mnist-dist model file (format {FORMAT} expected)")
    return payload


class Ensemble(nn.Module):
    """Several trained models of one architecture that predict the average of their class
    probabilities. It returns log-probabilities, so the softmax every consumer applies
    (evaluate, predict, an export) gives that average: an ensemble is used like any model."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the trained model from its file alone; returns (model in eval mode, payload).
    A file with `members` holds an Ensemble of that many models of its architecture."""
    payload = load_payload(path)
    model = create_model(payload["arch"], payload["num_classes"], payload["dropout"])
    if payload.get("members"):
        model = Ensemble([create_model(payload["arch"], payload["num_classes"], payload["dropout"])
                          for _ in range(payload["members"])])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def input_spec(payload: dict) -> InputSpec:
    return InputSpec(**payload["input"])
