"""How trials run on Ray: which trainable (a reused single-worker trial process, or a Ray
Train DDP run), the resources each asks for, how many fit at once, retries and checkpoints."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ... import layout
from ...config import ConfigError
from ..options import Scaling

# --gpus-per-worker auto on a GPU: single-worker trials of these small models are bound by
# kernel launches, so several share a GPU at almost no cost to each. On an H200, 4 lenet5
# trainings at once ran at 3.85x the images/s of one, 8 at 6.24x (docs/performance.md#gpu-nvidia-h200).
AUTO_GPU_SHARE = 0.25


def resolve_gpus(scaling: Scaling, resources: dict) -> Scaling:
    """--gpus-per-worker auto (None), given Ray's cluster resources: no GPU where there is none;
    else AUTO_GPU_SHARE of one per single-worker trial and a whole one per DDP worker (NCCL
    takes one rank per GPU). GPUs an autoscaler has not started yet are not seen: on such a
    cluster, pass --gpus-per-worker."""
    if scaling.gpus_per_worker is not None:
        return scaling
    share = 0.0 if not resources.get("GPU") else AUTO_GPU_SHARE if scaling.workers == 1 else 1.0
    return dataclasses.replace(scaling, gpus_per_worker=share)


def trials_that_fit(scaling: Scaling, resources: dict) -> int:
    """Trials that `resources` ({"CPU": n, "GPU": m}) hold at once, by CPUs and by GPUs."""
    fit = math.floor(resources.get("CPU", 0) / (scaling.workers * scaling.cpus_per_worker) + 1e-9)
    if scaling.gpus_per_worker:
        fit = min(fit, math.floor(resources.get("GPU", 0) / (scaling.workers * scaling.gpus_per_worker) + 1e-9))
    return fit


def trials_per_gpu(scaling: Scaling) -> int:
    """How many single-worker trials share one GPU (1 where none is shared)."""
    if scaling.workers == 1 and 0 < (scaling.gpus_per_worker or 0) < 1:
        return math.floor(1 / scaling.gpus_per_worker + 1e-9)
    return 1


def concurrency(ray, scaling: Scaling, limit: int | None, autoscaling: bool = False) -> int:
    """Trials that fit at once: the Train workers hold the resources, the trial itself none.
    On a cluster (--address) an explicit limit is taken as given: the autoscaler adds nodes."""
    if autoscaling and limit:
        return limit
    res = ray.cluster_resources()
    fit = trials_that_fit(scaling, res)
    if fit < 1:
        raise ConfigError(f"one trial needs {scaling.workers} workers x {scaling.cpus_per_worker} CPU"
                          f" x {scaling.gpus_per_worker} GPU but the cluster has {res.get('CPU', 0)} "
                          f"CPU and {res.get('GPU', 0)} GPU; lower --workers or per-worker resources")
    return min(fit, limit) if limit else fit


def reuses_processes(scaling: Scaling) -> bool:
    """Single-worker trials run in a reused trial process; DDP trials need Ray Train."""
    return scaling.workers == 1


def make_trainable(opts, sweep_dir: Path, base: dict, ended: frozenset[str] = frozenset()):
    """The Tune trainable for every trial of the sweep, `base` being the config they share and
    `ended` the trials a resumed sweep keeps ended (recovery.Recovery.ended)."""
    from ray import tune

    if reuses_processes(opts.scaling):
        from ..trials.reused import EpochTrainable

        trainable = tune.with_parameters(EpochTrainable, base=base, ended=ended)
        resources = {"cpu": opts.scaling.cpus_per_worker, "gpu": opts.scaling.gpus_per_worker}
        trainable = tune.with_resources(trainable, resources)
        # Ray names an actor's process after its class's qualified name: `ray::EpochTrainable`
        # in ps and the dashboard, not the wrapper's `ResourceTrainable`
        trainable.__qualname__ = EpochTrainable.__name__
        return trainable
    from ..trials.ddp import run_trial  # Ray Train: imported only for DDP trials (over a second)

    fn = tune.with_parameters(run_trial, base=base, scaling=opts.scaling, storage=str(sweep_dir / layout.TRAIN))
    # The trial itself only waits on its TorchTrainer; its Train workers ask for the CPUs/GPUs.
    # A placement group cannot be empty, so it holds a token 1 MB of memory, not a CPU.
    return tune.with_resources(fn, {"memory": 1 << 20})


def tune_failures(scaling: Scaling) -> int:
    """Tune-level retries: a reused trial process restarts from its last epoch's checkpoint
    (Tune restores it); a DDP trial is first restarted by Ray Train itself, then once by Tune."""
    return scaling.max_failures if reuses_processes(scaling) else 1


def trial_checkpoints(keep: int = 1):
    """A trial keeps only its latest checkpoint (it holds the best model too). With num_to_keep
    set, Tune also snapshots the sweep after each checkpoint, so `--resume` after a hard kill
    finds every trial at its last epoch, not where a snapshot up to 10 s old left it. A PBT
    sweep keeps 3: a trial taking over another's checkpoint must find it still there."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=keep)
