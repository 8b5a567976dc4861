"""Sources for the publishers' image sets: the MNIST family and CIFAR (`data=mnist`, …).

Each reads `root/<name>/` (fetching what is missing, `download.py`) and returns a
`rows.Loaded` with the official training and test splits, the class names and (C, H, W).
The file names, mirrors and published checksums are in conf/data/<name>.yaml.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from reglab.data.cifar import LAYOUT, cached_cifar, read_cifar
from reglab.data.download import data_folder, ensure_files
from reglab.data.idx import DataFileError, map_idx, read_idx
from reglab.data.rows import Loaded

MNIST_FILES = {  # the role of each of the four IDX files
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def mnist_family(
    name: str,
    root: str,
    files: Mapping[str, str],
    mirrors: Sequence[str],
    classes: Sequence[str],
    download: bool = True,
    in_memory: bool = True,
) -> Loaded:
    """MNIST, Fashion-MNIST or KMNIST from their four IDX files: 1×28×28 uint8 images."""
    folder = data_folder(root, name)
    ensure_files(name, folder, files, mirrors, download)
    read = read_idx if in_memory else map_idx  # streamed: memory-mapped, read per minibatch
    x, y = (read(folder / MNIST_FILES[f"train_{k}"]) for k in ("images", "labels"))
    tx, ty = (read(folder / MNIST_FILES[f"test_{k}"]) for k in ("images", "labels"))
    for images, labels in ((x, y), (tx, ty)):
        if len(images.shape) != 3 or images.shape[0] != labels.shape[0]:
            raise DataFileError(
                f"data={name}: {folder} holds {images.shape[0]} images of shape"
                f" {images.shape[1:]} but {labels.shape[0]} labels (allowed: N images, N labels)"
            )
    shape = (1, *x.shape[1:])
    x, tx = (_with_channel(a) for a in (x, tx))
    test = (tx, np.asarray(ty[:], np.int64))
    return Loaded(x, np.asarray(y[:], np.int64), test, list(classes), shape)


def _with_channel(images):
    """(N, H, W) → (N, 1, H, W): a view for arrays, a reshaped map for a MappedArray."""
    if isinstance(images, np.ndarray):
        return images[:, None]
    images.shape = (images.shape[0], 1, *images.shape[1:])
    return images


def cifar(
    name: str,
    root: str,
    files: Mapping[str, str],
    mirrors: Sequence[str],
    download: bool = True,
    labels: str = "fine",
    in_memory: bool = True,
) -> Loaded:
    """CIFAR-10 or CIFAR-100 (`labels`: fine or coarse) from the archive or its folder:
    3×32×32 uint8 images. Its batches are pickles, read whole; `data.in_memory=false`
    converts them once into .npy files beside them, memory-mapped and read per minibatch."""
    folder = data_folder(root, name)
    if not (folder / LAYOUT[name][1]).is_dir():  # the unpacked folder needs no archive
        ensure_files(name, folder, files, mirrors, download)
    read = read_cifar if in_memory else cached_cifar
    (x, y), test, classes = read(folder, name, labels)
    return Loaded(x, y, test, classes, (3, 32, 32))
