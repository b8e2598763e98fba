"""Fixed cost per trial: sweep wall time minus training time, per trial, vs --workers.

    python benchmarks/sweep_overhead.py [--trials 4] [--workers 1 2] [--arch mlp]
    python benchmarks/sweep_overhead.py --workers 1 --epochs 20 --train-limit 500

One Ray instance per row, started as the sweep starts it (its ~5 s start is excluded). Each trial
trains --epochs epochs on --train-limit real images, so nearly all of its time is overhead:
Tune trial start, Ray Train controller + worker group start (--workers > 1), data loading,
per-epoch report/checkpoint, and tear-down. With several epochs, the overhead of a trial in
a reused trial process divided by its epochs is the per-epoch cost of a sweep's bookkeeping
(a result to the driver, Optuna's report, a checkpoint, Tune's snapshot).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import yaml

from mnist_dist.tuning.options import Scaling, SweepOptions
from mnist_dist.tuning.execution.ray_setup import init_ray, stop_ray
from mnist_dist.tuning.driver.runner import run_sweep
from mnist_dist.tuning.spec import load_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="mlp")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=2000)
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = os.path.join(tmp, "spec.yaml")
        with open(spec_file, "w") as f:
            yaml.safe_dump({"trials": a.trials, "max_concurrent": 1, "scheduler": {"type": "none"},
                            "fixed": {"epochs": a.epochs, "train_limit": a.train_limit, "test_limit": 1000},
                            "space": {"lr": {"loguniform": [0.001, 0.1]}}}, f)
        ray_start = []
        for w in a.workers:
            opts = SweepOptions(results_dir=tmp, name=f"w{w}", scaling=Scaling(workers=w, cpus_per_worker=1),
                                max_concurrent=1, verbose=0)
            t0 = time.time()
            init_ray(opts)  # as the sweep starts it (what its workers import first depends on --workers)
            ray_start.append(time.time() - t0)
            s = run_sweep(load_spec(a.arch, spec_file), opts)
            stop_ray()
            rows.append((w, s))
    print(f"{a.arch}, {a.trials} trials one at a time, {a.epochs} epoch(s) on {a.train_limit:,} images; "
          f"{os.cpu_count()} cores; Ray start {', '.join(f'{t:.1f}' for t in ray_start)} s (once per row)")
    print("| workers per trial | wall time / trial | training time / trial | overhead / trial "
          "| in a reused trial process | the same per epoch |")
    print("|---|---|---|---|---|---|")
    for w, s in rows:
        n, reused = s["trials_run"], s.get("overhead_per_reused_trial_s")
        per_epoch = f"{1000 * reused / a.epochs:.1f} ms" if reused is not None else "-"
        print(f"| {w} | {s['wall_time_s'] / n:.1f} s | {s['train_time_s'] / n:.2f} s | "
              f"{s['overhead_per_trial_s']:.2f} s | {f'{reused:.3f} s' if reused is not None else '-'} | {per_epoch} |")


if __name__ == "__main__":
    main()
