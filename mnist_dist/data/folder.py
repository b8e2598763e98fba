"""Datasets from folders of image files, for training and evaluating on your own digits.

Layout: `ROOT/train/` and `ROOT/test/`, each either holding files named
`{label}_{index}.png` (PNG/JPG/BMP/TIFF) or one `{label}/` subfolder per class.
Images are read as `predict` reads them (`images.read_image`: alpha, 16-bit and
colour made grey) and resized to 28x28 when they are not already. A file that cannot
be used (damaged, not an image, too large) is left out with one warning line on stderr
and a count per split; a split with no usable image at all is an error.
"""
from __future__ import annotations

import sys
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
    # Anything but a folder: a broken link or a pipe named 3_1.png gets its own warning.
    files = sorted(p for p in split_dir.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    if not files:
        raise DataError(f"{split_dir}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p, label_of(p, split_dir)) for p in files]


def class_names(labels: set[str]) -> tuple[str, ...]:
    """Digits keep their numeric order 0..max; other names sort alphabetically."""
    if all(s.isdigit() for s in labels):
        return tuple(str(i) for i in range(max(int(s) for s in labels) + 1))
    return tuple(sorted(labels))


def read_split(split_dir: Path, items: list[tuple[Path, str]]) -> tuple[list[np.ndarray], list[str]]:
    """(images, labels) of the files that can be read. Each other file gets one warning
    line naming it and why, then a count; DataError when none can be read."""
    images, labels, skipped = [], [], 0
    for path, label in items:
        try:
            images.append(read_gray(path))
            labels.append(label)
        except DataError as e:  # read_gray's message already names the file
            print(f"warning: {e} (skipped)", file=sys.stderr)
            skipped += 1
    if not images:
        raise DataError(f"{split_dir}: none of the {len(items)} image files could be read "
                        "(each is named above)")
    if skipped:
        print(f"warning: {split_dir}: skipped {skipped} of {len(items)} image files that could "
              "not be read", file=sys.stderr)
    return images, labels


def load_image_folder(root: str | Path) -> Dataset:
    root = Path(root).expanduser()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{root}: expected subfolders train/ and test/; {split}/ is missing")
    read = {split: read_split(root / split, _scan(root / split)) for split in ("train", "test")}
    # Classes from the images actually read: a class whose files are all unreadable is not one.
    classes = class_names({lbl for _, labels in read.values() for lbl in labels})
    index = {c: i for i, c in enumerate(classes)}
    tensors = []
    for images, labels in read.values():
        tensors += [torch.from_numpy(np.stack(images)),
                    torch.from_numpy(np.array([index[lbl] for lbl in labels], dtype=np.int64))]
    # Standardise with the training images' own statistics.
    pixels = tensors[0].float() / 255
    return Dataset(root.name, classes, *tensors, mean=float(pixels.mean()),
                   std=float(pixels.std().clamp_min(1e-3)), source=str(root))
