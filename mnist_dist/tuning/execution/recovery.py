"""What an interrupted or killed driver left, read once when a sweep resumes, and each trial's fate.

A driver stopped by Ctrl-C leaves everything in order. One killed hard (kill -9, out of
memory, a lost head node) leaves:
- Tune's snapshot of the sweep, up to 10 s old, and possibly a file of it cut short mid-copy;
- the event log (events.jsonl), each trial's end written as it happened;
- the Optuna study, holding every value reported, the ends Optuna was told, and trials asked
  for that Tune's snapshot never recorded (left RUNNING);
- each trial's checkpoints, one per epoch.

`--resume` reads all of it here, once, before Tune restores the sweep (`read`); the parts of
the sweep act on the result and read none of those files themselves:
- a trial the event log says had ended stays ended, whatever the snapshot restored: its
  trainable replays its last checkpoint instead of training on (`Recovery.ended`);
- Optuna is not told again the end of a trial it already holds (`Recovery.told`), and its
  RUNNING trials go to the next Tune trials, so the two stay one to one (`Recovery.running`);
- trials that ended after the last snapshot are rebuilt from their checkpoints for
  trials.csv (`forgotten_trials`).
A new sweep has nothing to recover: `NOTHING`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ... import layout
from .. import internals
from .events import completed_trials
from .snapshot import repair


@dataclass(frozen=True)
class Recovery:
    ended: frozenset[str] = frozenset()  # Tune trial ids whose end the event log holds
    told: frozenset[str] = frozenset()  # Tune trial ids whose end the Optuna study holds
    running: tuple[int, ...] = ()  # storage ids of Optuna trials left RUNNING
    repaired: tuple[str, ...] = ()  # snapshot files replaced by Ray's whole staged copies


NOTHING = Recovery()
_current = [NOTHING]  # this driver's: set by read(), used by the searcher


def current() -> Recovery:
    return _current[0]


def start_fresh() -> Recovery:
    """A new sweep: nothing to recover."""
    _current[0] = NOTHING
    return NOTHING


def read(sweep_dir: Path, storage, study_name: str, ray_temp: Path | None) -> Recovery:
    """Read what the stopped driver left in `sweep_dir` and its Optuna `storage` (repairing
    the snapshot of its latest Tune run on the way); the result is also this driver's `current()`."""
    runs = layout.tune_runs(sweep_dir)
    repaired = repair(runs[-1] if runs else sweep_dir / layout.TUNE, ray_temp)
    told, running = _study_state(storage, study_name)
    recovery = Recovery(ended=frozenset(completed_trials(sweep_dir / layout.EVENTS)), told=told,
                        running=running, repaired=tuple(repaired))
    _current[0] = recovery
    return recovery


def _study_state(storage, study_name: str) -> tuple[frozenset[str], tuple[int, ...]]:
    """(Tune trials whose end Optuna holds, storage ids of Optuna trials left RUNNING)."""
    import optuna
    from optuna.trial import TrialState

    if storage is None:
        return frozenset(), ()
    try:
        trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # no such study: nothing was asked yet
        return frozenset(), ()
    told = frozenset(t.user_attrs["tune_trial_id"] for t in trials
                     if t.state.is_finished() and "tune_trial_id" in t.user_attrs)
    running = tuple(i for t in trials if t.state == TrialState.RUNNING
                    and (i := internals.optuna_trial_id(t)) is not None)
    return told, running


def forgotten_trials(grid, sweep_dir: Path, searched) -> list:
    """Trials that ended before a hard-killed driver's last snapshot recorded them: Tune's
    resumed run does not know them, and their result files may never have been written, but
    the event log says they ended (Optuna was told how) and their last checkpoint holds
    every epoch's metrics. Rebuilt from that, trials.csv keeps them."""
    import pandas as pd
    from ray import tune

    from ...models.checkpoint import load_payload
    from ...training.reporting import read_checkpoint
    from ..trials.reused import newest_checkpoint

    known = {(r.metrics or {}).get("trial_id") for r in grid}
    found = []
    for trial_id in sorted(completed_trials(sweep_dir / layout.EVENTS) - known):
        folders = [f for run in layout.tune_runs(sweep_dir) for f in internals.trial_folders(run, trial_id)]
        newest = newest_checkpoint(folders[-1]) if folders else None
        if newest is None:
            continue
        history = read_checkpoint(newest, best_weights=False)["state"]["history"]
        config = load_payload(newest / layout.MODEL)["config"]
        metrics = {**history[-1], "trial_id": trial_id, "config": {k: config[k] for k in searched}}
        found.append(tune.Result(metrics=metrics, checkpoint=tune.Checkpoint(str(newest)), error=None,
                                 path=str(newest.parent), metrics_dataframe=pd.DataFrame(history)))
    return found
