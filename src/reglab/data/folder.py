"""`data=image_folder`: one sub-folder per class, images read with Pillow.

`root/<class>/<any name>.png|jpg|jpeg|bmp`; the sub-folder names, sorted, are the classes
(class i is the i-th name). Every image is converted to `channels` (1: grey, 3: RGB) and,
with `image_size`, resized to it; without it all images must already share one size.
Files are decoded when their rows are read: all at once in memory, or per minibatch in
DataLoader workers with `data.in_memory=false`.
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reglab.data.idx import DataFileError
from reglab.data.rows import Loaded

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MODES = {1: "L", 3: "RGB"}
log = logging.getLogger(__name__)


class ImageFiles:
    """Rows that are image files: rows[index] decodes them to uint8 (n, C, H, W)."""

    def __init__(self, paths: Sequence[Path], channels: int, size: tuple[int, int]) -> None:
        self.paths, self.channels, self.size = list(paths), channels, size  # size: (H, W)
        self.shape = (len(self.paths), channels, *size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        index = np.arange(len(self))[index]
        return np.stack([decode(self.paths[i], self.channels, self.size) for i in index])


def decode(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (C, H, W); DataFileError naming the file if Pillow cannot."""
    try:
        with Image.open(path) as image:
            image = image.convert(MODES[channels])
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataFileError(f"{path} cannot be read as an image ({err})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def image_folder(
    root: str,
    channels: int = 3,
    image_size: int | Sequence[int] | None = None,
    skip_bad_files: bool = False,
) -> Loaded:
    """The images under root/<class>/ with their class numbers (sorted folder names)."""
    folder = Path(os.path.expanduser(str(root)))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not classes:
        raise DataFileError(
            f"data.root={folder} has no class sub-folders (allowed: a folder with one"
            " sub-folder of images per class)"
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in SUFFIXES)
        paths += files
        labels += [label] * len(files)
    size = _size(image_size)
    paths, labels, size = _check(paths, np.asarray(labels), size, skip_bad_files)
    return Loaded(ImageFiles(paths, channels, size), labels, None, classes, (channels, *size))


def _check(
    paths: list[Path], labels: np.ndarray, size: tuple[int, int] | None, skip_bad_files: bool
) -> tuple[list[Path], np.ndarray, tuple[int, int]]:
    """Open every file once (headers only): drop or name the unreadable, fix the size."""
    good, sizes = [], set()
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()  # reads the file's structure, not its pixels
                sizes.add((image.size[1], image.size[0]))
            good.append(True)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            if not skip_bad_files:
                raise DataFileError(
                    f"{path} cannot be read as an image ({err}) (allowed: remove it, or"
                    " data.skip_bad_files=true to skip such files)"
                ) from None
            good.append(False)
    if not all(good):
        log.warning("data=image_folder: skipped %d unreadable files", good.count(False))
    keep = np.asarray(good, dtype=bool)
    if size is None and len(sizes) > 1:
        raise DataFileError(
            f"the images under data.root have {len(sizes)} different sizes, e.g."
            f" {sorted(sizes)[:2]} (allowed: one size, or data.image_size=N to resize them)"
        )
    return [p for p, k in zip(paths, keep, strict=True) if k], labels[keep], size or sizes.pop()
