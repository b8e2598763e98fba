"""benchmarks/steering.py: its figures from a sweep's rows, the reduced sweep YAML, and the
sweep commands it would run (no sweep is run here)."""
from __future__ import annotations

import math

import pytest
import yaml

from benchmarks import steering
from mnist_dist.tuning.spec import load_spec


def row(status: str, value) -> dict:
    return {"trial_id": "t", "status": status, "best_val_acc": "" if value is None else str(value)}


def test_best_so_far_leaves_out_imported_failed_and_missing_values():
    rows = [row("imported", 0.99),  # a warm start's copy: not this sweep's trial
            row("completed", None),  # no value yet
            row("completed", 0.90),
            row("failed", 0.95),  # a failed trial's value counts for nothing
            row("stopped_by_scheduler", "nan"),
            row("diverged", 0.80),
            row("stopped_by_patience", 0.93),
            row("imported", 0.999)]
    assert steering.best_so_far(rows) == [None, 0.90, 0.90, 0.90, 0.90, 0.93]


def test_best_so_far_of_rows_read_from_csv_text():
    rows = [{"status": "completed", "best_val_acc": "0.5"}, {"status": "completed", "best_val_acc": "inf"},
            {"status": "interrupted", "best_val_acc": "0.7"}]
    assert steering.best_so_far(rows) == [0.5, 0.5, 0.7]


def test_at_and_checkpoints():
    curve = [0.1, 0.2, 0.3]
    assert steering.at(curve, 3) == 0.3 and steering.at(curve, 4) is None and steering.at(curve, 0) is None
    assert steering.checkpoints(20) == [5, 10, 15, 20]
    assert steering.checkpoints(12) == [5, 10, 12]
    assert steering.checkpoints(4) == [4]
    assert steering.checkpoints(40, extra=(20, 7)) == [5, 7, 10, 15, 20, 25, 30, 35, 40]


def test_trials_to_reach():
    curve = [None, 0.90, 0.95, 0.95, 0.97]
    assert steering.trials_to_reach(curve, 0.95) == 3  # reaching it counts (>=)
    assert steering.trials_to_reach(curve, 0.91) == 3
    assert steering.trials_to_reach(curve, 0.90) == 2
    assert steering.trials_to_reach(curve, 0.98) is None
    assert steering.trials_to_reach(curve, None) is None
    assert steering.trials_to_reach([], 0.5) is None


def test_means_over_seeds_and_the_table():
    mean, std, n = steering.mean_std([0.9, None, 0.8])
    assert math.isclose(mean, 0.85) and math.isclose(std, math.sqrt(0.005)) and n == 2
    assert steering.mean_cell([0.9, 0.8]) == "85.00"
    assert steering.mean_cell([0.9, None]) == "90.00 (1/2)"
    assert steering.mean_cell([None, None]) == "-"
    assert steering.mean_cell([0.9, 0.8], with_std=True) == "85.00 ± 7.07"
    table = steering.markdown_table(["trials", "a", "b"], [[5, "1", "2"]])
    assert table.splitlines() == ["| trials | a | b |", "|:---|---:|---:|", "| 5 | 1 | 2 |"]
    rows = steering.curve_rows({"a": [[0.5, 0.6], [0.7, 0.8]], "b": [[0.1]]}, [1, 2])
    assert rows == [[1, "60.00", "10.00"], [2, "70.00", "-"]]


@pytest.mark.parametrize("arch", ["mlp", "lenet5", "cnn_bn"])
@pytest.mark.parametrize("epochs", [1, 2])
def test_reduced_yaml_is_a_valid_sweep(tmp_path, arch, epochs):
    path = steering.write_derived_config(arch, tmp_path, 1000, epochs)
    spec = load_spec(arch, path)  # raises on anything the sweep would refuse
    assert spec.fixed["train_limit"] == 1000 and spec.fixed["epochs"] == epochs
    assert "epochs" not in spec.space
    assert spec.scheduler.grace_period <= epochs
    warmup = spec.space.get("warmup_epochs")
    assert warmup is None or max(warmup["choice"]) < epochs
    assert all(point.get("warmup_epochs", 0.0) < epochs for point in spec.points)


def test_derive_spec_leaves_the_source_alone_and_drops_searched_epochs():
    raw = {"scheduler": {"type": "asha", "grace_period": 8},
           "fixed": {"val_fraction": 0.1},
           "space": {"lr": {"loguniform": [1e-4, 1e-2]}, "epochs": {"choice": [5, 10]},
                     "warmup_epochs": {"uniform": [0.5, 3.0]}},
           "points": [{"epochs": 10}, {"lr": 1e-3, "epochs": 5, "warmup_epochs": 2.0}]}
    before = yaml.safe_dump(raw)
    out = steering.derive_spec(raw, train_limit=500, epochs=2)
    assert yaml.safe_dump(raw) == before
    assert out["fixed"] == {"val_fraction": 0.1, "train_limit": 500, "epochs": 2}
    assert "epochs" not in out["space"] and out["space"]["warmup_epochs"] == {"uniform": [0.5, 1.0]}
    assert out["points"] == [{"lr": 1e-3}]
    assert out["scheduler"]["grace_period"] == 2
    assert steering.derive_spec(raw, train_limit=500)["space"] == raw["space"]  # epochs not given: kept


def test_dry_run_continue_prints_the_resume_command(capsys, tmp_path):
    steering.main(["--dry-run", "continue", "mlp", "--trials", "2", "--more", "2", "--seeds", "0",
                   "--results-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("python sweeps/run.py mlp ") for line in lines)
    assert lines[0].endswith("--trials 2")
    assert "--resume --trials 4" in lines[1] and "--name continue-mlp-s0" in lines[1]
    assert "--trials 4" in lines[2] and "--resume" not in lines[2] and "--seed 0" in lines[2]
    assert not any(tmp_path.iterdir())  # nothing run, nothing written


def test_dry_run_with_the_options_at_the_end(capsys, tmp_path):
    steering.main(["warm", "lenet5", "--source-arch", "mlp", "--trials", "3", "--seeds", "0", "1",
                   "--epochs", "1", "--train-limit", "1000", "--data-dir", "data", "--results-dir", str(tmp_path),
                   "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and " mlp " in lines[0] and "--name source-mlp-s0" in lines[0]
    assert all("--config" in line and "--data-dir data" in line for line in lines)
    assert sum("--warm-start" in line for line in lines) == 2
    assert not any(tmp_path.iterdir())
