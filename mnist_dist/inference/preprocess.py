"""Turn a photo or scan of one character into the 28x28 image the model was trained on.

MNIST was made by fitting each bilevel NIST digit, keeping its aspect ratio, into a
20x20 box (anti-aliasing gives the grey edges) and centring that box in a 28x28 field
by the centre of mass, light ink on a black background. The "digit" recipe repeats
those steps on an arbitrary image:

  grayscale -> polarity (ink made light, background dark) -> blur + Otsu to find the
  ink, specks ignored -> background levelled to 0 and ink to 255, grey edges kept ->
  crop to the ink -> thin pen strokes widened to MNIST's width -> fit into 20x20 ->
  place in 28x28 by centre of mass.

An MNIST test image goes through unchanged: its box is already 20 pixels, its
background already 0, its ink already 255.

Fashion-MNIST and KMNIST were not made that way (their objects fill the frame), so
the "fit" recipe only does grayscale, polarity, background levelling, trimming of
the empty margins and a resize of the longer side to 28 (Fashion-MNIST's own steps).
Models trained on an image folder get "plain": what `load_image_folder` did to their
training images (`read_image`, resize to 28x28), in the polarity the model was trained on.
"""
from __future__ import annotations

import cv2
import numpy as np

# Reading a file is the data layer's, shared with training on image folders; ImageError
# and read_image stay importable from here.
from ..data.images import ImageError, read_image  # noqa: F401

SIZE = 28  # the model's frame
BOX = 20  # MNIST's digit box inside that frame
CENTRE = 14.0  # where MNIST puts the centre of mass (its mean over the training set is 14.0, 14.0)
MIN_CONTRAST = 24  # grey levels between paper and ink below which a page counts as blank
RECIPES = ("digit", "fit", "plain")
MAX_SIDE = 1024  # larger images are shrunk to this first (speed; a digit ends up 20 px)
# MNIST's stroke width, in its pixels, is 2.2 (median) and 1.5 (5th percentile).
# Thinner strokes are widened to 1.8: measured best on thin-pen digits (README, "Thin pens").
THIN_STROKE = 1.5
TARGET_STROKE = 1.8
_FIT_DATASETS = {"fashion-mnist", "kmnist"}


def recipe_for(payload: dict) -> str:
    """The recipe that reproduces how the checkpoint's training images were made."""
    dataset = payload.get("dataset")
    if dataset == "mnist":
        return "digit"
    return "fit" if dataset in _FIT_DATASETS else "plain"


def dark_background(payload: dict) -> bool:
    """Whether the model was trained on light ink on dark (MNIST style): its training
    pixel mean is low. Image-folder models can have been trained on either polarity."""
    return float(payload["normalization"]["mean"]) < 0.5


# ---------------------------------------------------------------- the recipes


def preprocess(gray: np.ndarray, recipe: str = "digit", dark: bool = True,
               thicken: bool = True) -> np.ndarray:
    """A 2-D uint8 image -> (28, 28) uint8 as the model saw in training.

    dark: the model wants light ink on a dark background (MNIST, Fashion-MNIST).
    thicken: widen thin pen strokes to MNIST's width ("digit" recipe only).
    Raises ImageError for a blank page (nothing that stands out from the paper)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown preprocessing {recipe!r}; choose from {', '.join(RECIPES)}")
    ink = _light_ink(_at_most(gray, MAX_SIDE))
    if recipe == "digit":
        out = mnist_digit(ink, thicken)
    elif recipe == "fit":
        out = fit_frame(ink)
    else:  # as load_image_folder read the training images (but with the model's polarity)
        out = cv2.resize(ink, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return out if dark else 255 - out


def _at_most(gray: np.ndarray, side: int) -> np.ndarray:
    """Shrink big photos first: the result is 28 pixels anyway, and a 12-megapixel image
    would take seconds per step."""
    scale = side / max(gray.shape)
    if scale >= 1:
        return gray
    return cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                      interpolation=cv2.INTER_AREA)


def _light_ink(gray: np.ndarray) -> np.ndarray:
    """The image with light ink on a dark background; ImageError when there is no ink."""
    smooth = _blur(gray)
    lo, hi = int(smooth.min()), int(smooth.max())
    if hi - lo < MIN_CONTRAST:
        raise ImageError(f"blank image: no ink found (contrast {hi - lo} grey levels, at least "
                         f"{MIN_CONTRAST} needed); is it an empty page or badly under/over-exposed?")
    return 255 - gray if _light_background(smooth, _otsu(smooth)) else gray


def _sigma(shape: tuple[int, ...]) -> float:
    # Scaled with the image: enough to suppress sensor and JPEG noise, not the strokes.
    return float(np.clip(max(shape) / 500, 0.7, 3.0))


def _blur(gray: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray, (0, 0), _sigma(gray.shape))


def _otsu(gray: np.ndarray) -> float:
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)


def _light_background(gray: np.ndarray, threshold: float) -> bool:
    """The background is what the border shows: paper touches the edges, ink rarely does
    (the middle may be mostly ink, e.g. a pullover filling a Fashion-MNIST frame)."""
    return float(np.median(_ring(gray))) > threshold


def mnist_digit(ink: np.ndarray, thicken: bool = True) -> np.ndarray:
    """Light-on-dark image of one digit -> MNIST's 28x28 layout."""
    mask = ink_mask(ink)
    background, top = ink_levels(ink, mask)
    levelled = _within(level(ink, background, top), mask)
    box = ink_box(levelled)
    crop = thicken_strokes(levelled[box], mask[box]) if thicken else levelled[box]
    return centre_by_mass(fit_box(crop, BOX))


def fit_frame(ink: np.ndarray) -> np.ndarray:
    """Light-on-dark image of one object -> 28x28 as Fashion-MNIST was made: margins of
    background trimmed, longer side resized to 28, aspect ratio kept, centred. Only the
    background is levelled (to 0, the brightest pixel to 255); the object's own grey
    levels (texture, print) are kept, as the dataset keeps them."""
    ring = _ring(ink).astype(np.float64)
    med = float(np.median(ring))
    levelled = level(ink, med + 3 * 1.4826 * float(np.median(np.abs(ring - med))), float(ink.max()))
    if levelled.shape == (SIZE, SIZE):  # already framed (a dataset image): keep its placement
        return levelled
    # Trim on the blurred image at 10% of full scale: paper noise and JPEG ringing left
    # in the margins would otherwise keep the whole page.
    small = fit_box(levelled[content_box(_blur(levelled) > 25)], SIZE)
    out = np.zeros((SIZE, SIZE), np.uint8)
    top, left = (SIZE - small.shape[0]) // 2, (SIZE - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def content_box(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box of the rows and columns with at least 1% of their pixels set: the
    stray noise pixels left in a photo's margins do not stretch it to the whole page."""
    rows = np.flatnonzero(mask.sum(1) >= max(1, 0.01 * mask.shape[1]))
    cols = np.flatnonzero(mask.sum(0) >= max(1, 0.01 * mask.shape[0]))
    if rows.size == 0 or cols.size == 0:
        raise ImageError("blank image: nothing stands out from the background")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _ring(gray: np.ndarray) -> np.ndarray:
    """The pixels along the edges (2% of the size deep, at least 1)."""
    w = max(1, min(gray.shape) // 50)
    return np.concatenate([gray[:w].ravel(), gray[-w:].ravel(), gray[:, :w].ravel(), gray[:, -w:].ravel()])


# ---------------------------------------------------------------- the steps


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Boolean mask of the character: Otsu on the blurred image, specks dropped."""
    smooth = _blur(ink)
    binary = (smooth > _otsu(smooth)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        raise ImageError("blank image: no ink found")
    sides = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    # A speck is small next to the character (a detached stroke, like the bar of a 5,
    # is not) and small next to the image (dust, a JPEG block, the dot of a pen).
    keep = sides >= max(2, 0.15 * sides.max(), 0.015 * max(ink.shape))
    if not keep.any():
        raise ImageError(f"no character found: only specks (at most {sides.max()} pixels across)")
    return np.isin(labels, 1 + np.flatnonzero(keep))


def ink_levels(ink: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(background, ink) grey levels. Background = median of the non-ink pixels plus 3
    noise sigmas, so paper texture and JPEG noise go to 0; ink = the darkest ink (99.9th
    percentile, ignoring stray pixels), so a faint pencil stroke becomes as bright as
    MNIST's ink and an MNIST image (ink 255) stays as it is."""
    outside = ink[~mask] if (~mask).any() else ink.ravel()
    med = float(np.median(outside))
    background = med + 3 * 1.4826 * float(np.median(np.abs(outside - med)))
    top = float(np.percentile(ink[mask], 99.9))
    if top - background < MIN_CONTRAST / 2:
        raise ImageError(f"blank image: ink and background differ by only {top - background:.0f} grey levels")
    return background, top


def level(img: np.ndarray, background: float, top: float) -> np.ndarray:
    """background -> 0, top -> 255, linear in between: grey edges carry the shape at 20x20."""
    out = (img.astype(np.float32) - background) * (255.0 / max(top - background, 1.0))
    return np.clip(out, 0, 255).astype(np.uint8)


def _within(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero everything but the character and a margin around it (for its blurred edges)."""
    r = max(2, round(2 * _sigma(img.shape)))
    near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    return np.where(near > 0, img, 0).astype(np.uint8)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: a stroke of length L and width w has area L*w and
    a perimeter of about 2L."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(mask.sum()) / max(perimeter, 1.0)


def thicken_strokes(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Widen a thin pen stroke to about MNIST's width before the shrink to 20x20, where
    it would fade to a faint hairline (a ballpoint digit in a phone photo). Only for
    crops at least twice the box: at MNIST's own size the digit is left as it is."""
    scale = BOX / max(crop.shape)
    width = stroke_width(mask) * scale  # in pixels of the 20x20 box
    if scale > 0.5 or width >= THIN_STROKE:
        return crop
    r = max(1, round((TARGET_STROKE - width) / 2 / scale))  # a disc of radius r adds 2r
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
    return cv2.dilate(np.pad(crop, r), disc)  # grey dilation keeps the soft edges


def ink_box(img: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the non-zero pixels."""
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    if rows.size == 0:
        raise ImageError("blank image: no ink left after removing the background")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def fit_box(img: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is `box` pixels, aspect ratio kept."""
    h, w = img.shape
    if max(h, w) == box:
        return img
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages when shrinking (anti-aliasing, as MNIST); linear when growing.
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def centre_by_mass(img: np.ndarray) -> np.ndarray:
    """Place `img` in a 28x28 black frame with its centre of mass at MNIST's (14, 14)."""
    h, w = img.shape
    mass = img.astype(np.float64)
    total = mass.sum()
    cy = (mass.sum(1) @ np.arange(h)) / total if total else (h - 1) / 2
    cx = (mass.sum(0) @ np.arange(w)) / total if total else (w - 1) / 2
    # Whole-pixel shifts, as MNIST: no resampling blur; the box always stays in frame.
    top = int(np.clip(round(CENTRE - cy), 0, SIZE - h))
    left = int(np.clip(round(CENTRE - cx), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[top:top + h, left:left + w] = img
    return out
