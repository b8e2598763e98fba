"""The sweep's Optuna study: written ahead and sealed into one file, the searcher asking the
storage once per trial, and again after a resume."""
from __future__ import annotations



import shutil
from pathlib import Path

import optuna

from mnist_dist.tuning import internals
from mnist_dist.tuning.spec import load_spec



def test_the_sweep_study_is_written_ahead_then_sealed_into_one_file(tmp_path, monkeypatch):
    """The default storage logs writes ahead (an append per epoch's report, not a journal
    file created and deleted); when the sweep ends, optuna.db is one self-contained file
    again, in rollback-journal mode, holding every value reported."""
    from mnist_dist.tuning.execution import storage as study_storage
    from mnist_dist.tuning.execution.storage import open_storage, seal

    monkeypatch.setattr(study_storage, "filesystem_type", lambda path: "ext4")  # whatever disk runs the test
    storage = open_storage(None, tmp_path)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    trial = optuna.create_study(study_name="s", storage=storage, direction="maximize").ask()
    for step in range(1, 6):
        trial.report(0.9 + step / 100, step)
    assert (tmp_path / "optuna.db-wal").is_file()
    assert seal(tmp_path, storage) == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "optuna.db", copy / "optuna.db")  # the file alone holds everything
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{copy / 'optuna.db'}")
    assert again.trials[0].intermediate_values == {s: 0.9 + s / 100 for s in range(1, 6)}
    assert seal(tmp_path / "nothing-here") == ""
    # --resume: the restored searcher opens the file with no settings of ours; WAL is set in it
    assert study_storage.write_ahead(tmp_path) == "wal"
    restored = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    with restored.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    restored.engine.dispose()
    assert seal(tmp_path) == "delete"


def test_a_study_on_a_network_file_system_keeps_sqlites_default_journal(tmp_path, monkeypatch):
    """WAL needs every reader and the writer on one host with shared memory; a results folder
    on NFS (a cluster's EFS) does not promise that, so the study there keeps the default."""
    from mnist_dist.tuning.execution import storage as study_storage

    mounts = ("/dev/vda / ext4 rw 0 0\nfs-1.efs.example:/ /mnt/efs nfs4 rw 0 0\n"
              "server:/share /mnt/my\\040share cifs rw 0 0\n")
    assert study_storage.filesystem_type(Path("/mnt/efs/results/x"), mounts) == "nfs4"
    assert study_storage.filesystem_type(Path("/mnt/my share/results"), mounts) == "cifs"
    assert study_storage.filesystem_type(Path("/mnt/efsx/results"), mounts) == "ext4"
    assert study_storage.filesystem_type(Path("/tmp/x"), "") == ""
    real = study_storage.filesystem_type
    monkeypatch.setattr(study_storage, "filesystem_type", lambda path: "nfs4" if Path(path) == tmp_path else real(path))
    storage = study_storage.open_storage(None, tmp_path)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_a_searcher_asks_the_storage_nothing_per_epoch_and_a_resume_reads_it_once(tmp_path):
    """Whether Optuna already holds a trial's end (a resumed sweep replays trials that ended
    after Tune's last snapshot) is read once, by recovery.read, when the sweep resumes; the
    searcher asks the storage nothing per epoch. A trial told before the kill is not told again."""
    from mnist_dist.tuning.driver.runner import make_searcher
    from mnist_dist.tuning.execution import recovery
    from mnist_dist.tuning.execution.storage import open_storage

    recovery.start_fresh()
    storage = open_storage(None, tmp_path)
    searcher = make_searcher(load_spec("mlp"), storage, "s")
    assert searcher.suggest("t1") is not None
    asked = []
    get_trial = storage.get_trial
    storage.get_trial = lambda trial_id: asked.append(trial_id) or get_trial(trial_id)
    for epoch in range(1, 4):
        searcher.on_trial_result("t1", {"best_val_acc": 0.9 + epoch / 100, "training_iteration": epoch})
    assert asked == []
    del storage.get_trial  # the class's own again (the searcher's snapshot pickles its storage)
    ot_trial = internals.searcher_trials(searcher)["t1"]
    assert study_values(storage) == {1: 0.91, 2: 0.92, 3: 0.93}
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot, taken while t1 runs
    # the driver then ended t1 and was killed before the next snapshot
    searcher.on_trial_complete("t1", {"best_val_acc": 0.93, "training_iteration": 3, "status": "completed"})
    found = recovery.read(tmp_path, open_storage(None, tmp_path), "s", None)
    assert found.told == {"t1"} and found.running == () and recovery.current() is found
    resumed = make_searcher(load_spec("mlp"), open_storage(None, tmp_path), "s")
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.on_trial_result("t1", {"best_val_acc": 0.5, "training_iteration": 4})  # the replayed trial
    resumed.on_trial_complete("t1", {"best_val_acc": 0.5, "training_iteration": 4, "status": "completed"})
    trial = internals.searcher_study(resumed).get_trials()[ot_trial.number]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.93
    assert trial.intermediate_values == {1: 0.91, 2: 0.92, 3: 0.93}
    recovery.start_fresh()


def test_a_resume_hands_optunas_running_trials_to_the_next_tune_trials(tmp_path):
    """A killed driver asked Optuna for a trial that Tune's snapshot never recorded: the
    resumed searcher gives it to its next Tune trial, so the two stay one to one."""
    from mnist_dist.tuning.driver.runner import make_searcher
    from mnist_dist.tuning.execution import recovery
    from mnist_dist.tuning.execution.storage import open_storage

    recovery.start_fresh()
    first = make_searcher(load_spec("mlp"), open_storage(None, tmp_path), "s")
    first.save(str(tmp_path / "searcher.pkl"))  # the snapshot, before t1 was asked for
    asked = first.suggest("t1")
    found = recovery.read(tmp_path, open_storage(None, tmp_path), "s", None)
    assert len(found.running) == 1 and found.told == frozenset()
    resumed = make_searcher(load_spec("mlp"), open_storage(None, tmp_path), "s")
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert resumed.suggest("t9") == asked  # the orphan's values, not a new draw
    assert internals.searcher_trials(resumed)["t9"].number == internals.searcher_trials(first)["t1"].number
    recovery.start_fresh()


def study_values(storage) -> dict:
    return storage.get_all_trials(storage.get_study_id_from_name("s"))[0].intermediate_values


def test_a_continued_sweeps_searcher_hands_its_sampler_the_whole_history(tmp_path):
    """A sweep continued with more trials (--resume --trials N) is a new Tune run on the same
    study: its sampler is asked with every trial of the earlier runs in the study."""
    from mnist_dist.tuning.driver.runner import make_searcher
    from mnist_dist.tuning.execution import recovery
    from mnist_dist.tuning.execution.storage import open_storage

    recovery.start_fresh()
    first = make_searcher(load_spec("mlp"), open_storage(None, tmp_path), "s")
    for i, acc in enumerate((0.91, 0.95)):
        first.suggest(f"t{i}")
        first.on_trial_complete(f"t{i}", {"best_val_acc": acc, "training_iteration": 1, "status": "completed"})
    later = make_searcher(load_spec("mlp"), open_storage(None, tmp_path), "s")  # no points: a continuation
    seen = []
    sampler = internals.searcher_study(later).sampler
    infer = sampler.infer_relative_search_space
    sampler.infer_relative_search_space = lambda study, trial: seen.append(
        [t.value for t in study.get_trials(deepcopy=False) if t.state.is_finished()]) or infer(study, trial)
    assert later.suggest("t2") is not None
    assert seen and seen[0] == [0.91, 0.95]
    assert internals.searcher_trials(later)["t2"].number == 2
    recovery.start_fresh()
