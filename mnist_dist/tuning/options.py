"""What a sweep is, resolved: its options, its name and the config every trial shares.

Nothing here imports Ray or torch: the command line builds and checks all of it before
Ray starts."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from .spec import SweepSpec

SMOKE = {"train_limit": 1000, "test_limit": 500}  # --smoke-test: tiny data, 1 epoch, 2 trials



@dataclass(frozen=True)
class Scaling:
    """Resources of one trial: `workers` Ray Train workers (DDP) when above 1."""
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = 0.0  # None: auto, see execution.resolve_gpus
    max_failures: int = 2  # restarts per trial (from the last checkpoint)

    def ray_config(self):
        import ray.train

        resources = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker:
            resources["GPU"] = self.gpus_per_worker
        return ray.train.ScalingConfig(num_workers=self.workers, use_gpu=self.gpus_per_worker > 0,
                                       resources_per_worker=resources)


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
    warm_start: str | None = None  # an earlier sweep's folder (warmstart.py)
    verbose: int = 1  # 0: nothing while it runs (--quiet); 1: our progress display
    ray_logs: bool = False  # Ray's worker logs and Tune's status tables on the console too


def data_label(spec: SweepSpec) -> str:
    """The dataset's name, or an image folder's."""
    return Path(spec.fixed["images"]).name if spec.fixed.get("images") else spec.dataset


def sweep_name(spec: SweepSpec, opts: SweepOptions) -> str:
    return opts.name or f"{spec.arch}-{data_label(spec)}" + ("-smoke" if opts.smoke_test else "")


def base_config(spec: SweepSpec, opts: SweepOptions) -> dict:
    """What every trial shares; the searcher's params are laid over it."""
    from ..config import resolve

    # the registry baseline fills every key that is neither searched nor fixed
    base = resolve(spec.arch, {**spec.fixed, "dataset": spec.dataset, "seed": spec.seed}).to_dict()
    if opts.data_dir:
        base["data_dir"] = str(Path(opts.data_dir).resolve())
    if base.get("images"):  # trials run in their own folders: paths must be absolute
        base["images"] = str(Path(base["images"]).expanduser().resolve())
    if opts.smoke_test:  # a 1-epoch run leaves no room for a warm-up (warmup_epochs < epochs)
        base.update(SMOKE, epochs=1, warmup_epochs=0.0)
    return base


def smoke_tested(spec: SweepSpec) -> SweepSpec:
    """--smoke-test: the sweep as 2 trials of 1 epoch, so nothing to schedule, no epochs to
    search and no room for a warm-up (it must end before the run does). A new spec: the one
    given is left as it is."""
    smoke = copy.deepcopy(spec)
    # one epoch leaves ASHA nothing to cut; PBT still runs its population (nothing to perturb)
    smoke.trials = min(spec.trials, 2)
    smoke.scheduler.type = "pbt" if spec.scheduler.type == "pbt" else "none"
    for name in ("epochs", "warmup_epochs"):
        smoke.space.pop(name, None)
        for point in smoke.points:
            point.pop(name, None)
    smoke.points[:] = [p for p in smoke.points if p]
    smoke.fixed.update(epochs=1, warmup_epochs=0.0)
    return smoke
