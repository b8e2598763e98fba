"""`--resume --trials N`: a sweep grown with more trials, in a new Tune run on the same Optuna
study, its outputs recomputed over every trial."""
from __future__ import annotations

import json
from dataclasses import replace

from .conftest import read_csv, smoke_options, study


def test_a_smoke_sweep_continued_to_4_has_4_trials_in_every_output(ray_session, tmp_path):
    from mnist_dist.tuning.driver.runner import run_sweep
    from mnist_dist.tuning.spec import load_spec, saved_spec

    run_sweep(load_spec("lenet5"), smoke_options(tmp_path, "c", workers=1))
    sweep = tmp_path / "c"
    first = read_csv(sweep / "trials.csv")
    # what `--resume --trials 4` runs: the saved sweep, with 4 trials
    grown = replace(saved_spec("lenet5", sweep / "config.json"), trials=4)
    summary = run_sweep(grown, smoke_options(tmp_path, "c", workers=1, resume=True))

    rows = read_csv(sweep / "trials.csv")
    assert len(rows) == 4 and [r["trial_id"] for r in rows[:2]] == [r["trial_id"] for r in first]
    assert {r["status"] for r in rows} == {"completed"}
    assert summary["trials_run"] == 4 and summary["completed"] == 4 and not summary["incomplete"]
    assert sorted(p.stem for p in (sweep / "histories").glob("*.csv")) == sorted(r["trial_id"] for r in rows)
    best = max(rows, key=lambda r: (float(r["best_val_acc"]), -float(r["best_val_loss"])))
    assert summary["best_trial"] == best["trial_id"]
    assert set(summary["ensemble"]["members"]) <= {r["trial_id"] for r in rows}
    trials = study(sweep).get_trials()  # one study, the 4 trials in order, each told its end
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state.is_finished() for t in trials)
    ids = [t.user_attrs["tune_trial_id"] for t in trials]
    assert ids[:2] == [r["trial_id"] for r in first] and set(ids) == {r["trial_id"] for r in rows}
    saved = json.loads((sweep / "config.json").read_text())
    assert saved["sweep"]["trials"] == 4 and saved["tune_runs"] == {"tune": 2, "tune-2": 2}

    # resumed again, the grown sweep is finished: nothing runs, nothing is lost
    again = run_sweep(saved_spec("lenet5", sweep / "config.json"), smoke_options(tmp_path, "c", workers=1, resume=True))
    assert again["trials_run"] == 4 and not (sweep / "tune-3").exists()
    assert len(study(sweep).get_trials()) == 4


def test_trials_csv_lists_trials_in_the_order_tune_created_them(tmp_path):
    """Trials first seen in the same step keep Tune's order, whichever process started first;
    an earlier run's trials come before a later run's."""
    from mnist_dist.tuning.outputs.results import in_start_order

    events = tmp_path / "events.jsonl"
    lines = [{"event": "start", "trial_id": "b", "time": 10.0, "queued": 5.0, "order": 1},
             {"event": "start", "trial_id": "a", "time": 11.0, "queued": 5.0, "order": 0},
             {"event": "start", "trial_id": "c", "time": 2.0, "queued": 1.0, "order": 3}]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    rows = [{"trial_id": t} for t in ("d", "b", "a", "c")]  # as Tune might list them
    assert [r["trial_id"] for r in in_start_order(rows, events)] == ["c", "a", "b", "d"]
