"""The IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST), read directly.

An IDX file is: two zero bytes, a type byte (0x08: unsigned bytes), the number of
dimensions d, then d big-endian uint32 sizes, then the values in C order. The publishers
ship each one gzipped (`train-images-idx3-ubyte.gz`: 60000×28×28; `…-labels-idx1-ubyte.gz`:
60000 labels).

`read_idx` decompresses into memory. `map_idx` is for `data.in_memory=false`: a `.gz` is
decompressed once into `.unpacked/` beside it (gzip has no random access), then the
values are memory-mapped after the header.
"""

import gzip
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from reglab.data.rows import MappedArray

TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFileError(ValueError):
    """A data file that cannot be read as its format: the message names the file."""


def parse_header(head: bytes, path: Path) -> tuple[str, tuple[int, ...], int]:
    """(dtype, shape, header bytes) of an IDX file from its first bytes."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in TYPES:
        raise DataFileError(f"{path} is not an IDX file (its first bytes are {head[:4]!r})")
    dims = head[3]
    size = 4 + 4 * dims
    if len(head) < size:
        raise DataFileError(f"{path} is cut short inside its IDX header")
    shape = struct.unpack(f">{dims}I", head[4:size])
    return TYPES[head[2]], shape, size


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file (gzipped or not) holds."""
    path = Path(path)
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt .gz
        raise DataFileError(f"{path} cannot be read ({err}): delete it and fetch it again") from err
    dtype, shape, start = parse_header(data[:64], path)
    count = int(np.prod(shape))
    if len(data) - start < count * np.dtype(dtype).itemsize:
        raise DataFileError(
            f"{path} is cut short: its header promises {'×'.join(map(str, shape))} values"
        )
    return np.frombuffer(data, dtype, count, start).reshape(shape)


def map_idx(path: Path) -> MappedArray:
    """The array of an IDX file, memory-mapped (a `.gz` unpacked once beside it first)."""
    path = Path(path)
    if path.suffix == ".gz":
        plain = path.parent / ".unpacked" / path.stem
        if not plain.exists():
            _unpack(path, plain)
        path = plain
    with open(path, "rb") as f:
        dtype, shape, start = parse_header(f.read(64), path)
    expected = start + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if path.stat().st_size < expected:
        raise DataFileError(f"{path} is cut short: delete it and fetch it again")
    return MappedArray(path, shape, dtype, start)


def _unpack(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")  # a crash never leaves half a file
    try:
        with gzip.open(source, "rb") as f, open(partial, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
    except (OSError, EOFError, zlib.error) as err:
        partial.unlink(missing_ok=True)
        raise DataFileError(
            f"{source} cannot be read ({err}): delete it and fetch it again"
        ) from err
    partial.replace(target)
