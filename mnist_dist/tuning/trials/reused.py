"""A single-worker trial as a Tune class Trainable, in a process reused from trial to trial.

A Ray Train run per trial costs 15-18 s of process start-up here (a controller and a
worker group, each importing Ray Train and torch and loading the dataset). A trial that
needs no data parallelism does not need any of it: this Trainable trains one epoch per
`step()` in its own actor, and with `reuse_actors=True` Tune hands the actor the next
trial through `reset_config` instead of starting a new process. torch is imported once,
the dataset loaded once per process (on the GPU when there is one) and the CUDA context
kept. Unlike a function trainable it can be reset after ASHA stopped it mid-run.

Every epoch is checkpointed (`should_checkpoint` in the result): a trial whose process or
node dies is restarted by Tune from its last epoch, and `--resume` continues from there.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from ray import tune

from ... import layout
from ...config import TrainConfig
from ...training.loop import EpochRun, Trainer, cached_data
from ...training.reporting import read_checkpoint, write_checkpoint
from .. import internals

def newest_checkpoint(trial_dir: Path) -> Path | None:
    """The latest checkpoint folder a trial wrote (Tune keeps one, briefly two)."""
    # both files: a resume reads the best weights there
    return internals.newest_checkpoint(trial_dir, layout.RESUME, layout.MODEL)


def trial_device() -> torch.device:
    """The device Ray gave this trial: its GPU (or GPU share; Ray sets CUDA_VISIBLE_DEVICES to
    it) when the trial asked for one, else the CPU. Ray 2.60 no longer hides the machine's GPUs
    from an actor that asked for none, so CUDA being there says nothing of the trial's share."""
    import ray

    if torch.cuda.is_available() and (not ray.is_initialized() or ray.get_gpu_ids()):
        return torch.device("cuda")
    return torch.device("cpu")


def use_trial_cpus() -> None:
    """torch's threads = the trial's CPUs. Ray says how many in OMP_NUM_THREADS as it hands a
    process its actor, but a process Ray started ahead, torch imported (ray_setup.PRELOAD),
    had sized torch's thread pool to the whole machine."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # "4,2": per nesting level
    if first.isdigit() and int(first) > 0:
        torch.set_num_threads(int(first))


class EpochTrainable(tune.Trainable):
    """One epoch per step; `base` (every trial's shared config) comes from tune.with_parameters."""

    def setup(self, config: dict, base: dict, ended: frozenset[str] = frozenset()):
        self.base, self.ended = base, ended  # ended: trials a resumed sweep keeps ended (execution/recovery.py)
        use_trial_cpus()
        self._start(config)

    def _start(self, params: dict) -> None:
        # None: a parameter a PBT population member's `when` leaves out (execution/pbt.py)
        cfg = TrainConfig.from_dict({**self.base, **{k: v for k, v in params.items() if v is not None}},
                                    source="trial config")
        self.run = EpochRun(cfg, Trainer(cfg, trial_device(), cached_data(cfg)))
        self._first_step = True

    def reset_config(self, new_config: dict) -> bool:
        self._start(new_config)
        return True

    def step(self) -> dict:
        first, self._first_step = self._first_step, False
        if self.run.done or (first and self._ended_before_resume()):
            return self._replay()
        metrics = self.run.step()
        return {**metrics, "done": self.run.done, "should_checkpoint": True, "pid": os.getpid()}

    def _ended_before_resume(self) -> bool:
        """Tune's snapshot of a sweep can be seconds older than a killed driver, so `--resume`
        may start again a trial that had ended (ASHA stopped it, or it completed). Such a
        trial is brought to its last checkpoint, whatever the snapshot restored, and stays ended."""
        if self.trial_id not in self.ended:
            return False
        folder = internals.trial_folder(self)
        newest = newest_checkpoint(folder) if folder else None
        if newest:
            self.load_checkpoint(str(newest))
        return bool(self.run.state.history)

    def _replay(self) -> dict:
        """The trial's last result again, untrained, so Tune records how it ended."""
        last = dict(self.run.state.history[-1])
        return {**last, "done": True, "training_iteration": last["epoch"], "pid": os.getpid()}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        write_checkpoint(self.run.checkpoint(), checkpoint_dir)

    def restore(self, checkpoint_path):
        """Tune keeps one checkpoint per trial and snapshots the sweep after each; a driver
        killed between the two leaves a snapshot naming the checkpoint just replaced. Restore
        from the newest one in the trial's folder instead (load_checkpoint then sets the
        iteration to its epoch)."""
        checkpoint = getattr(checkpoint_path, "checkpoint", None)
        if checkpoint is not None and not os.path.exists(checkpoint.path):
            newest = newest_checkpoint(Path(checkpoint.path).parent)
            result = newest and internals.training_result(tune.Checkpoint.from_directory(str(newest)),
                                                          checkpoint_path.metrics)
            checkpoint_path = result or checkpoint_path
        return super().restore(checkpoint_path)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.run.restore(read_checkpoint(checkpoint_dir))
        internals.set_iteration(self, self.run.state.epoch)  # one epoch per step: Tune's count follows the state
