"""The fence around Ray's and Optuna's private parts (mnist_dist/tuning/internals.py): one
test per hook that fails when the internal it relies on changes, each hook switched off on
its own with one warning and a public fallback, and a whole sweep with every hook off."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_dist.tuning import internals

from .conftest import RUN
from .procs import ray_started


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.delenv(internals.DISABLE_ENV, raising=False)
    internals.reset()
    yield
    internals.reset()


def test_every_hook_is_present_in_the_installed_releases():
    missing = [name for name, hook in internals.HOOKS.items() if not hook.present()]
    assert not missing, f"private parts changed in this Ray/Optuna release: {missing}"


@pytest.mark.parametrize("name", sorted(internals.HOOKS))
def test_a_hook_switched_off_warns_once_and_its_feature_falls_back(name, monkeypatch):
    monkeypatch.setenv(internals.DISABLE_ENV, name)
    lines = []
    state = internals.check(warn=lines.append)
    internals.check(warn=lines.append)  # checked once per process
    assert state[name] is False and sum(state.values()) == len(internals.HOOKS) - 1
    assert len(lines) == 1 and name in lines[0] and internals.HOOKS[name].without in lines[0]


def test_hooks_off_give_public_behaviour(monkeypatch, tmp_path):
    monkeypatch.setenv(internals.DISABLE_ENV, "all")
    assert internals.preload_config(["x"]) == {}
    assert internals.ray_temp_folder() is None and internals.ray_processes() == []
    assert internals.training_result(None, {}) is None
    assert internals.asha_rungs(object()) is None and internals.snapshot_files() == ()
    (tmp_path / "checkpoint_000001").mkdir()
    assert internals.newest_checkpoint(tmp_path) is None
    with internals.ray_sigterm_handlers_diverted(lambda h: None) as diverted:
        assert diverted is False


def test_tune_actor_env_drops_only_the_lightning_variable():
    from ray.tune.execution import class_cache

    internals.tune_actors_on_prestarted_workers()
    assert "PL_DISABLE_FORK" not in class_cache.DEFAULT_ENV_VARS


def test_training_result_carries_the_checkpoint_and_metrics(tmp_path):
    from ray import tune

    result = internals.training_result(tune.Checkpoint.from_directory(str(tmp_path)), {"epoch": 3})
    assert Path(result.checkpoint.path) == tmp_path and result.metrics == {"epoch": 3}


def test_asha_rungs_round_trip_through_json():
    from ray.tune.schedulers import ASHAScheduler

    class Trial:
        def __init__(self, trial_id):
            self.trial_id, self.config = trial_id, {}

    def scheduler():
        return ASHAScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)

    first = scheduler()
    for i, acc in enumerate((0.9, 0.8, 0.7)):
        first.on_trial_add(None, Trial(f"t{i}"))
        first.on_trial_result(None, Trial(f"t{i}"), {"training_iteration": 1, "acc": acc})
    saved = json.loads(json.dumps(internals.asha_rungs(first)))
    second = scheduler()
    internals.set_asha_rungs(second, saved["brackets"], saved["num_stopped"])
    second.on_trial_add(None, Trial("late"))
    # the restored rung's cutoff is what the first scheduler's would be: a weak trial stops
    assert second.on_trial_result(None, Trial("late"), {"training_iteration": 1, "acc": 0.75}) == "STOP"
    assert internals.asha_rungs(second) != internals.asha_rungs(scheduler())


def test_optuna_search_and_ids_reach_the_study(tmp_path):
    from mnist_dist.tuning.driver.runner import make_searcher
    from mnist_dist.tuning.spec import load_spec
    from mnist_dist.tuning.execution.storage import open_storage

    storage = open_storage(None, tmp_path)
    searcher = make_searcher(load_spec("mlp"), storage, "s")
    assert searcher.suggest("t1") is not None
    ot_trial = internals.searcher_trials(searcher)["t1"]
    study = internals.searcher_study(searcher)
    trial_id = internals.optuna_trial_id(ot_trial)
    assert storage.get_trial(trial_id).number == ot_trial.number
    assert internals.optuna_trial(study, trial_id).params == ot_trial.params
    assert internals.study_storage(study).get_trial(trial_id).number == ot_trial.number
    assert internals.searcher_completed(searcher) == set()


def test_checkpoint_folders_are_named_as_tune_names_them(tmp_path):
    for index, files in ((1, ("a", "b")), (2, ("a",)), (10, ())):
        folder = tmp_path / f"checkpoint_{index:06d}"
        folder.mkdir()
        for f in files:
            (folder / f).write_text("x")
    assert internals.newest_checkpoint(tmp_path, "a", "b").name == "checkpoint_000001"
    assert internals.newest_checkpoint(tmp_path, "a").name == "checkpoint_000002"
    assert internals.newest_checkpoint(tmp_path).name == "checkpoint_000010"


def test_staged_snapshots_are_found_where_tune_stages_them(tmp_path):
    staged = tmp_path / "session_1" / "artifacts" / "x" / "tune" / "driver_artifacts"
    staged.mkdir(parents=True)
    (staged / "experiment_state-1.json").write_text("{}")
    assert internals.staged_snapshots(tmp_path, "tune", "experiment_state-1.json") == [
        staged / "experiment_state-1.json"]


RAY_NODE = """
from mnist_dist.tuning import internals
from mnist_dist.tuning.execution import ray_setup
ray_setup.start_local_ray(num_cpus=1, dashboard=False, preload=False)
kinds = internals.ray_processes_by_kind()
temp = internals.ray_temp_folder()
print(sorted(kinds)[:1], "raylet" in kinds, any(temp.glob("session_*")), all(p.poll() is None for p in internals.ray_processes()))
ray_setup.stop_ray()
"""


@pytest.mark.slow
def test_ray_node_gives_the_processes_and_temp_folder_of_a_real_ray():
    out = subprocess.run([sys.executable, "-c", RAY_NODE], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["True", "True", "True"]


@pytest.mark.slow
def test_a_sweep_with_every_hook_off_still_completes(tmp_path, ray_watch):
    env = {**ray_watch[0], internals.DISABLE_ENV: "all"}
    out = subprocess.run(RUN + ["mlp", "--smoke-test", "--results-dir", str(tmp_path), "--name", "plain"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:") and "switched off" in line]
    assert len(warnings) == len(internals.HOOKS), out.stderr
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["completed"] == 2 and (tmp_path / "plain" / "best" / "model.pt").is_file()
    assert ray_started(ray_watch[1])  # what the tests of commands that must not start Ray rely on
