"""Thin pen strokes: MNIST test digits rewritten as a ballpoint digit in a phone photo.

Each test digit is enlarged 8x (224 px), reduced to its centre line (morphological
skeleton) and retraced with a pen --pens pixels wide (MNIST's own stroke is ~18 px
at that size), dark on light paper with camera blur and sensor noise. Read through
`predict`'s preprocessing with and without stroke thickening, so the figure shows
what thickening is worth on digits the model otherwise knows.

    MNIST_DIST_DATA_DIR=/path/to/data python benchmarks/thin_pen.py --model MODEL.pt \
        [--pens 3 5 8 12] [--n 500]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from mnist_dist.data import load_dataset
from mnist_dist.inference import Predictor
from mnist_dist.inference.preprocess import preprocess

SCALE = 8


def skeleton(shape: np.ndarray) -> np.ndarray:
    """Lantuejoul's morphological skeleton of a binary image (uint8 0/1)."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    img, skel = shape.astype(np.uint8), np.zeros(shape.shape, np.uint8)
    while img.any():
        eroded = cv2.erode(img, cross)
        skel |= img & ~cv2.dilate(eroded, cross) & 1
        img = eroded
    return skel


def thin_pen(digit: np.ndarray, pen: int, rng: np.random.Generator) -> np.ndarray:
    """Dark-on-light photo (uint8) of `digit` retraced with a pen `pen` pixels wide."""
    big = cv2.resize(digit, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC) > 127
    strokes = cv2.dilate(skeleton(big), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (pen, pen)))
    page = 225 - 180 * np.pad(strokes, 20).astype(np.float32)
    page = cv2.GaussianBlur(page, (0, 0), 1.0) + rng.normal(0, 3, page.shape)
    return np.clip(page, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--pens", type=int, nargs="+", default=[3, 5, 8, 12], help="pen widths, px at 224 px")
    ap.add_argument("--n", type=int, default=500, help="test digits per pen width")
    args = ap.parse_args()
    data = load_dataset("mnist")
    x, y = data.test_x[:args.n].numpy(), data.test_y[:args.n].numpy()
    predictor = Predictor(args.model)
    rng = np.random.default_rng(0)
    print(f"model {args.model}; first {args.n} MNIST test digits per pen width")
    print(f"  {'pen px':>7s} {'MNIST px':>9s} {'predict':>8s} {'no thickening':>14s}")
    for pen in args.pens:
        photos = [thin_pen(d, pen, rng) for d in x]
        accs = []
        for thicken in (True, False):
            inputs = np.stack([preprocess(p, "digit", thicken=thicken) for p in photos])
            accs.append((predictor.probabilities(inputs).argmax(1) == y).mean())
        print(f"  {pen:7d} {pen / SCALE:9.2f} {100 * accs[0]:7.1f}% {100 * accs[1]:13.1f}%")


if __name__ == "__main__":
    main()
