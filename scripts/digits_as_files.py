"""scikit-learn's 8×8 digits written in every file format reglab's real-data options read.

    python scripts/digits_as_files.py OUT_DIR

writes, for `data.root=OUT_DIR data.download=false` (or `data.path=OUT_DIR/digits.csv`):

- `mnist/`: the four gzipped IDX files (`train-images-idx3-ubyte.gz`, …), each digit
  upscaled 8×8 → 28×28 by nearest neighbour and its 0–16 values scaled to 0–255;
- `fashion_mnist/`, `kmnist/`: the same four files again (digits, not clothes or kana:
  they exercise the option, not the set);
- `cifar10/cifar-10-batches-py/`: data_batch_1…5, test_batch and batches.meta, each digit
  upscaled 8×8 → 32×32 (4×4 blocks) and its grey value replicated into R, G and B;
- `cifar100/cifar-100-python/`: train, test and meta with the same images; the fine label
  is the digit (10 of CIFAR-100's 100 slots used), the coarse label is digit // 2 (5
  superclasses: {0,1}, {2,3}, …);
- `image_folder/<d>/<i>.png`: one sub-folder per digit, 8×8 grey PNGs at their own size;
- `digits.csv`: columns p0…p63 (0–16) and `digit`, the class as a string "d0"…"d9".

The official test split is scikit-learn's order cut at 1437: the first 1437 images train,
the last 360 test (the 80/20 cut of `train_test_split(..., shuffle=False)`). The
image_folder and table options have no official split; reglab draws theirs by seed.

The byte layouts are the publishers' (IDX: magic, big-endian sizes, uint8 values; CIFAR:
pickled dicts of (N, 3072) channel-major rows), written with the helpers of
tests/publisher_files.py, which the readers' tests also use.
"""

import gzip
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from publisher_files import MNIST_NAMES, cifar_batch, idx_bytes

N_TRAIN = 1437  # the first 1437 of scikit-learn's 1797 digits train, the last 360 test


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 8, 8) values 0–16 → (N, size, size) uint8 0–255, nearest neighbour."""
    rows = np.arange(size) * images.shape[1] // size
    big = images[:, rows][:, :, rows]
    return np.round(big * (255 / 16)).astype(np.uint8)


def write_mnist_format(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The four IDX files of the MNIST family, 28×28."""
    folder.mkdir(parents=True, exist_ok=True)
    images = upscale(x, 28)
    arrays = (images[:N_TRAIN], y[:N_TRAIN], images[N_TRAIN:], y[N_TRAIN:])
    for name, array in zip(MNIST_NAMES, arrays, strict=True):
        (folder / name).write_bytes(gzip.compress(idx_bytes(array)))


def rgb32(x: np.ndarray) -> np.ndarray:
    """(N, 8, 8) → (N, 3, 32, 32) uint8, the grey value in every channel."""
    return np.repeat(upscale(x, 32)[:, None], 3, axis=1)


def write_cifar10(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """cifar-10-batches-py/: five training batches (the training split cut in five), the
    test batch and batches.meta."""
    out = folder / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    images = rgb32(x)
    parts = np.array_split(np.arange(N_TRAIN), 5)
    for i, rows in enumerate(parts, start=1):
        (out / f"data_batch_{i}").write_bytes(cifar_batch(images[rows], y[rows], b"labels"))
    test = slice(N_TRAIN, None)
    (out / "test_batch").write_bytes(cifar_batch(images[test], y[test], b"labels"))
    names = [f"d{i}".encode() for i in range(10)]
    (out / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


def write_cifar100(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """cifar-100-python/: train, test (fine = digit, coarse = digit // 2) and meta."""
    out = folder / "cifar-100-python"
    out.mkdir(parents=True, exist_ok=True)
    images = rgb32(x)
    for name, rows in (("train", slice(None, N_TRAIN)), ("test", slice(N_TRAIN, None))):
        batch = pickle.loads(cifar_batch(images[rows], y[rows], b"fine_labels"))
        batch[b"coarse_labels"] = (y[rows] // 2).tolist()
        (out / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"fine_label_names": [f"d{i}".encode() for i in range(10)],
        b"coarse_label_names": [f"d{2 * i}_{2 * i + 1}".encode() for i in range(5)],
    }
    (out / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_image_folder(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """<digit>/<index>.png, 8×8 grey, 0–255."""
    for i, (image, label) in enumerate(zip(upscale(x, 8), y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / str(label) / f"{i:04d}.png")


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """p0…p63 and the string class `digit` ("d0"…"d9")."""
    header = ",".join([f"p{i}" for i in range(64)] + ["digit"])
    rows = [",".join([*map(str, row), f"d{label}"]) for row, label in zip(x, y, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n")


def main(out: Path) -> None:
    x, y = load_digits(return_X_y=True)
    x, y = x.reshape(-1, 8, 8).astype(np.int64), y.astype(np.uint8)
    for name in ("mnist", "fashion_mnist", "kmnist"):
        write_mnist_format(out / name, x, y)
    write_cifar10(out / "cifar10", x, y)
    write_cifar100(out / "cifar100", x, y)
    write_image_folder(out / "image_folder", x, y)
    write_csv(out / "digits.csv", x.reshape(len(x), 64), y)
    print(f"digits written to {out} ({N_TRAIN} training, {len(x) - N_TRAIN} test images)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[2].strip())
    main(Path(sys.argv[1]))
