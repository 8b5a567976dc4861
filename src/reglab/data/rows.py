"""Rows of a data set that may not fit in memory, and the statistics that standardize them.

A source of real data returns its examples as *rows*: anything with `len`, `shape` and
`rows[index]` for an integer index array, giving an array of shape (len(index), …). A numpy
array is rows; so is `MappedArray` (a file on disk, read on demand) and
`folder.ImageFiles` (one image file per row, decoded on demand). `data.in_memory=true`
reads every row once; `false` keeps them where they are and reads each minibatch's rows
(`stream.py`), in DataLoader workers: the row objects pickle as paths, never as data.

`Standardizer` computes its statistics in blocks of rows in float64 and transforms
elementwise, so standardizing a whole split and standardizing it minibatch by minibatch
give the same bits: what makes a streamed run equal an in-memory one. scikit-learn's sets
keep scikit-learn's StandardScaler (`ScalerStandardizer`), in memory and streamed alike.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor

BLOCK = 4096  # rows read at a time when a whole split is scanned (statistics, reading)


class Rows(Protocol):
    shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, index: np.ndarray) -> np.ndarray: ...


@dataclass
class Loaded:
    """What a source of real data returns: rows and labels, the publisher's test split if
    it has one, the class names (index i is class i) and one example's (C, H, W)."""

    x: Rows
    y: np.ndarray
    test: tuple[Rows, np.ndarray] | None = None
    classes: list[str] | None = None
    image_shape: tuple[int, ...] | None = None


class MappedArray:
    """A C-ordered array stored in a file from byte `offset` on, memory-mapped when read
    (opened lazily, so a DataLoader worker maps the file itself instead of receiving a copy)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str, offset: int = 0) -> None:
        self.path, self.shape, self.dtype, self.offset = Path(path), tuple(shape), dtype, offset
        self._map: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._map is None:
            self._map = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        return np.asarray(self._map[index])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None}


def map_npy(path: Path) -> MappedArray:
    """The array of a .npy file (C order), memory-mapped after its header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError(f"{path} holds a Fortran-ordered array (allowed: C order)")
        return MappedArray(path, shape, dtype.str, f.tell())


def blocks(n: int, size: int = BLOCK) -> Iterator[slice]:
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


def read_all(rows: Rows, index: np.ndarray) -> np.ndarray:
    """rows[index] as one array, read in blocks (an image folder decodes file by file)."""
    if isinstance(rows, np.ndarray) and not isinstance(rows, np.memmap):
        return rows[index]
    return np.concatenate([rows[index[part]] for part in blocks(len(index))])


@dataclass
class Standardizer:
    """(x − mean) / std per feature, with the training split's mean and population std:
    per feature (pixel) or, `per_channel`, one pair per image channel (over N, H, W)."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))  # flat, one per feature
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def fit(cls, rows: Rows, index: np.ndarray, channels: int | None = None) -> "Standardizer":
        """Statistics of rows[index]; `channels`: pool each channel's pixels."""
        features = math.prod(rows.shape[1:])
        groups = channels or features
        shift = total = squares = None
        for part in blocks(len(index)):
            x = rows[np.sort(index[part])].reshape(-1, groups, features // groups)
            x = x.astype(np.float64).transpose(1, 0, 2).reshape(groups, -1)
            shift = x.mean(1, keepdims=True) if shift is None else shift  # for precision
            total = (x - shift).sum(1) + (0 if total is None else total)
            squares = np.square(x - shift).sum(1) + (0 if squares is None else squares)
        count = len(index) * features // groups
        mean = shift[:, 0] + total / count
        var = np.maximum(squares / count - np.square(total / count), 0)
        std = np.where(var > 0, np.sqrt(var), 1.0)  # a constant feature stays as it is
        repeat = features // groups
        return cls(np.repeat(mean, repeat), np.repeat(std, repeat))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardized float32 rows, flat or in their shape (elementwise, in float64)."""
        flat = x.reshape(len(x), -1).astype(np.float64)
        return ((flat - self.mean) / self.std).astype(np.float32).reshape(x.shape)


class ScalerStandardizer(Standardizer):
    """scikit-learn's StandardScaler fitted on the training split (scikit-learn's own sets):
    its transform acts row by row, so a streamed run's minibatches get the bits the
    in-memory split gets, and both equal what reglab computed before rows existed."""

    def __init__(self, scaler: StandardScaler) -> None:
        super().__init__(scaler.mean_, scaler.scale_)
        self.scaler = scaler

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = self.scaler.transform(x.reshape(len(x), -1))
        return flat.astype(np.float32).reshape(x.shape)


class LazyRows:
    """One split of rows that stay on disk: rows[index], standardized when read.

    `split[a:b]` and `split[tensor]` read and return a tensor (what image logging and
    evaluation take); `subset` narrows the split without reading; `to(device)` reads it
    whole (the out-of-bag test of bagging and Algorithm 7.3's ε do).
    """

    def __init__(self, rows: Rows, index: np.ndarray, scale: Standardizer, shape: tuple) -> None:
        self.rows, self.index, self.scale = rows, np.asarray(index, dtype=np.int64), scale
        self.example_shape = tuple(shape)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.example_shape)

    def read(self, index: np.ndarray) -> Tensor:
        """Rows index (of the source, any shape) standardized, as (*index.shape, *example)."""
        flat = np.asarray(index).reshape(-1)
        x = self.scale(read_all(self.rows, flat).reshape(len(flat), -1))
        return torch.from_numpy(x.reshape(*np.shape(index), *self.example_shape))

    def __getitem__(self, key: Any) -> Tensor:
        key = key.numpy() if isinstance(key, Tensor) else key
        return self.read(self.index[key])

    def subset(self, key: Any) -> "LazyRows":
        key = key.numpy() if isinstance(key, Tensor) else key
        return LazyRows(self.rows, self.index[key], self.scale, self.example_shape)

    def cat(self, other: "LazyRows") -> "LazyRows":
        index = np.concatenate([self.index, other.index])
        return LazyRows(self.rows, index, self.scale, self.example_shape)

    def to(self, device: Any) -> Tensor:
        return self[:].to(device)
