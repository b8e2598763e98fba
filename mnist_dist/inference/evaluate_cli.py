"""`mnist-dist evaluate --model MODEL.pt (--dataset NAME | --images DIR)`.

--dataset: the dataset's standard test split, fed as in training (no preprocessing:
  the images are already 28x28 in the dataset's own layout).
--images: a folder of labelled images, each put through the same preprocessing as
  `predict`, so the figure is what `predict` will do on such images. ROOT/test/ is
  used when there is one (the layout `load_image_folder` trains on), otherwise every
  image under ROOT. Labels come from `{label}/` subfolders or `{label}_{index}.png`;
  a label is a class name or a class number (0 = the model's first class). A file
  that cannot be used gets one `error:` line and is left out.

Exit status: 0 evaluated on every image; 1 some images were left out (the figures are
over the others); 2 no usable image at all, or bad usage (flag values, the model file).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from ..data import DataError, load_dataset
from ..evaluation import evaluate, evaluate_checkpoint, format_evaluation
from .common import add_model_flag, add_preprocess_flags, check_device, check_positive
from .files import labelled_images
from .predictor import Predictor
from .preprocess import ImageError

ARRAYS = ("probabilities", "labels", "predictions")


def add_arguments(p) -> None:
    add_model_flag(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="mnist, fashion-mnist or kmnist: its test split")
    src.add_argument("--images", metavar="DIR", help="a folder of labelled images (see above)")
    p.add_argument("--data-dir", help="folder with one subfolder per dataset (default: "
                                      "$MNIST_DIST_DATA_DIR, else the download cache)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test images")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    add_preprocess_flags(p)


def run(args) -> int:
    check_device(args.device)  # flag values first: before the model is loaded (exit 2)
    check_positive("--limit", args.limit)
    pred = Predictor(args.model, args.preprocess, args.device)
    if args.images:  # photos and scans: through predict's preprocessing
        source, x, y, failed = _image_folder(pred, args)
        ev = evaluate(pred.model, x, y, pred.spec, pred.mean, pred.std, pred.classes, args.device)
    else:  # a dataset's test split, exactly as training and sweeps evaluate it
        source, failed = f"{args.dataset} test split", 0
        ev = evaluate_checkpoint(args.model, load_dataset(args.dataset, args.data_dir), args.device, args.limit)
    ev = {k: v for k, v in ev.items() if k not in ARRAYS}
    info = {"model": str(args.model), "arch": pred.payload["arch"],
            "trained_on": pred.payload.get("dataset"), "evaluated_on": source, "skipped": failed}
    if args.json:
        print(json.dumps({**info, **ev}, indent=2, default=float))
    else:
        print(f"{info['arch']} model {args.model} (trained on {info['trained_on']}) on {source}")
        print(format_evaluation(ev))
    return 1 if failed else 0


def class_index(label: str, classes: list[str]) -> int | None:
    """A label is a class name, or its number (class names like 'T-shirt/top' cannot be
    file or folder names)."""
    if label in classes:
        return classes.index(label)
    return int(label) if label.isdigit() and int(label) < len(classes) else None


def _image_folder(pred: Predictor, args) -> tuple[str, torch.Tensor, torch.Tensor, int]:
    folder, items = labelled_images(args.images)
    index = {lbl: class_index(lbl, pred.classes) for _, lbl in items}
    unknown = sorted(lbl for lbl, i in index.items() if i is None)
    if unknown:
        raise DataError(f"{folder}: labels {', '.join(unknown)} are not classes of this model "
                        f"({', '.join(pred.classes)}) nor class numbers 0-{len(pred.classes) - 1}")
    if args.limit is not None:
        items = items[:args.limit]
    images, labels, failed = [], [], 0
    for path, label in items:
        try:
            images.append(pred.prepare(path))
            labels.append(index[label])
        except ImageError as e:  # reported and skipped, as `predict` does
            print(f"error: {path}: {e}", file=sys.stderr)
            failed += 1
    if not images:
        raise DataError(f"{folder}: none of the {len(items)} images could be read")
    x = torch.from_numpy(np.stack(images))
    return f"{folder} ({len(images)} images)", x, torch.tensor(labels, dtype=torch.int64), failed
