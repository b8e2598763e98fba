"""Bad names, paths, links and files: each is one clear error line (exit 2) or one warning,
never a traceback, a file written through a link, a stray folder or a leaked password."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import stat
import sys

import pytest
import yaml

from mnist_dist import layout
from mnist_dist.cli import main
from tests.badinput import run_bad, tree_state

BAD_NAMES = ["a/b", "../escape", "..", ".hidden", "", "back\\slash", "new\nline", "nul\x00byte",
             "esc\x1b[31m", "bidi\u202eexe.txt", "x" * 300]
COMMANDS = {"train": ["train", "mlp", "--smoke-test"], "sweep": ["sweep", "mlp", "--smoke-test"]}
SECRET_URL = "postgresql://user:s3cret-pw@db.example.com:5432/optuna"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- --name and --results-dir ----------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: ascii(n)[:20])
def test_name_must_be_a_plain_folder_name(capsys, tmp_path, command, name):
    run_bad(capsys, [*COMMANDS[command], "--results-dir", tmp_path, "--name", name],
            names=("--name", "plain folder name"), root=tmp_path)


@pytest.mark.parametrize("command", COMMANDS)
def test_results_dir_that_is_a_file(capsys, tmp_path, command):
    results = tmp_path / "results.txt"
    results.write_text("not a folder\n")
    run_bad(capsys, [*COMMANDS[command], "--results-dir", results, "--name", "run"],
            names=("--results-dir", "results.txt"), root=tmp_path)


def test_train_without_its_dataset_leaves_no_run_folder(capsys, tmp_path):
    run_bad(capsys, ["train", "mlp", "--smoke-test", "--data-dir", tmp_path / "no-data",
                     "--results-dir", tmp_path, "--name", "run"], names=("no-data",), root=tmp_path)


def test_sweep_resume_of_nothing_leaves_no_sweep_folder(capsys, tmp_path):
    run_bad(capsys, ["sweep", "mlp", "--smoke-test", "--results-dir", tmp_path, "--name", "none", "--resume"],
            names=("--resume", "none"), root=tmp_path)


# --- train --resume ---------------------------------------------------------------------------

def run_config() -> dict:
    from mnist_dist.config import resolve

    return resolve("mlp", {"epochs": 2, "train_limit": 2000}).to_dict()


def make_folder(root, kind: str):
    """A folder that `train --resume` must refuse, and what its error names."""
    folder = root / kind
    folder.mkdir()
    files = {"empty": {}, "finished": {"config.json": run_config(), "run.json": {"kind": "run"}},
             "sweep": {"config.json": {"sweep": {}}, "summary.json": {"kind": "sweep"}},
             "foreign-config": {"config.json": {"colour": "blue"}},
             "bad-json": {"config.json": None}}[kind]
    for name, content in files.items():
        (folder / name).write_text("{not json" if content is None else json.dumps(content))
    return folder


@pytest.mark.parametrize("kind, says", [("empty", "not a training run folder"), ("finished", "already ended"),
                                        ("sweep", "not a training run folder"),
                                        ("foreign-config", "not a training run folder"),
                                        ("bad-json", "not a training run folder")])
def test_resume_refuses_what_is_not_an_interrupted_run(capsys, tmp_path, kind, says):
    folder = make_folder(tmp_path, kind)
    run_bad(capsys, ["train", "--resume", folder], names=("--resume", str(folder), says), root=tmp_path)


def test_resume_of_a_missing_folder(capsys, tmp_path):
    run_bad(capsys, ["train", "--resume", tmp_path / "gone"], names=("no such folder",), root=tmp_path)


def test_resume_takes_no_new_config(capsys, tmp_path):
    run_bad(capsys, ["train", "mlp", "--epochs", "3", "--resume", tmp_path], names=("ARCH", "--epochs"),
            root=tmp_path)


def test_new_run_never_replaces_an_interrupted_one(capsys, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(run_config()))
    (folder / "resume.pt").write_bytes(b"epoch 1")
    run_bad(capsys, ["train", "mlp", "--results-dir", tmp_path, "--name", "run"],
            names=("interrupted run", f"--resume {folder}"), root=tmp_path)


# --- lock and log files -----------------------------------------------------------------------

def test_a_sweeps_lock_that_is_a_symlink_is_refused_not_written_through(capsys, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    sweep = tmp_path / "results" / "s"
    sweep.mkdir(parents=True)
    (sweep / layout.LOCK).symlink_to(victim)
    run_bad(capsys, ["sweep", "mlp", "--smoke-test", "--results-dir", tmp_path / "results", "--name", "s"],
            names=(".lock", "symbolic link"), root=tmp_path)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("mode", ["a", "r+"])
def test_lock_and_log_files_are_not_opened_through_a_symlink(tmp_path, mode):
    from mnist_dist.config import ConfigError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "events.jsonl").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        layout.open_no_follow(tmp_path / "events.jsonl", mode)
    assert victim.read_text() == "precious\n"


def test_a_download_lock_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    """The dataset cache's lock: filelock would open the link's target with O_TRUNC."""
    from mnist_dist.data import DataError
    from mnist_dist.data.datasets import DATASETS, _download

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "cache" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    (folder.parent / ".download.lock").symlink_to(victim)
    info = DATASETS["mnist"]
    with pytest.raises(DataError, match="symbolic link"):
        _download(info, folder)
    assert victim.read_text() == "precious\n"


# --- file modes follow the umask -------------------------------------------------------------

def write_json(path):
    layout.save_json({"a": 1}, path)


def write_csv(path):
    layout.write_csv([{"a": 1}], path)


def write_model(path):
    from mnist_dist.models.checkpoint import atomic_save

    atomic_save({"weights": [1, 2]}, path)


def write_lock(path):
    layout.open_no_follow(path, "r+").close()


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640)])
@pytest.mark.parametrize("write", [write_json, write_csv, write_model, write_lock], ids=lambda f: f.__name__)
def test_files_follow_the_umask(tmp_path, umask, expected, write):
    found = os.umask(umask)
    try:
        write(tmp_path / "out")
    finally:
        os.umask(found)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == expected


# --- the report reads, never writes, what it finds -------------------------------------------

CULPRITS = {  # folder -> (file, content, what its warning says)
    "bad-summary": ("summary.json", '{"kind": "sweep", ', "not valid JSON"),
    "bad-run": ("run.json", "[1, 2]", "not an object"),
    "no-status": ("trials.csv", "x;y\n\x00\x01\n", "no column status"),
    "foreign-db": ("optuna.db", None, "not an Optuna study database"),
    "not-a-db": ("optuna.db", "just text\n", "not an Optuna study database"),
    "interrupted": ("resume.pt", "epoch 1", "mnist-dist train --resume"),
}


def sweep_folder(root, name: str):
    folder = root / name
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"kind": "sweep", "name": name, "arch": "mlp",
                                                      "dataset": "mnist"}))
    (folder / "config.json").write_text(json.dumps({"sweep": {"space": {}}}))
    (folder / "trials.csv").write_text("trial_id,status,val_acc\nt1,completed,0.9\n")
    return folder


def foreign_sqlite(path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine, not Optuna''s')")
    conn.close()


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One report over a good sweep folder and one folder per culprit: (stderr, root, the
    tree before the report)."""
    root = tmp_path_factory.mktemp("results")
    sweep_folder(root, "good")
    for name, (filename, content, _) in CULPRITS.items():
        folder = sweep_folder(root, name)
        if filename in ("run.json", "resume.pt"):  # a run's folder: no sweep summary beside it
            (folder / "summary.json").unlink()
        if content is None:
            foreign_sqlite(folder / filename)
        else:
            (folder / filename).write_text(content)
    before = tree_state(root)
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert main(["report", str(root)]) == 0
    return err.getvalue(), root, before


@pytest.mark.parametrize("culprit", CULPRITS)
def test_one_malformed_file_is_one_warning_and_nothing_is_written_beside_it(reported, culprit):
    err, root, before = reported
    filename, _, says = CULPRITS[culprit]
    lines = [line for line in err.splitlines() if culprit in line]
    assert len(lines) == 1 and lines[0].startswith("warning:") and filename in lines[0] and says in lines[0], err
    assert "Traceback" not in err
    after = tree_state(root)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith("report")} == set()  # the foreign db byte for byte too
    assert (root / "report" / "index.html").is_file()


def test_report_reads_a_real_study_without_writing_to_it(tmp_path, capsys):
    import optuna

    folder = sweep_folder(tmp_path, "study")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="study", storage=f"sqlite:///{folder / 'optuna.db'}",
                                direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1.0) + t.suggest_int("batch", 1, 9) / 10, n_trials=6)
    del study
    before = sha(folder / "optuna.db")
    assert main(["report", str(tmp_path)]) == 0
    assert "optuna.db" not in capsys.readouterr().err
    assert sha(folder / "optuna.db") == before
    assert (tmp_path / "report" / "figures" / "study-importance.png").is_file()


# --- storage URLs with a password ------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    (SECRET_URL, "postgresql://user:***@db.example.com:5432/optuna"),
    ("mysql://u:p@ss/w@host/db", "mysql://u:***@host/db"),
    ("postgresql://host/db?user=u&password=pw&sslmode=require",
     "postgresql://host/db?user=u&password=***&sslmode=require"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:////data/x:y@z/optuna.db", "sqlite:////data/x:y@z/optuna.db"),
])
def test_mask_url(url, shown):
    from mnist_dist.tuning.execution.storage import mask_url

    assert mask_url(url) == shown


def test_masked_storage_url_in_config_files(tmp_path):
    from mnist_dist.tuning.options import SweepOptions
    from mnist_dist.tuning.driver.runner import save_resolved
    from mnist_dist.tuning.spec import load_spec

    opts = SweepOptions(storage=SECRET_URL)
    save_resolved(load_spec("mlp"), opts, {"arch": "mlp"}, tmp_path, opts.scaling)
    for name in ("config.json", "config.yaml"):
        text = (tmp_path / name).read_text()
        assert "s3cret-pw" not in text and "user:***@db.example.com" in text, name
    options = yaml.safe_load((tmp_path / "config.yaml").read_text())["options"]
    assert options["storage"] == "postgresql://user:***@db.example.com:5432/optuna"


@pytest.mark.parametrize("argv", [["--storage", SECRET_URL], [f"--storage={SECRET_URL}"]])
def test_printed_resume_command_names_the_variable_not_the_password(monkeypatch, argv):
    from mnist_dist.tuning.driver.cli import resume_command

    monkeypatch.setattr(sys, "argv", ["mnist-dist", "sweep", "mlp", *argv, "--name", "pg sweep"])
    command = resume_command(argparse.Namespace(arch="mlp"), "pg sweep")
    assert "s3cret-pw" not in command and '"$MNIST_DIST_STORAGE"' in command
    assert command.endswith("--name 'pg sweep' --resume")


def test_a_masked_storage_url_without_the_variable_is_an_error(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIST_STORAGE", raising=False)
    run_bad(capsys, ["sweep", "mlp", "--smoke-test", "--results-dir", tmp_path,
                     "--storage", "postgresql://user:***@db.example.com/optuna"],
            names=("--storage", "MNIST_DIST_STORAGE"), root=tmp_path)


@pytest.mark.parametrize("given", [None, "postgresql://user:***@db.example.com/optuna"])
def test_storage_url_from_the_variable_is_kept_from_rays_workers(monkeypatch, given):
    from mnist_dist.tuning.execution.storage import take_storage_url

    monkeypatch.setenv("MNIST_DIST_STORAGE", SECRET_URL)
    assert take_storage_url(given) == SECRET_URL
    assert "MNIST_DIST_STORAGE" not in os.environ  # every MNIST_DIST_* variable goes to Ray's workers


def test_the_pickled_study_tune_keeps_holds_no_password_and_resumes_with_the_real_url(tmp_path):
    """Tune pickles the searcher, and with it the Optuna storage, into tuner.pkl and
    searcher-state-*.pkl: the URL there is masked, and unpickling it on --resume takes the real
    one this driver was given (and is one clear error without it)."""
    import pickle

    import optuna

    from mnist_dist.config import ConfigError
    from mnist_dist.tuning.execution import storage as study_storage

    # SQLite ignores URI parameters it does not know: a stand-in for a server's password
    url = f"sqlite:///file:{tmp_path / 'study.db'}?uri=true&token=s3cret"
    study = optuna.create_study(storage=study_storage.open_storage(url, tmp_path), study_name="s")
    study.ask()
    pickled = pickle.dumps(study)
    assert b"s3cret" not in pickled and b"token=***" in pickled
    real = study_storage._real_urls.pop(study_storage.mask_url(url))
    with pytest.raises(ConfigError, match="give its real URL"):
        pickle.loads(pickled)
    study_storage._real_urls[study_storage.mask_url(url)] = real
    assert len(pickle.loads(pickled).get_trials()) == 1
