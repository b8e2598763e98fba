"""Flags shared by `predict`, `evaluate` and `export`."""
from __future__ import annotations

from .preprocess import RECIPES


def add_model_flag(p) -> None:
    p.add_argument("--model", required=True, metavar="MODEL.pt",
                   help="a model file from `mnist-dist train` (results/<run>/model.pt) "
                        "or a sweep (results/<sweep>/best/model.pt)")


def add_preprocess_flags(p) -> None:
    p.add_argument("--preprocess", choices=("auto",) + RECIPES, default="auto",
                   help="how images become 28x28 model inputs. auto (default): 'digit' for MNIST "
                        "models (crop, fit 20x20, centre by mass, as MNIST was made), 'fit' for "
                        "Fashion-MNIST/KMNIST (resize the whole image), 'plain' for image-folder "
                        "models (as their training images were read)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu; e.g. cuda)")
