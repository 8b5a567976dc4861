"""CIFAR-10 and CIFAR-100 from the publisher's "python version", read directly.

Each batch is a pickled dict: `data` is uint8 (N, 3072), a row per image, channel-major
(1024 red, 1024 green, 1024 blue values, each 32×32 row-major), so it reshapes to
(N, 3, 32, 32) without reordering; `labels` (CIFAR-10) or `fine_labels`/`coarse_labels`
(CIFAR-100). CIFAR-10 has data_batch_1…5 and test_batch, CIFAR-100 `train` and `test`,
and `batches.meta` / `meta` the class names. They are read from the `.tar.gz` as
distributed, or from the folder it unpacks to; `cached_cifar` converts them once into
.npy files that streaming (`data.in_memory=false`) memory-maps.
"""

import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reglab.data.idx import DataFileError
from reglab.data.rows import map_npy

LAYOUT = {  # variant: (archive, folder, training batches, test batch, meta file)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
    ),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", "meta"),
}
CACHE = ".unpacked"  # the memory-mappable copy, beside the publisher's files (as IDX's)


def _unpickle(data: bytes, name: str) -> dict[str, Any]:
    try:
        batch = pickle.loads(data, encoding="bytes")
    except Exception as err:  # a cut or foreign file: any unpickling error
        raise DataFileError(f"{name} is not a CIFAR batch ({type(err).__name__}: {err})") from err
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _members(folder: Path, variant: str) -> dict[str, bytes]:
    """The batch files by name, from the unpacked folder or else the archive."""
    archive, unpacked, train, test, meta = LAYOUT[variant]
    names = [*train, test, meta]
    if (folder / unpacked).is_dir():
        return {n: (folder / unpacked / n).read_bytes() for n in names}
    path = folder / archive
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {n: tar.extractfile(f"{unpacked}/{n}").read() for n in names}
    except (OSError, EOFError, KeyError, tarfile.TarError, zlib.error) as err:
        raise DataFileError(f"{path} cannot be read ({err}): delete it and fetch it again") from err


def _images(batches: list[dict[str, Any]], name: str) -> np.ndarray:
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataFileError(f"{name}: data is {x.shape}, not (N, 3072) rows of 3×32×32 pixels")
    return x.reshape(-1, 3, 32, 32)


def _label_kinds(variant: str) -> dict[str, str]:
    """Labels key: class names key in the meta file (CIFAR-100: fine and coarse)."""
    if variant == "cifar10":
        return {"labels": "label_names"}
    return {f"{k}_labels": f"{k}_label_names" for k in ("fine", "coarse")}


def _read_all(folder: Path, variant: str) -> dict[str, np.ndarray]:
    """Every array of the batches: `train_x`, `test_x`, `<split>_<labels key>` and
    `names_<labels key>`, for every kind of label the variant has."""
    _, _, train, test, meta = LAYOUT[variant]
    files = _members(Path(folder), variant)
    names = _unpickle(files[meta], meta)
    out = {}
    for split, members in (("train", train), ("test", [test])):
        batches = [_unpickle(files[n], n) for n in members]
        out[f"{split}_x"] = _images(batches, variant)
        for key in _label_kinds(variant):
            out[f"{split}_{key}"] = np.concatenate([np.asarray(b[key], np.int64) for b in batches])
    for key, names_key in _label_kinds(variant).items():
        out[f"names_{key}"] = np.array([_text(n) for n in names[names_key]])
    return out


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


Split = tuple[Any, np.ndarray]


def _pick(arrays: Mapping[str, Any], variant: str, labels: str) -> tuple[Split, Split, list[str]]:
    key = "labels" if variant == "cifar10" else f"{labels}_labels"
    train, test = ((arrays[f"{s}_x"], np.asarray(arrays[f"{s}_{key}"])) for s in ("train", "test"))
    return train, test, [str(n) for n in arrays[f"names_{key}"]]


def read_cifar(folder: Path, variant: str = "cifar10", labels: str = "fine") -> tuple:
    """(train x, y), (test x, y) and the class names; x is uint8 (N, 3, 32, 32).
    `labels`: CIFAR-100's 100 `fine` classes or 20 `coarse` superclasses."""
    return _pick(_read_all(folder, variant), variant, labels)


def cached_cifar(folder: Path, variant: str = "cifar10", labels: str = "fine") -> tuple:
    """`read_cifar`, with x memory-mapped (`data.in_memory=false`): the pickles cannot be
    read in part, so they are converted once into uncompressed .npy files in
    `.unpacked/<variant>/` beside them, which every later run (and every DataLoader
    worker) maps, reading only the rows of its minibatches."""
    cache = Path(folder) / CACHE / variant
    stamp = _stamp(Path(folder), variant)
    done = cache / "labels.npz"  # written last: a cache without it is incomplete
    arrays = _load_npz(done)
    if arrays.get("stamp") != stamp:
        _convert(_read_all(folder, variant), cache, stamp)
        arrays = _load_npz(done)
    arrays |= {f"{s}_x": map_npy(cache / f"{s}_x.npy") for s in ("train", "test")}
    return _pick(arrays, variant, labels)


def _load_npz(path: Path) -> dict[str, Any]:
    """The labels, names and stamp of a cache ({} where there is none)."""
    if not path.exists():
        return {}
    with np.load(path) as saved:
        return {k: str(saved[k]) if k == "stamp" else saved[k] for k in saved.files}


def _stamp(folder: Path, variant: str) -> str:
    """Size and modification time of what the cache was made from: a replaced archive
    (fetched again, or another copy) is converted again."""
    archive, unpacked = LAYOUT[variant][:2]
    source = folder / unpacked if (folder / unpacked).is_dir() else folder / archive
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def _convert(arrays: dict[str, np.ndarray], cache: Path, stamp: str) -> None:
    """The images as .npy, then the labels and names: each written to a .part file and
    renamed, so an interrupted conversion leaves no file that looks complete."""
    cache.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        _atomic(cache / f"{split}_x.npy", lambda f, s=split: np.save(f, arrays[f"{s}_x"]))
    small = {k: v for k, v in arrays.items() if not k.endswith("_x")}
    _atomic(cache / "labels.npz", lambda f: np.savez(f, stamp=np.array(stamp), **small))


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    # one .part per process: two runs converting at once (a parallel sweep) never mix
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    with open(partial, "wb") as f:
        write(f)
    partial.replace(path)
