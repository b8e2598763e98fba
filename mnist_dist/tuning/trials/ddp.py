"""One Tune trial = one Ray Train run: a TorchTrainer with `workers` DDP workers.

Ray 2.60 (Train V2) no longer takes a Trainer as a Tune trainable; the
supported shape is a function trainable that builds and fits a TorchTrainer
whose callbacks relay each report to Tune. The Train run is named after the
Tune trial, so when Tune retries a failed trial, Train finds that run's last
checkpoint in storage and the workers resume from it instead of from epoch 1.
"""
from __future__ import annotations

import ray.train
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from ...config import TrainConfig
from ...training.loop import train_func_per_worker
from ..options import Scaling


def finished_run(path: str) -> dict | None:
    """The last report of the Ray Train run at `path` if that run went to its end (with its
    checkpoint's path, as TuneReportCallback reports it); None if it never started or
    stopped part-way."""
    try:
        result = ray.train.Result.from_path(path)
    except (RuntimeError, OSError, ValueError):  # no such run (yet)
        return None
    if not (result.metrics or {}).get("finished") or result.checkpoint is None:
        return None
    return {**result.metrics, "checkpoint_path": result.checkpoint.path}


def run_trial(params: dict, base: dict, scaling: Scaling, storage: str) -> None:
    """Tune function trainable: base config + the searcher's params -> a Ray Train run."""
    cfg = TrainConfig.from_dict({**base, **params}, source="trial config").to_dict()
    trial_id = tune.get_context().get_trial_id()
    # Tune snapshots the sweep every 10 s or more; a driver killed within that window of a
    # trial's end leaves it "running" in the snapshot, and --resume starts it again. Its
    # Train run has finished: hand Tune the final result instead of training again.
    if (done := finished_run(f"{storage}/train-{trial_id}")) is not None:
        tune.report(done)
        return
    trainer = TorchTrainer(
        train_func_per_worker,
        train_loop_config=cfg,
        scaling_config=scaling.ray_config(),
        torch_config=TorchConfig(backend="nccl" if scaling.gpus_per_worker else "gloo"),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}", storage_path=storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),  # it holds the best model too
            # controller_failure_limit defaults to -1 (retry forever), which turns a worker
            # group that cannot be scheduled into a hang; fail the trial instead.
            failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures,
                                                   controller_failure_limit=2)))
    trainer.fit()
