"""metrics.json, run.json, predictions.npz and the console's summary table."""

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """JSON with non-finite floats as null (JSON has no NaN), keys in a stable order."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def format_table(metrics: Mapping[str, float]) -> str:
    width = max(map(len, metrics), default=0)
    rows = [
        f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}"
        for k, v in metrics.items()
    ]
    return "\n".join(rows)


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Arrays by name, uncompressed (np.load reads them back without pickle)."""
    with path.open("wb") as f:  # a file object: np.savez would append .npz to a str path
        np.savez(f, **arrays)
