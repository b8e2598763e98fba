"""Reading one image file as a 2-D uint8 grayscale array: the one place that decides
how alpha, 16-bit and colour become grey, so that training on an image folder and
`predict` on the same file start from the same pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .idx import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class ImageError(DataError):
    """An image that cannot be read or used; the message says why (callers add the path)."""


def read_image(path: str | Path) -> np.ndarray:
    """Any PNG/JPG/BMP/TIFF (colour, grey, 16-bit, with alpha) as a 2-D uint8 array.
    ImageError messages say what is wrong; the caller prefixes the path."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise ImageError("no such file")
    if not path.is_file():
        raise ImageError("not a file")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode, unlike imread, takes any path name
    except OSError as e:  # permissions, I/O errors
        raise ImageError(f"cannot read the file ({e.strerror or e})") from e
    if data.size == 0:
        raise ImageError("empty file (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # keeps alpha and 16 bits
    if img is None:
        raise ImageError("not an image OpenCV can read (PNG, JPG, BMP or TIFF expected)")
    if img.size == 0 or min(img.shape[:2]) == 0:
        raise ImageError(f"the image has no pixels (shape {img.shape})")
    return to_gray(img)


def to_gray(img: np.ndarray) -> np.ndarray:
    """A decoded image (BGR/BGRA/grey, any depth) as a 2-D uint8 array."""
    import cv2

    img = _to_uint8(img)
    if img.ndim == 3 and img.shape[2] in (2, 4):  # grey+alpha, BGR+alpha
        img = composite(img[..., :-1], img[..., -1])
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img.reshape(img.shape[:2])


def composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a transparent image onto a background that contrasts with its opaque
    pixels: a digit drawn on a transparent canvas has its shape only in the alpha
    channel, and the colour under transparent pixels is arbitrary (often black). Dark
    ink goes onto white, light ink (white ink for a dark theme) onto black; over a
    fixed white, white ink would vanish into a blank page."""
    a = alpha.astype(np.float32)[..., None] / 255
    opaque = float((colour.astype(np.float32) * a).sum() / max(float(a.sum()) * colour.shape[-1], 1e-6))
    paper = 0.0 if opaque > 127.5 else 255.0
    return np.rint(colour * a + paper * (1 - a)).astype(np.uint8)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img // 257).astype(np.uint8)  # 65535 -> 255: the full range maps to the full range
    img = img.astype(np.float64)  # float TIFFs in [0, 1]; anything else is stretched to it
    if img.min() < 0 or img.max() > 1:
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
    return np.rint(img * 255).astype(np.uint8)
