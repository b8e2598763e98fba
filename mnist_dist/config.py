"""Training configuration: one dataclass, layered and validated.

Layers, later wins: dataclass defaults <- the architecture's source baseline <-
a YAML file <- CLI flags. Unknown or mistyped keys are an error, never ignored;
the resolved config is saved beside every result and inside every checkpoint.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
MONITORS = ("val_loss", "val_acc", "train_loss", "train_acc")
LR_SCHEDULES = ("constant", "cosine", "onecycle")
AUGMENT_LEVELS = ("off", "light", "strong")
# One-cycle's learning rate rises to its peak over this share of the run (fast.ai's
# pct_start; PyTorch uses 0.3). A sweep's ASHA must not judge a trial before that peak.
ONECYCLE_PCT_START = 0.25
# augment was a bool before it had levels: old configs and checkpoints say true/false
LEGACY_AUGMENT = {"true": "light", "1": "light", "yes": "light", "on": "light",
                  "false": "off", "0": "off", "no": "off"}
CHOICES = {"optimizer": OPTIMIZERS, "early_stopping_monitor": MONITORS,
           "lr_schedule": LR_SCHEDULES, "augment": AUGMENT_LEVELS}


class ConfigError(ValueError):
    """A config value or key a user can fix; the message says what is accepted."""


@dataclass
class TrainConfig:
    arch: str = "lenet5"
    dataset: str = "mnist"  # mnist | fashion-mnist | kmnist
    images: str | None = None  # image-folder dataset (train/ and test/) instead of `dataset`
    data_dir: str | None = None  # folder of IDX datasets; default: $MNIST_DIST_DATA_DIR, then download
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd and rmsprop only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0
    dropout: float | None = None  # None: the architecture's default
    batch_size: int = 128  # per worker; the global batch is batch_size * world size
    epochs: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    early_stopping_monitor: str = "val_loss"
    early_stopping_patience: int = 0  # epochs without improvement; 0 = off
    lr_plateau_factor: float = 0.0  # ReduceLROnPlateau on val_loss; 0 = off
    lr_plateau_patience: int = 3
    # Per optimizer step over the planned run (epochs x steps per epoch); the plateau
    # factor, when on, scales whatever the schedule gives from then on.
    lr_schedule: str = "constant"  # constant | cosine | onecycle (its own warm-up: 25% of the run)
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr; constant and cosine only; 0 = off
    augment: str = "off"  # off | light | strong; digits: shifts/rotations, fashion: crop/flip
    label_smoothing: float = 0.0  # training loss only; val_loss stays plain cross-entropy
    amp: bool | None = None  # mixed precision, CUDA only; None (auto): where it is faster
    train_limit: int | None = None  # use only this many training images (smoke tests)
    test_limit: int | None = None  # and this many test images
    eval_batch_size: int = 1000

    def __post_init__(self):
        self.augment = legacy_augment(self.augment)

    def validate(self) -> "TrainConfig":
        from .models import get_entry  # late import: models import nothing from here

        get_entry(self.arch)  # raises with the list of known names
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _check(self.early_stopping_monitor in MONITORS, "early_stopping_monitor",
               self.early_stopping_monitor, f"one of {MONITORS}")
        _check(self.lr > 0, "lr", self.lr, "a positive number")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "in (0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        _check(self.dropout is None or 0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        _check(0 <= self.lr_plateau_factor < 1, "lr_plateau_factor", self.lr_plateau_factor,
               "in [0, 1) (0 turns it off)")
        _check(self.early_stopping_patience >= 0, "early_stopping_patience",
               self.early_stopping_patience, ">= 0 (0 turns it off)")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        _check(0 <= self.warmup_epochs < math.inf, "warmup_epochs", self.warmup_epochs,
               "a number of epochs >= 0 (0 turns it off)")
        _check(self.lr_schedule != "onecycle" or self.warmup_epochs == 0, "warmup_epochs",
               self.warmup_epochs, "0 with lr_schedule=onecycle, which warms up over its own first "
               "25% of the run (warmup_epochs is for constant and cosine)")
        _check(self.augment in AUGMENT_LEVELS, "augment", self.augment,
               f"one of {AUGMENT_LEVELS} (true/false from older configs mean light/off)")
        _check(0 <= self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "in [0, 0.5)")
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            _check(value is None or value >= 10, key, value, "None or an integer >= 10")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        return cls(**coerce(d, source)).validate()


def legacy_augment(value):
    """true/false (a bool, or its YAML/CLI spelling) from before augment had levels -> light/off."""
    if isinstance(value, bool):
        return "light" if value else "off"
    if isinstance(value, str):
        return LEGACY_AUGMENT.get(value.strip().lower(), value.strip().lower())
    return value


def _check(ok: bool, key: str, value, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid; expected {accepted}")


FIELDS = {f.name: f for f in fields(TrainConfig)}


def unknown_key_error(key: str, known, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")


def coerce(d: dict, source: str = "config") -> dict:
    """Check keys against TrainConfig and convert values to the field types (YAML gives
    '1e-3' as a string, CLI gives everything as strings)."""
    out = {}
    for key, value in d.items():
        if key not in FIELDS:
            raise unknown_key_error(key, FIELDS, source)
        out[key] = convert(key, value, FIELDS[key].type)
    return out


def convert(key: str, value, type_name: str):
    auto = str(type_name).startswith("bool") and str(value).lower() == "auto"  # amp: auto
    if value is None or auto or (isinstance(value, str) and value.lower() in ("none", "null")):
        if "None" in str(type_name):
            return None
        raise ConfigError(f"{key} may not be empty")
    base = str(type_name).split("|")[0].strip()
    try:
        if base == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if base == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a valid {base}") from None


def resolve(arch: str, overrides: dict | None = None, source: str = "CLI") -> TrainConfig:
    """Defaults <- the architecture's baseline <- overrides."""
    from .models import get_entry

    cfg = {**get_entry(arch).baseline, "arch": arch}
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(cfg, source)


def save_json(obj, path: Path) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return asdict(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def add_config_flags(parser, skip: tuple[str, ...] = ("arch",)) -> None:
    """One --flag per TrainConfig field (--batch-size for batch_size); default None = not given."""
    group = parser.add_argument_group("training config (overrides the baseline / YAML)")
    for name, f in FIELDS.items():
        if name in skip:
            continue
        base = str(f.type).split("|")[0].strip()
        choices = f"{' | '.join(CHOICES[name])}; " if name in CHOICES else ""
        if name == "amp":
            choices = "true | false | auto (true where it trains faster on a GPU: cnn_bn, alexnet); "
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar=base.upper(),
                           help=f"{choices}default: {'auto' if name == 'amp' else repr(f.default)}")


def flags_to_overrides(args) -> dict:
    return {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.__class__.__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data
