"""How well does an MNIST model read digits that are not from MNIST?

Renders 0-9 in every installed font of a handwriting-like or everyday family, once
clean (black on white, centred) and several times "photographed": tinted paper with
uneven light, dark blue/black/pencil ink of varying weight, a larger canvas of random
size with the digit anywhere on it, a small rotation, camera blur, sensor noise and
JPEG compression. Every image is written as a file and read back by `mnist-dist
predict`'s own code (Predictor.predict_files), so the figure is what users get.

    apt-get install -y fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-urw-base35 \\
        fonts-comic-neue fonts-humor-sans fonts-dkg-handwriting fonts-breip fonts-bwht \\
        fonts-femkeklaver fonts-kristi fonts-dancingscript fonts-kaushanscript fonts-rufscript
    python benchmarks/outside_digits.py --model results/<sweep>/best/model.pt [--photos 5] [--save DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_dist.inference import Prediction, Predictor

FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts")]
# Font file name prefixes -> group. Handwriting: fonts drawn from someone's hand or pen.
FAMILIES = {
    "handwriting": ["dkg", "Breip", "breip", "BecauseWe", "femkeklaver", "Humor-Sans", "Kristi",
                    "DancingScript", "KaushanScript", "ComicNeue", "Rufscript", "Z003"],
    "print": ["DejaVuSans.", "DejaVuSerif.", "DejaVuSans-Bold.", "DejaVuSansMono.", "Liberation",
              "Free", "NimbusSans-", "NimbusRoman-", "NimbusMonoPS-", "C059", "P052", "URWBookman",
              "URWGothic"],
}


VARIANTS = [("predict", "digit", True), ("no thickening", "digit", False), ("plain resize", "plain", True)]


def find_fonts() -> dict[str, str]:
    """{font file path: group} for the installed TrueType/OpenType fonts of FAMILIES."""
    found = {}
    for d in FONT_DIRS:
        for path in sorted(Path(d).rglob("*")) if Path(d).is_dir() else []:
            if path.suffix.lower() not in (".ttf", ".otf"):
                continue
            for group, prefixes in FAMILIES.items():
                if any(path.name.startswith(p) for p in prefixes):
                    found.setdefault(str(path), group)
    return {p: g for p, g in found.items() if has_digits(p)}


def glyph(font_path: str, digit: int, size: int = 96, stroke: int = 0) -> np.ndarray:
    """The digit as white-on-black, tightly cropped (uint8); empty if the font lacks it."""
    font = ImageFont.truetype(font_path, size)
    img = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(img).text((size // 2, size // 4), str(digit), fill=255, font=font,
                             stroke_width=stroke, stroke_fill=255)
    a = np.asarray(img)
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] if rows.size else a[:0, :0]


def has_digits(font_path: str) -> bool:
    """All ten digits drawn and distinct (symbol fonts map them to other shapes or none)."""
    try:
        shapes = [glyph(font_path, d, 40) for d in range(10)]
    except OSError:
        return False
    keys = {(s.shape, s.tobytes()) for s in shapes}
    return all(s.size for s in shapes) and len(keys) == 10


def clean(g: np.ndarray) -> np.ndarray:
    """Black digit on a white 1.5x canvas, centred: the easy case."""
    h, w = g.shape
    side = int(max(h, w) * 1.5)
    canvas = np.zeros((side, side), np.uint8)
    canvas[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = g
    return cv2.cvtColor(255 - canvas, cv2.COLOR_GRAY2BGR)


def photographed(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit as a phone photo of paper: BGR uint8, before JPEG compression."""
    g = rotate(g, rng.uniform(-10, 10))
    height = int(rng.uniform(0.35, 0.8) * rng.integers(120, 400))  # digit height on the canvas
    g = cv2.resize(g, (max(1, round(g.shape[1] * height / g.shape[0])), height), interpolation=cv2.INTER_AREA)
    ch, cw = int(height / rng.uniform(0.35, 0.8)), int(height / rng.uniform(0.3, 0.8))
    cw = max(cw, g.shape[1] + 4)
    top, left = rng.integers(0, ch - height + 1), rng.integers(0, cw - g.shape[1] + 1)
    coverage = np.zeros((ch, cw), np.float32)
    coverage[top:top + height, left:left + g.shape[1]] = g / 255.0
    paper = paper_tint(ch, cw, rng)
    ink = np.array(rng.choice([(40, 20, 20), (90, 40, 30), (30, 30, 30), (90, 90, 90)]), np.float32)
    img = paper * (1 - coverage[..., None]) + ink * coverage[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.5))
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def rotate(g: np.ndarray, degrees: float) -> np.ndarray:
    h, w = g.shape
    side = int(np.hypot(h, w)) + 2
    canvas = np.zeros((side, side), np.uint8)
    canvas[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = g
    m = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
    out = cv2.warpAffine(canvas, m, (side, side), flags=cv2.INTER_LINEAR)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    return out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def paper_tint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """White to cream or grey paper (BGR) lit unevenly: a linear gradient of up to 25%."""
    white = rng.uniform(180, 245)
    warmth = rng.uniform(0, 25)  # cream / yellowed paper and warm light: less blue
    base = np.array([white - warmth, white - warmth / 3, white], np.float32)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.normal(size=2)
    ramp = (gy / h - 0.5) * direction[0] + (gx / w - 0.5) * direction[1]
    light = 1 + rng.uniform(0, 0.25) * ramp / max(np.abs(direction).sum(), 1e-6)
    return base * light[..., None]


def render(fonts: dict[str, str], photos: int, seed: int, folder: Path) -> list[dict]:
    """Write every sample as a file in `folder`; returns one record per file."""
    rng = np.random.default_rng(seed)
    records = []
    for i, (font, group) in enumerate(sorted(fonts.items())):
        for digit in range(10):
            styles = [("clean", clean(glyph(font, digit)))]
            for k in range(photos):
                g = glyph(font, digit, stroke=int(rng.choice([0, 0, 1, 2])))
                styles.append(("photo", photographed(g, rng)))
            for k, (style, img) in enumerate(styles):
                path = folder / f"{digit}_{i:02d}_{k}_{style}.jpg"
                quality = 95 if style == "clean" else int(rng.integers(30, 85))
                cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
                records.append({"path": str(path), "digit": digit, "font": Path(font).stem,
                                "group": group, "style": style})
    return records


def score(records: list[dict], results: list) -> dict:
    """Accuracy overall and by style, group, font and digit (unreadable images count wrong)."""
    by = defaultdict(lambda: [0, 0])
    for rec, res in zip(records, results):
        ok = isinstance(res, Prediction) and res.label == str(rec["digit"])
        for key in ("all", f"style={rec['style']}", f"group={rec['group']}/{rec['style']}",
                    f"font={rec['font']}/{rec['style']}", f"digit={rec['digit']}/{rec['style']}"):
            by[key][0] += ok
            by[key][1] += 1
    return {k: {"accuracy": c / n, "n": n} for k, (c, n) in sorted(by.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="an MNIST model file (model.pt)")
    ap.add_argument("--photos", type=int, default=5, help="photographed variants per font and digit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="keep the rendered images in this folder (default: a temp folder)")
    ap.add_argument("--json", help="also write the scores to this JSON file")
    args = ap.parse_args()
    fonts = find_fonts()
    if not fonts:
        raise SystemExit("no fonts found; install them with the apt-get line in this script's docstring")
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.save or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        records = render(fonts, args.photos, args.seed, folder)
        paths = [Path(r["path"]) for r in records]
        # "predict" is what `mnist-dist predict` does for MNIST models; the others show
        # what its stroke thickening, and the whole MNIST recipe, are worth.
        for name, recipe, thicken in VARIANTS:
            predictor = Predictor(args.model, recipe, thicken=thicken)
            scores[name] = score(records, predictor.predict_files(paths))
    report(scores, fonts, args)
    if args.json:
        summary = {"model": args.model, "photos": args.photos, "seed": args.seed, "fonts": fonts,
                   "scores": scores}
        Path(args.json).write_text(json.dumps(summary, indent=2))


def report(scores: dict, fonts: dict, args) -> None:
    groups = defaultdict(int)
    for g in fonts.values():
        groups[g] += 1
    print(f"model {args.model}; {len(fonts)} fonts ({dict(groups)}), 10 digits, 1 clean + "
          f"{args.photos} photographed each, seed {args.seed}")
    names = [name for name, _, _ in VARIANTS]
    print(f"  {'':28s}" + "".join(f"{n:>15s}" for n in names))
    for key, s in scores["predict"].items():
        if not key.startswith("font="):
            print(f"  {key:28s}" + "".join(f"{100 * scores[n][key]['accuracy']:14.1f}%" for n in names)
                  + f"  (n={s['n']})")
    worst = sorted((s["accuracy"], k) for k, s in scores["predict"].items()
                   if k.startswith("font=") and "photo" in k)[:5]
    print("  hardest fonts (photo, predict): " + ", ".join(f"{k[5:-6]} {100 * a:.0f}%" for a, k in worst))


if __name__ == "__main__":
    main()
