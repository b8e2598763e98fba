"""Bad image files and bad flag values for `predict`, `evaluate --images` and training on
an image folder. Each bad file gets one line naming it and why, and the other files go on
(exit 1 for a partial result, 2 when nothing was usable); an image over MAX_PIXELS is
refused from its header before anything decodes it; a bad flag value is one `error:`
line and exit 2, before any model is loaded.

The model file is a freshly initialised mlp saved through `model_payload`, as `mnist-dist
train` saves one: these tests are about files and flags, not accuracy, and stay fast.
One slow test repeats the partial-result check with the trained fixture model."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mnist_dist.cli import main
from mnist_dist.data import DataError, load_image_folder
from mnist_dist.data import images as image_io
from mnist_dist.data.images import MAX_PIXELS, ImageError, read_image, to_gray
from mnist_dist.models import create_model
from mnist_dist.models.checkpoint import atomic_save, model_payload
from tests.badinput import run_bad, tree_state

CLASSES = [str(i) for i in range(10)]
LIMIT = f"{MAX_PIXELS:,}-pixel limit"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads any file whatever its mode


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("mlp", 10, 0.2)
    payload = model_payload(model, {"arch": "mlp", "dropout": 0.2}, CLASSES, 0.1307, 0.3081, "mnist")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    atomic_save(payload, path)
    return path


def digit(seed: int = 0) -> np.ndarray:
    """A light stroke on black, enough for every preprocessing recipe to find ink."""
    img = np.zeros((40, 40), np.uint8)
    img[8:32, 17 + seed % 5:23 + seed % 5] = 255
    return img


def write_digits(folder: Path, n: int, labelled: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / (f"{i % 10}_{i}.png" if labelled else f"good_{i}.png") for i in range(n)]
    for i, p in enumerate(paths):
        cv2.imwrite(str(p), digit(i))
    return paths


# ---------------------------------------------------------------- crafted bad files


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int, idat: bytes, colour_type: int = 0) -> bytes:
    """A PNG whose header says width x height (colour type 0: grey, 6: RGBA), whatever its
    pixel data holds: a huge header without gigabytes of pixels to make and compress."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def encoded(fmt: str, img: np.ndarray | None = None) -> bytes:
    """A real photo-like image in a format, as bytes (noise: it compresses badly, so that
    a cut leaves a truncated image body, not just a truncated header)."""
    img = np.random.default_rng(0).integers(0, 256, (120, 160), dtype=np.uint8) if img is None else img
    ok, buf = cv2.imencode(fmt, img)
    assert ok
    return buf.tobytes()


def header_patched(fmt: str, width: int, height: int) -> bytes:
    """A small BMP or JPEG whose header is rewritten to claim width x height."""
    out = io.BytesIO()
    Image.new("L", (10, 10), 255).save(out, fmt)
    data = bytearray(out.getvalue())
    if fmt == "BMP":
        data[18:26] = struct.pack("<ii", width, height)
    else:  # the start-of-frame marker: precision, then height and width
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def pillow_saved(mode: str, size: tuple[int, int], fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt, **options)
    return out.getvalue()


def header_checksum_broken() -> bytes:
    """A 10x10 PNG whose header chunk fails its CRC (bytes 29-32: after the 8-byte signature
    and the chunk's length, type and 13 bytes of data)."""
    data = bytearray(crafted_png(10, 10, zlib.compress(b"\0" * 110)))
    data[29] ^= 0xFF
    return bytes(data)


def nan_tiff() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((20, 20), np.nan, np.float32)).save(out, "TIFF")
    return out.getvalue()


HUGE = (20000, 20000)  # 400 megapixels; as a 1-bit PNG of one colour, 50 KB (and 50 MB to make)
# name -> (file name, how to make its bytes, words its error must hold)
BAD_FILES = {
    "huge-1bit-png": ("huge.png", lambda: pillow_saved("1", HUGE, "PNG"), "20000x20000 pixels"),
    "huge-palette-png": ("big.png", lambda: pillow_saved("P", (8000, 6000), "PNG"), "8000x6000 pixels"),
    "huge-rgba-png": ("huge.png", lambda: crafted_png(*HUGE, zlib.compress(b"\0" * 99), 6),
                      "20000x20000 pixels"),
    "big-grey-alpha-png": ("big.png", lambda: pillow_saved("LA", (6500, 6500), "PNG"), "6500x6500 pixels"),
    "big-1bit-png": ("big.png", lambda: pillow_saved("1", (7000, 7000), "PNG"), "7000x7000 pixels"),
    "wide-png": ("wide.png", lambda: pillow_saved("1", (65000, 700), "PNG"), "65000x700 pixels"),
    "huge-tiff": ("huge.tif", lambda: pillow_saved("1", HUGE, "TIFF", compression="group4"), LIMIT),
    "header-huge-png": ("claims.png", lambda: crafted_png(30000, 30000, zlib.compress(b"\0" * 99)),
                        "30000x30000 pixels"),
    "header-huge-bmp": ("claims.bmp", lambda: header_patched("BMP", 20000, 20000), "20000x20000"),
    "header-huge-jpeg": ("claims.jpg", lambda: header_patched("JPEG", 20000, 20000), "20000x20000"),
    "truncated-png": ("cut.png", lambda: encoded(".png")[:3000], "truncated PNG"),
    "truncated-jpeg": ("cut.jpg", lambda: encoded(".jpg")[:4000], "truncated JPEG"),
    "truncated-jpeg-header": ("cut.jpg", lambda: encoded(".jpg")[:20], "damaged"),
    "truncated-bmp": ("cut.bmp", lambda: encoded(".bmp")[:5000], "damaged or truncated BMP"),
    "truncated-tiff": ("cut.tif", lambda: encoded(".tif")[:60], "damaged header"),
    "png-signature-only": ("sig.png", lambda: b"\x89PNG\r\n\x1a\n", "not an image"),
    "png-bad-checksum": ("crc.png", header_checksum_broken, "not an image"),
    "png-damaged-pixels": ("zlib.png", lambda: crafted_png(10, 10, b"not zlib data"), "damaged"),
    "png-zero-width": ("zero.png", lambda: crafted_png(0, 10, zlib.compress(b"")), "not an image"),
    "text-as-png": ("notes.png", lambda: b"shopping list: milk, eggs\n", "not an image"),
    "text-as-jpg": ("notes.jpg", lambda: b"<html>not a photo</html>", "not an image"),
    "random-bytes": ("noise.png", lambda: np.random.default_rng(1).bytes(5000), "not an image"),
    "empty-file": ("empty.png", lambda: b"", "empty file"),
    "nan-float-tiff": ("nan.tif", nan_tiff, "NaN"),
    "blank-page": ("blank.png", lambda: encoded(".png", np.full((50, 50), 240, np.uint8)), "blank image"),
}


@pytest.fixture(scope="module")
def bad_bytes() -> dict[str, bytes]:
    """Each crafted file's bytes, made once (the huge ones take a second each)."""
    return {name: make() for name, (_, make, _) in BAD_FILES.items()}


def place(kind: str, bad_bytes: dict, folder: Path) -> Path:
    name, _, _ = BAD_FILES[kind]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(bad_bytes[kind])
    return path


def run_cli(capsys, argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- predict


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_predict_a_bad_file_alone_is_one_error_and_exit_2(kind, bad_bytes, model_file, tmp_path, capsys):
    bad = place(kind, bad_bytes, tmp_path / "in")
    err = run_bad(capsys, ["predict", "--model", model_file, bad], code=2, names=(str(bad),), root=tmp_path)
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ") and BAD_FILES[kind][2] in lines[0]


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_predict_goes_on_after_a_bad_file(kind, bad_bytes, model_file, tmp_path, capsys):
    """Good files before and after the bad one are all predicted; exit 1 (a partial result)."""
    good = write_digits(tmp_path / "in", 2)
    bad = place(kind, bad_bytes, tmp_path / "in")
    before = tree_state(tmp_path)
    rc, out, err = run_cli(capsys, ["predict", "--model", model_file, good[0], bad, good[1]])
    assert rc == 1, err
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good[0]), str(good[1])]
    assert len(error_lines(err)) == 1 and error_lines(err)[0].startswith(f"error: {bad}: ")
    assert "1 of 3 inputs could not be predicted" in err and "Traceback" not in err
    assert tree_state(tmp_path) == before


def test_predict_a_folder_with_every_kind_of_bad_file(bad_bytes, model_file, tmp_path, capsys):
    good = write_digits(tmp_path / "in" / "good", 3)
    bad = [place(kind, bad_bytes, tmp_path / "in" / kind) for kind in BAD_FILES]
    rc, out, err = run_cli(capsys, ["predict", "--model", model_file, tmp_path / "in", "--json"])
    assert rc == 1 and "Traceback" not in err
    assert sorted(r["path"] for r in json.loads(out)) == sorted(map(str, good))
    assert sorted(line.split(": ")[1] for line in error_lines(err)) == sorted(map(str, bad))


@pytest.mark.timeout(60)  # a pipe opened for reading would wait for a writer for ever
def test_predict_special_paths(model_file, tmp_path, capsys):
    """A folder named like an image, a missing file, a broken link, a pipe and a name with a
    NUL byte: one line each, and the good file is still predicted."""
    good = write_digits(tmp_path / "in", 1)[0]
    (tmp_path / "in" / "folder.png").mkdir()
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "in" / "pipe.png")
    odd = [tmp_path / "in" / "folder.png", tmp_path / "missing.png", tmp_path / "in" / "link.png",
           tmp_path / "in" / "pipe.png", "nul\0byte.png"]
    rc, out, err = run_cli(capsys, ["predict", "--model", model_file, good, *odd])
    assert rc == 1 and out.split("\t")[0] == str(good) and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == len(odd)
    for path, words in zip(odd, ["no image files", "no such file", "no such file", "not a regular file",
                                 "cannot read the file"]):
        assert any(line.startswith(f"error: {path}: ") and words in line for line in lines), (path, err)


@pytest.mark.timeout(60)
def test_predict_a_folder_of_special_files_finds_them_too(model_file, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "in" / "pipe.png")
    # no root= here: checking that nothing changed would read the pipe, and wait
    run_bad(capsys, ["predict", "--model", model_file, tmp_path / "in"], code=2,
            names=("link.png: no such file", "pipe.png: not a regular file"))


@pytest.mark.skipif(AS_ROOT, reason="root reads a file whatever its permissions")
def test_predict_an_unreadable_file(model_file, tmp_path, capsys):
    good = write_digits(tmp_path / "in", 1)[0]
    locked = write_digits(tmp_path / "locked", 1)[0]
    locked.chmod(0)
    try:
        rc, out, err = run_cli(capsys, ["predict", "--model", model_file, locked, good])
    finally:
        locked.chmod(0o644)
    assert rc == 1 and out.startswith(str(good)) and f"error: {locked}: cannot read the file" in err


def test_file_over_the_byte_limit_is_not_read(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_FILE_BYTES", 1000)
    good = write_digits(tmp_path / "in", 1)[0]
    big = tmp_path / "in" / "big.png"
    big.write_bytes(encoded(".png"))  # 19 kB of noise
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: pytest.fail(f"{self} was read") if self == big else read_bytes(self))
    # no root= here: checking that nothing changed reads every file, the big one too
    run_bad(capsys, ["predict", "--model", model_file, big, good], code=1,
            names=(f"{big}:", "1,000-byte limit"))


# ---------------------------------------------------------------- nothing decoded


@pytest.mark.parametrize("kind", ["huge-1bit-png", "huge-palette-png", "huge-rgba-png", "big-grey-alpha-png",
                                  "big-1bit-png", "huge-tiff",
                                  "header-huge-png", "header-huge-bmp", "header-huge-jpeg"])
def test_huge_image_is_refused_before_decoding(kind, bad_bytes, tmp_path, monkeypatch):
    path = place(kind, bad_bytes, tmp_path)

    def decoder_called(*args, **kwargs):
        raise AssertionError(f"{path.name} was decoded")

    monkeypatch.setattr(cv2, "imdecode", decoder_called)
    monkeypatch.setattr(cv2, "imread", decoder_called)
    monkeypatch.setattr(Image.Image, "load", decoder_called)
    with pytest.raises(ImageError, match=LIMIT):
        read_image(path)


def test_opencv_refuses_over_the_limit_too(bad_bytes, tmp_path):
    """The second guard: OpenCV's own limit is set before cv2 loads, when the command line
    imports the inference code, so even a direct decode refuses a 49-megapixel image."""
    path = place("big-1bit-png", bad_bytes, tmp_path)
    code = ("import mnist_dist.cli, mnist_dist.inference.predict_cli, sys, cv2, numpy as np\n"
            "try:\n    cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)\n"
            "except cv2.error as e:\n    print('refused', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "refused" in done.stdout and "CV_IO_MAX_IMAGE_PIXELS" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("shape", [(10, 10, 5), (10, 10, 3, 2)])
def test_odd_pixel_layouts_are_errors(shape):
    with pytest.raises(ImageError, match="channels|flat"):
        to_gray(np.zeros(shape, np.uint8))


# ---------------------------------------------------------------- evaluate --images


def test_evaluate_images_goes_on_after_bad_files(bad_bytes, model_file, tmp_path, capsys):
    write_digits(tmp_path / "set" / "test", 10, labelled=True)
    bad = [place(kind, bad_bytes, tmp_path / "set" / "test" / "3") for kind in
           ("huge-1bit-png", "truncated-jpeg", "text-as-png", "empty-file")]
    rc, out, err = run_cli(capsys, ["evaluate", "--model", model_file, "--images", tmp_path / "set"])
    assert rc == 1 and "test accuracy" in out and "(10 images)" in out and "Traceback" not in err
    assert sorted(line.split(": ")[1] for line in error_lines(err)) == sorted(map(str, bad))


def test_evaluate_images_with_no_usable_file_is_exit_2(bad_bytes, model_file, tmp_path, capsys):
    bad = [place(kind, bad_bytes, tmp_path / "set" / "7") for kind in ("huge-rgba-png", "truncated-png")]
    run_bad(capsys, ["evaluate", "--model", model_file, "--images", tmp_path / "set"], code=2,
            names=(*map(str, bad), "none of the 2 images"), root=tmp_path)


# ---------------------------------------------------------------- training on an image folder


def image_folder(root: Path, bad_bytes: dict, bad_kinds: dict[str, list[str]]) -> list[Path]:
    """ROOT/train and ROOT/test with 20 and 10 good digits and the given bad files (named
    with a label, so that only their content is wrong); returns the bad files."""
    write_digits(root / "train", 20, labelled=True)
    write_digits(root / "test", 10, labelled=True)
    bad = []
    for split, kinds in bad_kinds.items():
        for i, kind in enumerate(kinds):
            path = place(kind, bad_bytes, root / split)
            bad.append(path.rename(path.with_name(f"{i % 10}_bad{i}{path.suffix}")))
    return bad


def test_image_folder_skips_bad_files_with_a_warning_each(bad_bytes, tmp_path, capsys):
    bad = image_folder(tmp_path, bad_bytes, {"train": ["huge-palette-png", "truncated-jpeg", "text-as-png"],
                                             "test": ["empty-file"]})
    ds = load_image_folder(tmp_path)
    assert len(ds.train_x) == 20 and len(ds.test_x) == 10 and ds.classes == tuple(CLASSES)
    warnings = capsys.readouterr().err.splitlines()
    for path in bad:
        assert sum(line.startswith(f"warning: {path}: ") for line in warnings) == 1, warnings
    assert f"warning: {tmp_path / 'train'}: skipped 3 of 23 image files" in "\n".join(warnings)
    assert f"warning: {tmp_path / 'test'}: skipped 1 of 11 image files" in "\n".join(warnings)


def test_image_folder_with_no_usable_training_image_is_one_error(bad_bytes, tmp_path, capsys):
    image_folder(tmp_path, bad_bytes, {})
    for p in (tmp_path / "train").iterdir():
        p.write_bytes(b"")
    with pytest.raises(DataError, match="none of the 20 image files could be read"):
        load_image_folder(tmp_path)


def test_train_on_a_folder_with_bad_files(bad_bytes, tmp_path, capsys):
    """Training goes on without the bad files (exit 0: the model is complete; the warnings
    say what was left out); a folder with nothing usable is one error line, exit 2."""
    def train(data: Path, name: str) -> list:
        return ["train", "mlp", "--images", data, "--epochs", "1", "--batch-size", "8",
                "--results-dir", tmp_path / "results", "--name", name, "--quiet"]

    bad = image_folder(tmp_path / "data", bad_bytes, {"train": ["header-huge-jpeg", "truncated-png"]})
    rc, out, err = run_cli(capsys, train(tmp_path / "data", "run"))
    assert rc == 0 and (tmp_path / "results" / "run" / "model.pt").is_file(), err
    assert all(f"warning: {p}: " in err for p in bad) and "Traceback" not in err
    image_folder(tmp_path / "unusable", bad_bytes, {})
    for p in (tmp_path / "unusable" / "test").iterdir():
        p.write_text("not an image")
    run_bad(capsys, train(tmp_path / "unusable", "run2"), code=2,
            names=(str(tmp_path / "unusable" / "test"), "none of the 10"), root=tmp_path / "unusable")


# ---------------------------------------------------------------- flag values


BAD_DEVICES = ["bogus", "CUDA", "cuda:", "cuda:x", "cpu:0", "mps:1", "gpu", "", "cuda:99"]
if not torch.cuda.is_available():
    BAD_DEVICES.append("cuda")
if not torch.backends.mps.is_available():
    BAD_DEVICES.append("mps")


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("command", ["predict", "evaluate-dataset", "evaluate-images"])
def test_bad_device_is_one_error_line(command, device, model_file, tmp_path, capsys):
    image = write_digits(tmp_path / "in", 1, labelled=True)[0]
    argv = {"predict": ["predict", "--model", model_file, image],
            "evaluate-dataset": ["evaluate", "--model", model_file, "--dataset", "mnist"],
            "evaluate-images": ["evaluate", "--model", model_file, "--images", tmp_path / "in"]}[command]
    run_bad(capsys, argv + ["--device", device], code=2, names=(f"--device {device}".rstrip(),),
            root=tmp_path)


@pytest.mark.parametrize("limit", ["0", "-1", "-100"])
@pytest.mark.parametrize("source", ["--dataset", "--images"])
def test_evaluate_limit_below_1_is_a_usage_error(source, limit, model_file, tmp_path, capsys):
    write_digits(tmp_path / "in", 3, labelled=True)
    value = "mnist" if source == "--dataset" else tmp_path / "in"
    run_bad(capsys, ["evaluate", "--model", model_file, source, value, "--limit", limit], code=2,
            names=(f"--limit {limit}",), root=tmp_path)


@pytest.mark.parametrize("limit", ["abc", "1.5", ""])
def test_evaluate_limit_that_is_not_a_number_is_argparse_usage_error(limit, model_file, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--model", str(model_file), "--dataset", "mnist", "--limit", limit])
    assert stop.value.code == 2 and "error: argument --limit" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--batch-size", "-3"), ("--top-k", "0"),
                                         ("--show-preprocessed", "a-file.txt")])
def test_predict_bad_flag_values(flag, value, model_file, tmp_path, capsys):
    image = write_digits(tmp_path, 1)[0]
    (tmp_path / "a-file.txt").write_text("here already")
    value = tmp_path / value if value.endswith(".txt") else value
    run_bad(capsys, ["predict", "--model", model_file, image, flag, value], code=2,
            names=(f"{flag} {value}",), root=tmp_path)


# ---------------------------------------------------------------- with the trained model


def test_trained_model_predicts_the_good_files_around_bad_ones(trained_model, mnist, bad_bytes, tmp_path,
                                                               capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = []
    for i in range(5):
        good.append(folder / f"{i}_good.png")
        cv2.imwrite(str(good[-1]), mnist.test_x[i].numpy())
    bad = [place(kind, bad_bytes, folder / kind) for kind in ("huge-rgba-png", "truncated-jpeg")]
    rc, out, err = run_cli(capsys, ["predict", "--model", trained_model, folder])
    assert rc == 1 and len(error_lines(err)) == 2 and all(str(p) in err for p in bad)
    labels = {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}
    assert labels == {str(p): str(int(mnist.test_y[i])) for i, p in enumerate(good)}
