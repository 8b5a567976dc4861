"""Tiny files in the publishers' formats, written byte by byte from the formats' specs
(not by reglab's readers), so the tests compare what reglab parses with what was written."""

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0, 0, type 0x08 (uint8), ndim, big-endian uint32 sizes, then the values."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """The four gzipped IDX files of an MNIST-format set; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y": (np.arange(n_train) % 10).astype(np.uint8),
        "tx": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "ty": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in zip(MNIST_NAMES, ("x", "y", "tx", "ty"), strict=True):
        (folder / name).write_bytes(gzip.compress(idx_bytes(arrays[key])))
    return arrays


def cifar_batch(x: np.ndarray, labels: np.ndarray, key: bytes) -> bytes:
    """A pickled batch as the publisher's: {b'data': (N, 3072) uint8, key: [labels]}."""
    data = {b"batch_label": b"test", b"data": x.reshape(len(x), 3072), key: labels.tolist()}
    return pickle.dumps(data, protocol=2)


def write_cifar10(folder: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> dict:
    """cifar-10-python.tar.gz with five training batches, a test batch and the meta file."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (5 * per_batch, 3, 32, 32), dtype=np.uint8)
    y = np.arange(5 * per_batch) % 10
    tx = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    ty = np.arange(n_test) % 10
    members = {}
    for i in range(5):
        rows = slice(i * per_batch, (i + 1) * per_batch)
        members[f"data_batch_{i + 1}"] = cifar_batch(x[rows], y[rows], b"labels")
    members["test_batch"] = cifar_batch(tx, ty, b"labels")
    names = [f"class{i}".encode() for i in range(10)]
    members["batches.meta"] = pickle.dumps({b"label_names": names}, protocol=2)
    _tar(folder / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    return {"x": x, "y": y, "tx": tx, "ty": ty}


def write_cifar100(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 1) -> dict:
    """The unpacked cifar-100-python/ folder: train, test and meta, fine and coarse labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    y, ty = np.arange(n_train) % 5, np.arange(n_test) % 5
    tx = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    out = folder / "cifar-100-python"
    out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in {"train": (x, y), "test": (tx, ty)}.items():
        batch = pickle.loads(cifar_batch(images, labels, b"fine_labels"))
        batch[b"coarse_labels"] = (labels // 3).tolist()
        (out / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(5)],
        b"coarse_label_names": [b"coarse0", b"coarse1"],
    }
    (out / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {"x": x, "y": y, "tx": tx, "ty": ty}


def _tar(path: Path, folder: str, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
