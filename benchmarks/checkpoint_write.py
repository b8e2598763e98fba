"""What one epoch's checkpoint costs a trial: bytes and seconds to write it, as the sweep
writes it (`write_checkpoint`: the best weights only in model.pt) against a self-contained
resume.pt that holds them as well, alternately.

    python benchmarks/checkpoint_write.py [--arch alexnet] [--repeats 3]

One optimizer step on a few images first, so Adam's moments exist as they do after an epoch.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mnist_dist.config import resolve
from mnist_dist.models.checkpoint import atomic_save
from mnist_dist.training.loop import EpochRun, Trainer, cached_data
from mnist_dist.training.reporting import write_checkpoint


def self_contained(ckpt: dict, folder: str) -> None:
    atomic_save(ckpt["resume"], Path(folder) / "resume.pt")
    atomic_save(ckpt["model"], Path(folder) / "model.pt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="alexnet")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cfg = resolve(a.arch, {"train_limit": 64, "batch_size": 32, "epochs": 1, "test_limit": 10})
    data = copy.copy(cached_data(cfg))
    data.train_x, data.train_y = data.train_x[:200], data.train_y[:200]
    run = EpochRun(cfg, Trainer(cfg, torch.device("cpu"), data))
    run.step()
    layouts = {"best weights once (now)": write_checkpoint, "self-contained resume.pt (before)": self_contained}
    times = {k: [] for k in layouts}
    sizes = {}
    for i in range(a.repeats + 1):  # the first round warms the page cache: not counted
        for name, write in layouts.items():
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                write(run.checkpoint(), d)
                if i:
                    times[name].append(time.perf_counter() - t0)
                sizes[name] = sum(f.stat().st_size for f in Path(d).iterdir())
    print(f"{a.arch}: one epoch's checkpoint, median of {a.repeats}")
    for name in layouts:
        print(f"  {name:<36}{sizes[name] / 1e6:>8,.0f} MB {statistics.median(times[name]):6.2f} s"
              f"   runs: {', '.join(f'{t:.2f}' for t in times[name])}")


if __name__ == "__main__":
    main()
