"""Datasets from folders of image files, for training and evaluating on your own digits.

Layout: `ROOT/train/` and `ROOT/test/`, each either holding files named
`{label}_{index}.png` (PNG/JPG/BMP/TIFF) or one `{label}/` subfolder per class.
Images are read as `predict` reads them (`images.read_image`: alpha, 16-bit and
colour made grey) and resized to 28x28 when they are not already.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .datasets import Dataset
from .idx import DataError
from .images import IMAGE_SUFFIXES, ImageError, read_image


def label_of(path: Path, folder: Path) -> str:
    """The label of an image in a labelled folder: its {label}/ subfolder, or the part of
    its name before the first underscore ({label}_{index}.png)."""
    if path.parent != folder:  # grouped in {label}/ subfolders
        return path.parent.name
    if "_" not in path.stem:
        raise DataError(f"{path}: cannot tell the label; name files '{{label}}_{{index}}"
                        f"{path.suffix}' or put them in a '{{label}}/' subfolder")
    return path.stem.split("_", 1)[0]


def read_gray(path: Path, size: int = 28) -> np.ndarray:
    """One image file as a (size, size) uint8 array; a clear error when unreadable."""
    import cv2

    try:
        img = read_image(path)
    except ImageError as e:
        raise DataError(f"{path}: {e}") from e
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def _scan(split_dir: Path) -> list[tuple[Path, str]]:
    files = sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{split_dir}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p, label_of(p, split_dir)) for p in files]


def class_names(labels: set[str]) -> tuple[str, ...]:
    """Digits keep their numeric order 0..max; other names sort alphabetically."""
    if all(s.isdigit() for s in labels):
        return tuple(str(i) for i in range(max(int(s) for s in labels) + 1))
    return tuple(sorted(labels))


def load_image_folder(root: str | Path) -> Dataset:
    root = Path(root).expanduser()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{root}: expected subfolders train/ and test/; {split}/ is missing")
    splits = {split: _scan(root / split) for split in ("train", "test")}
    classes = class_names({lbl for items in splits.values() for _, lbl in items})
    index = {c: i for i, c in enumerate(classes)}
    tensors = []
    for items in splits.values():
        x = np.stack([read_gray(p) for p, _ in items])
        y = np.array([index[lbl] for _, lbl in items], dtype=np.int64)
        tensors += [torch.from_numpy(x), torch.from_numpy(y)]
    # Standardise with the training images' own statistics.
    pixels = tensors[0].float() / 255
    return Dataset(root.name, classes, *tensors, mean=float(pixels.mean()),
                   std=float(pixels.std().clamp_min(1e-3)), source=str(root))
