"""OptunaSearch that tells Optuna what really happened to each trial.

Ray's OptunaSearch records a trial that ASHA stopped after 1 of 10 epochs as
COMPLETE with its 1-epoch accuracy, so TPE learns from values measured at a
tenth of the budget as if they were final. Here such a trial is told as
PRUNED: TPE then ranks it by its intermediate values (reported every epoch)
below every completed trial, which is what a stopped trial is. Diverged trials
stay COMPLETE with their (bad) value so TPE avoids their region, and every
Optuna trial carries its Tune trial id and final status as user attributes.
"""
from __future__ import annotations

import logging

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ... import layout
from ...layout import ended_status
from .. import internals
from . import recovery

log = logging.getLogger(__name__)


class BudgetAwareOptunaSearch(OptunaSearch):
    """With the fence's `optuna-search` hook off, this is Ray's OptunaSearch unchanged. After a
    resume it acts on what recovery.read() found, and asks the storage nothing itself."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget_aware = internals.on("optuna-search") and internals.on("optuna-ids")

    def suggest(self, trial_id: str):
        if not self.budget_aware:
            return super().suggest(trial_id)
        trials = internals.searcher_trials(self)
        if trial_id not in trials and (orphan := self.orphaned_trial()) is not None:
            trials[trial_id] = orphan
        config = super().suggest(trial_id)
        if config is not None:
            trials[trial_id].set_user_attr("tune_trial_id", trial_id)
        return config

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        # The pickled sampler's random state predates every trial asked after the last
        # snapshot; left as is, it would propose those same configs again.
        if self.budget_aware:
            internals.searcher_study(self).sampler.reseed_rng()

    def orphaned_trial(self):
        """An Optuna trial a killed driver left RUNNING (asked for, never in Tune's snapshot):
        the next Tune trial takes it, and the define-by-run space returns the values already
        stored in it."""
        mine = {internals.optuna_trial_id(t) for t in internals.searcher_trials(self).values()}
        for storage_id in recovery.current().running:
            if storage_id not in mine:
                return internals.optuna_trial(internals.searcher_study(self), storage_id)
        return None

    def told_already(self, trial_id: str) -> bool:
        """Optuna holds this trial's end although Tune runs it again: Tune's snapshot is up to
        10 s old, and a resumed sweep replays trials that ended after it."""
        return trial_id in recovery.current().told

    def on_trial_result(self, trial_id: str, result: dict):
        if not self.budget_aware or not self.told_already(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        ot_trial = internals.searcher_trials(self).get(trial_id) if self.budget_aware else None
        completed = internals.searcher_completed(self)
        if ot_trial is None or trial_id in completed:
            return super().on_trial_complete(trial_id, result, error)
        if self.told_already(trial_id):
            completed.add(trial_id)
            return None
        status = layout.FAILED if error else ended_status((result or {}).get("status", layout.FAILED))
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        ot_trial.set_user_attr("status", status)
        if status != layout.STOPPED_BY_SCHEDULER:
            return super().on_trial_complete(trial_id, result, error)
        # Tune passes the result that got the trial stopped here, not to on_trial_result:
        # record it as the last intermediate value, which TPE ranks pruned trials by (a study
        # of several objectives takes none: Optuna leaves its pruned trials out of the front)
        step = result.get("training_iteration")
        value = None if isinstance(self.metric, list) else result.get(self.metric)
        if step is not None and value is not None:
            ot_trial.report(value, step)
        internals.searcher_study(self).tell(ot_trial, state=TrialState.PRUNED)
        completed.add(trial_id)
