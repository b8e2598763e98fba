"""ASHA that survives `--resume`, and can rank trials only against trials of their own kind.

Tune restores the searcher on `Tuner.restore` but not the scheduler: a resumed ASHA
starts with empty rungs and stops nothing until they refill, so every trial after an
interruption would run its full budget. This subclass writes its state (the rungs'
recorded values) beside the sweep after every result and reloads it the first time a
trial is added in a resumed run.

`compare_within` (the YAML's `scheduler.compare_within`, a searched parameter such as
`lr_schedule`) gives each value of that parameter rungs of its own. A one-cycle or cosine
schedule keeps its rate high for most of the run and gains its accuracy as the rate falls:
at any rung before the end it trails a constant-rate trial it would overtake (cnn_bn's
one-cycle recipe, 99.65 +- 0.08% over 20 epochs by hand, was stopped at its first rung,
epoch 8 of 30, on an H200). Within one schedule kind, early accuracy ranks trials fairly.
"""
from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from ...layout import atomic_write


class ResumableASHA(ASHAScheduler):
    # `--resume` unpickles the scheduler a sweep started with (Tune's tuner.pkl), without
    # __init__: one from before compare_within existed lacks these two
    compare_within: str | None = None
    _groups: dict | None = None

    def __init__(self, state_file: str | Path, compare_within: str | None = None, **kw):
        super().__init__(**kw)
        self.state_file = str(state_file)
        self.compare_within = compare_within
        self._empty = copy.deepcopy(self._brackets)  # the rungs a new kind of trial starts from
        self._groups = {}  # compare_within's value -> that kind's brackets
        self._loaded = False

    def on_trial_add(self, tune_controller, trial):
        if not self._loaded:
            self._loaded = True
            if os.path.exists(self.state_file):  # a resumed sweep: bring the rungs back
                with open(self.state_file, "rb") as f:
                    state = pickle.load(f)
                self._brackets, self._num_stopped = state["brackets"], state["num_stopped"]
                self._groups = state.get("groups", {})  # none in a state written before compare_within
        super().on_trial_add(tune_controller, trial)  # checks metric and mode, picks a bracket
        if self.compare_within:  # the same bracket, from the trial's own kind
            index = self._brackets.index(self._trial_info[trial.trial_id])
            kind = repr((trial.config or {}).get(self.compare_within))
            self._trial_info[trial.trial_id] = self._groups.setdefault(kind, copy.deepcopy(self._empty))[index]

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        self._persist()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        self._persist()

    def _persist(self) -> None:
        state = {"brackets": self._brackets, "groups": self._groups or {}, "num_stopped": self._num_stopped}
        atomic_write(self.state_file, lambda f: pickle.dump(state, f), binary=True)  # never half a state
