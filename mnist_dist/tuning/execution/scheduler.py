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
import json
import os
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from ...layout import write_text
from .. import internals

STATE_VERSION = 1


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs are saved as JSON beside the sweep and read back only on `--resume`."""

    # `--resume` unpickles the scheduler a sweep started with (Tune's tuner.pkl), without
    # __init__: the runner says through the class that this run is a resume
    resuming = False
    compare_within: str | None = None  # absent from a scheduler pickled before it existed
    kind_brackets: dict | None = None
    empty_brackets: list | None = None
    state_loaded = False

    def __init__(self, state_file: str | Path, compare_within: str | None = None, **kw):
        super().__init__(**kw)
        self.state_file = str(state_file)
        self.compare_within = compare_within if internals.on("asha-rungs") else None
        self.empty_brackets = copy.deepcopy(internals.asha_brackets(self))  # the rungs a new kind of trial starts from
        self.kind_brackets = {}  # compare_within's value -> that kind's brackets
        self.state_loaded = False

    def on_trial_add(self, tune_controller, trial):
        if not self.state_loaded:
            self.state_loaded = True
            if self.resuming and os.path.exists(self.state_file):  # bring the rungs back
                self.load_state()
        super().on_trial_add(tune_controller, trial)  # checks metric and mode, picks a bracket
        if self.compare_within:  # the same bracket, from the trial's own kind
            index = internals.asha_brackets(self).index(internals.asha_bracket_of(self, trial.trial_id))
            kind = repr((trial.config or {}).get(self.compare_within))
            internals.set_asha_bracket(self, trial.trial_id, self.brackets_of(kind)[index])

    def brackets_of(self, kind: str) -> list:
        if self.kind_brackets is None:
            self.kind_brackets = {}
        return self.kind_brackets.setdefault(kind, copy.deepcopy(self.empty_brackets or []))

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        self.save_state()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        self.save_state()

    def save_state(self) -> None:
        state = internals.asha_rungs(self)
        if state is None:
            return
        groups = {kind: [internals.rungs_of(b) for b in brackets] for kind, brackets in (self.kind_brackets or {}).items()}
        text = json.dumps({"version": STATE_VERSION, **state, "groups": groups})
        write_text(self.state_file, text)  # atomically: never half a state

    def load_state(self) -> None:
        """The saved rungs; a file that is not this project's state is ignored with a warning
        (ASHA then starts with empty rungs, as a fresh sweep does)."""
        try:
            state = json.loads(Path(self.state_file).read_text())
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            internals.set_asha_rungs(self, state["brackets"], int(state["num_stopped"]))
            for kind, saved in state.get("groups", {}).items():
                for bracket, rungs in zip(self.brackets_of(kind), saved):
                    internals.fill_rungs(bracket, rungs)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"warning: {self.state_file}: not a readable ASHA state ({e}); its rungs start empty", flush=True)
