"""What a person sees: sweep progress, a console without noise or tracebacks for normal
events, the estimate before a slow sweep, a partial sweep marked in the report, and the
README's quick start run as written."""
from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

from mnist_dist.tuning.driver.console import SweepProgress

from .conftest import DATA_DIR, REPO, RUN, write_spec
from .procs import ray_started

NOISE = ("Traceback", "actor died", "Actor died", "INFO", "Checkpoint successfully created", "WARNING:")


def fake_trial(trial_id: str, **last) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, last_result=last)


@pytest.mark.parametrize("live", [False, True])
def test_sweep_progress_shows_trials_and_ends_at_100_percent(live):
    out = io.StringIO()
    progress = SweepProgress(3, "best_val_acc", "max", stream=out, live=live)
    for i, (status, acc) in enumerate([("completed", 0.97), ("running", 0.80), ("diverged", 0.0)]):
        t = fake_trial(f"t{i}", status=status, epoch=2, best_val_acc=acc)
        progress.on_trial_start(0, [], t)
        progress.on_trial_result(0, [], t, t.last_result)
        progress.on_trial_complete(0, [], t)
    progress.on_experiment_end([])
    text = out.getvalue()
    assert "100%" in text and "3/3" in text and "best so far: best_val_acc=0.9700" in text
    assert "stopped 1, failed 1" in text
    if live:  # a bar redrawn in place
        assert "\r" in text
    else:  # plain lines for logs: no carriage returns or escape codes, one per finished trial
        assert "\r" not in text and "\x1b" not in text
        assert "trial 2/3 t1: stopped by ASHA after 2 epoch(s), best_val_acc 0.8000" in text


def test_sweep_progress_says_the_time_left_from_the_epochs_expected(monkeypatch):
    """A sweep's trials differ in length, so its time left comes from epochs: those trained
    over the rate seen, against those expected under ASHA (estimate.epochs_to_go). The
    trial count gave none for the first quarter hour of a cnn_regularized sweep (its
    first trials, with no rivals, run all 30 epochs)."""
    import pickle

    from mnist_dist import progress as progress_module
    from mnist_dist.tuning.driver.estimate import epochs_expected, epochs_to_go, typical_epochs

    from mnist_dist.tuning.spec import load_spec

    spec = load_spec("cnn_regularized")  # 30 epochs, ASHA's rungs at 8 and 24
    left = epochs_expected(spec)
    assert left(0) * 20 == pytest.approx(typical_epochs(20, 30, 8, 3)) == pytest.approx(280)
    assert left(8) == pytest.approx(16 + 6 / 3) and left(24) == 6 and left(30) == 0  # past a rung: on to the next
    assert epochs_expected(spec, asha=False)(10) == 20 == epochs_to_go(10, 30)
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    progress = SweepProgress(20, "best_val_acc", "max", stream=out, live=False, epochs_left=left)
    progress = pickle.loads(pickle.dumps(progress))  # as Tune saves it with the sweep
    progress.stream = out
    a, b = fake_trial("a"), fake_trial("b")
    progress.on_trial_start(0, [], a)
    progress.on_trial_start(0, [], b)
    assert "epoch 0 of ~280" in progress.bar.postfix and "left" not in progress.bar.postfix
    clock[0] += 100  # two trials side by side, 10 epochs each in 100 s: 0.2 epochs/s
    for t in (a, b):
        progress.on_trial_result(0, [], t, {"epoch": 10, "best_val_acc": 0.99})
    expected = 20 + 2 * left(10) + 18 * left(0)
    assert f"epoch 20 of ~{expected:.0f}" in progress.bar.postfix
    assert f"about {progress_module.format_seconds((expected - 20) / 0.2)} left" in progress.bar.postfix
    a.last_result = {"status": "stopped_by_scheduler", "epoch": 10, "best_val_acc": 0.99}
    progress.on_trial_complete(0, [], a)  # a trial that ended is expected to train no more
    assert f"epoch 20 of ~{20 + left(10) + 18 * left(0):.0f}" in progress.bar.postfix
    line = progress.bar.line()
    assert "elapsed, about" in line and "trials/s" not in line and "<" not in line  # no ETA by trial count
    # without epochs_left (a caller that knows none) the count's own rate and ETA, as before
    plain = SweepProgress(3, "best_val_acc", "max", stream=io.StringIO(), live=False)
    plain.on_trial_start(0, [], a)
    assert "<" in plain.bar.line() and "left" not in plain.bar.postfix


def test_resumed_sweep_progress_counts_the_trials_that_had_ended(monkeypatch):
    """Tune pickles the callback with the sweep and `--resume` unpickles it: the display must
    start at the trials that ended before (3 of 5 here), on the new process's stdout."""
    import pickle

    before = SweepProgress(5, "best_val_acc", "max", stream=io.StringIO(), live=False)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    resumed = pickle.loads(pickle.dumps(before))
    ended = [SimpleNamespace(trial_id=f"t{i}", status=status, last_result={"status": s, "best_val_acc": acc})
             for i, (status, s, acc) in enumerate([("TERMINATED", "completed", 0.98),
                                                   ("TERMINATED", "stopped_by_scheduler", 0.91),
                                                   ("ERROR", "running", 0.5), ("PENDING", "running", 0.99)])]
    resumed.on_step_begin(0, ended)
    resumed.on_trial_start(0, ended, ended[3])
    t = fake_trial("t4", status="completed", epoch=3, best_val_acc=0.97)
    resumed.on_trial_complete(0, ended, t)
    resumed.on_experiment_end(ended)
    text = out.getvalue()
    assert "trial 4/5 t4: completed after 3 epoch(s)" in text
    assert "4/5 trials" in text and "stopped 1, failed 1" in text and "best_val_acc=0.9900" in text


def test_progress_pickled_by_the_previous_version_still_resumes(monkeypatch):
    """A sweep started before the display learnt to resume pickled the whole object (its
    bar included, no `total`): `--resume` must still show it, not crash in Tune's callback."""
    from mnist_dist.progress import Progress

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    old = object.__new__(SweepProgress)
    old.__setstate__({"metric": "best_val_acc", "mode": "max", "counts": {"done": 0, "stopped": 0, "failed": 0},
                      "running": set(), "best": None, "live": False,
                      "bar": Progress(7, desc="trials", stream=io.StringIO(), live=False)})
    old.on_experiment_end([SimpleNamespace(trial_id="t0", status="TERMINATED",
                                           last_result={"status": "completed", "best_val_acc": 0.9})])
    assert "1/7 trials" in out.getvalue()



@pytest.mark.slow
@pytest.mark.parametrize("workers, quiet", [(1, False), (2, True)])
def test_sweep_console_has_no_noise_and_no_traceback_when_asha_stops_trials(tmp_path, workers, quiet):
    """ASHA stopping trials is a normal event: no traceback, no "actor died", no Ray log lines,
    for the reused trial process and for DDP trials alike. The run begins with the estimate and
    ends with a table of the trials and where the results are; --quiet prints only that end.
    Without --quiet the sweep's best and baseline configs are retrained with one more seed."""
    cfg = write_spec(tmp_path / "s.yaml", trials=3, max_concurrent=1,
                     scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                     fixed={"epochs": 3, "train_limit": 2000, "test_limit": 500},
                     space={"lr": {"choice": [0.01, 1.0e-6, 0.05]}}, points=[{"lr": 1.0e-6}])
    args = ["mlp", "--config", str(cfg), "--results-dir", str(tmp_path), "--name", "c",
            "--workers", str(workers), "--data-dir", str(DATA_DIR)] + (["--quiet"] if quiet else ["--final-seeds", "1"])
    out = subprocess.run(RUN + args, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    rows = [json.loads(line) for line in (tmp_path / "c" / "events.jsonl").read_text().splitlines()]
    assert "stopped_by_scheduler" in {e["status"] for e in rows if e["event"] == "complete"}  # ASHA did stop one
    for noise in NOISE:
        assert noise not in console, f"{noise!r} in:\n{console[-3000:]}"
    lines = console.strip().splitlines()
    assert lines[-1].startswith(f"results: {tmp_path / 'c'}")
    report = lines[-1].split("(report: ", 1)[1].rstrip(")")  # a command the report's parser takes
    assert report == f"mnist-dist report {tmp_path}"
    assert any(line.startswith("trial     status") for line in lines) and "stopped by ASHA" in console
    if quiet:
        assert lines[0].startswith("sweep c: 3 trials") and "estimate" not in console and "trial 1/3" not in console
    else:
        assert lines[0].startswith("estimate on this machine:") and "trial 3/3" in console
        # the final seeds show their progress too
        # (one run, or two when the baseline config is not the best)
        runs = re.search(r"final seeds: 100% (\d)/\1 trials", console)
        assert runs and f"seed run {runs[1]}/{runs[1]} " in console, console[-3000:]


@pytest.mark.slow
def test_final_seeds_lines_compare_the_best_and_baseline_configs():
    from mnist_dist.tuning.driver.console import final_seeds_lines

    final = {"seeds": [1000, 2000, 3000], "test_acc": [0.994, 0.9942, 0.9938], "test_acc_mean": 0.994,
             "test_acc_std": 0.0002, "gain_over_baseline": 0.005, "beats_baseline": True,
             "baseline": {"test_acc": [0.989, 0.9892, 0.9888], "test_acc_mean": 0.989, "test_acc_std": 0.0002}}
    lines = final_seeds_lines(final)
    assert lines[0] == "final seeds 1000, 2000, 3000: best config 99.40 +/- 0.02% test accuracy"
    assert lines[1].endswith("98.90 +/- 0.02%: best - baseline +0.50 pp, beats it")
    close = {**final, "beats_baseline": False, "gain_over_baseline": 0.0001}
    assert final_seeds_lines(close)[1].endswith("+0.01 pp, within 2 std of it")
    assert final_seeds_lines(None) == [] and final_seeds_lines({"error": "no best config"}) == [
        "final seeds: no best config"]


def test_a_slow_sweep_is_estimated_before_it_trains(ray_watch):
    """alexnet on this CPU: a few real training steps, then the warning with the alternatives,
    and (--estimate-only) no Ray and no training."""
    env, ray_tmp = ray_watch
    out = subprocess.run(RUN + ["alexnet", "--estimate-only"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("WARNING: estimate on this machine:")
    for alternative in ("--smoke-test", "--trials", "ray up cluster.yaml", "--address auto"):
        assert alternative in out.stdout
    assert not ray_started(ray_tmp)
    hours = re.search(r"the sweep about (\d+):\d\d:\d\d", out.stdout)
    assert hours and int(hours.group(1)) >= 2  # over two hours on 2 CPU cores


@pytest.mark.slow
def test_report_marks_an_interrupted_sweep_as_partial(smoke_sweep, tmp_path):
    from mnist_dist.report.build import build_report

    shutil.copytree(smoke_sweep, tmp_path / smoke_sweep.name)
    path = tmp_path / smoke_sweep.name / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "incomplete": True, "interrupted_trials": 1}))
    build_report(tmp_path, log=lambda *a: None)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "partial results: the sweep was interrupted after 2 trials (1 cut short)" in html


def quick_start() -> list[str]:
    """The commands of the README's quick start block, in order."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


# Smoke-sized versions of the long commands; everything else runs exactly as written.
SMALLER = {"mnist-dist train lenet5": " --smoke-test",
           "python sweeps/run.py lenet5": " --smoke-test --name lenet5-mnist"}


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(tmp_path, mnist):
    """Each quick-start command in a fresh folder (with sweeps/run.py beside it), in order:
    the export is honoured, the sweep's model lands where predict looks for it."""
    commands = quick_start()
    assert commands[0].startswith("export MNIST_DIST_DATA_DIR=") and commands[-1].startswith("mnist-dist predict")
    (tmp_path / "sweeps").symlink_to(REPO / "sweeps")
    cv2.imwrite(str(tmp_path / "my_digit.jpg"), 255 - mnist.test_x[0].numpy())  # dark ink on white paper
    env_line = f"export MNIST_DIST_DATA_DIR={shlex.quote(str(DATA_DIR))}"  # this machine's data folder
    bindir = Path(sys.executable).parent
    for command in commands[1:]:
        run = command + SMALLER.get(command, "")
        if run.startswith("python "):
            run = shlex.quote(sys.executable) + run[len("python"):]
        script = f"set -e\nexport PATH={shlex.quote(str(bindir))}:$PATH\n{env_line}\n{run}\n"
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        if command.startswith("mnist-dist predict"):
            assert "my_digit.jpg" in out.stdout, out.stdout
    assert (tmp_path / "results" / "report" / "index.html").is_file()


@pytest.mark.parametrize("started", [False, True], ids=["before the first trial", "after"])
def test_ctrl_c_outside_tunes_run_says_whether_there_is_anything_to_resume(started, tmp_path, monkeypatch, capsys):
    """Ctrl-C while no Tune run holds the signal (the pre-flight timing, Ray's start, the
    ensemble) is a KeyboardInterrupt: no traceback, exit 130, and a resume command only when
    the sweep's folder holds a started search."""
    from mnist_dist.cli import main
    from mnist_dist.tuning.driver import runner

    def interrupted(spec, opts):
        if started:
            (tmp_path / "c" / "tune").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_sweep", interrupted)
    argv = ["lenet5", "--results-dir", str(tmp_path), "--name", "c", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["sweeps/run.py", *argv])  # what the resume command repeats
    code = main(["sweep", *argv])
    out = capsys.readouterr().out
    assert code == 130 and "Traceback" not in out
    if started:
        assert "the finished trials are kept" in out and out.rstrip().endswith("--name c --quiet --resume")
    else:
        assert "before the first trial; nothing to resume" in out and "--resume" not in out
