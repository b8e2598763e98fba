"""One epoch of every architecture on the full training set, fp32 against AMP (bf16 on a
GPU that has it), through the project's own training loop: epoch seconds, images/s, peak
GPU memory and the test accuracy after that epoch (GPU checklist items 1 and 3).

    python benchmarks/gpu_epochs.py [--arch lenet5 ...] [--epochs 1] [--out gpu_epochs.json]

Each architecture trains on its own dataset (Fashion-MNIST for fashion_cnn, MNIST for the
rest) with its source baseline config, seed 0, the 10% validation split held out. The first
epoch of the first run of an architecture includes cuDNN's algorithm search; a warm-up
run of 50 steps goes before the timed ones so that neither precision pays for it.
Needs no Ray or Optuna: it runs on a GPU machine that has PyTorch alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from mnist_dist.config import resolve
from mnist_dist.data import load_dataset
from mnist_dist.evaluation import evaluate
from mnist_dist.models import get_entry, list_models
from mnist_dist.training.loop import EpochRun, Trainer

DATA_DIR = os.environ.get("MNIST_DIST_DATA_DIR", "../shared/data")


def machine() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU {platform.machine()} x{os.cpu_count()}, torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def warm_up(cfg, device, data, steps: int = 50) -> None:
    """cuDNN's autotuning and the first kernels' compilation, outside the timed runs."""
    trainer = Trainer(cfg, device, data)
    idx = trainer.train_idx[:steps * cfg.batch_size].to(device)
    for start in range(0, len(idx), cfg.batch_size):
        trainer.step(*trainer.batch(idx[start:start + cfg.batch_size]))
    trainer.validate()
    sync(device)


def one_run(arch: str, amp: bool, epochs: int, device, data, limit: int | None) -> dict:
    cfg = resolve(arch, {"amp": amp, "epochs": epochs, "seed": 0,
                         **({"train_limit": limit} if limit else {})})
    warm_up(cfg, device, data)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run = EpochRun(cfg, Trainer(cfg, device, data))
    t0 = time.perf_counter()
    epochs_m = []
    while not run.done:
        epochs_m.append(run.step())
    sync(device)
    wall = time.perf_counter() - t0
    trainer = run.trainer
    ev = evaluate(trainer.model, data.test_x, data.test_y, get_entry(arch).input, data.mean, data.std,
                  data.classes, device)
    last = epochs_m[-1]
    return {"arch": arch, "dataset": data.name, "precision": str(trainer.amp_dtype).split(".")[-1]
            if trainer.use_amp else "fp32", "batch_size": cfg.batch_size, "epochs": len(epochs_m),
            "epoch_seconds": [round(m["epoch_seconds"], 3) for m in epochs_m],
            "train_images_per_sec": round(sum(m["images_per_sec"] for m in epochs_m) / len(epochs_m)),
            "wall_s": round(wall, 2), "val_acc": round(last["val_acc"], 4),
            "test_acc": round(ev["accuracy"], 4), "test_loss": round(ev["loss"], 4),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="*", default=list_models())
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--precision", nargs="*", default=["fp32", "amp"], choices=["fp32", "amp"])
    p.add_argument("--train-limit", type=int, help="fewer training images (a CPU check of the script)")
    p.add_argument("--out", help="JSON file for the rows")
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(machine(), flush=True)
    rows, datasets = [], {}
    for arch in a.arch:
        name = resolve(arch, {}).dataset
        if name not in datasets:
            datasets[name] = load_dataset(name, DATA_DIR)
        for prec in a.precision:
            try:
                r = one_run(arch, prec == "amp", a.epochs, device, datasets[name], a.train_limit)
            except Exception as e:  # one architecture's failure (out of memory, say) is a row too
                r = {"arch": arch, "precision": prec, "error": f"{e.__class__.__name__}: {e}"}
            rows.append(r)
            print(json.dumps(r), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                                           "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
