"""The data layer on the real files: verification, corruption, split, download path,
per-batch transforms and image folders."""
from __future__ import annotations

import gzip
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mnist_dist.data import DataError, InputSpec, load_dataset, load_image_folder, prepare_batch, split_indices
from mnist_dist.data.datasets import FILES, _load_cached, locate
from mnist_dist.data.idx import load_split

from .conftest import download_to_cache, resolve_test_data_dir

MNIST_TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_counts_and_label_histograms(mnist):
    assert mnist.train_x.shape == (60000, 28, 28) and mnist.train_x.dtype == torch.uint8
    assert mnist.test_x.shape == (10000, 28, 28)
    assert torch.bincount(mnist.train_y).tolist() == MNIST_TRAIN_HIST
    assert torch.bincount(mnist.test_y).tolist() == MNIST_TEST_HIST
    assert mnist.train_x.numel() == 47_040_000  # 47 MB held as uint8


def test_real_fashion_mnist(data_dir):
    ds = load_dataset("fashion-mnist", data_dir)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"


def test_split_is_reproducible_disjoint_and_ten_percent():
    a_train, a_val = split_indices(60000, 0.1, seed=3)
    b_train, b_val = split_indices(60000, 0.1, seed=3)
    c_train, _ = split_indices(60000, 0.1, seed=4)
    assert torch.equal(a_val, b_val) and len(a_val) == 6000 and len(a_train) == 54000
    assert not set(a_val.tolist()) & set(a_train.tolist())
    assert not torch.equal(a_train, c_train)


def copy_dataset(data_dir: Path, tmp: Path, name: str = "mnist") -> Path:
    dst = tmp / name
    shutil.copytree(data_dir / name, dst)
    return dst


def rewrite(path: Path, fn) -> None:
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(fn(raw), compresslevel=1))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), "corrupt or truncated"),
    (lambda p: p.write_bytes(b"this is not gzip at all"), "corrupt or truncated"),
    (lambda p: rewrite(p, lambda r: b"\x12\x34" + r[2:]), "bad magic"),
    (lambda p: rewrite(p, lambda r: r[:-784]), "truncated or corrupt"),
    (lambda p: rewrite(p, lambda r: r[:-1] + bytes([r[-1] ^ 0xFF])), "md5"),
])
def test_damaged_images_file_is_rejected_with_its_name(data_dir, tmp_path, damage, message):
    folder = copy_dataset(data_dir, tmp_path)
    target = folder / "t10k-images-idx3-ubyte.gz"
    damage(target)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("mnist", tmp_path)
    assert str(target) in str(err.value)


def test_labels_out_of_range_and_mismatched_pairs(data_dir, tmp_path):
    folder = copy_dataset(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    rewrite(labels, lambda r: r[:8] + bytes([11]) + r[9:])
    with pytest.raises(DataError, match=r"label 11 is outside 0..9"):
        load_split(folder / "t10k-images-idx3-ubyte.gz", labels, 10)
    with pytest.raises(DataError, match="do not belong together"):
        load_split(folder / "t10k-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz", 10)
    with pytest.raises(DataError, match="swapped"):
        load_split(folder / "t10k-labels-idx1-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz", 10)


def test_raw_uncompressed_files_load_too(data_dir, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stems in FILES.values():
        for stem in stems:
            (folder / stem).write_bytes(gzip.decompress((data_dir / "mnist" / f"{stem}.gz").read_bytes()))
    ds = load_dataset("mnist", tmp_path)
    assert torch.bincount(ds.test_y).tolist() == MNIST_TEST_HIST


def test_missing_files_and_unknown_dataset_say_what_to_do(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataError, match="MNIST_DIST_DATA_DIR"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="known datasets: mnist, fashion-mnist, kmnist"):
        load_dataset("cifar10", tmp_path)


class FakeResponse:
    """What urlopen returns, serving a real local file: only the network is replaced."""

    def __init__(self, url: str, path: Path):
        self.url = url  # torchvision follows redirects by reading response.url
        self._f = open(path, "rb")
        self.length = path.stat().st_size

    def read(self, n=-1):
        return self._f.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def offline_network(monkeypatch, data_dir: Path, tmp_path: Path) -> list[str]:
    """No data folder, an empty cache, and the network replaced by the published files from
    disk; returns the list the requested URLs go into."""
    monkeypatch.delenv("MNIST_DIST_DATA_DIR", raising=False)
    monkeypatch.setenv("MNIST_DIST_CACHE_DIR", str(tmp_path / "cache"))
    requested = []

    def urlopen(request, *a, **kw):
        url = request.full_url if hasattr(request, "full_url") else request
        requested.append(url)
        name = "fashion-mnist" if "fashion" in url else "mnist"  # same file names in both
        return FakeResponse(url, data_dir / name / url.rsplit("/", 1)[1])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def test_download_path_with_network_mocked(data_dir, tmp_path, monkeypatch):
    """torchvision's real downloader fetches, md5-checks and unpacks the published files;
    the network is replaced by the same files from disk."""
    requested = offline_network(monkeypatch, data_dir, tmp_path)
    _load_cached.cache_clear()
    ds = load_dataset("fashion-mnist")
    files = {u.rsplit("/", 1)[1] for u in requested}
    assert files == {f"{s}.gz" for pair in FILES.values() for s in pair}
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert Path(ds.source) == tmp_path / "cache" / "FashionMNIST" / "raw"
    n = len(requested)
    _load_cached.cache_clear()
    load_dataset("fashion-mnist")  # second time: from the cache, no request
    assert len(requested) == n


def test_offline_without_files_names_the_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIST_DATA_DIR", raising=False)
    monkeypatch.setenv("MNIST_DIST_CACHE_DIR", str(tmp_path / "cache"))

    def offline(*a, **kw):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="MNIST_DIST_DATA_DIR") as err:
        load_dataset("kmnist")
    assert "kmnist" in str(err.value)


def test_test_data_fallback_order(tmp_path):
    """$MNIST_DIST_DATA_DIR, else ../shared/data beside the repository, else a download,
    which only a machine with neither gets."""
    repo, shared = tmp_path / "repo", tmp_path / "shared" / "data"
    downloads = []

    def download():
        downloads.append(1)
        return tmp_path / "cache"

    env = {"MNIST_DIST_DATA_DIR": str(tmp_path / "mine")}
    assert resolve_test_data_dir(env, repo, download) == tmp_path / "mine"  # even a wrong one
    assert resolve_test_data_dir({"MNIST_DIST_DATA_DIR": ""}, repo, download) == tmp_path / "cache"
    assert resolve_test_data_dir({}, repo, download) == tmp_path / "cache"
    assert len(downloads) == 2
    (shared / "mnist").mkdir(parents=True)
    assert resolve_test_data_dir({}, repo, download) == shared
    assert resolve_test_data_dir(env, repo, download) == tmp_path / "mine"
    assert len(downloads) == 2  # CI (env or ../shared/data) never downloads


def test_test_data_download_fills_the_cache_once(data_dir, tmp_path, monkeypatch):
    """conftest's download on a fresh machine: the users' downloader into the project's
    cache, laid out as a data folder; a second run downloads nothing."""
    requested = offline_network(monkeypatch, data_dir, tmp_path)
    root = download_to_cache()
    assert root == tmp_path / "cache" / "test-data"
    assert len(set(requested)) == 8  # 4 files x 2 datasets
    for name in ("mnist", "fashion-mnist"):
        assert locate(name, root) == root / name  # complete, in --data-dir's layout
    n = len(requested)
    assert download_to_cache() == root and len(requested) == n


@pytest.mark.parametrize("spec, shape", [
    (InputSpec(28, 1), (4, 1, 28, 28)),
    (InputSpec(32, 1), (4, 1, 32, 32)),
    (InputSpec(227, 3, resize=True), (4, 3, 227, 227)),
])
def test_prepare_batch_shapes_and_normalisation(mnist, spec, shape):
    x = prepare_batch(mnist.test_x[:4], spec, mnist.mean, mnist.std)
    assert x.shape == shape and x.dtype == torch.float32
    background = (0 - mnist.mean) / mnist.std
    assert torch.isclose(x[0, 0, 0, 0], torch.tensor(background))  # borders = normalised black
    if not spec.resize:  # the digit itself: (pixel / 255 - mean) / std, centred in the frame
        o = (spec.size - 28) // 2
        ref = (mnist.test_x[:4].float() / 255 - mnist.mean) / mnist.std
        assert torch.allclose(x[:, 0, o:o + 28, o:o + 28], ref, atol=1e-5)
    if spec.channels == 3:
        assert torch.equal(x[:, 0], x[:, 2])


def test_augmentation_moves_pixels_but_keeps_ink(mnist):
    x = mnist.test_x[:64]
    plain = prepare_batch(x, InputSpec(), 0.0, 1.0)
    aug = prepare_batch(x, InputSpec(), 0.0, 1.0, augment=True, generator=torch.Generator().manual_seed(0))
    assert aug.shape == plain.shape and not torch.allclose(aug, plain)
    ratio = aug.sum() / plain.sum()  # shifts/rotations by a few pixels keep most ink in frame
    assert 0.85 < ratio < 1.1


def write_folder(root: Path, mnist, grouped: bool) -> None:
    for split, (x, y) in {"train": (mnist.train_x[:30], mnist.train_y[:30]),
                          "test": (mnist.test_x[:20], mnist.test_y[:20])}.items():
        for i, (img, label) in enumerate(zip(x.numpy(), y.tolist())):
            path = root / split / (f"{label}/{i}.png" if grouped else f"{label}_{i}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)


@pytest.mark.parametrize("grouped", [False, True])
def test_image_folder_dataset(mnist, tmp_path, grouped):
    write_folder(tmp_path, mnist, grouped)
    ds = load_image_folder(tmp_path)
    assert ds.train_x.shape == (30, 28, 28) and ds.test_x.shape == (20, 28, 28)
    # files are read in name order: every image with its own label, pixels intact (PNG is lossless)
    for split, x, y, n in (("train", mnist.train_x, mnist.train_y, 30), ("test", mnist.test_x, mnist.test_y, 20)):
        names = [f"{lbl}/{i}.png" if grouped else f"{lbl}_{i}.png" for i, lbl in enumerate(y[:n].tolist())]
        order = torch.tensor(np.argsort(names, kind="stable"))
        loaded_x, loaded_y = (ds.train_x, ds.train_y) if split == "train" else (ds.test_x, ds.test_y)
        assert torch.equal(loaded_y, y[:n][order]) and torch.equal(loaded_x, x[:n][order])


def test_image_folder_errors(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="test/ is missing"):
        load_image_folder(tmp_path)
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "nolabel.png").write_bytes(b"x")
    with pytest.raises(DataError, match="cannot tell the label"):
        load_image_folder(tmp_path)


def test_transparent_png_folder_trains_as_it_predicts(mnist, tmp_path):
    """White ink on a transparent canvas (a dark-theme drawing app's export): the folder
    loader and `predict` read each file into the same, non-blank, light-on-dark pixels."""
    from mnist_dist.inference.preprocess import dark_background, preprocess, read_image, recipe_for

    paths = []
    for split, (x, y) in {"train": (mnist.train_x[:20], mnist.train_y[:20]),
                          "test": (mnist.test_x[:10], mnist.test_y[:10])}.items():
        (tmp_path / split).mkdir()
        for i, (img, label) in enumerate(zip(x.numpy(), y.tolist())):
            rgba = np.zeros((28, 28, 4), np.uint8)
            rgba[..., :3] = 255  # white ink...
            rgba[..., 3] = img  # ...whose shape is only in the alpha channel
            rgba[img == 0, :3] = 0  # transparent pixels keep whatever colour the app left
            paths.append(tmp_path / split / f"{label}_{i}.png")
            cv2.imwrite(str(paths[-1]), rgba)
    ds = load_image_folder(tmp_path)
    assert ds.mean < 0.5  # trained as light ink on dark, as MNIST
    assert torch.equal(ds.train_x, mnist.train_x[:20][np.argsort([p.name for p in paths[:20]])])
    payload = {"dataset": ds.name, "normalization": {"mean": ds.mean, "std": ds.std}}
    fed = np.stack([preprocess(read_image(p), recipe_for(payload), dark_background(payload))
                    for p in sorted(paths[:20])])  # what Predictor.prepare gives the model
    assert np.array_equal(fed, ds.train_x.numpy())
    assert (ds.train_x.float().std((1, 2)) > 50).all()  # not blank


@pytest.mark.parametrize("kind", ["16-bit", "colour", "black-ink-alpha"])
def test_image_reading_is_shared_by_folders_and_predict(mnist, tmp_path, kind):
    from mnist_dist.inference.preprocess import read_image as predict_read

    digits = mnist.test_x[:4].numpy()
    for split in ("train", "test"):
        for i, img in enumerate(digits):
            if kind == "16-bit":
                encoded = img.astype(np.uint16) * 257
            elif kind == "colour":  # red ink on a green-tinted page: grey by luminance
                encoded = np.dstack([np.zeros_like(img), np.full_like(img, 80), img])
            else:  # dark ink on a transparent canvas: composited over white
                encoded = np.dstack([np.zeros((28, 28, 3), np.uint8), img])
            path = tmp_path / split / f"{i}_{i}.png"
            path.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(path), encoded)
    ds = load_image_folder(tmp_path)
    files = sorted((tmp_path / "test").iterdir())
    assert np.array_equal(ds.test_x.numpy(), np.stack([predict_read(p) for p in files]))
    expected = {"16-bit": digits, "colour": 0.299 * digits + 0.587 * 80,  # ITU-R 601 luma
                "black-ink-alpha": 255 - digits}[kind]
    assert np.abs(ds.test_x.numpy().astype(int) - expected).max() <= 1
