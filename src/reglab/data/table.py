"""`data=table`: a CSV, Parquet or NPZ file with one row per example.

The target column becomes y: for classification its values, strings or integers, map to
classes in sorted order (class i is the i-th value; the mapping goes to classes.json in
the run directory); for regression it must be numeric. Feature columns (`features`, or all
but the target) that are numeric stay as they are; the others are one-hot encoded, one
column `<name>=<value>` per value in sorted order, an empty cell all zeros (as
pandas.get_dummies does). Parquet needs pyarrow: `pip install -e '.[tables]'`. An NPZ
holds one 1-D array per column, named as the column.
"""

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reglab.data.idx import DataFileError
from reglab.data.rows import Loaded

Columns = dict[str, np.ndarray]


def read_columns(path: Path) -> Columns:
    """The file's columns by name (CSV cells as strings, the others as stored)."""
    if not path.exists():
        raise DataFileError(f"data.path={path} does not exist (allowed: a CSV, Parquet or NPZ)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="") as f:
            header, *rows = list(csv.reader(f))
        cells = np.array(rows, dtype=object).reshape(len(rows), len(header))
        return {name: cells[:, j] for j, name in enumerate(header)}
    if suffix == ".parquet":
        return _parquet(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    raise DataFileError(f"data.path={path}: unknown format (allowed: .csv, .parquet or .npz)")


def _parquet(path: Path) -> Columns:
    try:
        import pyarrow.parquet as pq  # optional: only Parquet tables need it
    except ImportError:
        raise DataFileError(
            f"data.path={path} is Parquet, which needs pyarrow (allowed: pip install -e"
            " '.[tables]', or a CSV or NPZ file)"
        ) from None
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def numeric(values: np.ndarray) -> np.ndarray | None:
    """float64 values (empty cells NaN), or None if some cell is not a number."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    try:
        return np.array([float(v) if v not in ("", None) else np.nan for v in values])
    except (TypeError, ValueError):
        return None


def one_hot(name: str, values: np.ndarray, limit: int) -> tuple[np.ndarray, list[str]]:
    """One column per distinct non-empty value (sorted); an empty cell is all zeros."""
    text = np.array(["" if v is None else str(v) for v in values], dtype=object)
    categories = sorted(set(text) - {""})
    if len(categories) > limit:
        raise DataFileError(
            f"data.features: column {name} is not numeric and has {len(categories)} distinct"
            f" values, too many to one-hot encode (allowed: at most data.max_categories="
            f"{limit}, or leave it out of data.features)"
        )
    codes = np.stack([text == c for c in categories], axis=1).astype(np.float32)
    return codes, [f"{name}={c}" for c in categories]


def _features(columns: Columns, names: Sequence[str], limit: int) -> np.ndarray:
    blocks = []
    for name in names:
        values = numeric(columns[name])
        if values is None:
            blocks.append(one_hot(name, columns[name], limit)[0])
        elif np.isnan(values).any():
            raise DataFileError(
                f"data.features: column {name} has {int(np.isnan(values).sum())} missing"
                " values (allowed: a complete numeric column; fill them, or leave it out)"
            )
        else:
            blocks.append(values[:, None].astype(np.float32))
    return np.concatenate(blocks, axis=1)


def _target(values: np.ndarray, name: str, task: str) -> tuple[np.ndarray, list[str] | None]:
    number = numeric(values)
    empty = np.isnan(number) if number is not None else np.isin(values, ("", None))
    if empty.any():
        raise DataFileError(
            f"data.target: column {name} has {int(empty.sum())} missing values (NaN or empty)"
            " (allowed: a target in every row)"
        )
    if task == "regression":
        if number is None:
            raise DataFileError(
                f"data.target: column {name} is not numeric, which regression needs"
                " (allowed: numbers, or data.task=classification)"
            )
        return number, None
    keys = number if number is not None else np.array([str(v) for v in values], dtype=object)
    classes, y = np.unique(keys, return_inverse=True)
    names = [f"{c:g}" if isinstance(c, float) else str(c) for c in classes]
    return y.astype(np.int64), names


def table(
    path: str,
    target: str,
    task: str = "classification",
    features: Sequence[str] | None = None,
    max_categories: int = 50,
) -> Loaded:
    """The table at `path` as (features, target), string classes mapped in sorted order."""
    columns = read_columns(Path(path).expanduser())
    for key, name in [("data.target", target), *(("data.features", f) for f in features or [])]:
        if name not in columns:
            raise DataFileError(
                f"{key}={name}: no such column in {path} (allowed: {', '.join(columns)})"
            )
    names = list(features) if features else [c for c in columns if c != target]
    y, classes = _target(columns[target], target, task)
    return Loaded(_features(columns, names, max_categories), y, classes=classes)
