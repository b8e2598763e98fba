"""`--warm-start results/OTHER`: an earlier sweep's trials as the new study's history (same
architecture, data and metric) or its best configs as starting points (anything else);
values outside the new space skipped and counted; imported trials marked once."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from mnist_dist.config import ConfigError
from mnist_dist.tuning import warmstart
from mnist_dist.tuning.spec import baseline_point, load_spec

from .badinput import run_bad
from .conftest import read_csv, smoke_options, study

ROWS = [  # an earlier sweep's trials.csv, as `mnist-dist sweep` writes it
    {"trial_id": "a1", "status": "completed", "config/optimizer": "adam", "config/lr": "0.001",
     "config/weight_decay": "0.0", "config/batch_size": "64", "config/augment": "off", "best_val_acc": "0.97",
     "epochs_run": "15"},
    {"trial_id": "a2", "status": "stopped_by_scheduler", "config/optimizer": "sgd", "config/lr": "0.01",
     "config/momentum": "0.9", "config/nesterov": "True", "config/batch_size": "128", "best_val_acc": "0.95",
     "epochs_run": "4"},
    {"trial_id": "a3", "status": "completed", "config/optimizer": "adamw", "config/lr": "0.5",  # lr outside
     "config/batch_size": "48", "config/augment": "strong", "best_val_acc": "0.99", "epochs_run": "15"},
    {"trial_id": "a4", "status": "failed", "config/optimizer": "adam", "config/lr": "0.002", "best_val_acc": "",
     "epochs_run": "0"},
]


def source_sweep(folder: Path, arch: str, rows=ROWS, dataset: str = "mnist") -> Path:
    import csv

    folder.mkdir(parents=True)
    spec = load_spec(arch, overrides={"dataset": dataset})
    (folder / "config.json").write_text(json.dumps({"sweep": spec.to_dict()}))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(folder / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return folder


def test_a_sweep_of_the_same_arch_and_data_becomes_history_with_outside_values_skipped(tmp_path):
    ws = warmstart.read(source_sweep(tmp_path / "old", "mlp"), load_spec("mlp"))
    assert ws.kind == warmstart.HISTORY
    by_id = {t["trial_id"]: t for t in ws.trials}
    assert set(by_id) == {"a1", "a2", "a3"}  # the failed one has no value
    assert by_id["a1"]["params"] == {"optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "batch_size": 64,
                                     "augment": "off"}
    assert by_id["a2"]["params"]["nesterov"] is True and by_id["a2"]["state"] == "pruned"
    assert by_id["a3"]["params"] == {"optimizer": "adamw"}  # lr 0.5, batch 48, augment strong: not in mlp's space
    assert ws.skipped_values == 3 and ws.skipped_trials == 1
    assert "3 trials as the sampler's history; 3 parameter values outside this sweep's space skipped" in ws.describe()


def test_another_architecture_gives_its_best_configs_as_starting_points(tmp_path):
    ws = warmstart.read(source_sweep(tmp_path / "old", "lenet5"), load_spec("cnn_regularized"))
    assert ws.kind == warmstart.POINTS
    assert [t["trial_id"] for t in ws.trials] == ["a3", "a1", "a2"]  # best first
    assert ws.points()[0] == {"optimizer": "adamw", "augment": "strong"}  # cnn_regularized can draw strong
    assert "starting points" in ws.describe()


def test_another_dataset_does_not_compare_either(tmp_path):
    ws = warmstart.read(source_sweep(tmp_path / "old", "mlp", dataset="fashion-mnist"), load_spec("mlp"))
    assert ws.kind == warmstart.POINTS


def test_history_goes_into_the_study_the_sampler_then_sees(tmp_path):
    spec = load_spec("mlp")
    ws = warmstart.read(source_sweep(tmp_path / "old", "mlp"), spec)
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    warmstart.add_history(ws, spec, storage, "new")
    trials = optuna.load_study(study_name="new", storage=storage).get_trials()
    assert [t.user_attrs["source_trial_id"] for t in trials] == ["a3", "a1", "a2"]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[1].value == 0.97 and trials[2].intermediate_values == {4: 0.95}
    # a TPE study with 10 startup trials models the space once it holds 10 finished trials:
    # the imported ones count
    study_ = optuna.load_study(study_name="new", storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
    assert len(study_.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("make, says", [
    (lambda d: d.mkdir(), "not a sweep's folder"),
    (lambda d: (d.mkdir(), (d / "trials.csv").write_text("trial_id,status\n"), (d / "config.json").write_text("[]")),
     "not a sweep's saved config"),
    (lambda d: source_sweep(d, "mlp", rows=[ROWS[3]]), "nothing to start from"),
])
def test_a_warm_start_from_what_is_not_a_finished_sweep_is_one_line(tmp_path, capsys, make, says):
    make(tmp_path / "old")
    run_bad(capsys, ["sweep", "mlp", "--results-dir", tmp_path / "results", "--warm-start", tmp_path / "old"],
            names=("--warm-start", str(tmp_path / "old"), says), root=tmp_path)


def test_resume_refuses_another_warm_start(tmp_path, capsys):
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"sweep": load_spec("mlp").to_dict(), "options": {}}))
    source_sweep(tmp_path / "old", "mlp")
    run_bad(capsys, ["sweep", "mlp", "--resume", "--name", "s", "--results-dir", tmp_path / "results",
                     "--warm-start", tmp_path / "old"], names=("--warm-start", "started cold"), root=tmp_path)


def test_a_warm_started_sweep_runs_the_baseline_then_the_imported_best(ray_session, tmp_path):
    """From another architecture: trial 1 is the baseline, trial 2 the source's best config,
    marked as imported; nothing is imported as history."""
    from mnist_dist.tuning.driver.cli import warm_started
    from mnist_dist.tuning.driver.runner import run_sweep

    opts = smoke_options(tmp_path, "w", workers=1, warm_start=str(source_sweep(tmp_path / "old", "lenet5")))
    spec = warm_started(load_spec("cnn_regularized"), opts)
    summary = run_sweep(spec, opts)
    rows = read_csv(tmp_path / "w" / "trials.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert rows[0]["config/optimizer"] == baseline_point(spec)["optimizer"] and not rows[0]["imported_from"]
    assert rows[1]["imported_from"] == "old/a3"
    assert (rows[1]["config/optimizer"], rows[1]["config/augment"]) == ("adamw", "strong")
    assert summary["warm_start"] == {"source": "old", "kind": "points", "trials": 3, "skipped_values": 2}
    # the points the 2 smoke trials had no room for wait in the study (a continuation runs them)
    assert sum(t.state.is_finished() for t in study(tmp_path / "w").get_trials()) == 2


def test_a_history_warm_start_marks_each_imported_trial_once(ray_session, tmp_path):
    from mnist_dist.tuning.driver.cli import warm_started
    from mnist_dist.tuning.driver.runner import run_sweep

    opts = smoke_options(tmp_path, "h", workers=1, warm_start=str(source_sweep(tmp_path / "old", "mlp")))
    summary = run_sweep(warm_started(load_spec("mlp"), opts), opts)
    rows = read_csv(tmp_path / "h" / "trials.csv")
    imported = [r for r in rows if r["status"] == "imported"]
    assert sorted(r["trial_id"] for r in imported) == ["a1", "a2", "a3"]
    assert all(r["imported_from"] == "old" and not r["checkpoint_path"] for r in imported)
    own = [r for r in rows if r["status"] != "imported"]
    assert len(own) == 2 and summary["trials_run"] == 2 and summary["best_trial"] in {r["trial_id"] for r in own}
    trials = study(tmp_path / "h").get_trials()
    assert len(trials) == 5 and [t.user_attrs.get("source_trial_id") for t in trials[:3]] == ["a3", "a1", "a2"]
    assert summary["warm_start"]["kind"] == "history"


def test_the_console_says_what_the_warm_start_gave(tmp_path, capsys):
    from mnist_dist.tuning.driver.cli import warm_started
    from mnist_dist.tuning.options import SweepOptions

    warm_started(load_spec("mlp"), SweepOptions(warm_start=str(source_sweep(tmp_path / "old", "mlp"))))
    assert "mlp: warm start from old: 3 trials as the sampler's history" in capsys.readouterr().out


def test_config_error_is_what_read_raises(tmp_path):
    with pytest.raises(ConfigError, match="not a sweep's folder"):
        warmstart.read(tmp_path, load_spec("mlp"))
