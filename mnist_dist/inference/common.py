"""Flags shared by `predict`, `evaluate` and `export`, and the checks of their values.

Values are checked in the command's run() rather than by argparse, so that a bad one is
one `error:` line and exit status 2, like every other error a user can fix, before any
model is loaded or image read."""
from __future__ import annotations

import re

from ..errors import ConfigError
from .preprocess import RECIPES

DEVICES = "cpu, cuda, cuda:N (N = a GPU number) or mps"


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
    p.add_argument("--device", default="cpu", help=f"torch device: {DEVICES} (default: cpu)")


def check_device(name: str) -> str:
    """The --device value when this machine has that device; ConfigError (exit 2) naming
    it otherwise, instead of torch's traceback when the model is moved there."""
    import torch

    match = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", name)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(f"--device {name or repr(name)}: not a device; use {DEVICES}")
    kind, number = match.group(1), match.group(2)
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available on this machine (use --device cpu)")
    if kind == "cuda" and number is not None and int(number) >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                          f"numbered from 0")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: Apple's MPS is not available on this machine (use --device cpu)")
    return name


def check_positive(flag: str, value: int | None) -> None:
    """ConfigError (exit 2) for a count flag given as 0 or less (None: not given)."""
    if value is not None and value < 1:
        raise ConfigError(f"{flag} {value}: must be 1 or more")
