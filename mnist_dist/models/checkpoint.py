"""Self-describing model files: everything `predict` needs is inside the file.

The payload is a dict of plain Python values and tensors, so it loads with
`torch.load(path, weights_only=True)`, which refuses to unpickle code. `load_model`
checks all of it (validate_payload) before it builds anything; docs/predict.md
("What a model file must hold") lists the rules and caps.
"""
from __future__ import annotations

import math
import pickle
import reprlib
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from ..data.transforms import InputSpec
from ..layout import atomic_write
from .registry import UnknownModelError, create_model, get_entry, list_models
from ..errors import UserError

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


class CheckpointError(UserError):
    """A model file that cannot be used; the message is one line naming the file and what
    is wrong with it."""


# Caps on what a model file may declare, checked before anything is built or allocated.
# The largest real file is an ensemble of 5 alexnets (233 MB each), about 1.2 GB.
MAX_FILE_BYTES = 2 * 1024 ** 3  # the file, and the sum of what its archive unpacks to
MAX_CLASSES = 1000
MAX_CLASS_NAME = 200  # characters
MAX_INPUT_SIZE = 512  # pixels a side; alexnet's 227 is the largest architecture input
MAX_MEMBERS = 8  # models in an ensemble file (sweeps save at most 5)
MIN_STD = 1e-3  # normalisation std; pixels are in [0, 1], so real data is far above this


def load_payload(path: str | Path) -> dict:
    """The file's payload after the file-level checks (size, archive, weights only, format
    tag); `validate_payload` checks the rest."""
    path = Path(path)
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch's notes on odd tensors: the checks below say more
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors and plain data
        raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain "
                              f"values ({_refusal(e)}); a model file is loaded as weights only, never "
                              "run as code") from e
    except Exception as e:  # a damaged archive that passed the directory check
        raise CheckpointError(f"{path}: not a loadable mnist-dist model ({type(e).__name__}: "
                              f"{_first_line(e)})") from e
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, not an mnist-dist model "
                              f"(a dict with format {FORMAT!r})")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {_short(payload.get('format'))}, not an mnist-dist "
                              f"model file (format {FORMAT!r} expected)")
    return payload


def _check_archive(path: Path) -> None:
    """torch.save writes a zip archive; its size and the sizes its directory declares bound
    every allocation torch.load makes, so they are capped before it runs."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the model file (model.pt) inside it")
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file (train one with `mnist-dist train` "
                              "or use results/<sweep>/best/model.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file; give a model file (model.pt)")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CheckpointError(f"{path}: is {size / 1024 ** 3:.1f} GiB; model files over "
                                  f"{MAX_FILE_BYTES // 1024 ** 3} GiB are refused")
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the model file: {e.strerror or e}") from e
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile mostly; a crafted directory can fail in other ways
        what = "an empty file" if size == 0 else "not a torch.save archive (truncated or another kind of file)"
        raise CheckpointError(f"{path}: not a loadable mnist-dist model: {what}") from e
    if unpacked > MAX_FILE_BYTES:
        raise CheckpointError(f"{path}: its archive declares {unpacked / 1024 ** 3:.1f} GiB of content; "
                              f"model files over {MAX_FILE_BYTES // 1024 ** 3} GiB are refused")


def _refusal(e: Exception) -> str:
    """What torch's weights-only loader refused, without its advice to load the file unsafely."""
    lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
    found = [line for line in lines if "documentation" not in line and "weights_only" not in line]
    return found[0][:200] if found else "not plain data"


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else "no details"


def _short(value) -> str:
    """A value for an error message: its repr, cut so that one line stays one line (reprlib
    shortens long strings and lists before they are turned into text at all)."""
    text = reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    A file with `members` holds an Ensemble of that many models of its architecture.
    Everything is checked before the model is built: a bad file is one CheckpointError."""
    payload = load_payload(path)
    validate_payload(payload, path)
    model = _build(payload)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def _build(payload: dict) -> nn.Module:
    arch, n, dropout = payload["arch"], payload["num_classes"], payload.get("dropout")
    if payload.get("members"):
        return Ensemble([create_model(arch, n, dropout) for _ in range(payload["members"])])
    return create_model(arch, n, dropout)


# --- what a model file must hold -----------------------------------------------------------
# key -> (accepted types, how the message names them); the optional keys may also be None.
REQUIRED = {"format": (str, "a string"), "arch": (str, "an architecture name"),
            "num_classes": (int, "an integer"), "input": (dict, "a dict of size, channels, resize"),
            "normalization": (dict, "a dict of mean and std"), "classes": ((list, tuple), "a list of names"),
            "state_dict": (dict, "a dict of tensors")}
OPTIONAL = {"dropout": ((int, float), "a number"), "dataset": (str, "a string"),
            "config": (dict, "a dict"), "metrics": (dict, "a dict"), "members": (int, "an integer")}


def validate_payload(payload: dict, path: str | Path) -> None:
    """Raise CheckpointError naming the file, the key and what is accepted, unless the payload
    rebuilds its model exactly. The state dict is compared with the architecture built on the
    meta device (shapes only, no memory), so nothing is allocated from an unchecked number."""
    _check_types(payload, path)
    arch = payload["arch"]
    try:
        entry = get_entry(arch)
    except UnknownModelError as e:
        raise CheckpointError(f"{path}: arch {_short(arch)} is not a known architecture "
                              f"(known: {', '.join(list_models())})") from e
    _check_classes(payload, path)
    _check_normalization(payload["normalization"], path)
    _check_input(payload["input"], entry.input, path, arch)
    _check_dropout_and_members(payload, path)
    _check_state_dict(payload, path)


def _check_types(payload: dict, path) -> None:
    for key, (types, what) in REQUIRED.items():
        if key not in payload:
            raise CheckpointError(f"{path}: the key {key!r} is missing (it must be {what})")
        _check_type(payload[key], types, what, key, path)
    for key, (types, what) in OPTIONAL.items():
        if payload.get(key) is not None:
            _check_type(payload[key], types, what, key, path)


def _check_type(value, types, what: str, key: str, path) -> None:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise CheckpointError(f"{path}: {key} must be {what}, not {type(value).__name__} {_short(value)}")


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _check_classes(payload: dict, path) -> None:
    n, classes = payload["num_classes"], payload["classes"]
    if not 1 <= n <= MAX_CLASSES:
        raise CheckpointError(f"{path}: num_classes is {n}; accepted: 1 to {MAX_CLASSES}")
    if len(classes) != n:
        raise CheckpointError(f"{path}: classes has {len(classes)} names but the {payload['arch']} "
                              f"model has {n} outputs (num_classes)")
    for name in classes:
        if not isinstance(name, str) or not name or len(name) > MAX_CLASS_NAME or not name.isprintable():
            raise CheckpointError(f"{path}: classes holds {_short(name)}; each class name must be a "
                                  f"printable string of 1 to {MAX_CLASS_NAME} characters")
    twice = sorted(name for name, count in Counter(classes).items() if count > 1)
    if twice:
        raise CheckpointError(f"{path}: classes has {', '.join(map(_short, twice[:5]))} more than once; "
                              "class names must be unique")


def _check_normalization(norm: dict, path) -> None:
    for key in ("mean", "std"):
        value = norm.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise CheckpointError(f"{path}: normalization.{key} is {_short(value)}; it must be one finite "
                                  "number (the images are grey: one channel, scaled to [0, 1])")
    if not 0 <= norm["mean"] <= 1:
        raise CheckpointError(f"{path}: normalization.mean is {norm['mean']}; accepted: 0 to 1 "
                              "(the mean of pixels scaled to [0, 1])")
    if not MIN_STD <= norm["std"] <= 1:
        raise CheckpointError(f"{path}: normalization.std is {norm['std']}; accepted: {MIN_STD} to 1 "
                              "(the spread of pixels scaled to [0, 1])")


def _check_input(spec: dict, expected: InputSpec, path, arch: str) -> None:
    size, channels = spec.get("size"), spec.get("channels")
    if set(spec) != {"size", "channels", "resize"}:
        raise CheckpointError(f"{path}: input has the keys {_short(sorted(map(str, spec)))}; accepted: "
                              "size, channels and resize")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise CheckpointError(f"{path}: input.size is {_short(size)}; accepted: 1 to {MAX_INPUT_SIZE} pixels")
    if type(channels) is not int or channels not in (1, 3) or not isinstance(spec["resize"], bool):
        raise CheckpointError(f"{path}: input is {_short(spec)}; channels must be 1 or 3 and resize "
                              "true or false")
    if InputSpec(**spec) != expected:
        raise CheckpointError(f"{path}: input is {spec}, but the {arch} model takes {expected.to_dict()}")


def _check_dropout_and_members(payload: dict, path) -> None:
    dropout, members = payload.get("dropout"), payload.get("members")
    if dropout is not None and not (math.isfinite(dropout) and 0 <= dropout < 1):
        raise CheckpointError(f"{path}: dropout is {dropout}; accepted: a rate from 0 to below 1, or none")
    if members is not None and not 1 <= members <= MAX_MEMBERS:
        raise CheckpointError(f"{path}: members is {members}; an ensemble file holds 1 to "
                              f"{MAX_MEMBERS} models")


def _check_state_dict(payload: dict, path) -> None:
    """Keys, tensor types and shapes against the architecture built on the meta device."""
    with torch.device("meta"):
        expected = _build(payload).state_dict()
    arch, n, members = payload["arch"], payload["num_classes"], payload.get("members")
    what = f"an ensemble of {members} {arch} models" if members else f"the {arch} model"
    what += f" with {n} classes"
    got = payload["state_dict"]
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        raise CheckpointError(f"{path}: state_dict lacks {_listed(missing)}, which {what} has")
    if extra:
        raise CheckpointError(f"{path}: state_dict has {_listed(extra)}, which {what} does not have")
    for key, want in expected.items():
        tensor = got[key]
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            layout = tensor.layout if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: state_dict[{key!r}] is {layout}; accepted: a dense tensor")
        if tensor.dtype.is_floating_point != want.dtype.is_floating_point or tensor.is_complex():
            raise CheckpointError(f"{path}: state_dict[{key!r}] holds {tensor.dtype}; {what} "
                                  f"needs {want.dtype}")
        if tensor.shape != want.shape:
            raise CheckpointError(f"{path}: state_dict[{key!r}] has shape {tuple(tensor.shape)}, "
                                  f"but {what} needs {tuple(want.shape)}")


def _listed(keys: list) -> str:
    shown = ", ".join(_short(k) for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def input_spec(payload: dict) -> InputSpec:
    return InputSpec(**payload["input"])
