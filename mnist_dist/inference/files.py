"""Which files to read: image paths given on the command line, and labelled folders."""
from __future__ import annotations

from pathlib import Path

from ..data.folder import IMAGE_SUFFIXES, label_of
from ..data.idx import DataError


def expand(paths: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files to predict, [(path, error)]). Folders are searched recursively for image
    files; a file named explicitly is always tried, whatever its suffix, so that a
    mislabelled image still gets read or a clear error."""
    files, errors = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = images_in(p)
            files += found
            if not found:
                errors.append((p, f"no image files in this folder ({_suffixes()})"))
        else:
            files.append(p)  # missing files are reported by read_image, in order
    return files, errors


def images_in(folder: Path) -> list[Path]:
    """Image files under folder, by name. Anything but a folder counts (a broken link or a
    pipe named like an image is reported by read_image rather than silently passed over)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _suffixes() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))


def labelled_images(root: str | Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(folder used, [(image, label)]) for `evaluate --images`: ROOT/test/ when there is
    one (the layout `load_image_folder` trains on), else every image under ROOT.
    Labels as in training folders: `{label}/` subfolders or `{label}_{index}.png` names."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (--images wants a folder of labelled images)")
    if (root / "train").is_dir() and not (root / "test").is_dir():
        raise DataError(f"{root}: has train/ but no test/; evaluating on training images would "
                        f"overstate accuracy (pass --images {root / 'train'} if that is what you want)")
    folder = root / "test" if (root / "test").is_dir() else root
    files = images_in(folder)
    if not files:
        raise DataError(f"{folder}: no image files ({_suffixes()})")
    return folder, [(p, label_of(p, folder)) for p in files]
