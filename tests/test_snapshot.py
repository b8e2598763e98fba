"""Tune's snapshot made whole before --resume: a driver killed while Tune copied a snapshot
file into the sweep folder left it truncated (a 0-byte search_gen_state, seen once in the
killed-driver resume test), and the resume failed on EOFError."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mnist_dist.config import ConfigError
from mnist_dist.tuning.execution.snapshot import repair, whole
from mnist_dist.tuning.internals import SNAPSHOT_FILES

from .conftest import RUN



def snapshot_files(sweep: Path) -> list[Path]:
    return sorted(p for pattern in SNAPSHOT_FILES for p in (sweep / "tune").glob(pattern))


def stage(sessions: Path, session: str, f: Path, data: bytes) -> Path:
    """A Ray session's staging copy of `f`, where Tune keeps it."""
    path = sessions / session / "artifacts" / "2026-11-26_10-00-00" / "tune" / "driver_artifacts" / f.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_whole_tells_complete_snapshot_files_from_cut_ones(smoke_sweep, tmp_path):
    files = snapshot_files(smoke_sweep)
    assert {f.name.split("-")[0] for f in files} == {"experiment_state", "search_gen_state", "searcher"}
    for f in files:
        data = f.read_bytes()
        assert whole(f), f.name
        for cut in (0, 1, len(data) // 2, len(data) - 1):
            part = tmp_path / f.name
            part.write_bytes(data[:cut])
            assert not whole(part), (f.name, cut)


def test_a_truncated_snapshot_file_is_restored_from_the_staging_copy(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep, sweep)
    files = snapshot_files(sweep)
    cut = next(f for f in files if f.name.startswith("search_gen_state"))
    original = cut.read_bytes()
    sessions = tmp_path / "ray"
    stage(sessions, "session_1", cut, original[:0])  # the resumed driver's copy of the cut file
    whole_copy = stage(sessions, "session_2", cut, original)  # the killed driver's, whole
    (sessions / "session_latest").symlink_to(whole_copy.parents[4])  # Ray's link: the same file again
    untouched = {f: f.read_bytes() for f in files if f != cut}
    cut.write_bytes(b"")
    assert repair(sweep / "tune", sessions) == [cut.name]
    assert cut.read_bytes() == original
    assert {f: f.read_bytes() for f in untouched} == untouched
    assert repair(sweep / "tune", sessions) == []  # whole now: nothing to do


def test_only_the_snapshot_tune_reads_is_repaired(smoke_sweep, tmp_path):
    """Tune reads the newest file of each kind (the greatest name): an older one cut short,
    with no copy left anywhere, is no reason to refuse the resume. Identical whole copies
    (a resumed sweep's session stages the older snapshots again) are one copy."""
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep, sweep)
    newest = next(f for f in snapshot_files(sweep) if f.name.startswith("search_gen_state"))
    older = newest.with_name("search_gen_state-2000-01-01_00-00-00.json")
    older.write_bytes(newest.read_bytes()[:10])
    sessions = tmp_path / "ray"
    assert repair(sweep / "tune", sessions) == [] and older.read_bytes() == newest.read_bytes()[:10]
    original = newest.read_bytes()
    for session in ("session_1", "session_2"):
        stage(sessions, session, newest, original)
    newest.write_bytes(original[:-1])
    assert repair(sweep / "tune", sessions) == [newest.name] and newest.read_bytes() == original


def test_a_truncated_snapshot_file_without_a_sure_copy_stops_the_resume(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep, sweep)
    cut = next(f for f in snapshot_files(sweep) if f.name.startswith("experiment_state"))
    original = cut.read_bytes()
    cut.write_bytes(original[: len(original) // 2])
    sessions = tmp_path / "ray"
    with pytest.raises(ConfigError, match="truncated .* new --name"):
        repair(sweep / "tune", sessions)
    # two different whole copies staged by two sweeps started in the same second, neither
    # naming this one's folder: which is this sweep's cannot be told, so neither is taken
    stage(sessions, "session_1", cut, original)
    stage(sessions, "session_2", cut, original + b"\n")
    with pytest.raises(ConfigError, match="truncated"):
        repair(sweep / "tune", sessions)
    assert cut.read_bytes() == original[: len(original) // 2]


@pytest.mark.slow
def test_resume_after_a_cut_snapshot_file_restores_it_and_finishes(tmp_path, data_dir):
    """The whole path: a sweep whose search_gen_state was cut to 0 bytes in the sweep folder
    (as a kill during Tune's copy leaves it) resumes from Ray's own staging copy. The code
    before this fix printed Tune's EOFError traceback and started the search over."""
    args = ["lenet5", "--smoke-test", "--results-dir", str(tmp_path), "--name", "cut", "--quiet"]
    subprocess.run(RUN + args, check=True, capture_output=True, timeout=300)
    cut = next((tmp_path / "cut" / "tune").glob("search_gen_state-*.json"))
    original = cut.read_bytes()
    cut.write_bytes(b"")
    out = subprocess.run(RUN + args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{cut.name} was truncated by the kill; restored" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert cut.read_bytes() == original
