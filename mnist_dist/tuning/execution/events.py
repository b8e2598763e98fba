"""A line of JSON per finished trial in results/<sweep>/events.jsonl: progress that
tools and tests can follow without parsing Tune's console table."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ray.tune import Callback

from ...layout import ended_status, open_no_follow


class EventLog(Callback):
    def __init__(self, path: Path):
        self.path = Path(path)
        self._seen: dict[str, float] = {}  # trial id -> when the driver first saw it

    def on_step_end(self, iteration, trials, **info):
        # Tune calls a trial started once its process is up; the trial was created (and its
        # process asked for) earlier. Its start event carries that time, so a trial's wall
        # time in trials.csv includes the start-up it cost.
        # Tune lists trials in the order it created them (its searcher's order): trials first
        # seen in one step keep that order in trials.csv, whichever process starts first.
        now = time.time()
        for order, trial in enumerate(trials):
            self._seen.setdefault(trial.trial_id, (now, order))

    def _write(self, event: str, trial, **extra) -> None:
        last = trial.last_result or {}
        status = ended_status(last.get("status")) if event == "complete" else last.get("status")
        row = {"time": time.time(), "event": event, "trial_id": trial.trial_id,
               "status": status, "epoch": last.get("epoch"),
               "best_val_acc": last.get("best_val_acc"), **extra}
        with open_no_follow(self.path, "a") as f:  # one short line: appends don't interleave
            f.write(json.dumps(row) + "\n")

    def on_trial_start(self, iteration, trials, trial, **info):
        seen = self._seen.pop(trial.trial_id, None)
        queued, order = seen if isinstance(seen, tuple) else (seen, None)  # a float: pickled by an earlier version
        self._write("start", trial, queued=queued, order=order)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write("complete", trial)
        self._seen.pop(trial.trial_id, None)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._write("retry", trial)  # failed; Tune restarts it from its last checkpoint

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write("error", trial)
        self._seen.pop(trial.trial_id, None)


def read_events(path: Path) -> list[dict]:
    """Every event so far; a line cut short by a crash is skipped."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def completed_trials(path: Path) -> set[str]:
    return {e["trial_id"] for e in read_events(path) if e["event"] == "complete"}


def ended_trials(path: Path) -> set[str]:
    """Trials that completed or failed for good; any other trial Tune reports was cut short
    by Ctrl-C (Tune keeps it, in its saved state, for --resume)."""
    return {e["trial_id"] for e in read_events(path) if e["event"] in ("complete", "error")}


def trial_wall_times(path: Path) -> dict[str, float]:
    """Seconds from each trial's start to its end, summed over restarts: the wall time the
    trial cost the sweep, counted from when the driver first saw the trial, so the start-up
    of its process is included."""
    walls, started = {}, {}
    for e in read_events(path):
        tid = e["trial_id"]
        if e["event"] == "start":  # a restart after a retry keeps counting from the first start
            started.setdefault(tid, min(e["time"], e.get("queued") or e["time"]))
        elif e["event"] in ("complete", "error") and tid in started:
            walls[tid] = walls.get(tid, 0.0) + e["time"] - started.pop(tid)
    return walls
