"""Training configuration: one dataclass, layered and validated.

Layers, later wins: dataclass defaults <- the architecture's source baseline <-
a YAML file <- CLI flags. Unknown or mistyped keys are an error, never ignored;
every value is checked for its type and range (RANGES) in the layer that gave it,
so the error names that file or flag. The resolved config is saved beside every
result and inside every checkpoint.
"""
from __future__ import annotations

import difflib
import math
import reprlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import ConfigError  # noqa: F401 - defined beside the exit codes; imported from here too

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
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
# Caps that only catch typos: a batch above MNIST's whole 60,000-image training set, a
# seed beyond the 32 bits every generator takes, an epoch count no sweep here comes near.
MAX_BATCH = 65536
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 10_000


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

    def validate(self, source: str = "config") -> "TrainConfig":
        """Every field of its type and in its range, and the fields that depend on each other
        agreeing; `source` (a file, "command line") starts the message."""
        from .models.registry import UnknownModelError, get_entry  # late: models import nothing from here

        try:
            get_entry(self.arch)
        except UnknownModelError as e:
            raise ConfigError(f"{source}: arch: {e}") from None
        for name in FIELDS:
            setattr(self, name, coerce_value(name, getattr(self, name), source))
        if self.warmup_epochs > 0 and self.warmup_epochs >= self.epochs:
            fail(source, "warmup_epochs", self.warmup_epochs, f"a warm-up that ends before the run does: "
                 f"below epochs={self.epochs}")
        if self.lr_schedule == "onecycle" and self.warmup_epochs != 0:
            fail(source, "warmup_epochs", self.warmup_epochs, "0 with lr_schedule=onecycle, which warms up "
                 "over its own first 25% of the run (warmup_epochs is for constant and cosine)")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        return cls(**coerce(d, source)).validate(source)


FIELDS = {f.name: f for f in fields(TrainConfig)}
WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}


@dataclass(frozen=True)
class Range:
    """What a value may be: within [low, high] (None: no bound on that side; *_open: that end
    excluded), or one of `choices`. `what` names the kind of value in messages (default: the
    type's word), `note` says what special values mean."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    what: str = ""
    note: str = ""

    def holds(self, v) -> bool:
        if self.choices:
            return v in self.choices
        above = self.low is None or v > self.low or (v == self.low and not self.low_open)
        below = self.high is None or v < self.high or (v == self.high and not self.high_open)
        return above and below

    def describe(self, kind: str) -> str:
        if self.choices:
            text = f"one of {self.choices}"
        else:
            text = " ".join(p for p in (self.what or WORDS[kind], self.bounds()) if p)
        return f"{text} {self.note}" if self.note else text

    def bounds(self) -> str:
        lo, hi = (None if b is None else _number(b) for b in (self.low, self.high))
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo}"
        return f"{'<' if self.high_open else '<='} {hi}" if hi is not None else ""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def below_one(note: str = "") -> Range:
    return Range(0, 1, high_open=True, note=note)


# Every TrainConfig field's accepted values. dataset's names come from the data registry
# (see field_range); arch is checked against the model registry in validate().
RANGES = {
    "arch": Range(what="an architecture name"),
    "dataset": Range(what="a dataset name"),
    "images": Range(what="a folder path"),
    "data_dir": Range(what="a folder path"),
    "optimizer": Range(choices=OPTIMIZERS),
    "lr": Range(0, low_open=True),
    "momentum": below_one("(sgd and rmsprop only)"),
    "nesterov": Range(),
    "weight_decay": Range(0, 1),
    "dropout": below_one("(or none: the architecture's default)"),
    "batch_size": Range(1, MAX_BATCH),
    "epochs": Range(1, MAX_EPOCHS),
    "val_fraction": Range(0, 1, low_open=True, high_open=True),
    "seed": Range(0, MAX_SEED),
    "early_stopping_monitor": Range(choices=MONITORS),
    "early_stopping_patience": Range(0, note="(0 turns it off)"),
    "lr_plateau_factor": below_one("(0 turns it off)"),
    "lr_plateau_patience": Range(0, note="(epochs without improvement before a cut)"),
    "lr_schedule": Range(choices=LR_SCHEDULES),
    "warmup_epochs": Range(0, what="a number of epochs", note="(0 turns it off), below epochs"),
    "augment": Range(choices=AUGMENT_LEVELS, note="(true/false from older configs mean light/off)"),
    "label_smoothing": Range(0, 0.5, high_open=True),
    "amp": Range(what="true, false or auto"),
    "train_limit": Range(10, note="(or none: all of them)"),
    "test_limit": Range(10, note="(or none: all of them)"),
    "eval_batch_size": Range(1, MAX_BATCH),
}
assert RANGES.keys() == FIELDS.keys(), "every TrainConfig field needs its range"


def field_range(key: str) -> Range:
    if key == "dataset":  # the data registry imports torch: only once a dataset is named
        from .data.datasets import DATASETS

        return Range(choices=tuple(DATASETS), note="(or an image folder via images)")
    return RANGES[key]


def legacy_augment(value):
    """true/false (a bool, or its YAML/CLI spelling) from before augment had levels -> light/off."""
    if isinstance(value, bool):
        return "light" if value else "off"
    if isinstance(value, str):
        return LEGACY_AUGMENT.get(value.strip().lower(), value.strip().lower())
    return value


def fail(where: str, label: str, value, accepted: str, problem: str = "is not valid"):
    """Raise the one-line error: where, which key, which value, what is accepted."""
    shown = f"{label}={reprlib.repr(value)}" if label else reprlib.repr(value)
    raise ConfigError(f"{where + ': ' if where else ''}{shown} {problem}; expected {accepted}")


def unknown_key_error(key, known, source: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")


def coerce(d: dict, source: str = "config", prefix: str = "") -> dict:
    """Check keys against TrainConfig, and each value's type and range; values converted to
    the field types (YAML gives '1e-3' as a string, CLI gives everything as strings).
    `prefix` places the keys in their file ("fixed." for a sweep's fixed values)."""
    out = {}
    for key, value in d.items():
        if key not in FIELDS:
            raise unknown_key_error(key, FIELDS, f"{source}: {prefix.rstrip('.')}" if prefix else source)
        out[key] = coerce_value(key, value, source, prefix + key)
    return out


def coerce_value(key: str, value, source: str = "config", label: str | None = None):
    """One TrainConfig value converted to its field's type and checked against its range."""
    if key == "augment":
        value = legacy_augment(value)
    return check_value(value, FIELDS[key].type, field_range(key), source, key if label is None else label)


def check_value(value, type_name: str, rng: Range, where: str = "", label: str = ""):
    """`value` as `type_name` ('int', 'float | None', ...) and within `rng`, or a ConfigError
    naming where, label and value, and saying what is accepted."""
    kind, optional = str(type_name).split("|")[0].strip(), "None" in str(type_name)
    accepted = rng.describe(kind)
    try:
        v = to_type(value, kind, optional)
    except (TypeError, ValueError, OverflowError):
        fail(where, label, value, accepted, f"is not a valid {kind}")
    if isinstance(v, float) and not math.isfinite(v):
        fail(where, label, value, accepted, "is not a finite number")
    if v is not None and not rng.holds(v):
        fail(where, label, v, accepted)
    return v


def to_type(value, kind: str, optional: bool):
    """YAML's and the command line's spellings as a Python value; ValueError if there is none."""
    text = value.strip().lower() if isinstance(value, str) else None
    if optional and (value is None or text in ("none", "null", "") or (kind == "bool" and text == "auto")):
        return None
    if value is None:
        raise ValueError("may not be empty")
    if kind == "bool":
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        if text in TRUE + FALSE:
            return text in TRUE
        raise ValueError(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)  # true is not a number, nor is a list
    if kind == "float":
        return float(value)
    number = float(value) if isinstance(value, str) else value  # "1e3" on the command line
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(value)
    return int(number)


def resolve(arch: str, overrides: dict | None = None, source: str = "command line") -> TrainConfig:
    """Defaults <- the architecture's baseline <- overrides."""
    from .models import get_entry

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given.get("arch", arch) != arch:
        fail(source, "arch", given["arch"], f"the architecture given on the command line ({arch!r}), or no arch key")
    cfg = {**get_entry(arch).baseline, **given, "arch": arch}
    return TrainConfig.from_dict(cfg, source)


def flag_type(type_name: str, rng: Range):
    """An argparse `type=`: the text as `type_name` ('int' or 'float') within `rng`, else
    argparse's one-line error (exit 2): 'argument --flag: -1 must be >= 1'."""
    def parse(text: str):
        try:
            value = to_type(text, type_name, optional=False)
        except ValueError:
            raise _argument_error(f"{text!r} is not {WORDS[type_name]}") from None
        if not math.isfinite(value):
            raise _argument_error(f"{text!r} is not a finite number")
        if not rng.holds(value):
            raise _argument_error(f"{value} must be {rng.bounds()}")
        return value
    parse.__name__ = type_name  # argparse names the type in its own messages
    return parse


positive_int = flag_type("int", Range(1))
non_negative_int = flag_type("int", Range(0))
positive_float = flag_type("float", Range(0, low_open=True))
non_negative_float = flag_type("float", Range(0))


def config_flag(name: str):
    """An argparse `type=` for a flag that sets a TrainConfig field: its type and range at
    parse time. 'auto' and 'none' stay text, so that resolve() lets them override the baseline."""
    def parse(text: str):
        try:
            value = coerce_value(name, text, "", "")
        except ConfigError as e:
            raise _argument_error(str(e)) from None
        return text if value is None else value
    parse.__name__ = str(FIELDS[name].type).split("|")[0].strip()
    return parse


def _argument_error(message: str):
    import argparse  # only the command lines need it

    return argparse.ArgumentTypeError(message)


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


def flags_to_overrides(args, skip: tuple[str, ...] = ("arch",)) -> dict:
    """The flags add_config_flags made that were given, as typed; each checked for its type and
    range, the error naming the flag (a ConfigError: `mnist-dist` prints one line, exits 2)."""
    given = {k: getattr(args, k) for k in FIELDS if k not in skip and getattr(args, k, None) is not None}
    for key, value in given.items():
        coerce_value(key, value, "", "--" + key.replace("_", "-"))
    return given


def load_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping; an error naming the file if it is missing, unreadable,
    malformed, empty or not a mapping."""
    import yaml

    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_unique_keys_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.__class__.__name__}: {e})") from None
    if data is None:  # an empty file (or only comments) would silently run the defaults
        raise ConfigError(f"{path}: is empty; expected a mapping of keys to values")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: is a {type(data).__name__}, not a mapping; expected keys and "
                          "values at the top level (key: value)")
    return data


def _unique_keys_loader():
    """YAML's safe loader, but a key given twice in one mapping is an error: PyYAML keeps the
    last silently, so `lr: 0.1` ... `lr: 0.001` would run with whichever came second."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def load_config(path: str | Path) -> dict:
    """A training config file (TrainConfig keys), every key and value checked, naming the file;
    returned as written, for resolve() to lay over the baseline."""
    data = load_yaml(path)
    coerce(data, str(path))
    return data
