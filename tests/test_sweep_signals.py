"""Ctrl-C, SIGTERM and a killed driver: a sweep stops cleanly, says how to continue, and
`--resume` continues it without running finished trials again."""
from __future__ import annotations



import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


from .conftest import RUN, read_csv, read_events as events, study, write_spec
from .procs import cmdline, kill_session, session_pids


def start_one_at_a_time(tmp_path: Path, name: str, trials: int, fixed: dict, lr_high: float, **popen):
    """A lenet5 sweep in the background, one trial at a time, ASHA cutting after epoch 1 and the
    hopeless lr=1e-6 as trial 2: (its command's arguments, its folder, its process)."""
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=trials, max_concurrent=1,
                     scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                     fixed={"test_limit": 500, "batch_size": 32, **fixed},
                     space={"lr": {"loguniform": [1.0e-6, lr_high]}}, points=[{"lr": 1.0e-6}])
    args = ["lenet5", "--config", str(cfg), "--results-dir", str(tmp_path), "--name", name, "--quiet"]
    return args, tmp_path / name, subprocess.Popen(RUN + args, **popen)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path, data_dir, sig, code):
    """Ctrl-C (or SIGTERM: `kill`, `timeout`, a scheduler's time limit) after trial 1: the cut
    trial is "interrupted" (not failed, not stopped by ASHA), the console says how to resume
    and shows no stack dump (Ray's answer to SIGTERM); --resume must not re-run trial 1, and
    ASHA must still remember trial 1's rung values: the hopeless lr=1e-6 trial after the
    interruption is stopped."""
    # an epoch of a second or two: the Ctrl-C below lands inside trial 2's first
    args, sweep, proc = start_one_at_a_time(tmp_path, "resume", 3, {"epochs": 2, "train_limit": 12000}, 0.1,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    # Trial 2 has started (not merely trial 1 ended: a Ctrl-C between the two cut no trial,
    # seen in 3 of about 14 runs)
    while len({e["trial_id"] for e in events(sweep) if e["event"] == "start"}) < 2:
        assert proc.poll() is None and time.time() < deadline, "second trial never started"
        time.sleep(0.05)
    proc.send_signal(sig)  # while trial 2 trains its first epoch
    console = proc.communicate(timeout=120)[0]
    done_before = {e["trial_id"] for e in events(sweep) if e["event"] == "complete"}
    assert len(done_before) == 1
    assert proc.returncode == code and "Traceback" not in console and "SIGTERM received" not in console
    assert "interrupted" in console and "--name resume" in console and console.rstrip().splitlines()[-2].endswith(
        "--resume")
    cut = read_csv(sweep / "trials.csv")
    assert {r["status"] for r in cut} == {"completed", "interrupted"}
    cut_summary = json.loads((sweep / "summary.json").read_text())
    assert cut_summary["incomplete"] is True
    out = subprocess.run(RUN + args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_csv(sweep / "trials.csv")
    assert len(rows) == 3
    status = {float(r["config/lr"]): r["status"] for r in rows}
    assert status[0.001] == "completed" and status[1e-6] == "stopped_by_scheduler"
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["incomplete"] is False
    # the wall time covers the whole search: the part before Ctrl-C and the resumed part
    assert summary["wall_time_s"] > cut_summary["wall_time_s"] + 1.0
    starts = [e["trial_id"] for e in events(sweep) if e["event"] == "start"]
    for trial_id in done_before:
        assert starts.count(trial_id) == 1, f"finished trial {trial_id} was run again"
    assert len(study(sweep).trials) == 3


def end_of(proc: subprocess.Popen, timeout: float) -> tuple[str, list[int]]:
    """A signalled sweep's console, and what is left of its session 30 s after it ended (Ray's
    processes, the trials' among them, end with the driver); then nothing is."""
    try:
        console = proc.communicate(timeout=timeout)[0]
        left = session_pids(proc.pid)
        for _ in range(100):
            if not left:
                break
            time.sleep(0.3)
            left = session_pids(proc.pid)
        return console, left
    finally:
        kill_session(proc.pid, grace=1.0)


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_stops_the_sweep_cleanly_and_it_resumes(tmp_path, data_dir):
    """`timeout` and batch schedulers send SIGTERM to the sweep's whole process group. Were the
    embedded Ray's processes in it, Tune's clean stop would wait on the dead raylet forever (seen: `timeout 60 python sweeps/run.py mlp ...` still running a minute
    after its signal), and later Ray's core ended the driver with exit 1 and no word (seen
    in a full run). In a group of their own (internals.ray_processes_in_own_group) they are out of
    the signal's way: the sweep stops as on Ctrl-C, with its summary, the cut trial
    "interrupted", 143 and the resume command; no trial process trains on, and --resume
    finishes it without running trial 1 again."""
    args, sweep, proc = start_one_at_a_time(tmp_path, "group", 3, {"epochs": 2, "train_limit": 12000}, 0.1,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True)
    deadline = time.time() + 300
    while len({e["trial_id"] for e in events(sweep) if e["event"] == "start"}) < 2:
        assert proc.poll() is None and time.time() < deadline, "second trial never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # what `timeout` does
    console, left = end_of(proc, timeout=60)
    assert proc.returncode == 143 and "Traceback" not in console, console[-12000:]
    assert not left, [cmdline(p) for p in left]
    assert "reached Ray's own processes" not in console  # not the watchdog's way out
    resume = console.rstrip().splitlines()[-2]
    assert "--name group" in resume and resume.endswith("--resume")
    assert json.loads((sweep / "summary.json").read_text())["incomplete"] is True
    assert {r["status"] for r in read_csv(sweep / "trials.csv")} == {"completed", "interrupted"}
    done_before = {e["trial_id"] for e in events(sweep) if e["event"] == "complete"}
    out = subprocess.run(RUN + args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(read_csv(sweep / "trials.csv")) == 3
    starts = [e["trial_id"] for e in events(sweep) if e["event"] == "start"]
    assert done_before and all(starts.count(t) == 1 for t in done_before)


@pytest.mark.slow
def test_sigterm_while_ray_starts_stops_the_sweep_once_ray_has(tmp_path, data_dir):
    """Ray's start sets SIGTERM handlers of its own (drain the node and exit 1; raise
    SystemExit(15)). A SIGTERM in the middle of it ended the command with 15 and no word,
    or was lost and the sweep ran on to the end (seen with the signal 0.3 s after the
    raylet appeared). Now it waits until Ray has started, then stops as Ctrl-C does."""
    proc = subprocess.Popen(RUN + ["lenet5", "--smoke-test", "--results-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not any("gcs_server" in cmdline(p) for p in session_pids(proc.pid)):  # Ray's first process
        if proc.poll() is not None or time.time() > deadline:
            kill_session(proc.pid, grace=1.0)
            pytest.fail("Ray never started")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    console, left = end_of(proc, timeout=120)
    assert proc.returncode == 143 and "Traceback" not in console, console[-6000:]
    assert "interrupted: before the first trial" in console
    assert not left, [cmdline(p) for p in left]


def test_ray_start_handlers_are_kept_aside_and_a_held_signal_acts_after_it():
    """While Ray starts, the handlers it sets for SIGTERM are kept aside (ours stays in
    place) and come back after the sweep; a SIGTERM meanwhile waits, then becomes Ctrl-C."""
    from mnist_dist.tuning.execution import signals

    from .ray_private import set_sigterm_handler

    def rays(signum, frame):  # stands for the handler ray.init sets
        raise AssertionError("Ray's handler ran during its start")

    before = signal.getsignal(signal.SIGTERM)
    try:
        signals.stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            with signals.held_while_ray_starts():
                set_sigterm_handler(rays)
                assert signal.getsignal(signal.SIGTERM) is signals._as_ctrl_c
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # delivered here, and only noted
            pytest.fail("the held signal did not stop the sweep")
        assert signals.signalled() and signals.exit_code() == 143
        signals.restore_sigterm()
        assert signal.getsignal(signal.SIGTERM) is rays  # Ray's, after the sweep
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.slow
def test_the_watchdog_sees_a_ray_process_end():
    """A scheduler that signals every process of a job (Slurm does), not a process group,
    still reaches Ray's: the watchdog (signals.py) then ends the sweep instead of letting
    Tune wait on a dead raylet. What it looks at: any Ray process this driver started has
    ended; and the embedded Ray's processes are out of the driver's process group."""
    code = """
import os, signal, time, ray
from mnist_dist.tuning import internals
from mnist_dist.tuning.execution import ray_setup, signals
ray_setup.start_local_ray(num_cpus=1, dashboard=False, preload=False)
started = internals.ray_processes_by_kind()
before = signals._ray_processes_ended()
apart = all(os.getpgid(p.pid) != os.getpgrp() for processes in started.values() for p in processes)
monitor = started["log_monitor"][0]
os.kill(monitor.pid, signal.SIGTERM)
monitor.wait(timeout=30)
after = signals._ray_processes_ended()
ray_setup.stop_ray()
print(before, apart, after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["False", "True", "True"]


@pytest.mark.slow
def test_a_sweep_stopped_during_its_final_seeds_counts_no_cut_run(tmp_path):
    """SIGTERM while --final-seeds retrains: the cut seed run is "interrupted" (its last report
    said it was still running, and with no scheduler there that is no finished run), left out
    of the means, and the command exits 143 with the resume command, no stack dump."""
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=1, max_concurrent=1, scheduler={"type": "none"},
                     fixed={"epochs": 3, "train_limit": 12000, "test_limit": 500, "batch_size": 32},
                     space={"lr": {"choice": [0.001]}})
    args = ["lenet5", "--config", str(cfg), "--results-dir", str(tmp_path), "--name", "seeds",
            "--final-seeds", "1", "--quiet"]
    proc = subprocess.Popen(RUN + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    final = tmp_path / "seeds" / "final"
    deadline = time.time() + 300
    while not list(final.glob("*/checkpoint_*/model.pt")):  # the seed run's first epoch is saved
        assert proc.poll() is None and time.time() < deadline, "the seed run never saved an epoch"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    console = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143 and "Traceback" not in console and "SIGTERM received" not in console
    seeds = json.loads((tmp_path / "seeds" / "summary.json").read_text())["final_seeds"]
    assert seeds["incomplete"] is True and seeds["best"]["test_acc"] == [] and seeds["best"]["test_acc_mean"] is None
    assert [r["status"] for r in read_csv(final / "trials.csv")] == ["interrupted"]
    assert "final seeds interrupted" in console and console.rstrip().splitlines()[-2].endswith("--resume")


@pytest.mark.slow
def test_resume_after_a_killed_driver_keeps_stopped_trials_stopped_and_optuna_in_step(tmp_path):
    """SIGKILL the driver (no handler, no cleanup) just after ASHA stopped a trial, while the
    next one trains. Tune's snapshot may be seconds older than the kill; `--resume` must not
    start the stopped trial again, every trial keeps one whole history (epochs 1..n, each once),
    and Optuna's storage ends with exactly the trials of trials.csv, none left RUNNING."""
    args, sweep, proc = start_one_at_a_time(tmp_path, "killed", 4, {"epochs": 3, "train_limit": 4000}, 0.01,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while not any(e.get("status") == "stopped_by_scheduler" for e in events(sweep)):
            assert proc.poll() is None and time.time() < deadline, "no trial was stopped by ASHA"
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        kill_session(proc.pid)  # the killed driver's embedded Ray
    stopped = next(e["trial_id"] for e in events(sweep) if e.get("status") == "stopped_by_scheduler")
    out = subprocess.run(RUN + args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["trial_id"]: r for r in read_csv(sweep / "trials.csv")}
    # 4 trials, or 5 when the kill beat Tune's snapshot of the stopped one: Tune then starts
    # a new 4th trial, and the forgotten one is still reported (trained once, ended once).
    assert len(rows) in (4, 5) and rows[stopped]["status"] == "stopped_by_scheduler"
    assert rows[stopped]["epochs_run"] == "1"
    assert [e["event"] for e in events(sweep) if e["trial_id"] == stopped].count("complete") >= 1
    for trial_id, r in rows.items():
        hist = read_csv(sweep / "histories" / f"{trial_id}.csv")
        assert [int(h["epoch"]) for h in hist] == list(range(1, int(r["epochs_run"]) + 1)), trial_id
    trials = study(sweep).trials
    assert len(trials) == len(rows) and not [t for t in trials if t.state.name == "RUNNING"]
    by_id = {t.user_attrs["tune_trial_id"]: t for t in trials}
    assert set(by_id) == set(rows)
    state = {"completed": "COMPLETE", "stopped_by_scheduler": "PRUNED"}
    assert {tid: by_id[tid].state.name for tid in rows} == {tid: state[r["status"]] for tid, r in rows.items()}
