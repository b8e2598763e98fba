"""MNIST-family datasets by name: where their files are, loading, and the split.

Where the files come from, in order:
  1. `data_dir` (the --data-dir flag) or env MNIST_DIST_DATA_DIR: a folder with one
     subfolder per dataset (`mnist/`, `fashion-mnist/`, `kmnist/`) holding the four
     standard IDX files, gzipped or raw;
  2. a cache folder filled by torchvision's downloader when online, guarded by a
     file lock so that parallel Ray workers don't download the same files at once.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from .idx import DataError, load_split

ENV_DATA_DIR = "MNIST_DIST_DATA_DIR"
ENV_CACHE_DIR = "MNIST_DIST_CACHE_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str  # the torchvision.datasets class that downloads it
    classes: tuple[str, ...]
    md5: dict  # md5 of the *uncompressed* IDX files, where published
    mean: float  # training-set pixel mean/std on the [0, 1] scale, for standardising
    std: float


DATASETS = {
    "mnist": DatasetInfo(
        "mnist", "MNIST", tuple(str(i) for i in range(10)),
        {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
         "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
         "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
         "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
        0.1307, 0.3081),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
         "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
         "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
         "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
        0.2860, 0.3530),
    # KMNIST's uncompressed md5s are not published; the IDX checks still apply.
    "kmnist": DatasetInfo(
        "kmnist", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        {}, 0.1918, 0.3483),
}


@dataclass
class Dataset:
    """A whole dataset as uint8 tensors: images (N, 28, 28), labels (N,) int64."""
    name: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float = 0.0
    std: float = 1.0
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)} "
                        "(or an image folder via --images)")
    return DATASETS[name]


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE_DIR, Path.home() / ".cache" / "mnist-dist"))


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> bool:
    return all(_find_file(folder, s) for pair in FILES.values() for s in pair)


def locate(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding `name`'s four IDX files; downloads them if allowed and needed."""
    info = dataset_info(name)
    root = data_dir or os.environ.get(ENV_DATA_DIR)
    if root:
        folder = Path(root).expanduser() / name
        if not _complete(folder):
            missing = [s for pair in FILES.values() for s in pair if not _find_file(folder, s)]
            raise DataError(f"{folder}: missing {', '.join(missing)} (.gz or raw). The data folder "
                            f"(--data-dir or ${ENV_DATA_DIR}={root}) must hold one subfolder per "
                            "dataset with the four standard IDX files")
        return folder
    folder = cache_dir() / info.torchvision_class / "raw"  # where torchvision puts them
    if _complete(folder):
        return folder
    if not download:
        raise DataError(f"{name} is not in the cache {folder}; pass --data-dir or set "
                        f"${ENV_DATA_DIR} to a folder with a '{name}/' subfolder of IDX files")
    return _download(info, folder)


def _download(info: DatasetInfo, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # One download per machine: other workers wait on the lock, then find the files.
    lock = folder.parent / ".download.lock"
    if lock.is_symlink():  # filelock opens it with O_TRUNC, through a link: its target would be emptied
        raise DataError(f"{lock} is a symbolic link; refusing to write through it (remove it)")
    with FileLock(str(lock)):
        if not _complete(folder):
            try:
                _fetch_with_torchvision(info, folder)
            except Exception as e:  # URLError, HTTPError, RuntimeError from every mirror
                raise DataError(
                    f"could not download {info.name} into {folder} ({type(e).__name__}: {e}). "
                    f"Offline? Set ${ENV_DATA_DIR} (or pass --data-dir) to a folder with a "
                    f"'{info.name}/' subfolder holding the four IDX files") from e
    if not _complete(folder):
        raise DataError(f"download of {info.name} finished but {folder} is incomplete")
    return folder


def _fetch_with_torchvision(info: DatasetInfo, folder: Path) -> None:
    """torchvision's mirrors and downloader, file by file. Where the uncompressed md5 is
    known, the loader verifies it (it also accepts re-compressed copies of the same data);
    otherwise torchvision checks the published .gz md5."""
    import torchvision.datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(torchvision.datasets, info.torchvision_class)
    for filename, gz_md5 in cls.resources:
        errors = []
        for mirror in cls.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", download_root=str(folder),
                                             filename=filename, md5=None if info.md5 else gz_md5)
                break
            except Exception as e:  # try the next mirror
                errors.append(f"{mirror}: {e}")
        else:
            raise RuntimeError(f"{filename}: " + "; ".join(errors))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, folder: str) -> Dataset:
    info = dataset_info(name)
    arrays = {}
    for split, (img, lbl) in FILES.items():
        f = Path(folder)
        md5s = {s: info.md5.get(s) for s in (img, lbl)}
        # Checksums cover the uncompressed bytes; raw copies too.
        arrays[split] = load_split(_find_file(f, img), _find_file(f, lbl), len(info.classes),
                                   md5s[img], md5s[lbl])
    to_t = lambda a, dt: torch.from_numpy(np.array(a, copy=True)).to(dt)  # noqa: E731 (writable copy)
    (trx, tr_y), (tex, te_y) = arrays["train"], arrays["test"]
    return Dataset(name, info.classes, to_t(trx, torch.uint8), to_t(tr_y, torch.int64),
                   to_t(tex, torch.uint8), to_t(te_y, torch.int64), info.mean, info.std, folder)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """Load (and cache in this process) a whole dataset, verified, as uint8 tensors."""
    return _load_cached(name, str(locate(name, data_dir, download)))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible (train, validation) split of range(n): same seed, same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]
