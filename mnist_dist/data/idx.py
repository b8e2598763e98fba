"""Read and verify IDX files (the format MNIST-family datasets ship in).

IDX layout: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of
dimensions, then one big-endian uint32 per dimension, then the raw data.
Every check here names the file and the problem, so a corrupt download never
surfaces as a reshape error deep inside numpy.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError

UINT8 = 0x08


class DataError(UserError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


def read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        # gzip raises EOFError for a truncated file, BadGzipFile (an OSError) for garbage
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} "
                        f"({type(e).__name__}: {e}); the file is corrupt or truncated - delete it "
                        "and copy or download it again") from e


def parse_idx(raw: bytes, path: Path, ndim: int, md5: str | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array of `ndim` dimensions, verifying header and size."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    if raw[2] != UINT8:
        raise DataError(f"{path}: IDX data type 0x{raw[2]:02x} is not uint8 (0x08)")
    if raw[3] != ndim:
        kind = "labels" if ndim == 1 else "images"
        raise DataError(f"{path}: has {raw[3]} dimensions, expected {ndim} for {kind} "
                        "(are the images and labels files swapped?)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated inside the IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file "
                        f"holds {len(raw)} bytes; the file is truncated or corrupt")
    if md5 is not None:
        got = hashlib.md5(raw).hexdigest()
        if got != md5:
            raise DataError(f"{path}: md5 of the uncompressed data is {got}, expected {md5}; "
                            "the file is corrupt or not the published one")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx(path: Path, ndim: int, md5: str | None = None) -> np.ndarray:
    return parse_idx(read_bytes(path), path, ndim, md5)


def load_split(images_path: Path, labels_path: Path, num_classes: int,
               image_md5: str | None = None, label_md5: str | None = None,
               size: tuple[int, int] = (28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) uint8, checked against each other."""
    images = load_idx(images_path, 3, image_md5)
    labels = load_idx(labels_path, 1, label_md5)
    if images.shape[1:] != size:
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                        f"expected {size[0]}x{size[1]}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels; the two files do not belong together")
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} is outside 0..{num_classes - 1}")
    return images, labels
