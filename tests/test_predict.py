"""predict / evaluate / export with the trained fixture model on real MNIST digits:
as PNGs, and redrawn as photos (dark ink on paper, large canvas, off-centre, colour JPG)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from mnist_dist.cli import main
from mnist_dist.data import InputSpec, load_dataset, prepare_batch
from mnist_dist.inference.export import Deployable, export_torchscript
from mnist_dist.inference.preprocess import ImageError, preprocess, read_image, recipe_for
from mnist_dist.models.checkpoint import input_spec, load_model
from mnist_dist.evaluation import evaluate


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write_pngs(folder: Path, images, labels=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        name = f"{int(labels[i])}_{i:03d}.png" if labels is not None else f"{i:03d}.png"
        cv2.imwrite(str(folder / name), np.asarray(img))
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def direct(trained_model, mnist):
    """Predictions of direct evaluation (no files, no preprocessing) on 100 test images."""
    model, payload = load_model(trained_model)
    n = 100
    ev = evaluate(model, mnist.test_x[:n], mnist.test_y[:n], input_spec(payload),
                  payload["normalization"]["mean"], payload["normalization"]["std"], payload["classes"])
    return ev["predictions"]


# ---------------------------------------------------------------- predict on MNIST files


def test_mnist_pngs_predict_as_direct_evaluation(tmp_path, capsys, trained_model, mnist, direct):
    write_pngs(tmp_path / "pngs", mnist.test_x[:len(direct)].numpy())
    rc, out, err = run_cli(capsys, "predict", "--model", trained_model, tmp_path / "pngs", "--json")
    assert rc == 0, err
    results = json.loads(out)
    assert [Path(r["path"]).name for r in results] == [f"{i:03d}.png" for i in range(len(direct))]
    labels = np.array([int(r["label"]) for r in results])
    assert (labels == direct).mean() >= 0.99, np.flatnonzero(labels != direct)
    r = results[0]
    assert set(r) == {"path", "label", "probability", "probabilities"}
    assert list(r["probabilities"]) == [str(i) for i in range(10)]  # the checkpoint's class names
    assert r["probability"] == max(r["probabilities"].values())
    assert abs(sum(r["probabilities"].values()) - 1) < 1e-4


def test_mnist_images_pass_preprocessing_nearly_unchanged(mnist):
    x = mnist.test_x[:500].numpy()
    out = np.stack([preprocess(img, "digit") for img in x])
    diff = np.abs(out.astype(int) - x).mean((1, 2))  # mean grey-level change per image
    assert (diff == 0).mean() > 0.8
    assert np.percentile(diff, 99) < 1.0


def test_text_output_and_top_k(tmp_path, capsys, trained_model, mnist):
    paths = write_pngs(tmp_path, mnist.test_x[:3].numpy(), mnist.test_y[:3].numpy())
    rc, out, _ = run_cli(capsys, "predict", "--model", trained_model, *paths, "--top-k", "3")
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 3
    path, label, prob, top = lines[0].split("\t")
    assert path == str(paths[0]) and label == paths[0].name[0] and 0 < float(prob) <= 1
    assert top.startswith("top-3: ") and len(top.split(", ")) == 3


def test_show_preprocessed_writes_what_the_model_saw(tmp_path, capsys, trained_model, mnist):
    paths = write_pngs(tmp_path / "in", mnist.test_x[:5].numpy())
    rc, _, _ = run_cli(capsys, "predict", "--model", trained_model, tmp_path / "in",
                       "--show-preprocessed", tmp_path / "seen")
    assert rc == 0
    for p in paths:
        seen = cv2.imread(str(tmp_path / "seen" / p.name), cv2.IMREAD_GRAYSCALE)
        assert seen.shape == (28, 28)
        assert np.abs(seen.astype(int) - cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)).mean() < 1


# ---------------------------------------------------------------- photo-like inputs


def paper(h: int, w: int, rng) -> np.ndarray:
    """Light, slightly tinted BGR paper, brighter on one side, with sensor noise."""
    ramp = np.linspace(0.9, 1.0, w, dtype=np.float32)[None, :, None]
    tint = np.array([rng.uniform(200, 225), rng.uniform(215, 235), rng.uniform(225, 245)], np.float32)
    return tint * ramp + rng.normal(0, 3, (h, w, 3)).astype(np.float32)


def on_paper(digit: np.ndarray, rng, scale: float, rotate: float = 0.0, ink=(110, 40, 20),
             size=(160, 200)) -> np.ndarray:
    """An MNIST digit drawn in ink on a larger page (BGR), somewhere off-centre."""
    d = cv2.resize(digit, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    if rotate:
        m = cv2.getRotationMatrix2D((d.shape[1] / 2, d.shape[0] / 2), rotate, 1.0)
        d = cv2.warpAffine(d, m, d.shape[::-1])
    h, w = size
    top, left = rng.integers(0, h - d.shape[0]), rng.integers(0, w - d.shape[1])
    cover = np.zeros((h, w, 1), np.float32)
    cover[top:top + d.shape[0], left:left + d.shape[1], 0] = d / 255.0
    img = paper(h, w, rng) * (1 - cover) + np.array(ink, np.float32) * cover
    return np.clip(img, 0, 255).astype(np.uint8)


def thin_pen(digit: np.ndarray, pen: int) -> np.ndarray:
    """The digit 8x larger, retraced along its centre line with a pen `pen` px wide."""
    big = cv2.resize(digit, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC) > 127
    return 225 - 180 * pen_strokes(big, pen)


def pen_strokes(shape: np.ndarray, pen: int) -> np.ndarray:
    """Morphological skeleton of a binary shape (as the thin-pen benchmark makes them),
    redrawn `pen` px wide."""
    from benchmarks.thin_pen import skeleton

    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (pen, pen))
    return np.pad(cv2.dilate(skeleton(shape), disc), 20).astype(np.uint8)


def variant(name: str, digit: np.ndarray, rng) -> tuple[str, np.ndarray, list]:
    """(suffix, image, imwrite params) for one way of presenting a real MNIST digit."""
    if name == "dark_on_light":  # same size, polarity of a scan
        return ".png", 255 - digit, []
    if name == "large_offcentre":  # grey, 3x larger, on a 200x160 page
        return ".png", cv2.cvtColor(on_paper(digit, rng, 3.0, ink=(20, 20, 20)), cv2.COLOR_BGR2GRAY), []
    if name == "rgb_jpg":  # blue ink on tinted paper, JPEG
        return ".jpg", on_paper(digit, rng, rng.uniform(2.0, 4.0)), [cv2.IMWRITE_JPEG_QUALITY, 75]
    if name == "thin_pen":  # 8x larger, written with a 3 px pen (MNIST's stroke: ~18 px)
        return ".png", thin_pen(digit, 3), []
    # photo: all of it plus camera blur and a small rotation, low JPEG quality
    img = cv2.GaussianBlur(on_paper(digit, rng, rng.uniform(2.5, 4.5), rng.uniform(-8, 8)), (0, 0), 1.2)
    return ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50]


@pytest.mark.parametrize("name", ["dark_on_light", "large_offcentre", "rgb_jpg", "thin_pen", "photo"])
def test_photo_like_digits_are_read(name, tmp_path, capsys, trained_model, mnist):
    rng = np.random.default_rng(0)
    n = 50
    x, y = mnist.test_x[:n].numpy(), mnist.test_y[:n].numpy()
    for i in range(n):
        suffix, img, params = variant(name, x[i], rng)
        cv2.imwrite(str(tmp_path / f"{i:03d}{suffix}"), img, params)
    rc, out, err = run_cli(capsys, "predict", "--model", trained_model, tmp_path, "--json")
    assert rc == 0, err
    labels = np.array([int(r["label"]) for r in json.loads(out)])
    assert len(labels) == n
    assert (labels == y).mean() >= 0.9, f"{name}: accuracy {(labels == y).mean():.2f}"


# ---------------------------------------------------------------- bad inputs


def test_bad_files_get_errors_and_the_rest_is_predicted(tmp_path, capsys, trained_model, mnist):
    good = write_pngs(tmp_path / "in", mnist.test_x[:2].numpy(), mnist.test_y[:2].numpy())
    (tmp_path / "in" / "notes.png").write_text("not an image at all\n")
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "in" / "blank.jpg"), np.full((160, 200, 3), 245, np.uint8))
    (tmp_path / "no_images").mkdir()
    missing = tmp_path / "missing.png"
    rc, out, err = run_cli(capsys, "predict", "--model", trained_model, tmp_path / "in", missing,
                           tmp_path / "no_images")
    assert rc == 1
    assert [line.split("\t")[:2] for line in out.strip().splitlines()] == \
        [[str(p), p.name[0]] for p in sorted(good)]
    errors = {line.split(": ")[1]: line for line in err.strip().splitlines() if line.startswith("error:")}
    assert "not an image" in errors[str(tmp_path / "in" / "notes.png")]
    assert "empty file" in errors[str(tmp_path / "in" / "empty.png")]
    assert "blank image" in errors[str(tmp_path / "in" / "blank.jpg")]
    assert "no such file" in errors[str(missing)]
    assert "no image files" in errors[str(tmp_path / "no_images")]


def test_blank_page_with_specks_is_an_error():
    page = np.full((400, 300), 235, np.uint8)
    page[100, 100] = page[250:252, 40:42] = 30  # dust, not a digit
    with pytest.raises(ImageError, match="blank|specks"):
        preprocess(page, "digit")


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated zip"])
def test_missing_or_invalid_model_exits_2(tmp_path, capsys, mnist, content):
    model = tmp_path / "model.pt"
    if content is not None:
        model.write_bytes(content)
    image = write_pngs(tmp_path, mnist.test_x[:1].numpy())[0]
    for argv in (["predict", "--model", model, image], ["evaluate", "--model", model, "--dataset", "mnist"],
                 ["export", "--model", model]):
        rc, out, err = run_cli(capsys, *argv)
        assert rc == 2 and out == "" and err.startswith(f"error: {model}")


def test_read_image_handles_alpha_and_16_bit(tmp_path, mnist):
    digit = mnist.test_x[0].numpy()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black ink whose shape is only in the alpha channel
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), digit.astype(np.uint16) * 257)
    assert np.array_equal(preprocess(read_image(tmp_path / "alpha.png")), preprocess(digit))
    assert np.array_equal(read_image(tmp_path / "deep.png"), digit)


# ---------------------------------------------------------------- other datasets


def test_fashion_mnist_models_get_the_whole_frame(data_dir):
    assert recipe_for({"dataset": "mnist"}) == "digit"
    assert recipe_for({"dataset": "fashion-mnist"}) == "fit"
    assert recipe_for({"dataset": "my-folder"}) == "plain"
    x = load_dataset("fashion-mnist", data_dir).test_x[:200].numpy()
    same = [np.abs(preprocess(img, "fit").astype(int) - img).mean() for img in x]
    assert np.median(same) == 0 and np.percentile(same, 95) < 2
    # A product photo: dark on white, 4x larger, on a wider page. It comes back framed as
    # Fashion-MNIST frames it (margins trimmed, longer side 28), not shrunk into MNIST's
    # 20x20 digit box.
    for img in x[:20]:
        photo = np.full((150, 190), 235, np.uint8)
        photo[20:132, 50:162] = 235 - cv2.resize(img, (112, 112), interpolation=cv2.INTER_CUBIC) * (225 / 255)
        assert object_size(preprocess(photo, "fit")) == pytest.approx(object_size(img), abs=1)
        assert max(object_size(preprocess(photo, "digit"))) == 20


def object_size(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero((img > 25).any(1)), np.flatnonzero((img > 25).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# ---------------------------------------------------------------- evaluate


def test_evaluate_dataset(capsys, trained_model):
    rc, out, _ = run_cli(capsys, "evaluate", "--model", trained_model, "--dataset", "mnist",
                         "--limit", "1000")
    assert rc == 0
    assert "mnist test split" in out and "confusion matrix" in out and "precision recall" in out
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc >= 0.95
    rc, out, _ = run_cli(capsys, "evaluate", "--model", trained_model, "--dataset", "mnist",
                         "--limit", "1000", "--json")
    ev = json.loads(out)
    assert rc == 0 and ev["accuracy"] == acc and ev["n"] == 1000 and len(ev["confusion_matrix"]) == 10


def test_evaluate_refuses_a_dataset_with_other_classes(capsys, trained_model):
    rc, _, err = run_cli(capsys, "evaluate", "--model", trained_model, "--dataset", "fashion-mnist")
    assert rc == 2 and "classes" in err and "fashion-mnist" in err


def test_evaluate_image_folders(tmp_path, capsys, trained_model, mnist):
    x, y = mnist.test_x[:60].numpy(), mnist.test_y[:60].numpy()
    write_pngs(tmp_path / "split" / "test", x, y)  # load_image_folder's layout: test/ is used
    write_pngs(tmp_path / "split" / "train", x[:10], y[:10])
    for i in range(len(x)):  # flat folder of {label}/ subfolders, as scans: all of it is used
        (tmp_path / "flat" / str(y[i])).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "flat" / str(y[i]) / f"{i}.jpg"), 255 - x[i])
    for root in ("split", "flat"):
        rc, out, err = run_cli(capsys, "evaluate", "--model", trained_model, "--images", tmp_path / root,
                               "--json")
        ev = json.loads(out)
        assert rc == 0, err
        assert ev["n"] == 60 and ev["accuracy"] >= 0.9
        used = tmp_path / "split" / "test" if root == "split" else tmp_path / "flat"
        assert ev["evaluated_on"] == f"{used} (60 images)"
    rc, out, _ = run_cli(capsys, "evaluate", "--model", trained_model, "--images", tmp_path / "split")
    assert rc == 0 and "test accuracy" in out


# ---------------------------------------------------------------- export

CHILD = r"""
import json, sys
sys.modules["mnist_dist"] = None  # any import of the project now fails: prove it is not needed
import numpy as np, torch
path, inp, outp = sys.argv[1:4]
if path.endswith(".onnx"):
    import onnxruntime
    s = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = json.loads(s.get_modelmeta().custom_metadata_map["mnist_dist"])
    probs = s.run(None, {"image": np.load(inp)})[0]
else:
    extra = {"mnist_dist.json": ""}
    m = torch.jit.load(path, _extra_files=extra)
    meta = json.loads(extra["mnist_dist.json"])
    probs = m(torch.from_numpy(np.load(inp))).detach().numpy()
np.save(outp, probs)
print(json.dumps(meta["classes"]))
"""


def run_exported(tmp_path, exported: Path, images: np.ndarray) -> tuple[np.ndarray, list]:
    """Run the exported file in a fresh Python that cannot import mnist_dist."""
    np.save(tmp_path / "in.npy", images[:, None].astype(np.float32) / 255)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(exported), str(tmp_path / "in.npy"),
                           str(tmp_path / "out.npy")], cwd="/tmp", env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return np.load(tmp_path / "out.npy"), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_runs_without_the_project(fmt, tmp_path, capsys, trained_model, mnist):
    if fmt == "onnx":  # optional extra: pip install onnx onnxscript onnxruntime
        for package in ("onnx", "onnxscript", "onnxruntime"):
            try:
                __import__(package)
            except Exception as e:  # missing or broken
                if os.environ.get("CI"):  # .ci/run installs them (dev extra): a failure there, not a skip
                    raise AssertionError(f"{package} does not import under CI: {e}") from e
                pytest.skip(f"{package} not importable: {e}")
    out = tmp_path / f"model.{fmt}"
    rc, stdout, err = run_cli(capsys, "export", "--model", trained_model, "--format", fmt, "--output", out)
    assert rc == 0 and out.is_file(), err
    x = mnist.test_x[:64]
    probs, classes = run_exported(tmp_path, out, x.numpy())
    model, payload = load_model(trained_model)
    with torch.no_grad():
        expected = torch.softmax(model(prepare_batch(x, input_spec(payload), payload["normalization"]["mean"],
                                                     payload["normalization"]["std"])), 1).numpy()
    assert classes == payload["classes"]
    assert np.abs(probs - expected).max() < 1e-4
    assert (probs.argmax(1) == expected.argmax(1)).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.15 deprecates torch.jit
@pytest.mark.parametrize("spec", [InputSpec(32, 1), InputSpec(64, 3, resize=True)])
def test_export_bakes_in_padding_resizing_and_channels(spec, tmp_path):
    """The lenet5-style zero pad and the alexnet-style resize + RGB, on a small real model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(spec.channels, 4, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(16, 10)).eval()
    x = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = torch.softmax(model(prepare_batch(x, spec, 0.13, 0.31)), 1)
    meta = {"classes": list("0123456789")}
    export_torchscript(Deployable(model, spec, 0.13, 0.31), meta, tmp_path / "m.pt")
    got = torch.jit.load(str(tmp_path / "m.pt"))(x.unsqueeze(1).float() / 255)
    assert torch.allclose(got, expected, atol=1e-5)
