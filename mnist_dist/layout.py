"""The results folders: what every run and sweep writes where, how a run or trial ended,
and writing a file so that a crash never leaves half of one.

The one owner of these names: training, sweeps, the report and predict all use them.
Free of torch and Ray, so anything can read results with it.

    results/NAME/                    a run (`mnist-dist train`) or a sweep's best/ folder
        config.json  run.json  history.csv  history.json
        model.pt  evaluation.json  predictions.npz
    results/NAME/                    a sweep (`python sweeps/run.py ARCH`)
        config.json  config.yaml  summary.json  trials.csv  events.jsonl  optuna.db
        histories/TRIAL.csv  best/  ensemble/  final/  tune/  train/  asha-state.json  .lock
    results/NAME/final/              --final-seeds: seed-S/  baseline-seed-S/  trials.csv  events.jsonl
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

# --- files ----------------------------------------------------------------------------
CONFIG_JSON = "config.json"  # the resolved config, beside every result
CONFIG_YAML = "config.yaml"
RUN_JSON = "run.json"  # a run's summary
SUMMARY_JSON = "summary.json"  # a sweep's summary
HISTORY_CSV = "history.csv"  # per epoch
HISTORY_JSON = "history.json"
MODEL = "model.pt"  # the best epoch's model, self-describing
RESUME = "resume.pt"  # inside a checkpoint: what training resumes from
EVALUATION = "evaluation.json"  # test-set metrics of model.pt
PREDICTIONS = "predictions.npz"  # test-set probabilities
TRIALS_CSV = "trials.csv"  # a sweep: one row per trial
EVENTS = "events.jsonl"  # a sweep: one line per trial start/retry/end
OPTUNA_DB = "optuna.db"  # a sweep's Optuna study
ASHA_STATE = "asha-state.json"  # ASHA's rungs, read back only by --resume
LOCK = ".lock"  # held by the sweep's driver while it runs

# --- folders inside a sweep -------------------------------------------------------------
HISTORIES = "histories"
TRIAL_HISTORY = "{trial_id}.csv"  # inside histories/: one trial's epochs
BEST = "best"  # the best trial's model, evaluated
ENSEMBLE = "ensemble"  # the k best trials' models averaged, as one model.pt
MEMBERS = "members"  # inside ensemble/, while it is built: each candidate's model
FINAL = "final"  # --final-seeds: the best config retrained with other seeds
SEED_MODEL = "seed-{seed}"  # inside final/: the best config trained with that seed
BASELINE_SEED_MODEL = "baseline-seed-{seed}"  # inside final/: the source's baseline config
TUNE = "tune"  # Ray Tune's experiment (and a single-worker trial's checkpoints)
TUNE_MORE = "tune-{n}"  # the n-th Tune run of a sweep continued with more trials (n = 2, 3, ...)
TRAIN = "train"  # Ray Train's runs of DDP trials

# --- how a run or a trial ended ---------------------------------------------------------
RUNNING = "running"  # not yet
COMPLETED = "completed"  # every epoch it was given
STOPPED_BY_PATIENCE = "stopped_by_patience"  # early stopping: its monitored metric stopped improving
STOPPED_BY_SCHEDULER = "stopped_by_scheduler"  # ASHA judged it worse than its peers
DIVERGED = "diverged"  # the loss became NaN/inf
FAILED = "failed"  # an error, after the retries
INTERRUPTED = "interrupted"  # Ctrl-C before it ended; --resume continues it
IMPORTED = "imported"  # an earlier sweep's trial, given to the sampler by --warm-start; not run here

ENDED = (COMPLETED, STOPPED_BY_PATIENCE, STOPPED_BY_SCHEDULER, DIVERGED, FAILED, INTERRUPTED)
USABLE = (COMPLETED, STOPPED_BY_PATIENCE, STOPPED_BY_SCHEDULER)  # a model worth evaluating
LABELS = {COMPLETED: "completed", STOPPED_BY_PATIENCE: "stopped by patience",
          STOPPED_BY_SCHEDULER: "stopped by ASHA", DIVERGED: "diverged", FAILED: "failed",
          INTERRUPTED: "interrupted", RUNNING: "running", IMPORTED: "imported"}
# Results written before the names were made unmistakable use these:
OLD_NAMES = {"early_stopped": STOPPED_BY_PATIENCE, "stopped_early": STOPPED_BY_SCHEDULER}


def tune_runs(sweep_dir: str | Path) -> list[Path]:
    """A sweep's Tune runs in the order they ran: tune/, then each continuation's tune-2/, ...
    (Tune cannot add trials to a finished run: a continued sweep is a new run on one study)."""
    sweep_dir = Path(sweep_dir)
    first = [sweep_dir / TUNE] if (sweep_dir / TUNE).is_dir() else []
    more = [p for p in sweep_dir.glob(TUNE_MORE.format(n="*")) if p.name.rsplit("-", 1)[1].isdigit()]
    return first + sorted(more, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def status(name: str | None) -> str | None:
    """A status as it is called now, also when read from an old results folder."""
    return OLD_NAMES.get(name, name)


def ended_status(last_status: str | None) -> str | None:
    """How a trial ended, from the status of its last report: one still running there was
    stopped by the scheduler (ASHA) before its last epoch."""
    last = status(last_status)
    return STOPPED_BY_SCHEDULER if last == RUNNING else last


def upgrade_counts(summary: dict) -> dict:
    """An old sweep summary's per-status counts under today's names."""
    return {OLD_NAMES.get(k, k): v for k, v in summary.items()}


# --- writing without half-written files ---------------------------------------------------

def atomic_write(path: str | Path, write: Callable, binary: bool = False) -> Path:
    """Call `write(file)` on a hidden temporary file beside `path`, then rename it over
    `path`: readers see the old file or the new one, never a part of the new one. The data
    is on disk before the rename (fsync), so a crash or power cut right after cannot leave
    a renamed but empty file; on any failure (a full disk too) the temporary file is removed."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    # os.open applies the umask as open() does; mkstemp would make every result private (0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def save_json(obj, path: str | Path) -> Path:
    text = json.dumps(obj, indent=2, default=_json_default)  # fails before anything is written
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def _json_default(o):
    """Dataclasses, numpy/torch values and paths; anything else is an error, not a string."""
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None) -> Path:
    """Rows of dicts; the columns are every key, in first-seen order, unless given."""
    keys = columns or list(dict.fromkeys(k for r in rows for k in r))

    def write(f):
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return atomic_write(path, write)


# --- names and paths given on the command line ----------------------------------------------

NAME_RULE = "a plain folder name: not empty, no '/' or '\\', not starting with '.', no control characters"
MAX_NAME_BYTES = 255  # the longest file name Linux and macOS file systems take


def check_name(name: str, flag: str = "--name") -> str:
    """`name` as a run or sweep folder name inside the results folder, or a ConfigError
    naming it: a path ('../x', 'a/b') would write outside it, a leading '.' hides the folder
    from the report, and a control character breaks every line that prints it."""
    import unicodedata

    from .errors import ConfigError

    bad = (not name or name.startswith(".") or "/" in name or "\\" in name
           or any(unicodedata.category(c).startswith("C") for c in name)
           or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES)
    if bad:
        shown = ascii(name if len(name) <= 60 else name[:60] + "...")
        raise ConfigError(f"{flag} {shown} is not {NAME_RULE}, and at most {MAX_NAME_BYTES} bytes")
    return name


def check_results_dir(path: str | Path, flag: str = "--results-dir") -> Path:
    """A results folder that exists as something else (a file) fails here, before anything
    is created, instead of as a traceback once the run folder is made."""
    from .errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {ascii(str(path))} is a file, not a folder; "
                          "name a folder (it is created if missing)")
    return path


def open_no_follow(path: str | Path, mode: str = "a"):
    """A lock or log file opened for appending ('a') or reading and writing ('r+', created if
    missing), never through a symbolic link: a link planted at `path` would otherwise have its
    target (anything the user can write) truncated or appended to. Mode 0666 less the umask."""
    from .errors import ConfigError

    flags = {"a": os.O_WRONLY | os.O_APPEND, "r+": os.O_RDWR}[mode]
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError:
        if os.path.islink(path):  # ELOOP on Linux, EMLINK on some BSDs
            raise ConfigError(f"{path} is a symbolic link; refusing to write through it (remove it)") from None
        raise
    return os.fdopen(fd, mode)
