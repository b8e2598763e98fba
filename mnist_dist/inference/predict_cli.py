"""`mnist-dist predict --model MODEL.pt PATH...`: the class of each image file.

One line per image on stdout (or a JSON list with --json); a file that cannot be
read or holds no character gets one `error:` line on stderr and the others are
still predicted. Exit status: 0 all predicted; 1 some files failed (the others are
printed); 2 none could be predicted, or bad usage (flag values, the model file).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from .common import add_model_flag, add_preprocess_flags, check_device, check_positive
from .files import expand
from .predictor import Failure, Prediction, Predictor, save_preprocessed


def add_arguments(p) -> None:
    add_model_flag(p)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files (PNG, JPG, BMP, TIFF; any size, colour or grey, dark ink on "
                        "light paper or light on dark) or folders of them (searched recursively)")
    p.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="also show the K most likely classes with their probabilities")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {path, label, probability, probabilities} "
                        "(all classes; --top-k is for the text output)")
    p.add_argument("--show-preprocessed", metavar="DIR",
                   help="write each 28x28 model input to DIR as PNG, to see what the model saw")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    add_preprocess_flags(p)


def run(args) -> int:
    check_arguments(args)
    predictor = Predictor(args.model, args.preprocess, args.device)
    files, missing = expand(args.paths)
    results = predictor.predict_files(files, args.batch_size)
    failures = [Failure(str(p), msg) for p, msg in missing] + [r for r in results if isinstance(r, Failure)]
    predictions = [r for r in results if isinstance(r, Prediction)]
    for f in failures:
        print(f"error: {f.path}: {f.error}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(failures) + len(predictions)} inputs could not be predicted",
              file=sys.stderr)
    if args.show_preprocessed and predictions:
        save_preprocessed(predictions, args.show_preprocessed)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        for p in predictions:
            print(format_line(p, args.top_k))
    if not failures:
        return 0
    return 1 if predictions else 2  # a partial result, or nothing at all


def check_arguments(args) -> None:
    """Flag values, before the model is loaded or any image read (ConfigError: exit 2)."""
    check_device(args.device)
    check_positive("--batch-size", args.batch_size)
    check_positive("--top-k", args.top_k)
    out = Path(args.show_preprocessed) if args.show_preprocessed else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--show-preprocessed {out}: exists and is not a folder")


def format_line(p: Prediction, top_k: int = 1) -> str:
    line = f"{p.path}\t{p.label}\t{p.probability:.4f}"
    if top_k > 1:
        line += "\ttop-{}: {}".format(top_k, ", ".join(f"{c} {v:.4f}" for c, v in p.top(top_k)))
    return line
