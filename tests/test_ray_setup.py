"""The Ray a sweep runs on: bad input stops before it starts, GPUs per trial, the embedded
Ray's ports, its prestarted trial processes and their environment."""
from __future__ import annotations


import argparse

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


from .conftest import REPO, RUN, write_spec
from .procs import ray_started


@pytest.mark.parametrize("args, message", [
    (["resnet"], "known: mlp"),
    (["mlp", "--trials", "-1"], "must be >= 1"),
    (["mlp", "--workers", "2", "--gpus-per-worker", "0.5"], "Duplicate GPU"),
    (["mlp", "--gpus-per-worker", "some"], "'some' is not a number"),
    (["mlp", "--resume", "--name", "never-ran"], "no sweep to resume"),
])
def test_bad_cli_input_fails_before_ray_starts(args, message, tmp_path, ray_watch):
    env, ray_tmp = ray_watch
    out = subprocess.run(RUN + args + ["--results-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and message in out.stderr
    assert not ray_started(ray_tmp)


def test_gpus_per_worker_auto_follows_the_gpus_ray_sees():
    """Default auto: nothing without GPUs; with them a quarter GPU per single-worker trial and
    a whole one per DDP worker; a number given is kept as it is."""
    from mnist_dist.tuning.driver.cli import add_arguments
    from mnist_dist.tuning.execution.plan import concurrency, resolve_gpus
    from mnist_dist.tuning.options import Scaling

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["mlp"]).gpus_per_worker is None
    assert p.parse_args(["mlp", "--gpus-per-worker", "AUTO"]).gpus_per_worker is None
    assert p.parse_args(["mlp", "--gpus-per-worker", "0.5"]).gpus_per_worker == 0.5
    one, ddp = Scaling(1, 1.0, None), Scaling(2, 1.0, None)
    cpu_only, gpu_box = {"CPU": 16.0}, {"CPU": 16.0, "GPU": 2.0}
    assert resolve_gpus(one, cpu_only).gpus_per_worker == 0.0
    assert resolve_gpus(one, gpu_box).gpus_per_worker == 0.25
    assert resolve_gpus(ddp, gpu_box).gpus_per_worker == 1.0
    assert resolve_gpus(Scaling(1, 1.0, 0.0), gpu_box).gpus_per_worker == 0.0  # asked for none
    assert resolve_gpus(Scaling(1, 1.0, 0.5), cpu_only).gpus_per_worker == 0.5
    # 2 GPUs at a quarter each: 8 trials at once, though the CPUs would take 16
    fake_ray = type("R", (), {"cluster_resources": staticmethod(lambda: gpu_box)})
    assert concurrency(fake_ray, resolve_gpus(one, gpu_box), None) == 8


def test_unknown_yaml_key_is_an_error(tmp_path):
    cfg = write_spec(tmp_path / "bad.yaml", trials=2, space={"lr": {"loguniform": [0.001, 0.1]}},
                     fixed={"batch_sise": 32})
    out = subprocess.run(RUN + ["mlp", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown key 'batch_sise'" in out.stderr and "batch_size" in out.stderr


@pytest.mark.slow  # starts Ray
def test_embedded_ray_starts_when_its_dashboard_port_is_taken_meanwhile():
    """free_port()'s port can be taken before Ray's dashboard binds it (a full test run once
    failed on it: "Failed to bind ... already occupied"); the start tries another port."""
    code = """
import socket, ray
from mnist_dist.tuning.execution import ray_setup
taken = socket.socket(); taken.bind(("127.0.0.1", 0)); taken.listen()
ports = [taken.getsockname()[1]]
real = ray_setup.free_port
def free_port():
    port = ports.pop() if ports else real()
    ports_given.append(port)
    return port
ports_given = []
ray_setup.free_port = free_port
ray_setup.start_local_ray(num_cpus=1)
print(len(ports_given), ray.is_initialized(), ray.cluster_resources().get("CPU"))
ray_setup.stop_ray()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["2", "True", "1.0"]


@pytest.mark.slow
def test_trials_start_in_workers_ray_started_ahead_with_torch_imported():
    """A sweep's first trial processes are the Python workers Ray starts with the cluster,
    torch and the trial module imported as they start (ray_setup.PRELOAD): otherwise a trial
    waits ~6 s for its process here. Each worker says when its imports are done, and the
    sweep waits for them before its first trial. Tune gives each trial actor a runtime_env
    of its own, which kept it off those workers; the actor here is made the way Tune makes it."""
    code = """
import os, sys, time, ray
from mnist_dist.tuning import internals
from mnist_dist.tuning.execution import ray_setup
from tests.ray_private import tune_actor_class
ray_setup.start_local_ray(num_cpus=2, dashboard=False)  # as a sweep of single-worker trials starts it
raylet = internals.ray_processes_by_kind()["raylet"][0].pid
def workers():  # the raylet's idle Python workers now
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat, cmd = open(f"/proc/{pid}/stat").read(), open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == raylet and cmd.startswith("ray::IDLE"):
            found.add(int(pid))
    return found
folder = ray_setup._ready[0][0]  # the wait removes it: read the markers first
t0 = time.time()
while len([n for n in os.listdir(folder) if n.isdigit()]) < 2 and time.time() - t0 < 60:
    time.sleep(0.05)
ready = {int(n) for n in os.listdir(folder) if n.isdigit()}
waited = ray_setup.wait_for_trial_processes(3, timeout_s=60)  # only 2 were started: 2 it is, no wait
ahead = workers()
class Probe:
    def look(self):
        from mnist_dist.tuning.trials.reused import use_trial_cpus
        import torch
        use_trial_cpus()
        return (os.getpid(), "mnist_dist.tuning.trials.reused" in sys.modules, "torch._dynamo" in sys.modules,
                torch.get_num_threads(), {k: os.environ.get(k) for k in env})
env = ray_setup.runtime_env()["env_vars"]  # what the sweep's workers must see, now by inheritance
pid, trial_module, dynamo, threads, seen = ray.get(tune_actor_class(Probe).options(num_cpus=1).remote().look.remote())
assert seen == env and env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "600", (seen, env)
head = internals.ray_processes_by_kind()["dashboard"][0].pid
dashboard = "--disable-frontend" not in open(f"/proc/{head}/cmdline").read()  # Ray keeps a bare head
ray_setup.stop_ray()
print(len(ahead), ready == ahead, waited < 5, pid in ahead, trial_module, dynamo, threads, dashboard,
      os.path.exists(folder))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-9:] == ["2", "True", "True", "True", "True", "True", "1", "False", "False"]


def test_a_trial_process_says_it_is_ready_even_when_its_imports_fail(tmp_path):
    """The driver waits for the workers' ready files before the first trial; a worker whose
    imports failed must still write one (its trial reports the error), or every sweep would
    wait out the whole timeout."""
    code = "import sys; sys.modules['torch'] = None; import mnist_dist.tuning.execution.prestart"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MNIST_DIST_READY_DIR": str(tmp_path)})
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
    names = os.listdir(tmp_path)
    ready = [n for n in names if n.isdigit()]
    assert len(ready) == 1 and sorted(names) == [ready[0], f"{ready[0]}.start"]


def test_the_driver_does_not_wait_for_a_worker_that_died_importing(tmp_path, monkeypatch):
    """A prestarted worker says it has started (PID.start) before its imports: one killed
    while importing (out of memory, say) is then not waited for, where the sweep would
    otherwise wait out the whole 60 s for it."""
    from mnist_dist.tuning.execution import ray_setup

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # an exited process: a worker killed mid-import
    folder = tmp_path / "died"  # the wait removes its folder
    folder.mkdir()
    (folder / str(os.getpid())).touch()  # one worker ready
    (folder / f"{gone.pid}.start").touch()  # one that started and died
    monkeypatch.setattr(ray_setup, "_ready", [(folder, 2)])
    assert ray_setup.wait_for_trial_processes(2, timeout_s=30) < 5
    # one still importing (alive, not ready) is waited for
    folder = tmp_path / "live"
    folder.mkdir()
    (folder / f"{gone.pid}").touch()
    (folder / f"{os.getpid()}.start").touch()
    monkeypatch.setattr(ray_setup, "_ready", [(folder, 2)])
    assert ray_setup.wait_for_trial_processes(2, timeout_s=1.0) >= 1.0


def test_rays_processes_import_the_package_the_driver_runs(tmp_path):
    """`sweeps/run.py` runs from a checkout without an install: Ray's processes inherit the
    environment, not the driver's sys.path, so it leads their PYTHONPATH with the folder
    the driver's mnist_dist came from. Without it the prestarted workers could not import
    the preload and the first trial waited the whole 60 s (2026-11-27). A copy of the
    package elsewhere stands for such a checkout: a process started with the environment
    imports that copy, not the installed one."""
    import mnist_dist
    from mnist_dist.tuning.execution.ray_setup import importable_here

    checkout = tmp_path / "checkout"
    shutil.copytree(Path(mnist_dist.__file__).parent, checkout / "mnist_dist",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = importable_here({"PYTHONPATH": f"elsewhere{os.pathsep}{checkout}"}, package_dir=checkout)
    assert env["PYTHONPATH"] == f"{checkout}{os.pathsep}elsewhere"  # first, and once
    found = subprocess.run([sys.executable, "-c", "import mnist_dist; print(mnist_dist.__file__)"],
                           env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()).parent == checkout / "mnist_dist"
    # by default: the folder this process's mnist_dist came from
    assert importable_here({})["PYTHONPATH"].split(os.pathsep)[0] == str(Path(mnist_dist.__file__).parents[1])


def test_an_embedded_ray_starts_with_the_drivers_package_on_its_path(monkeypatch):
    """The processes ray.init starts inherit os.environ as it is during the call."""
    import ray

    import mnist_dist
    from mnist_dist.tuning.execution import ray_setup

    seen = []
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(os.environ.get("PYTHONPATH", "")))
    ray_setup.start_local_ray(num_cpus=1, preload=False, dashboard=False)
    assert seen and seen[0].split(os.pathsep)[0] == str(Path(mnist_dist.__file__).parents[1])
    assert os.environ.get("PYTHONPATH", "") != seen[0]  # put back after the start


def test_workers_get_absolute_data_paths(monkeypatch, tmp_path):
    """Ray runs each trial in its own folder, so a relative $MNIST_DIST_DATA_DIR (as in
    `MNIST_DIST_DATA_DIR=../shared/data python sweeps/run.py ...`) must reach them resolved."""
    from mnist_dist.tuning.execution.ray_setup import runtime_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_DIST_DATA_DIR", "../data")
    env = runtime_env()["env_vars"]
    assert env["MNIST_DIST_DATA_DIR"] == str(tmp_path.parent / "data")
    assert env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "600"


@pytest.mark.parametrize("cuda, initialized, gpu_ids, device", [
    (False, True, [0], "cpu"), (True, True, [], "cpu"), (True, True, [0], "cuda"), (True, False, [], "cuda")],
    ids=["no CUDA", "given no GPU", "given a GPU", "outside Ray"])
def test_a_trial_trains_on_the_device_ray_gave_it(cuda, initialized, gpu_ids, device, monkeypatch):
    """A trial that asked for no GPU trains on the CPU even where CUDA is there."""
    import ray
    import torch

    from mnist_dist.tuning.trials.reused import trial_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(ray, "is_initialized", lambda: initialized)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: gpu_ids)
    assert trial_device().type == device
