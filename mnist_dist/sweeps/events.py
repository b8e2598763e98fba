"""A line of JSON per finished trial in results/<sweep>/events.jsonl: progress that
tools and tests can follow without parsing Tune's console table."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ray.tune import Callback

from .trial import ended_status


class EventLog(Callback):
    def __init__(self, path: Path):
        self.path = Path(path)

    def _write(self, event: str, trial, **extra) -> None:
        last = trial.last_result or {}
        status = ended_status(last.get("status")) if event == "complete" else last.get("status")
        row = {"time": time.time(), "event": event, "trial_id": trial.trial_id,
               "status": status, "epoch": last.get("epoch"),
               "best_val_acc": last.get("best_val_acc"), **extra}
        with open(self.path, "a") as f:  # one short line: appends don't interleave
            f.write(json.dumps(row) + "\n")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._write("start", trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write("complete", trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write("error", trial)
