"""ASHA that survives `--resume`.

Tune restores the searcher on `Tuner.restore` but not the scheduler: a resumed ASHA
starts with empty rungs and stops nothing until they refill, so every trial after an
interruption would run its full budget. This subclass writes its state (the rungs'
recorded values) beside the sweep after every result and reloads it the first time a
trial is added in a resumed run.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from ..layout import atomic_write


class ResumableASHA(ASHAScheduler):
    def __init__(self, state_file: str | Path, **kw):
        super().__init__(**kw)
        self.state_file = str(state_file)
        self._loaded = False

    def on_trial_add(self, tune_controller, trial):
        if not self._loaded:
            self._loaded = True
            if os.path.exists(self.state_file):  # a resumed sweep: bring the rungs back
                with open(self.state_file, "rb") as f:
                    state = pickle.load(f)
                self._brackets, self._num_stopped = state["brackets"], state["num_stopped"]
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        self._persist()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        self._persist()

    def _persist(self) -> None:
        state = {"brackets": self._brackets, "num_stopped": self._num_stopped}
        atomic_write(self.state_file, lambda f: pickle.dump(state, f), binary=True)  # never half a state
