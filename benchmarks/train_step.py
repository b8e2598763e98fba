"""Training throughput: mnist-dist's epoch loop vs a plain hand-written PyTorch loop vs the
usual torchvision Dataset + DataLoader pipeline, same model, batch size, data and device.

    python benchmarks/train_step.py [--arch lenet5] [--batch-size 32] [--images 20000] [--repeats 3]
                                    [--augment light]

With `--augment light` all three train on randomly shifted (+-2 px) and rotated (+-10
degrees) digits: ours on whole batches on the device, the plain loop the textbook way
(F.affine_grid + F.grid_sample per batch), the DataLoader with torchvision's RandomAffine
per image in its workers.

The three are run once untimed (warm-up), then interleaved (A B C A B C ...) so that
background load hits them alike; the median images/s of each is reported with the ratios. Target: ours >= 0.95x plain.
"""
from __future__ import annotations

import argparse
import gzip
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mnist_dist.config import resolve
from mnist_dist.data import load_dataset, prepare_batch
from mnist_dist.models import create_model, get_entry
from mnist_dist.training.loop import Trainer


SHIFT_PX, DEGREES = 2.0, 10.0  # light augmentation (mnist_dist.data.transforms.DIGIT_AUGMENT)


def ours(cfg, data, device) -> float:
    trainer = Trainer(cfg, device, data)
    t0 = time.perf_counter()
    _, _, n, _ = trainer.train_epoch(epoch=1)
    sync(device)
    return n / (time.perf_counter() - t0)


def plain(cfg, data, device) -> float:
    """What one writes by hand: inputs prepared once as float tensors, slice, step; with
    augmentation, the raw batch shifted and rotated by F.affine_grid, then normalised."""
    spec = get_entry(cfg.arch).input
    n = cfg.train_limit
    augment = cfg.augment != "off"
    x = (data.train_x[:n].to(device).unsqueeze(1).float() if augment
         else prepare_batch(data.train_x[:n].to(device), spec, data.mean, data.std))
    y = data.train_y[:n].to(device)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    perm = torch.randperm(n, device=device)
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        xb = x[idx]
        if augment:
            xb = F.pad(affine_augment(xb), [(spec.size - 28) // 2] * 4)
            xb = (xb / 255 - data.mean) / data.std
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return n / (time.perf_counter() - t0)


def affine_augment(x: torch.Tensor) -> torch.Tensor:
    """Random rotation and shift per image, the usual batched way."""
    b = len(x)
    u = torch.rand(3, b, device=x.device) * 2 - 1
    angle = u[0] * math.radians(DEGREES)
    cos, sin = angle.cos(), angle.sin()
    shift = u[1:] * (2 * SHIFT_PX / x.shape[-1])
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


def torchvision_root(data_dir: Path, tmp: Path) -> Path:
    """torchvision.datasets.MNIST wants raw (uncompressed) files under root/MNIST/raw."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in (data_dir / "mnist").glob("*.gz"):
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    return tmp


def dataloader(cfg, root: Path, device, workers: int) -> float:
    import torchvision
    from torchvision import transforms as T

    spec = get_entry(cfg.arch).input
    aug = [T.RandomAffine(DEGREES, translate=(SHIFT_PX / 28, SHIFT_PX / 28))] if cfg.augment != "off" else []
    steps = aug + [T.ToTensor()] + ([T.Pad((spec.size - 28) // 2)] if spec.size == 32 else []) + [T.Normalize((0.1307,), (0.3081,))]
    ds = torchvision.datasets.MNIST(str(root), train=True, transform=T.Compose(steps))
    ds = torch.utils.data.Subset(ds, range(cfg.train_limit))
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return cfg.train_limit / (time.perf_counter() - t0)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="lenet5")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loader-workers", type=int, default=2)
    p.add_argument("--augment", choices=["off", "light"], default="off")
    p.add_argument("--data-dir", default=os.environ.get("MNIST_DIST_DATA_DIR", "../shared/data"))
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    over = {"train_limit": a.images, "val_fraction": 0.1, "amp": False, "augment": a.augment}
    if a.batch_size:
        over["batch_size"] = a.batch_size
    cfg = resolve(a.arch, over)
    data = load_dataset("mnist", a.data_dir)
    results = {"mnist-dist": [], "plain loop": [], f"DataLoader ({a.loader_workers} workers)": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(a.data_dir), Path(tmp))
        runs = (lambda: ours(cfg, data, device), lambda: plain(cfg, data, device),
                lambda: dataloader(cfg, root, device, a.loader_workers))
        for fn in runs:  # untimed: on a GPU the first run pays cuDNN's autotuning for all three
            fn()
        for _ in range(a.repeats):
            for name, fn in zip(results, runs):
                results[name].append(fn())
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{a.arch}, batch {cfg.batch_size}, {a.images} images, augment {a.augment}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.machine()} x{os.cpu_count()}, median of {a.repeats}")
    for k, v in med.items():
        print(f"  {k:<26}{v:>10,.0f} images/s   runs: {', '.join(f'{x:,.0f}' for x in results[k])}")
    base = med["mnist-dist"]
    print(f"  mnist-dist / plain loop   = {base / med['plain loop']:.3f}x (target >= 0.95)")
    dl = [k for k in med if k.startswith("DataLoader")][0]
    print(f"  mnist-dist / DataLoader   = {base / med[dl]:.2f}x")


if __name__ == "__main__":
    main()
