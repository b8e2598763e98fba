"""Run a sweep: Ray Tune + Optuna TPE choosing configs, one Ray Train run per trial,
ASHA stopping poor trials early; then collect everything under results/<name>/."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import ConfigError, save_json
from .spec import DefineByRun, SweepSpec, initial_points, max_epochs
from .trial import Scaling, run_trial

SMOKE = {"train_limit": 1000, "test_limit": 500}  # --smoke-test: tiny data, 1 epoch, 2 trials


@dataclass
class SweepOptions:
    results_dir: str = "results"
    name: str | None = None
    scaling: Scaling = Scaling()
    max_concurrent: int | None = None
    address: str | None = None  # None: start an embedded local Ray sized to this machine
    resume: bool = False
    smoke_test: bool = False
    data_dir: str | None = None
    storage: str | None = None  # Optuna storage URL; default sqlite in the sweep folder
    final_seeds: int = 0
    verbose: int = 1  # 0: nothing while it runs (--quiet); 1: our progress display
    ray_logs: bool = False  # Ray's worker logs and Tune's status tables on the console too


def data_label(spec: SweepSpec) -> str:
    """The dataset's name, or an image folder's."""
    return Path(spec.fixed["images"]).name if spec.fixed.get("images") else spec.dataset


def sweep_name(spec: SweepSpec, opts: SweepOptions) -> str:
    return opts.name or f"{spec.arch}-{data_label(spec)}" + ("-smoke" if opts.smoke_test else "")


class SweepLock:
    """Holds a sweep folder for the life of one driver: an OS lock on `.lock` inside it,
    which the kernel drops when the process ends, however it ends (so a crashed driver
    never leaves the folder stuck, and `--resume` can take it over at once). The file
    names the holder so a second driver's error can say who has it."""

    def __init__(self, sweep_dir: Path):
        import fcntl
        import socket

        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(sweep_dir / ".lock", "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"{sweep_dir} is in use by a running sweep ({holder}); wait for it to "
                              "finish, or pass --name to start a separate sweep") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.close()  # closing the file releases the lock


def prepare_dir(spec: SweepSpec, opts: SweepOptions) -> tuple[Path, SweepLock]:
    """Claim the sweep's folder, then check it holds what the options say."""
    sweep_dir = (Path(opts.results_dir) / sweep_name(spec, opts)).resolve()
    lock = SweepLock(sweep_dir)
    tune_dir = sweep_dir / "tune"
    try:
        if opts.resume and not tune_dir.exists():
            raise ConfigError(f"--resume: {sweep_dir} holds no sweep to resume")
        if not opts.resume and tune_dir.exists():
            raise ConfigError(f"{sweep_dir} already holds a sweep; pass --resume to continue it, "
                              "or --name to start a new one")
    except ConfigError:
        lock.release()
        raise
    return sweep_dir, lock


def base_config(spec: SweepSpec, opts: SweepOptions) -> dict:
    """What every trial shares; the searcher's params are laid over it."""
    from ..config import resolve

    # the registry baseline fills every key that is neither searched nor fixed
    base = resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset, "seed": spec.seed}).to_dict()
    if opts.data_dir:
        base["data_dir"] = str(Path(opts.data_dir).resolve())
    if base.get("images"):  # trials run in their own folders: paths must be absolute
        base["images"] = str(Path(base["images"]).expanduser().resolve())
    if opts.smoke_test:
        base.update(SMOKE, epochs=1)
    return base


# Ray Train's controller collects worker reports when it polls them, every 2 s by
# default: a 0.2 s epoch then takes 2 s. Polling at 0.2 s costs little CPU.
# A worker group that takes over 60 s to start fails its trial; on a loaded machine (or
# while a stopped trial's workers are being released) it should wait, so allow 10 min.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600"}
# Snapshotting the sweep after every epoch's checkpoint is what we want (see trial_checkpoints);
# Tune warns about it when epochs are short.
DRIVER_ENV = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def runtime_env() -> dict:
    env = {**RAY_ENV, **{k: v for k, v in os.environ.items() if k.startswith(("MNIST_DIST_", "RAY_TRAIN_"))}}
    for key in ("MNIST_DIST_DATA_DIR", "MNIST_DIST_CACHE_DIR"):  # workers run in their trial's folder
        if env.get(key):
            env[key] = str(Path(env[key]).expanduser().resolve())
    return {"env_vars": env}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))  # free on every interface, loopback included
        return s.getsockname()[1]


def start_local_ray(num_cpus: int | None = None, env: dict | None = None, log_to_driver: bool = False):
    """Start an embedded Ray whose processes all know where its State API lives.

    Ray Train's placement-group cleaner (a detached actor) asks the State API whether
    its controller is alive, with no address; with two Ray instances on one machine
    that look-up fails ("Found multiple active Ray instances") and the workers of a
    trial ASHA stopped are never released, so later trials wait for CPUs forever.
    Pinning the dashboard port and handing its URL to every worker fixes the look-up.
    """
    import ray

    port = free_port()
    env = {**(env or runtime_env()["env_vars"]), "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    # log_to_driver: the workers' output (per-checkpoint lines, a stopped trial's "actor
    # died") stays in Ray's log files instead of the console
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=port, runtime_env={"env_vars": env}, log_to_driver=log_to_driver,
             logging_level=logging.INFO if log_to_driver else logging.ERROR)
    return ray


def init_ray(opts: SweepOptions):
    import ray

    if ray.is_initialized():  # e.g. tests sharing one instance
        return ray
    env = runtime_env()["env_vars"]
    if not opts.ray_logs:
        from .console import quiet_ray

        quiet_ray()
        # Tune's newer console output prints its own boxes and paths even at verbose=0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if opts.address:  # a cluster runs one Ray per machine: its State API is found as usual
        ray.init(address=opts.address, runtime_env={"env_vars": env}, log_to_driver=opts.ray_logs,
                 logging_level=logging.INFO if opts.ray_logs else logging.ERROR)
        return ray
    return start_local_ray(env=env, log_to_driver=opts.ray_logs)


def concurrency(ray, scaling: Scaling, limit: int | None, autoscaling: bool = False) -> int:
    """Trials that fit at once: the Train workers hold the resources, the trial itself none.
    On a cluster (--address) an explicit limit is taken as given: the autoscaler adds nodes."""
    if autoscaling and limit:
        return limit
    res = ray.cluster_resources()
    fit = math.floor(res.get("CPU", 0) / (scaling.workers * scaling.cpus_per_worker) + 1e-9)
    if scaling.gpus_per_worker:
        fit = min(fit, math.floor(res.get("GPU", 0) / (scaling.workers * scaling.gpus_per_worker) + 1e-9))
    if fit < 1:
        raise ConfigError(f"one trial needs {scaling.workers} workers x {scaling.cpus_per_worker} CPU"
                          f" x {scaling.gpus_per_worker} GPU but the cluster has {res.get('CPU', 0)} "
                          f"CPU and {res.get('GPU', 0)} GPU; lower --workers or per-worker resources")
    return min(fit, limit) if limit else fit


def reuses_processes(scaling: Scaling) -> bool:
    """Single-worker trials run in a reused trial process; DDP trials need Ray Train."""
    return scaling.workers == 1


def make_trainable(spec, opts, sweep_dir: Path, base: dict | None = None):
    from ray import tune

    base = base or base_config(spec, opts)
    if reuses_processes(opts.scaling):
        from .trainable import EpochTrainable

        trainable = tune.with_parameters(EpochTrainable, base=base, events=str(sweep_dir / "events.jsonl"))
        resources = {"cpu": opts.scaling.cpus_per_worker, "gpu": opts.scaling.gpus_per_worker}
        trainable = tune.with_resources(trainable, resources)
        # Ray names an actor's process after its class's qualified name: `ray::EpochTrainable`
        # in ps and the dashboard, not the wrapper's `ResourceTrainable`
        trainable.__qualname__ = EpochTrainable.__name__
        return trainable
    fn = tune.with_parameters(run_trial, base=base, scaling=opts.scaling, storage=str(sweep_dir / "train"))
    # The trial itself only waits on its TorchTrainer; its Train workers ask for the CPUs/GPUs.
    # A placement group cannot be empty, so it holds a token 1 MB of memory, not a CPU.
    return tune.with_resources(fn, {"memory": 1 << 20})


def tune_failures(scaling: Scaling) -> int:
    """Tune-level retries: a reused trial process restarts from its last epoch's checkpoint
    (Tune restores it); a DDP trial is first restarted by Ray Train itself, then once by Tune."""
    return scaling.max_failures if reuses_processes(scaling) else 1


def trial_checkpoints():
    """A trial keeps only its latest checkpoint (it holds the best model too). With num_to_keep
    set, Tune also snapshots the sweep after each checkpoint, so `--resume` after a hard kill
    finds every trial at its last epoch, not where a snapshot up to 10 s old left it."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=1)


def make_searcher(spec: SweepSpec, sweep_dir: Path, opts: SweepOptions, name: str):
    import optuna

    from .searcher import BudgetAwareOptunaSearch

    url = opts.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url)  # OptunaSearch wants the object, not the URL
    return BudgetAwareOptunaSearch(
        space=DefineByRun(spec.space), metric=spec.metric, mode=spec.mode,
        points_to_evaluate=initial_points(spec) or None,
        sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(5, spec.trials)),
        study_name=name, storage=storage)


def make_scheduler(spec: SweepSpec, sweep_dir: Path):
    from ray.tune.schedulers import FIFOScheduler

    from .scheduler import ResumableASHA

    if spec.scheduler.type == "none":
        return FIFOScheduler()
    return ResumableASHA(sweep_dir / "asha-state.pkl", time_attr="training_iteration",
                         metric=spec.metric, mode=spec.mode,
                         max_t=max_epochs(spec), grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)


def make_tuner(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path, ray, trials: int):
    from ray import tune

    from .events import EventLog

    from .console import SweepProgress

    name = sweep_name(spec, opts)
    trainable = make_trainable(spec, opts, sweep_dir)
    callbacks = [EventLog(sweep_dir / "events.jsonl")]
    if opts.verbose and not opts.ray_logs:
        callbacks.append(SweepProgress(trials, spec.metric, spec.mode))
    if opts.resume:
        return tune.Tuner.restore(str(sweep_dir / "tune"), trainable=trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(spec, sweep_dir, opts, name), scheduler=make_scheduler(spec, sweep_dir),
            num_samples=trials, reuse_actors=reuses_processes(opts.scaling),
            max_concurrent_trials=concurrency(ray, opts.scaling, opts.max_concurrent or spec.max_concurrent,
                                              autoscaling=bool(opts.address))),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(sweep_dir), verbose=1 if opts.ray_logs and opts.verbose else 0,
            failure_config=tune.FailureConfig(max_failures=tune_failures(opts.scaling)),
            checkpoint_config=trial_checkpoints(),
            callbacks=callbacks))


def apply_smoke_test(spec: SweepSpec) -> None:
    """--smoke-test: 2 trials of 1 epoch, so nothing to schedule and no epochs to search."""
    spec.trials, spec.scheduler.type = min(spec.trials, 2), "none"
    spec.space.pop("epochs", None)
    spec.fixed["epochs"] = 1


def run_sweep(spec: SweepSpec, opts: SweepOptions) -> dict:
    """Run (or resume) the sweep and write its results; returns summary.json's contents."""
    if opts.smoke_test:
        apply_smoke_test(spec)
    sweep_dir, lock = prepare_dir(spec, opts)
    try:
        return _run(spec, opts, sweep_dir)
    finally:
        lock.release()


def _run(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path) -> dict:
    from .results import collect

    resolved = {"sweep": spec.to_dict(), "options": asdict(opts), "base_config": base_config(spec, opts)}
    if not opts.resume:
        save_json(resolved, sweep_dir / "config.json")
        _write_yaml(resolved, sweep_dir / "config.yaml")
    if opts.verbose and not opts.resume:
        print(preflight(spec, opts, resolved["base_config"])["message"], flush=True)
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    ray = init_ray(opts)
    t0 = time.time()
    grid = make_tuner(spec, opts, sweep_dir, ray, spec.trials).fit()
    summary = collect(grid, spec, opts, sweep_dir, wall_time=time.time() - t0)
    if opts.final_seeds and not summary.get("interrupted"):
        from .final import run_final_seeds

        summary["final_seeds"] = run_final_seeds(spec, opts, sweep_dir, summary, ray)
        save_json(summary, sweep_dir / "summary.json")
    return summary


def preflight(spec: SweepSpec, opts: SweepOptions, base: dict) -> dict:
    """Time a few steps of the baseline here, before Ray starts, and estimate the sweep."""
    from .estimate import describe, estimate

    slots = opts.max_concurrent or spec.max_concurrent
    if not slots:  # on this machine: as many trials as its CPUs (or GPUs) hold
        slots = max(1, math.floor((os.cpu_count() or 1) / (opts.scaling.workers * opts.scaling.cpus_per_worker)))
    est = estimate(spec, base, slots)
    return {**est, "message": describe(est, spec.arch)}


def _write_yaml(obj: dict, path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False))
