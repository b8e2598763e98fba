"""A sweep's search against a bare process pool doing exactly the same training, side by side.

    python benchmarks/sweep_vs_pool.py mlp --trials 8 [--json out.json]
    python benchmarks/sweep_vs_pool.py --replay results/NAME      # a sweep that already ran

The sweep runs as a user runs it (`sweeps/run.py`, a fresh process, an embedded Ray, one trial
per core); its search time is summary.json's `wall_time_s`. The pool then replays its
trials.csv: each trial's config for the epochs it ran (ASHA's stops included), in that order,
in a `spawn` pool of one process per core, torch one thread per process as a trial has, the
data loaded once per process and the project's own epoch loop; the pool's time includes its
processes' start and imports. The ratio is what the sweep machinery (Ray, Tune, Optuna, the
checkpoints and reports) costs over the same work. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "config/"


def run_sweep_cli(arch: str, trials: int, out: Path) -> Path:
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), arch, "--trials", str(trials),
           "--results-dir", str(out), "--name", "sweep", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "sweep"


def replay_plan(sweep: Path) -> tuple[dict, list[tuple[dict, int]]]:
    """The config every trial shared, and each trial's own params with the epochs it ran."""
    base = json.loads((sweep / "config.json").read_text())["base_config"]
    with open(sweep / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    plan = []
    for row in rows:
        params = {k[len(PREFIX):]: v for k, v in row.items() if k.startswith(PREFIX) and v != ""}
        epochs = int(row["epochs_run"] or 0)
        if epochs:
            plan.append((params, epochs))
    return base, plan


def _start_worker(base: dict) -> None:
    import torch

    from mnist_dist.config import TrainConfig
    from mnist_dist.training.loop import cached_data

    torch.set_num_threads(1)
    cached_data(TrainConfig.from_dict(base, source="replay"))  # once per process


def _train(task: tuple[dict, dict, int]) -> float:
    from mnist_dist.config import TrainConfig
    from mnist_dist.training.loop import EpochRun, Trainer, cached_data, select_device

    base, params, epochs = task
    cfg = TrainConfig.from_dict({**base, **params}, source="replay")
    run = EpochRun(cfg, Trainer(cfg, select_device(), cached_data(cfg)))
    t0 = time.perf_counter()
    for _ in range(epochs):
        run.step()
    return time.perf_counter() - t0


def replay_in_pool(base: dict, plan: list[tuple[dict, int]], processes: int) -> dict:
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_start_worker, initargs=(base,)) as pool:
        train_s = list(pool.imap(_train, [(base, p, e) for p, e in plan], chunksize=1))
    return {"wall_s": time.perf_counter() - t0, "train_s": sum(train_s), "trials": len(plan),
            "epochs": sum(e for _, e in plan), "processes": processes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", nargs="?")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--replay", help="a finished sweep's folder: replay it, run no sweep")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    if not (args.arch or args.replay):
        p.error("name an architecture, or --replay a sweep folder")
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(args.replay) if args.replay else run_sweep_cli(args.arch, args.trials, Path(tmp))
        summary = json.loads((sweep / "summary.json").read_text())
        base, plan = replay_plan(sweep)
    pool = replay_in_pool(base, plan, os.cpu_count() or 1)
    result = {"sweep": {"search_s": summary["wall_time_s"], "train_s": summary.get("train_time_s"),
                        "trials": summary.get("trials_run")},
              "pool": pool, "ratio": summary["wall_time_s"] / pool["wall_s"]}
    print(f"search {summary['wall_time_s']:.1f} s vs pool {pool['wall_s']:.1f} s "
          f"({pool['trials']} trials, {pool['epochs']} epochs, {pool['processes']} processes): "
          f"{result['ratio']:.3f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
