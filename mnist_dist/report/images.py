"""Figures of images: each dataset's overview, and each model's right and wrong test
predictions with their probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import Skip, plt, save

GRID_COLS = 8


def source_dataset(src, data_dir=None, cache: dict | None = None):
    """The dataset a source was tested on, from the local data only (a report never
    downloads): a named dataset, or the image folder a run was trained on."""
    from ..data import DATASETS, DataError, load_dataset, load_image_folder

    cache = {} if cache is None else cache
    if src.dataset in cache:
        return cache[src.dataset]
    cfg = src.config or {}
    cfg = cfg.get("base_config", cfg)  # sweeps nest the training config
    try:
        if src.dataset in DATASETS:
            try:
                ds = load_dataset(src.dataset, data_dir, download=False)
            except DataError:
                if not cfg.get("data_dir"):
                    raise
                ds = load_dataset(src.dataset, cfg["data_dir"], download=False)
        elif cfg.get("images") and Path(cfg["images"]).is_dir():
            ds = load_image_folder(cfg["images"])
        else:
            raise Skip(f"dataset {src.dataset!r} is neither a known dataset nor an image folder on disk")
    except DataError as e:
        raise Skip(f"test images unavailable: {e}") from e
    cache[src.dataset] = ds
    return ds


def test_images(src, ds) -> np.ndarray:
    """The test images behind predictions.npz (its first n, in test-set order)."""
    if src.predictions is None:
        raise Skip("no predictions.npz")
    labels = src.predictions["labels"]
    n = len(labels)
    if n > len(ds.test_y) or not np.array_equal(ds.test_y[:n].numpy(), labels):
        raise Skip(f"the labels in predictions.npz do not match the first {n} test images of {ds.name}")
    return ds.test_x[:n].numpy()


def mosaic(tiles: np.ndarray, cols: int, pad: int, rows: int | None = None) -> np.ndarray:
    """Tiles (N, H, W) laid out on one canvas: one imshow instead of N axes, which
    keeps a 100-image grid fast to draw."""
    n, h, w = tiles.shape
    rows = rows or int(np.ceil(n / cols))
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=tiles.dtype)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = t
    return canvas


def prediction_grid(src, ds, correct: bool, title: str, path: Path, count: int = 16) -> Path:
    """Correct predictions: a random sample (what typical successes look like).
    Mistakes: the most confident ones (what the model gets most wrong)."""
    images = test_images(src, ds)
    p = src.predictions
    probs, labels, preds = p["probabilities"], p["labels"], p["predictions"]
    idx = np.flatnonzero((preds == labels) == correct)
    if not len(idx):
        raise Skip("every test image was classified " + ("wrongly" if correct else "correctly"))
    if correct:
        idx = np.sort(np.random.default_rng(0).choice(idx, min(count, len(idx)), replace=False))
    else:
        idx = idx[np.argsort(-probs[idx, preds[idx]])][:count]
    h, pad = images.shape[1], 14  # pad leaves room for two caption lines above each tile
    rows = int(np.ceil(len(idx) / GRID_COLS))
    fig, ax = plt.subplots(figsize=(1.5 * GRID_COLS, 1.75 * rows + 0.7))
    ax.imshow(mosaic(images[idx], GRID_COLS, pad, rows), cmap="gray_r", vmin=0, vmax=255)
    names = list(ds.classes)
    for k, i in enumerate(idx):
        r, c = divmod(k, GRID_COLS)
        text = f"pred {names[preds[i]]} {probs[i, preds[i]]:.0%}"
        if not correct:
            text += f"\ntrue {names[labels[i]]} {probs[i, labels[i]]:.0%}"
        ax.text(pad + c * (h + pad) + h / 2, pad + r * (h + pad) - 1, text, ha="center", va="bottom",
                fontsize=8, color="#1b7a3a" if correct else "#c0392b")
    ax.axis("off")
    what = "Correctly classified (random sample)" if correct else "Misclassified (most confident first)"
    n_all = int(((preds == labels) == correct).sum())
    ax.set_title(f"{what}: {title}\n{n_all:,} of {len(labels):,} test images; "
                 "pred = predicted class and its probability", fontweight="bold", pad=14)
    return save(fig, path)


def class_distribution(ds, path: Path) -> Path:
    k = len(ds.classes)
    train = np.bincount(ds.train_y.numpy(), minlength=k)
    test = np.bincount(ds.test_y.numpy(), minlength=k)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.bar(x - 0.2, train, 0.4, label=f"train ({train.sum():,})", color="#457b9d")
    ax.bar(x + 0.2, test, 0.4, label=f"test ({test.sum():,})", color="#e9c46a")
    ax.set_xticks(x, ds.classes, rotation=30 if max(map(len, ds.classes)) > 3 else 0)
    ax.set_ylabel("images")
    ax.set_ylim(0, max(train.max(), test.max()) * 1.2)  # headroom for the legend
    ax.legend(ncol=2, loc="upper center")
    ax.set_title(f"{ds.name}: images per class")
    return save(fig, path)


def sample_grid(ds, path: Path, per_class: int = 10) -> Path:
    k, h, pad = len(ds.classes), ds.train_x.shape[1], 3
    labels = ds.train_y.numpy()
    tiles = np.zeros((k * per_class, h, h), dtype=np.uint8)
    for c in range(k):
        idx = np.flatnonzero(labels == c)[:per_class]
        tiles[c * per_class:c * per_class + len(idx)] = ds.train_x[idx].numpy()
    fig, ax = plt.subplots(figsize=(0.75 * per_class + 1.2, 0.75 * k + 0.6))
    ax.imshow(mosaic(tiles, per_class, pad, k), cmap="gray_r", vmin=0, vmax=255)
    ax.set_yticks([pad + c * (h + pad) + h / 2 for c in range(k)], ds.classes)
    ax.set_xticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(f"{ds.name}: the first {per_class} training images of each class")
    return save(fig, path)


def pixel_histogram(ds, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.8))
    values = np.arange(256)
    for x, name, color in ((ds.train_x, "train", "#457b9d"), (ds.test_x, "test", "#e9c46a")):
        counts = np.bincount(x.numpy().ravel(), minlength=256)
        share = counts / max(counts.sum(), 1)
        ax.step(values, share, where="mid", color=color, label=name, lw=1.2, alpha=0.85)
        if name == "train":  # mean/std from the histogram: no 47M-element float copy
            mean = float((share * values).sum()) / 255
            std = float(np.sqrt((share * (values / 255 - mean) ** 2).sum()))
    ax.set_yscale("log")
    ax.set_xlim(-2, 257)
    ax.set_xlabel("pixel value (0 = background, 255 = ink)")
    ax.set_ylabel("share of pixels (log scale)")
    ax.legend()
    ax.set_title(f"{ds.name}: pixel values (train mean {mean:.3f}, std {std:.3f} on the 0-1 scale)")
    return save(fig, path)
