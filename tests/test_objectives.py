"""`objectives:` several objectives at once (accuracy against training time, say): checked as
every sweep key is, searched by Optuna's multi-objective study, ASHA cutting on the first, and
the Pareto front of the finished trials in summary.json."""
from __future__ import annotations

import math

import pytest

from mnist_dist.tuning.outputs.pareto import dominates, pareto_front
from mnist_dist.tuning.spec import load_spec

from .badinput import run_bad
from .conftest import read_csv, smoke_options, study, write_spec

LR = {"lr": {"loguniform": [1.0e-4, 1.0e-2]}}
TWO = ["best_val_acc", "train_time_s"]


def test_objectives_set_the_metric_and_each_mode(tmp_path):
    spec = load_spec("mlp", write_spec(tmp_path / "s.yaml", objectives=["best_val_loss", "train_time_s"], space=LR))
    assert (spec.metric, spec.mode) == ("best_val_loss", "min")
    assert spec.directions() == [("best_val_loss", "min"), ("train_time_s", "min")]
    assert load_spec("mlp").directions() == [("best_val_acc", "max")]


@pytest.mark.parametrize("objectives, extra, says", [
    (["best_val_acc", "latency"], {}, "objectives: 'latency' is not something trials report"),
    (["best_val_acc", "train_time"], {}, "did you mean 'train_time_s'"),
    (["best_val_acc"], {}, "a list of two or more"),
    (["best_val_acc", "best_val_acc"], {}, "a list of two or more"),
    ("best_val_acc", {}, "a list of two or more"),
    (TWO, {"metric": "val_loss", "mode": "min"}, "the first objective sets the metric"),
    (TWO, {"sampler": "cmaes"}, "CMA-ES searches one objective"),
])
def test_bad_objectives_are_one_line(tmp_path, capsys, objectives, extra, says):
    cfg = write_spec(tmp_path / "s.yaml", objectives=objectives, space=LR, **extra)
    err = run_bad(capsys, ["sweep", "mlp", "--config", cfg, "--results-dir", tmp_path / "results"],
                  names=(str(cfg), says), root=tmp_path)
    assert len(err.strip().splitlines()) == 1, err


def test_the_front_keeps_exactly_the_undominated_finished_trials():
    rows = [
        {"trial_id": "a", "status": "completed", "best_val_acc": 0.99, "train_time_s": 100.0},
        {"trial_id": "b", "status": "completed", "best_val_acc": 0.98, "train_time_s": 50.0},
        {"trial_id": "c", "status": "completed", "best_val_acc": 0.97, "train_time_s": 60.0},  # b beats it
        {"trial_id": "d", "status": "stopped_by_scheduler", "best_val_acc": 0.90, "train_time_s": 5.0},  # cut
        {"trial_id": "e", "status": "stopped_by_patience", "best_val_acc": 0.95, "train_time_s": 20.0},
        {"trial_id": "f", "status": "completed", "best_val_acc": math.nan, "train_time_s": 1.0},
        {"trial_id": "g", "status": "failed", "best_val_acc": None, "train_time_s": 0.0},
    ]
    front = pareto_front(rows, [("best_val_acc", "max"), ("train_time_s", "min")])
    assert [p["trial_id"] for p in front] == ["a", "b", "e"]
    assert front[0] == {"trial_id": "a", "best_val_acc": 0.99, "train_time_s": 100.0}
    assert dominates([1, 1], [1, 2]) and not dominates([1, 2], [2, 1]) and not dominates([1, 1], [1, 1])


def by_hand(rows: list[dict]) -> set[str]:
    """The front from trials.csv, the definition applied pair by pair."""
    done = [r for r in rows if r["status"] in ("completed", "stopped_by_patience")]
    acc = {r["trial_id"]: float(r["best_val_acc"]) for r in done}
    time = {r["trial_id"]: float(r["train_time_s"]) for r in done}
    return {a for a in acc if not any(acc[b] >= acc[a] and time[b] <= time[a] and (acc[b], time[b]) != (acc[a], time[a])
                                      for b in acc)}


def test_a_sweep_of_two_objectives_gives_the_front_of_its_trials(ray_session, tmp_path):
    from mnist_dist.tuning.driver.runner import run_sweep

    cfg = write_spec(tmp_path / "s.yaml", objectives=TWO, trials=3, scheduler={"type": "none"},
                     fixed={"epochs": 1, "train_limit": 1000, "test_limit": 500},
                     space={"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "batch_size": {"choice": [32, 64, 256]}})
    summary = run_sweep(load_spec("mlp", cfg), smoke_options(tmp_path, "o", workers=1, smoke_test=False))
    rows = read_csv(tmp_path / "o" / "trials.csv")
    assert len(rows) == 3 and summary["objectives"] == [{"metric": "best_val_acc", "mode": "max"},
                                                        {"metric": "train_time_s", "mode": "min"}]
    assert {p["trial_id"] for p in summary["pareto_front"]} == by_hand(rows)
    assert summary["best_trial"] == max(rows, key=lambda r: float(r["best_val_acc"]))["trial_id"]
    trials = study(tmp_path / "o").get_trials()
    assert len(trials) == 3 and all(len(t.values) == 2 for t in trials)
    assert {round(t.values[0], 6) for t in trials} == {round(float(r["best_val_acc"]), 6) for r in rows}


def test_the_console_gives_the_front_and_names_scheduler_and_warm_start():
    from pathlib import Path as P

    from mnist_dist.tuning.driver.console import final_message
    from mnist_dist.tuning.outputs.summary import SweepSummary

    summary = SweepSummary(name="s", metric="best_val_acc", mode="max", trials_run=2, scheduler="none",
                           warm_start={"source": "old", "kind": "history", "trials": 3, "skipped_values": 0},
                           objectives=[{"metric": "best_val_acc", "mode": "max"},
                                       {"metric": "train_time_s", "mode": "min"}],
                           pareto_front=[{"trial_id": "a", "best_val_acc": 0.99, "train_time_s": 12.5}])
    lines = final_message(summary, [], P("/r/s"), "").splitlines()
    assert lines[0].endswith("sampler tpe, scheduler none, warm-started from old")
    i = lines.index("Pareto front (best_val_acc up, train_time_s down; finished trials only):")
    assert lines[i + 1] == "  a  best_val_acc 0.99  train_time_s 12.5"
