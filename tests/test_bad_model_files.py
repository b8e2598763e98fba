"""Malformed model files: predict, evaluate and export each answer with one `error:` line
naming the file and what is wrong (exit 2), never a traceback, and build nothing from an
unchecked number. Export writes atomically: a failure or a full disk leaves no file.

The files are made from a freshly initialised cnn_regularized saved through the same
model_payload as `mnist-dist train`; one slow test checks that the trained fixture model
has that very shape and that the same mutations of it are refused the same way."""
from __future__ import annotations

import errno
import math
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from mnist_dist.inference import export
from mnist_dist.models import checkpoint, create_model
from mnist_dist.models.checkpoint import atomic_save, model_payload, validate_payload
from tests.badinput import run_bad, tree_state

ARCH = "cnn_regularized"
CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def good_payload() -> dict:
    torch.manual_seed(0)
    model = create_model(ARCH, 10, None)  # the architecture's own dropout, as `train` saves it
    return model_payload(model, {"arch": ARCH}, CLASSES, 0.1307, 0.3081, "mnist")


def fresh(payload: dict) -> dict:
    """A copy whose top-level values and state dict entries can be replaced freely."""
    copy = {k: dict(v) if isinstance(v, dict) else v for k, v in payload.items()}
    copy["classes"] = list(payload["classes"])
    return copy


def commands(model: Path, tmp_path: Path) -> list[list]:
    """Each command that loads a model file; the image path need not exist: the model is
    loaded first, and a bad one ends the command."""
    return [["predict", "--model", model, tmp_path / "digit.png"],
            ["evaluate", "--model", model, "--dataset", "mnist"],
            ["export", "--model", model]]


# --- one change each to a good payload: (id, change, words the error must name) -------------

def without(key):
    return lambda p: {k: v for k, v in p.items() if k != key}


def setting(key, value):
    return lambda p: {**p, key: value}


def inside(key, sub, value):
    return lambda p: {**p, key: {**p[key], sub: value}}


def dropping(key, sub):
    return lambda p: {**p, key: {k: v for k, v in p[key].items() if k != sub}}


def ensemble(n_keys: int, members: int | None = None, change=None):
    """An ensemble payload whose state dict holds `n_keys` members; `members` declares the
    count (default n_keys); `change` edits the member state dict afterwards."""
    def make(p):
        state = {f"members.{i}.{k}": v for i in range(n_keys) for k, v in p["state_dict"].items()}
        if change:
            change(state)
        return {**p, "members": n_keys if members is None else members, "state_dict": state}
    return make


def reshaped(key, shape):
    def change(state):
        state[key] = torch.zeros(shape)
    return change


CASES = [
    *[(f"missing-{key}", without(key), (key,)) for key in
      ("format", "arch", "num_classes", "input", "normalization", "classes", "state_dict")],
    ("format-other-version", setting("format", "mnist-dist-model/2"), ("format", "mnist-dist-model/1")),
    ("format-not-string", setting("format", 1), ("format",)),
    ("arch-unknown", setting("arch", "resnet50"), ("arch", "resnet50", "known")),
    ("arch-not-string", setting("arch", 5), ("arch", "int")),
    ("num_classes-string", setting("num_classes", "10"), ("num_classes", "integer")),
    ("num_classes-bool", setting("num_classes", True), ("num_classes", "integer")),
    ("num_classes-float", setting("num_classes", 10.0), ("num_classes", "integer")),
    ("num_classes-zero", setting("num_classes", 0), ("num_classes", "1 to 1000")),
    ("num_classes-huge", setting("num_classes", 10 ** 12), ("num_classes", "1 to 1000")),
    ("classes-string", setting("classes", "0123456789"), ("classes", "list")),
    ("classes-fewer", setting("classes", ["0", "1", "2"]), ("classes has 3 names", "10 outputs")),
    ("classes-more", setting("classes", CLASSES + ["10"]), ("classes has 11 names", "10 outputs")),
    ("classes-empty", setting("classes", []), ("classes has 0 names",)),
    ("classes-duplicate", setting("classes", CLASSES[:9] + ["3"]), ("classes has '3' more than once", "unique")),
    ("classes-not-strings", setting("classes", list(range(10))), ("classes", "string")),
    ("classes-empty-name", setting("classes", CLASSES[:9] + [""]), ("classes", "string")),
    ("classes-newline", setting("classes", CLASSES[:9] + ["9\nerror: fake"]), ("classes", "printable")),
    ("classes-long-name", setting("classes", CLASSES[:9] + ["x" * 5000]), ("classes", "200 characters")),
    ("classes-consistent-but-weights-for-10", lambda p: {**p, "num_classes": 3, "classes": ["a", "b", "c"]},
     ("10.weight", "(10, 128)", "(3, 128)")),
    ("normalization-list", setting("normalization", [0.13, 0.31]), ("normalization", "dict")),
    ("std-zero", inside("normalization", "std", 0.0), ("normalization.std", "0.001 to 1")),
    ("std-negative", inside("normalization", "std", -0.3), ("normalization.std", "0.001 to 1")),
    ("std-nan", inside("normalization", "std", math.nan), ("normalization.std", "finite")),
    ("std-inf", inside("normalization", "std", math.inf), ("normalization.std", "finite")),
    ("std-missing", dropping("normalization", "std"), ("normalization.std",)),
    ("std-string", inside("normalization", "std", "0.3"), ("normalization.std",)),
    ("mean-nan", inside("normalization", "mean", math.nan), ("normalization.mean", "finite")),
    ("mean-three-channels", inside("normalization", "mean", [0.1, 0.1, 0.1]), ("normalization.mean", "one")),
    ("mean-out-of-range", inside("normalization", "mean", 130.0), ("normalization.mean", "0 to 1")),
    ("input-not-dict", setting("input", 28), ("input", "dict")),
    ("input-size-huge", inside("input", "size", 10 ** 9), ("input.size", "1 to 512")),
    ("input-size-zero", inside("input", "size", 0), ("input.size", "1 to 512")),
    ("input-size-other-arch", inside("input", "size", 32), ("input", "cnn_regularized model takes")),
    ("input-channels-two", inside("input", "channels", 2), ("input", "channels must be 1 or 3")),
    ("input-resize-string", inside("input", "resize", "yes"), ("input", "resize")),
    ("input-extra-key", inside("input", "crop", 4), ("input", "size, channels and resize")),
    ("input-missing-key", dropping("input", "channels"), ("input", "size, channels and resize")),
    ("state_dict-not-dict", setting("state_dict", [1, 2]), ("state_dict", "dict")),
    ("state_dict-empty", setting("state_dict", {}), ("state_dict lacks", "'0.weight'", "and 5 more")),
    ("state_dict-missing-key", dropping("state_dict", "3.bias"), ("state_dict lacks", "'3.bias'")),
    ("state_dict-extra-key", inside("state_dict", "11.weight", torch.zeros(2)), ("state_dict has", "'11.weight'")),
    ("state_dict-wrong-shape", inside("state_dict", "0.weight", torch.zeros(32, 1, 5, 5)),
     ("state_dict['0.weight']", "(32, 1, 5, 5)", "(32, 1, 3, 3)")),
    ("state_dict-huge-layer", inside("state_dict", "7.weight", torch.zeros(1, 1).expand(10 ** 6, 1600)),
     ("state_dict['7.weight']", "(1000000, 1600)", "(128, 1600)")),
    ("state_dict-list-not-tensor", inside("state_dict", "0.bias", [0.0] * 32), ("state_dict['0.bias']", "tensor")),
    ("state_dict-integer-weights", inside("state_dict", "0.bias", torch.zeros(32, dtype=torch.int64)),
     ("state_dict['0.bias']", "torch.int64", "torch.float32")),
    ("state_dict-sparse", inside("state_dict", "0.bias", torch.zeros(32).to_sparse()),
     ("state_dict['0.bias']", "sparse", "dense")),
    ("dropout-string", setting("dropout", "half"), ("dropout", "number")),
    ("dropout-above-one", setting("dropout", 1.5), ("dropout", "below 1")),
    ("dropout-nan", setting("dropout", math.nan), ("dropout",)),
    ("dataset-not-string", setting("dataset", 7), ("dataset", "string")),
    ("metrics-list", setting("metrics", [0.9]), ("metrics", "dict")),
    ("config-string", setting("config", "lr=1"), ("config", "dict")),
    ("ensemble-zero-members", ensemble(2, members=0), ("members is 0", "1 to 8")),
    ("ensemble-negative-members", ensemble(2, members=-1), ("members is -1",)),
    ("ensemble-too-many", ensemble(2, members=10 ** 6), ("members is 1000000", "1 to 8")),
    ("ensemble-members-string", ensemble(2, members="2"), ("members", "integer")),
    ("ensemble-members-bool", ensemble(2, members=True), ("members", "integer")),
    ("ensemble-fewer-than-declared", ensemble(2, members=3),
     ("state_dict lacks", "members.2.0.weight", "ensemble of 3")),
    ("ensemble-more-than-declared", ensemble(3, members=2), ("state_dict has", "members.2.0.weight")),
    ("ensemble-declared-but-single-weights", setting("members", 2), ("state_dict lacks", "members.0.0.weight")),
    ("ensemble-broken-member", ensemble(2, change=reshaped("members.1.3.weight", (64, 32, 2, 2))),
     ("members.1.3.weight", "(64, 32, 2, 2)", "(64, 32, 3, 3)")),
    ("ensemble-member-missing-key", ensemble(2, change=lambda s: s.pop("members.0.10.bias")),
     ("state_dict lacks", "members.0.10.bias")),
]


@pytest.mark.parametrize("case_id,change,names", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_payload_is_one_clear_error(case_id, change, names, good_payload, tmp_path, capsys):
    model = tmp_path / "m.pt"
    torch.save(change(fresh(good_payload)), model)
    for argv in commands(model, tmp_path):
        run_bad(capsys, argv, code=2, names=(str(model),) + names, root=tmp_path)


def test_there_are_enough_cases():
    assert len(CASES) >= 35


# --- files that are not payloads at all --------------------------------------------------------

class RunsCode:
    """Unpickling this runs a shell command: weights_only must refuse it before it runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_not_a_model(kind: str, folder: Path, good: dict) -> Path:
    path = folder / "m.pt"
    if kind == "text":
        path.write_text("this is a model, honestly\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated", "cut-at-end"):
        atomic_save(good, path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if kind == "truncated" else data[:-10])
    elif kind == "runs-code":
        torch.save({**good, "metrics": {"x": RunsCode(folder / "pwned")}}, path)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps(good))
    elif kind == "legacy-torch-format":
        torch.save(good, path, _use_new_zipfile_serialization=False)
    elif kind == "a-list":
        torch.save([1, 2, 3], path)
    elif kind == "a-tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "damaged-inside":  # the archive's directory is intact, its pickle is not
        atomic_save(good, folder / "good.pt")
        with zipfile.ZipFile(folder / "good.pt") as src, zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                dst.writestr(info.filename, data[:40] + b"\xff\xfe" + data[42:] if info.filename.endswith(
                    "data.pkl") else data)
        (folder / "good.pt").unlink()
    elif kind == "folder":
        path.mkdir()
    return path


NOT_MODELS = [("text", ("not a torch.save archive",)), ("empty", ("an empty file",)),
              ("truncated", ("not a torch.save archive",)), ("cut-at-end", ("not a",)),
              ("runs-code", ("refused", "posix.system", "never run as code")),
              ("damaged-inside", ("not a loadable mnist-dist model",)),
              ("plain-pickle", ("not a torch.save archive",)),
              ("legacy-torch-format", ("not a torch.save archive",)), ("a-list", ("holds a list",)),
              ("a-tensor", ("holds a Tensor",)), ("folder", ("is a folder",))]


@pytest.mark.parametrize("kind,names", NOT_MODELS, ids=[k for k, _ in NOT_MODELS])
def test_a_file_that_is_not_a_model_is_one_clear_error(kind, names, good_payload, tmp_path, capsys):
    model = write_not_a_model(kind, tmp_path, good_payload)
    for argv in commands(model, tmp_path):
        run_bad(capsys, argv, code=2, names=(str(model),) + names, root=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_missing_model_file_is_one_clear_error(tmp_path, capsys):
    for argv in commands(tmp_path / "nothing.pt", tmp_path):
        run_bad(capsys, argv, code=2, names=("nothing.pt", "no such model file"), root=tmp_path)


def test_files_over_the_size_cap_are_refused_before_loading(good_payload, tmp_path, capsys, monkeypatch):
    model = tmp_path / "m.pt"
    atomic_save(good_payload, model)
    monkeypatch.setattr(checkpoint, "MAX_FILE_BYTES", model.stat().st_size - 1)
    monkeypatch.setattr(torch, "load", lambda *a, **kw: pytest.fail("torch.load ran"))
    run_bad(capsys, ["predict", "--model", model, tmp_path / "x.png"], names=(str(model), "refused"),
            root=tmp_path)


def test_an_archive_that_unpacks_past_the_cap_is_refused(tmp_path, capsys, monkeypatch):
    """A small file whose entries declare much more (compressed zeros): torch would allocate
    what the archive declares, so the declared total is capped too."""
    model = tmp_path / "m.pt"
    with zipfile.ZipFile(model, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", bytes(4 * 1024 ** 2))
    monkeypatch.setattr(checkpoint, "MAX_FILE_BYTES", 1024 ** 2)
    assert model.stat().st_size < 1024 ** 2
    run_bad(capsys, ["export", "--model", model], names=(str(model), "declares"), root=tmp_path)


def test_the_good_payloads_pass(good_payload):
    validate_payload(good_payload, "m.pt")
    validate_payload(ensemble(2)(fresh(good_payload)), "m.pt")
    validate_payload(ensemble(1)(fresh(good_payload)), "m.pt")  # a sweep may pick k = 1


def test_the_cases_match_a_trained_model(trained_model, good_payload, tmp_path, capsys):
    """The trained file has the keys and value types of the fast cases' payload, passes, and
    a few of the same changes to it are refused the same way (slow: it trains the model)."""
    trained = checkpoint.load_payload(trained_model)
    assert {k: type(v) for k, v in trained.items()} == {k: type(v) for k, v in good_payload.items()}
    validate_payload(trained, trained_model)
    picked = {"classes-fewer", "std-zero", "state_dict-wrong-shape", "ensemble-broken-member", "arch-unknown"}
    for case_id, change, names in [c for c in CASES if c[0] in picked]:
        model = tmp_path / f"{case_id}.pt"
        torch.save(change(fresh(trained)), model)
        run_bad(capsys, ["predict", "--model", model, tmp_path / "x.png"], names=(str(model),) + names)


@pytest.mark.parametrize("change,names", [
    (lambda p: {**p, "num_classes": 10 ** 6, "classes": [str(i) for i in range(10 ** 6)]},
     ("num_classes", "1 to 1000")),
    (inside("state_dict", "7.weight", torch.zeros(1, 1).expand(10 ** 6, 1600)), ("(1000000, 1600)",)),
], ids=["a-million-classes", "a-million-rows"])
def test_nothing_is_built_from_a_huge_declared_size(change, names, good_payload, tmp_path, capsys, monkeypatch):
    """Sizes are checked against the architecture built on the meta device (shapes without
    memory): a model declared a million wide is never built where it would take memory."""
    devices = []
    real = checkpoint.create_model
    monkeypatch.setattr(checkpoint, "create_model",
                        lambda *a, **kw: devices.append(torch.get_default_device().type) or real(*a, **kw))
    model = tmp_path / "m.pt"
    torch.save(change(fresh(good_payload)), model)
    run_bad(capsys, ["export", "--model", model], names=(str(model),) + names)
    assert set(devices) <= {"meta"}


# --- export writes atomically ------------------------------------------------------------------

@pytest.fixture
def model_file(good_payload, tmp_path) -> Path:
    atomic_save(good_payload, tmp_path / "m.pt")
    return tmp_path / "m.pt"


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


class HalfThenFull:
    """A file on a disk that fills after half of what is written to it."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.15 deprecates torch.jit
def test_a_full_disk_keeps_the_previous_export_and_leaves_nothing(model_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "deploy.pt"
    out.write_bytes(b"the previous export")
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **kw: HalfThenFull(real_fdopen(*a, **kw)))
    run_bad(capsys, ["export", "--model", model_file, "--output", out], code=1,
            names=(f"disk full writing {out}",), root=tmp_path)
    assert out.read_bytes() == b"the previous export" and not leftovers(tmp_path)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_full_disk_at_fsync_leaves_no_file_nor_folder(model_file, tmp_path, capsys, monkeypatch):
    """Delayed allocation can report a full disk only when the data is flushed to it."""
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "new" / "deeper" / "m.onnx"
    run_bad(capsys, ["export", "--model", model_file, "--output", out], code=1,
            names=(f"disk full writing {out}",), root=tmp_path)
    assert not (tmp_path / "new").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_write_refused_by_the_system_is_a_bad_path(model_file, tmp_path, capsys, monkeypatch):
    def refused(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(os, "open", refused)
    out = tmp_path / "out" / "m.pt"
    run_bad(capsys, ["export", "--model", model_file, "--output", out], code=2,
            names=(str(out), "Permission denied"), root=tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only folder")
def test_a_read_only_folder_is_a_bad_path(model_file, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        run_bad(capsys, ["export", "--model", model_file, "--output", locked / "m.pt"], code=2,
                names=("no permission", str(locked)), root=tmp_path)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("where,names", [
    ("below-a-file", ("notes.txt is a file, not a folder",)),
    ("a-folder", ("it is a folder",)),
    ("the-model-itself", ("is the model file itself",)),
])
def test_an_unusable_output_path_is_refused_before_exporting(where, names, model_file, tmp_path, capsys,
                                                             monkeypatch):
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "folder").mkdir()
    out = {"below-a-file": tmp_path / "notes.txt" / "model.onnx", "a-folder": tmp_path / "folder",
           "the-model-itself": model_file}[where]
    monkeypatch.setattr(export, "torchscript_bytes", lambda *a: pytest.fail("exported anyway"))
    run_bad(capsys, ["export", "--model", model_file, "--output", out], code=2,
            names=(str(out),) + names, root=tmp_path)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_an_export_that_fails_its_check_writes_nothing(model_file, tmp_path, capsys, monkeypatch):
    def disagrees(*a):
        raise RuntimeError("the exported model disagrees with the original")
    monkeypatch.setattr(export, "check_export", disagrees)
    run_bad(capsys, ["export", "--model", model_file, "--output", tmp_path / "m.onnx"], code=1,
            names=("disagrees",), root=tmp_path)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_an_export_is_written_whole_and_readable_by_others(model_file, tmp_path, capsys):
    from mnist_dist.cli import main

    old_umask = os.umask(0o022)
    try:
        assert main(["export", "--model", str(model_file), "--output", str(tmp_path / "d" / "m.pt")]) == 0
    finally:
        os.umask(old_umask)
    out = tmp_path / "d" / "m.pt"
    assert torch.jit.load(str(out)) is not None and not leftovers(tmp_path)
    assert out.stat().st_mode & 0o777 == 0o644
    assert tree_state(tmp_path).keys() == {"m.pt", "d", "d/m.pt"}
