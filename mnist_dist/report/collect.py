"""Find and load every sweep and training run under a results folder.

Loading is defensive on purpose: a sweep that crashed half-way, or a file
truncated by a full disk, must cost one warning naming the folder and the
file, never the whole report. Each `Source` holds what could be read; the
parts that could not are None and the rest of the report copes with that.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout

PREDICTION_ARRAYS = ("probabilities", "labels", "predictions")


@dataclass
class Source:
    """One sweep (its best trial) or one single training run, as the report sees it."""
    kind: str  # "sweep" | "run"
    name: str  # folder name, unique within the results folder
    path: Path
    summary: dict  # summary.json or run.json
    config: dict | None = None  # config.json
    trials: pd.DataFrame | None = None  # sweeps: trials.csv, the trials this sweep ran
    imported: pd.DataFrame | None = None  # sweeps: trials.csv's rows a warm start gave as history
    history: pd.DataFrame | None = None  # per-epoch history of the best trial / the run
    evaluation: dict | None = None  # evaluation.json of the best model
    predictions: dict | None = None  # predictions.npz arrays of the best model
    study_path: Path | None = None  # sweeps: optuna.db

    @property
    def arch(self) -> str:
        return str(self.summary.get("arch", "?"))

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset", "?"))

    @property
    def label(self) -> str:
        return f"{self.arch} / {self.dataset} ({self.name})"

    @property
    def space(self) -> dict:
        """The sweep's search space (param -> {kind: values}), {} when unknown."""
        sweep = (self.config or {}).get("sweep") or {}
        return sweep.get("space") or {}

    @property
    def test_images(self) -> int | None:
        if self.evaluation and isinstance(self.evaluation.get("n"), int):
            return self.evaluation["n"]
        return None if self.predictions is None else len(self.predictions["labels"])


@dataclass
class Collection:
    sources: list[Source] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_json(path: Path, what: str, warnings: list[str], required: bool = False) -> dict | None:
    """A JSON object from `path`, or None plus a warning saying what is wrong with it."""
    if not path.is_file():
        if required:
            warnings.append(f"{path.parent}: {path.name} is missing, so no {what}")
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.append(f"{path.parent}: {path.name} is not valid JSON ({e}); {what} skipped")
        return None
    if not isinstance(obj, dict):
        warnings.append(f"{path.parent}: {path.name} holds a {type(obj).__name__}, not an object; "
                        f"{what} skipped")
        return None
    return obj


def read_csv(path: Path, what: str, warnings: list[str], needs: tuple[str, ...] = (),
             numeric: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """A table from `path` with the columns it `needs` (those in `numeric` holding numbers
    only), or None plus a warning saying what is wrong with it."""
    if not path.is_file():
        warnings.append(f"{path.parent}: {path.name} is missing, so no {what}")
        return None
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas raises several unrelated types for bad CSV
        warnings.append(f"{path.parent}: {path.name} is unreadable ({type(e).__name__}: {e}); no {what}")
        return None
    missing = [c for c in needs if c not in df.columns]
    if missing:
        warnings.append(f"{path.parent}: {path.name} has no column {', '.join(missing)}; no {what}")
        return None
    wrong = [c for c in numeric if pd.to_numeric(df[c], errors="coerce").isna().any()]
    if wrong:
        warnings.append(f"{path.parent}: {path.name} has values that are not numbers in {', '.join(wrong)}; "
                        f"no {what}")
        return None
    return df


def read_predictions(path: Path, warnings: list[str]) -> dict | None:
    if not path.is_file():
        warnings.append(f"{path.parent}: predictions.npz is missing, so no confusion images or "
                        "statistical comparison for this model")
        return None
    try:
        with np.load(path) as z:
            arrays = {k: np.asarray(z[k]) for k in PREDICTION_ARRAYS}
    except Exception as e:  # truncated zip, missing key, not an npz at all
        warnings.append(f"{path}: unreadable predictions ({type(e).__name__}: {e})")
        return None
    n = len(arrays["labels"])
    if len(arrays["predictions"]) != n or arrays["probabilities"].shape[0] != n:
        warnings.append(f"{path}: probabilities, labels and predictions differ in length; ignored")
        return None
    return arrays


def load_sweep(folder: Path, summary: dict, warnings: list[str]) -> Source:
    src = Source("sweep", folder.name, folder, summary)
    src.config = read_json(folder / layout.CONFIG_JSON, "search-space checks", warnings, required=True)
    src.trials = read_csv(folder / layout.TRIALS_CSV, "per-trial plots", warnings, needs=("status",))
    if src.trials is not None and "status" in src.trials.columns:  # old folders: today's names
        src.trials["status"] = src.trials["status"].map(layout.status)
        src.trials, src.imported = split_imported(src.trials)
    if summary.get("error"):
        warnings.append(f"{folder}: {summary['error']}")
    best = summary.get("best_trial")
    if best:
        src.history = read_csv(folder / layout.HISTORIES / layout.TRIAL_HISTORY.format(trial_id=best), "learning curves", warnings,
                               needs=("epoch",), numeric=("epoch",))
        src.evaluation = read_json(folder / layout.BEST / layout.EVALUATION, "test evaluation", warnings,
                                   required=True)
        src.predictions = read_predictions(folder / layout.BEST / layout.PREDICTIONS, warnings)
    if (folder / layout.OPTUNA_DB).is_file():
        src.study_path = optuna_db(folder / layout.OPTUNA_DB, warnings)
    return src


def split_imported(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """trials.csv as (the trials this sweep ran, the rows a history warm start copied from an
    earlier sweep, None when there are none): imported rows were never run here, have no
    model, and count as none of this sweep's trials."""
    imported = trials["status"] == layout.IMPORTED
    if not imported.any():
        return trials, None
    return trials[~imported].reset_index(drop=True), trials[imported].reset_index(drop=True)


def read_only_sqlite_url(path: Path) -> str:
    """An SQLAlchemy URL that opens the SQLite file `path` read-only: the report never
    writes to a database, which Optuna would otherwise do to one it did not make (it
    creates its tables in any SQLite file it is given)."""
    from urllib.parse import quote

    return f"sqlite:///file:{quote(str(Path(path).resolve()))}?mode=ro&uri=true"


def optuna_db(path: Path, warnings: list[str]) -> Path | None:
    """`path` if it is an SQLite file holding Optuna's tables, else None and a warning."""
    import sqlite3
    from urllib.parse import quote

    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:  # not a database at all, or a damaged one
        tables, reason = set(), f"{type(e).__name__}: {e}"
    else:
        reason = "no Optuna tables in it"
    if {"studies", "trials"} <= tables:
        return path
    warnings.append(f"{path.parent}: {path.name} is not an Optuna study database ({reason}); "
                    "no hyperparameter importances")
    return None


def load_run(folder: Path, summary: dict, warnings: list[str]) -> Source:
    src = Source("run", folder.name, folder, summary)
    src.config = read_json(folder / layout.CONFIG_JSON, "training config", warnings)
    if summary.get("error"):
        warnings.append(f"{folder}: {summary['error']}")
        return src
    src.history = read_csv(folder / layout.HISTORY_CSV, "learning curves", warnings, needs=("epoch",),
                           numeric=("epoch",))
    src.evaluation = read_json(folder / layout.EVALUATION, "test evaluation", warnings, required=True)
    src.predictions = read_predictions(folder / layout.PREDICTIONS, warnings)
    return src


def load_folder(folder: Path, warnings: list[str]) -> Source | None:
    for filename, kind, loader in ((layout.SUMMARY_JSON, "sweep", load_sweep), (layout.RUN_JSON, "run", load_run)):
        if not (folder / filename).exists():
            continue
        summary = read_json(folder / filename, f"the whole {kind}", warnings)
        if summary is None:
            return None
        if summary.get("kind") != kind or not summary.get("arch") or not summary.get("dataset"):
            warnings.append(f"{folder}: {filename} is not a {kind} summary (needs kind={kind!r}, "
                            "arch and dataset); skipped")
            return None
        return loader(folder, clean(summary), warnings)
    if (folder / layout.RESUME).is_file():
        warnings.append(f"{folder}: an interrupted training run ({layout.RESUME}, no {layout.RUN_JSON} yet); "
                        f"skipped. Continue it with `mnist-dist train --resume {folder}`")
        return None
    warnings.append(f"{folder}: neither summary.json (sweep) nor run.json (training run); an unfinished "
                    "or crashed run? skipped")
    return None


def clean(summary: dict) -> dict:
    """Non-finite numbers (a diverged run's NaN loss) become None, so tables show a dash;
    per-status counts of old sweeps take today's names."""
    summary = layout.upgrade_counts(summary)
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}


def discover(results_dir: Path, skip: tuple[str, ...] = ("report",)) -> Collection:
    """Every sweep and run folder directly under `results_dir`, sorted by name."""
    out = Collection()
    for folder in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        if folder.name in skip or folder.name.startswith("."):
            continue
        src = load_folder(folder, out.warnings)
        if src is not None:
            out.sources.append(src)
    return out
