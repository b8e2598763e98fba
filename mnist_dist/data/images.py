"""Reading one image file as a 2-D uint8 grayscale array: the one place that decides
how alpha, 16-bit and colour become grey, so that training on an image folder and
`predict` on the same file start from the same pixels.

Every way a file can be unusable (missing, a folder, empty, unreadable, not an image,
damaged or truncated, too large, an odd pixel layout) becomes an ImageError whose
message says why, so that callers can report that one file and go on with the others.
The size is checked from the file's header (Pillow) before OpenCV decodes anything:
a small PNG can hold a 20000x20000 image that would take gigabytes once decoded.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from .idx import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# A photo or scan of one character needs far less than a phone camera's 12-24 megapixels;
# the limit leaves room for those and refuses images whose decoded pixels (up to 8 bytes
# each: 16-bit colour with alpha) would take gigabytes of memory.
MAX_PIXELS = 40_000_000
# Above any PNG/JPG/BMP/TIFF of MAX_PIXELS in 8-bit colour, even uncompressed (120 MB):
# a larger file is refused before it is read into memory.
MAX_FILE_BYTES = 256 * 2**20
SUPPORTED = "PNG, JPG, BMP or TIFF"

# OpenCV's own pixel limit (a gigapixel by default) as a second guard for anything that
# reaches its decoder. OpenCV reads it once, when cv2 is loaded, which is why it is set
# here: the inference package imports this module before cv2. A user's own value is kept.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


class ImageError(DataError):
    """An image that cannot be read or used; the message says why (callers add the path)."""


def read_image(path: str | Path) -> np.ndarray:
    """Any PNG/JPG/BMP/TIFF (colour, grey, palette, 16-bit, with alpha) of at most
    MAX_PIXELS as a 2-D uint8 array. ImageError messages say what is wrong; the caller
    prefixes the path."""
    data = _read_bytes(Path(path))
    kind = check_header(data)
    return to_gray(_decode(data, kind))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, after checking that it is a regular, non-empty file of a sane size
    (a FIFO or device would block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except (OSError, ValueError) as e:  # permissions, a name too long, a NUL in the name
        raise ImageError(f"cannot read the file ({getattr(e, 'strerror', None) or e})") from e
    if stat.S_ISDIR(info.st_mode):
        raise ImageError("a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not a regular file (a device, pipe or socket)")
    if info.st_size == 0:
        raise ImageError("empty file (0 bytes)")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(f"{info.st_size:,} bytes is over the {MAX_FILE_BYTES:,}-byte limit "
                         f"for an image file (MAX_FILE_BYTES); shrink or recompress it")
    try:
        return path.read_bytes()
    except OSError as e:  # permission denied, I/O error
        raise ImageError(f"cannot read the file ({e.strerror or e})") from e


def check_header(data: bytes) -> str:
    """The image format named in the header (e.g. 'PNG'), read without decoding the pixels.
    ImageError when there is no readable header or the image is over MAX_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow's own limit (89 megapixels) only warns, and so does a damaged EXIF block:
        # MAX_PIXELS below is the limit applied, and a damaged file gets its own error line.
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height, kind = im.width, im.height, im.format or "image"
        except Image.DecompressionBombError as e:  # twice Pillow's limit: no size given back
            raise ImageError(over_limit(_pixels_in(str(e)), _size_past_pillow_limit(data))) from e
        except UnidentifiedImageError:  # Pillow's readers also say so for some damaged headers
            raise ImageError(f"not an image, or one with a damaged header ({SUPPORTED} expected)") from None
        except Exception as e:  # Pillow's format readers raise many types for a damaged header
            raise ImageError(f"not a readable image: damaged or truncated header ({_one_line(e)})") from e
    if width * height > MAX_PIXELS:
        raise ImageError(over_limit(width * height, f"{width}x{height}"))
    if width == 0 or height == 0:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    return kind


def over_limit(pixels: int, size: str = "") -> str:
    size = size or f"{pixels:,}"
    return (f"{size} pixels is over the {MAX_PIXELS:,}-pixel limit for an image (MAX_PIXELS); "
            "shrink it first: the model sees 28x28")


def _size_past_pillow_limit(data: bytes) -> str:
    """'WxH' of an image Pillow refused to open as a decompression bomb, read by the same
    format reader Image.open uses (the refusal comes after it); '' when that fails."""
    from PIL import Image

    try:
        Image.init()
        for factory, accept in Image.OPEN.values():
            if accept is None or accept(data[:16]) is True:
                try:
                    width, height = factory(io.BytesIO(data), "").size
                    return f"{width}x{height}"
                except Exception:  # not this format: the next reader may take it
                    continue
    except Exception:  # a Pillow without this registry: the pixel count alone is said
        pass
    return ""


def _pixels_in(pillow_message: str) -> int:
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    return int(found.group(1)) if found else MAX_PIXELS + 1


def _decode(data: bytes, kind: str) -> np.ndarray:
    import cv2

    # libjpeg fills a truncated JPEG with grey and only warns (the image would be predicted
    # from half a picture); libpng prints its own complaint before failing.
    if (kind == "JPEG" and not jpeg_complete(data)) or (kind == "PNG" and not png_complete(data)):
        raise ImageError(f"truncated {kind} file (it ends before the image data does)")
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # this file's error line says it all
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # keeps alpha, 16 bits
    except cv2.error as e:  # OpenCV's own checks, its pixel limit among them
        reason = _one_line(e).rpartition("error: ")[2]  # without OpenCV's source file and line
        raise ImageError(f"OpenCV cannot decode this {kind} file ({reason})") from e
    except MemoryError:
        raise ImageError("not enough memory to decode it") from None
    finally:
        logging.setLogLevel(previous)
    if img is None:
        raise ImageError(f"damaged or truncated {kind} file, or a kind of {kind} OpenCV cannot "
                         f"read ({SUPPORTED} expected)")
    if img.size == 0 or min(img.shape[:2]) == 0:
        raise ImageError(f"the image has no pixels (shape {img.shape})")
    return img


def jpeg_complete(data: bytes) -> bool:
    """Whether an end-of-image marker follows the last start-of-scan marker. Inside the
    compressed data a 0xFF byte is always followed by 0x00 or a restart marker, so the
    end marker cannot appear there by chance; an EXIF thumbnail's own end marker comes
    before the main image's scan, so it does not count."""
    scan = data.rfind(b"\xff\xda")
    return scan != -1 and data.find(b"\xff\xd9", scan) != -1


def png_complete(data: bytes) -> bool:
    """Whether the chunks after the signature reach an IEND chunk within the file (each
    chunk: 4-byte length, 4-byte type, data, 4-byte checksum)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos <= len(data)
    return False


def _one_line(error: BaseException) -> str:
    """An exception's message as one line (an error line per file, whatever the library says)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ---------------------------------------------------------------- decoded pixels -> grey


def to_gray(img: np.ndarray) -> np.ndarray:
    """A decoded image (BGR/BGRA/grey, any depth) as a 2-D uint8 array."""
    import cv2

    if img.ndim not in (2, 3):
        raise ImageError(f"not a flat image (decoded shape {img.shape})")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if not 1 <= channels <= 4:  # multi-band TIFFs (satellite, microscopy): no single grey
        raise ImageError(f"{channels} channels per pixel: grey, grey+alpha, colour or colour+alpha "
                         "(1 to 4) expected")
    img = _to_uint8(img)
    if channels in (2, 4):  # grey+alpha, BGR+alpha
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
    # float TIFFs in [0, 1]; anything else is stretched to it. float32: half the memory of
    # float64 on a large image, and ample precision for 256 grey levels.
    img = img.astype(np.float32)
    if not np.isfinite(img).all():
        raise ImageError("the image has NaN or infinite pixel values")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:
        img = (img - lo) / max(hi - lo, 1e-12)
    return np.rint(img * 255).astype(np.uint8)
