"""`mnist-dist export --model MODEL.pt --format torchscript|onnx`: a model file that
runs without this project (only torch, or only an ONNX runtime).

The exported module takes what any image library gives after scaling: float32
(B, 1, 28, 28) in [0, 1], light ink on a dark background as in MNIST, and returns
class probabilities (B, classes). The architecture's own input transform (zero pad
to 32, resize to 227, grey -> 3 channels) and the training normalisation are baked
in. The class names and the expected preprocessing travel inside the file:
TorchScript `_extra_files["mnist_dist.json"]`, ONNX metadata_props["mnist_dist"].

The export is made and checked in memory, then written atomically: a failure or a
full disk never leaves a part of a file, and an earlier export at that path stays.
"""
from __future__ import annotations

import errno
import io
import json
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import InputSpec, prepare_batch
from ..layout import atomic_write
from ..models.checkpoint import input_spec, load_model
from .common import add_model_flag
from .preprocess import dark_background, recipe_for

FORMATS = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
METADATA_NAME = "mnist_dist.json"
INPUT = 28  # the exported input is always (B, 1, 28, 28)


class Deployable(nn.Module):
    """Raw [0, 1] images (B, 1, 28, 28) -> probabilities, with the transform inside."""

    def __init__(self, model: nn.Module, spec: InputSpec, mean: float, std: float):
        super().__init__()
        self.model, self.spec = model.eval(), spec
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same order as prepare_batch: pad or resize first (the pad is black background),
        # then normalise, then repeat the grey channel.
        if self.spec.size != INPUT:
            if self.spec.resize:
                x = F.interpolate(x, size=(self.spec.size, self.spec.size), mode="bilinear",
                                  align_corners=False)
            else:
                pad = self.spec.size - INPUT
                x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        x = (x - self.mean) / self.std
        if self.spec.channels != 1:
            x = x.expand(-1, self.spec.channels, -1, -1)
        return F.softmax(self.model(x).float(), dim=1)


def add_arguments(p) -> None:
    add_model_flag(p)
    p.add_argument("--format", choices=tuple(FORMATS), default="torchscript",
                   help="torchscript (needs only torch) or onnx (needs the onnx and onnxscript "
                        "packages to export; any ONNX runtime to run)")
    p.add_argument("--output", metavar="PATH",
                   help="where to write (default: beside MODEL.pt, as model.torchscript.pt / model.onnx)")


def run(args) -> int:
    model, payload = load_model(args.model)  # a bad file: CheckpointError, one line from the CLI
    out = Path(args.output) if args.output else Path(args.model).with_suffix(FORMATS[args.format])
    problem = output_problem(out, Path(args.model))
    if problem:  # before the export, which takes seconds for the large models
        print(f"error: {problem}", file=sys.stderr)
        return 2
    module = Deployable(model, input_spec(payload), payload["normalization"]["mean"],
                        payload["normalization"]["std"]).eval()
    meta = metadata(payload)
    try:
        data = (torchscript_bytes if args.format == "torchscript" else onnx_bytes)(module, meta)
        check_export(module, data, args.format)
        write_export(out, data)
    except ImportError as e:
        print(f"error: ONNX export needs the onnx and onnxscript packages ({e}); "
              "pip install onnx onnxscript, or use --format torchscript", file=sys.stderr)
        return 2
    except RuntimeError as e:  # the exported model does not reproduce the original
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ExportWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(f"wrote {out} ({args.format}; input float32 (B, 1, 28, 28) in [0, 1], "
          f"{meta['input']['background']} background; output probabilities over "
          f"{len(meta['classes'])} classes)")
    print(usage_hint(out, args.format))
    return 0


# --- writing the output --------------------------------------------------------------------
# errno values that mean the path given is unusable (exit 2) and that the disk is full (exit 1)
BAD_PATH = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT,
            errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP}
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class ExportWriteError(Exception):
    """The output could not be written; `code` is the exit status (2: the path, 1: the disk)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def output_problem(out: Path, model_path: Path) -> str | None:
    """Why `out` cannot be written, found without writing anything; None when it looks fine."""
    if out.is_dir():
        return f"cannot write {out}: it is a folder; give a file name, e.g. {out / 'model.onnx'}"
    if out.exists() and not out.is_file():
        return f"cannot write {out}: it exists and is not a regular file"
    if out.exists() and model_path.exists() and out.samefile(model_path):
        return f"--output {out} is the model file itself; choose another name"
    folder = next(p for p in out.absolute().parents if p.exists())  # the root always exists
    if not folder.is_dir():
        return f"cannot write {out}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {out}: no permission to write in {folder}"
    return None


def write_export(out: Path, data: bytes) -> None:
    """Write atomically (a temporary file beside `out`, fsync, rename): a failure or a full
    disk leaves the previous file, if any, and nothing else; folders it made are removed."""
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: f.write(data), binary=True)
    except OSError as e:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not made by us after all, or not empty
                pass
        if e.errno in DISK_FULL:
            raise ExportWriteError(f"disk full writing {out}", 1) from e
        code = 2 if e.errno in BAD_PATH else 1
        raise ExportWriteError(f"cannot write {out}: {e.strerror or e}", code) from e


def metadata(payload: dict) -> dict:
    """What a deployment needs to know besides the weights."""
    recipe, dark = recipe_for(payload), dark_background(payload)
    return {"format": "mnist-dist-export/1", "arch": payload["arch"], "dataset": payload.get("dataset"),
            "classes": [str(c) for c in payload["classes"]],
            "input": {"shape": ["batch", 1, 28, 28], "dtype": "float32", "range": [0.0, 1.0],
                      "background": "dark" if dark else "light", "preprocessing": recipe},
            "output": "probabilities (batch, classes), softmax",
            "metrics": {k: v for k, v in payload.get("metrics", {}).items() if isinstance(v, (int, float))}}


def torchscript_bytes(module: Deployable, meta: dict) -> bytes:
    # Tracing records the one transform path this architecture takes; the batch size
    # stays free (check_export runs a different batch size to prove it).
    example = torch.rand(2, 1, INPUT, INPUT)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.15 marks torch.jit as deprecated; the file format still loads everywhere.
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, buffer, _extra_files={METADATA_NAME: json.dumps(meta)})
    return buffer.getvalue()


def onnx_bytes(module: Deployable, meta: dict) -> bytes:
    import onnx  # noqa: F401 (fail early with a clear message when it is missing)

    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(module, (torch.rand(2, 1, INPUT, INPUT),), None, input_names=["image"],
                                output_names=["probabilities"], dynamo=True, verbose=False,
                                dynamic_shapes={"x": {0: batch}}, external_data=False)
    model = program.model_proto
    onnx.helper.set_model_props(model, {"mnist_dist": json.dumps(meta)})
    return model.SerializeToString()


def export_torchscript(module: Deployable, meta: dict, out: Path) -> None:
    write_export(Path(out), torchscript_bytes(module, meta))


def export_onnx(module: Deployable, meta: dict, out: Path) -> None:
    write_export(Path(out), onnx_bytes(module, meta))


def run_exported(data: bytes, fmt: str, x: torch.Tensor) -> torch.Tensor | None:
    """Probabilities from the exported bytes; None when no ONNX runtime is installed."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(io.BytesIO(data))(x)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def check_export(module: Deployable, data: bytes, fmt: str) -> None:
    """The exported file's bytes must give what the project's own path gives (prepare_batch
    + model) on a batch of a size it was not traced with; checked before anything is written."""
    x = (torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    with torch.no_grad():
        expected = F.softmax(module.model(prepare_batch(x, module.spec, float(module.mean),
                                                        float(module.std))).float(), 1)
        got = run_exported(data, fmt, x.unsqueeze(1).float() / 255)
    if got is None:
        print("note: onnxruntime is not installed; the exported file was not test-run")
    elif not torch.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"the exported model disagrees with the original (max difference "
                           f"{(got - expected).abs().max():.2e}); nothing was written; please report this")


def usage_hint(path: Path, fmt: str) -> str:
    if fmt == "torchscript":
        return ("load it with: extra = {'mnist_dist.json': ''}; "
                "m = torch.jit.load('%s', _extra_files=extra); "
                "classes = json.loads(extra['mnist_dist.json'])['classes']; probs = m(x)" % path)
    return ("run it with: s = onnxruntime.InferenceSession('%s'); probs = s.run(None, {'image': x})[0]; "
            "classes = json.loads(s.get_modelmeta().custom_metadata_map['mnist_dist'])['classes']" % path)
