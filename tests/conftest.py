"""Shared fixtures: the real datasets, one small trained model, one Ray instance.

The data folder comes from $MNIST_DIST_DATA_DIR, else ../shared/data beside the
repository (what CI has; neither downloads), else the project's download cache, filled
once on a fresh machine through the downloader users get.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO / "sweeps" / "run.py")]  # `python sweeps/run.py`, as a user runs it
ARTIFACTS = REPO / "test-artifacts"  # screenshots etc. kept after the run (git-ignored)


TEST_DATASETS = ("mnist", "fashion-mnist")  # what ../shared/data holds and the tests read


def resolve_test_data_dir(env: Mapping[str, str], repo: Path, download: Callable[[], Path]) -> Path:
    """The tests' data folder: $MNIST_DIST_DATA_DIR when set (a wrong one is an error, not
    a download), else ../shared/data beside the repository, else what `download` gives."""
    if env.get("MNIST_DIST_DATA_DIR"):
        return Path(env["MNIST_DIST_DATA_DIR"]).expanduser()
    shared = repo.parent / "shared" / "data"
    if (shared / "mnist").is_dir():
        return shared
    return download()


def download_to_cache() -> Path:
    """Fills the project's cache through `locate` as users' runs do (torchvision's mirrors,
    one download per machine under a file lock; later runs find the files) and returns a
    folder of links to it in the layout the tests and --data-dir take: one subfolder per
    dataset."""
    from mnist_dist.data.datasets import cache_dir, locate

    root = cache_dir() / "test-data"
    root.mkdir(parents=True, exist_ok=True)
    for name in TEST_DATASETS:
        folder = locate(name, download=True)  # $MNIST_DIST_DATA_DIR is unset on this path
        try:
            (root / name).symlink_to(folder.resolve(), target_is_directory=True)
        except FileExistsError:  # an earlier (or parallel) run made it
            pass
    return root


def _data_dir() -> Path:
    from mnist_dist.data import DataError

    try:
        d = resolve_test_data_dir(os.environ, REPO, download_to_cache)
    except DataError as e:  # offline, say: the message says what to set
        pytest.exit(f"real datasets not found and not downloadable: {e}", returncode=2)
    if not (d / "mnist").is_dir():
        pytest.exit(f"real datasets not found in {d}: set MNIST_DIST_DATA_DIR", returncode=2)
    return d


DATA_DIR = _data_dir()
os.environ["MNIST_DIST_DATA_DIR"] = str(DATA_DIR)  # for subprocesses and Ray workers too

from mnist_dist.tuning.execution.ray_setup import token_auth  # noqa: E402

token_auth()  # the tests' own Ray as a sweep's: token auth on every supported release


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist():
    from mnist_dist.data import load_dataset

    return load_dataset("mnist", DATA_DIR)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A cnn_regularized trained on 20,000 real MNIST images for 2 epochs (~98% test
    accuracy, ~15 s on 2 CPU cores), saved through `mnist-dist train` like a user's."""
    from mnist_dist.cli import main

    out = tmp_path_factory.mktemp("trained")
    rc = main(["train", "cnn_regularized", "--results-dir", str(out), "--name", "run",
               "--train-limit", "20000", "--epochs", "2", "--batch-size", "64"])
    assert rc == 0
    return out / "run" / "model.pt"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (Ray starts in ~10 s here)."""
    import ray

    if not ray.is_initialized():
        from mnist_dist.tuning.execution.ray_setup import start_local_ray

        # as `mnist-dist sweep` starts it: the dashboard serves the State API, which Ray
        # Train's placement-group cleaner needs to release the workers of stopped trials
        start_local_ray(num_cpus=4, preload=False)  # its smoke sweep is DDP: nothing to preload for
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def smoke_options(results_dir: Path, name: str, workers: int = 2, smoke_test: bool = True, **kw):
    from mnist_dist.tuning.options import Scaling, SweepOptions

    return SweepOptions(results_dir=str(results_dir), name=name, scaling=Scaling(workers=workers),
                        smoke_test=smoke_test, data_dir=str(DATA_DIR), verbose=0, **kw)


@pytest.fixture(scope="session")
def smoke_sweep(ray_session, tmp_path_factory) -> Path:
    """One real sweep shared by the sweep and report tests: lenet5, 2 trials x 2 Ray Train
    workers (DDP over gloo), 1 epoch on 1,000 real MNIST images, Optuna TPE in SQLite,
    then the best config retrained with 2 more seeds."""
    from mnist_dist.tuning.driver.runner import run_sweep
    from mnist_dist.tuning.spec import load_spec

    results = tmp_path_factory.mktemp("results")
    run_sweep(load_spec("lenet5"), smoke_options(results, "lenet5-smoke", final_seeds=2))
    return results / "lenet5-smoke"


# Tests that use these start Ray or train a model: slow, whatever their own marks say.
SLOW_FIXTURES = {"ray_session", "smoke_sweep", "trained_model", "two_nodes"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def ray_watch():
    """(env, folder): a command run with `env` keeps any Ray session it starts under `folder`
    (Ray's RAY_TMPDIR; short, as Ray's socket paths must be), so procs.ray_started(folder)
    says whether it started a Ray."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rw"))
    yield {**os.environ, "RAY_TMPDIR": str(folder)}, folder
    shutil.rmtree(folder, ignore_errors=True)


# --- sweep specs and what a sweep leaves behind (shared by the test modules) ---------------

def write_spec(path: Path, **spec) -> Path:
    """A sweep YAML with exactly these keys."""
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def read_events(sweep_dir: Path) -> list[dict]:
    """events.jsonl's lines (none before the first trial ended)."""
    path = sweep_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def study(sweep_dir: Path):
    """The sweep's Optuna study, read from its optuna.db."""
    import optuna

    return optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def disk_fills_half_way(monkeypatch) -> None:
    """From now on (until monkeypatch.undo()) a file that layout writes gets half its bytes
    and then a full disk (ENOSPC), as a disk filling mid-write."""
    from mnist_dist import layout

    real_fdopen = layout.os.fdopen

    class HalfThenFull:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:len(text) // 2])
            raise OSError(28, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(layout.os, "fdopen", lambda *a, **kw: HalfThenFull(real_fdopen(*a, **kw)))


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures the report's plot functions draw, kept open instead of saved."""
    from mnist_dist.report import hparams, plots, steering

    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    for module in (plots, hparams, steering):
        monkeypatch.setattr(module, "save", keep)
    yield figs
    for fig in figs:
        plots.plt.close(fig)
