"""Sharing one GPU: N trainings started at once as separate processes, what N fractional-GPU
trials (`--gpus-per-worker 1/N`) get. Total and per-process images/s for each N (GPU
checklist item 4).

    python benchmarks/gpu_share.py [--procs 1 2 4 8] [--arch lenet5] [--seconds 10]

Every process imports torch, loads the dataset onto the GPU and warms up first; then all of
them train (the project's Trainer, the source baseline config) in the same window of
--seconds, so start-up is left out and the counts are of the same wall time. Needs no Ray.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnist_dist.config import resolve
from mnist_dist.data import load_dataset
from mnist_dist.training.loop import Trainer

DATA_DIR = os.environ.get("MNIST_DIST_DATA_DIR", "../shared/data")
SYNC_EVERY = 20  # steps between host syncs (the clock is read once the queued work is done)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker(arch: str, seconds: float, folder: Path, rank: int) -> None:
    """Get ready, say so, wait for the common start, train for `seconds`, write the count."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = resolve(arch, {"seed": rank})
    data = load_dataset(cfg.dataset, DATA_DIR)
    trainer = Trainer(cfg, device, data)
    idx = trainer.shard(1)
    bs = cfg.batch_size
    batches = [idx[s:s + bs] for s in range(0, len(idx) - bs + 1, bs)]  # full batches only
    for b in batches[:SYNC_EVERY * 2]:  # warm-up: cuDNN's search, the first kernels
        trainer.step(*trainer.batch(b))
    sync(device)
    (folder / f"ready-{rank}").touch()
    go = folder / "go"
    while not go.exists():
        time.sleep(0.005)
    start = float(go.read_text())
    while time.time() < start:
        time.sleep(0.001)
    steps, end = 0, start + seconds
    while time.time() < end:
        for _ in range(SYNC_EVERY):
            trainer.step(*trainer.batch(batches[steps % len(batches)]))
            steps += 1
        sync(device)
    elapsed = time.time() - start
    (folder / f"done-{rank}.json").write_text(json.dumps({"images": steps * bs, "seconds": elapsed}))


def share(n: int, arch: str, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(r), "--folder", tmp,
                                   "--arch", arch, "--seconds", str(seconds)]) for r in range(n)]
        while sum(1 for _ in folder.glob("ready-*")) < n:
            if any(p.poll() not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a worker of {n} failed before the start")
            time.sleep(0.05)
        (folder / "go").write_text(str(time.time() + 0.5))
        for p in procs:
            p.wait()
        done = [json.loads((folder / f"done-{r}.json").read_text()) for r in range(n)]
    per = [d["images"] / d["seconds"] for d in done]
    return {"processes": n, "arch": arch, "total_images_per_sec": round(sum(per)),
            "per_process_images_per_sec": [round(x) for x in per]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, nargs="*", default=[1, 2, 4, 8])
    p.add_argument("--arch", default="lenet5")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", help="JSON file for the rows")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker is not None:
        return worker(a.arch, a.seconds, Path(a.folder), a.worker)
    rows = []
    for n in a.procs:
        rows.append(share(n, a.arch, a.seconds))
        one = rows[0]["total_images_per_sec"]
        print(json.dumps({**rows[-1], "vs_one_process": round(rows[-1]["total_images_per_sec"] / one, 2)}),
              flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                           else "cpu", "torch": torch.__version__,
                                           "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
