"""CIFAR-10 and CIFAR-100 from the publisher's "python version", read directly.

Each batch is a pickled dict: `data` is uint8 (N, 3072), a row per image, channel-major
(1024 red, 1024 green, 1024 blue values, each 32×32 row-major), so it reshapes to
(N, 3, 32, 32) without reordering; `labels` (CIFAR-10) or `fine_labels`/`coarse_labels`
(CIFAR-100). CIFAR-10 has data_batch_1…5 and test_batch, CIFAR-100 `train` and `test`,
and `batches.meta` / `meta` the class names. They are read from the `.tar.gz` as
distributed, or from the folder it unpacks to.
"""

import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from reglab.data.idx import DataFileError

LAYOUT = {  # variant: (archive, folder, training batches, test batch, meta file, names key)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "label_names",
    ),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", "meta", None),
}


def _unpickle(data: bytes, name: str) -> dict[str, Any]:
    try:
        batch = pickle.loads(data, encoding="bytes")
    except Exception as err:  # a cut or foreign file: any unpickling error
        raise DataFileError(f"{name} is not a CIFAR batch ({type(err).__name__}: {err})") from err
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _members(folder: Path, variant: str) -> dict[str, bytes]:
    """The batch files by name, from the unpacked folder or else the archive."""
    archive, unpacked, train, test, meta, _ = LAYOUT[variant]
    names = [*train, test, meta]
    if (folder / unpacked).is_dir():
        return {n: (folder / unpacked / n).read_bytes() for n in names}
    path = folder / archive
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {n: tar.extractfile(f"{unpacked}/{n}").read() for n in names}
    except (OSError, EOFError, KeyError, tarfile.TarError, zlib.error) as err:
        raise DataFileError(f"{path} cannot be read ({err}): delete it and fetch it again") from err


def _images(batches: list[dict[str, Any]], key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataFileError(f"{name}: data is {x.shape}, not (N, 3072) rows of 3×32×32 pixels")
    y = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
    return x.reshape(-1, 3, 32, 32), y


def read_cifar(
    folder: Path, variant: str = "cifar10", labels: str = "fine"
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """(train x, y), (test x, y) and the class names; x is uint8 (N, 3, 32, 32).
    `labels`: CIFAR-100's 100 `fine` classes or 20 `coarse` superclasses."""
    _, _, train, test, meta, names_key = LAYOUT[variant]
    files = _members(Path(folder), variant)
    key = "labels" if variant == "cifar10" else f"{labels}_labels"
    names_key = names_key or f"{labels}_label_names"
    train_xy = _images([_unpickle(files[n], n) for n in train], key, variant)
    test_xy = _images([_unpickle(files[test], test)], key, variant)
    names = _unpickle(files[meta], meta)[names_key]
    return train_xy, test_xy, [n.decode() if isinstance(n, bytes) else str(n) for n in names]
