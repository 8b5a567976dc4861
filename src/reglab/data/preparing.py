"""How `DataModule.prepare` reads a data set, as methods of `DataModule`: load the source,
standardize each split with the training split's statistics, read its rows (now, or per
minibatch), and draw bagging's bootstrap resample of the training split.

Splitting itself (row numbers into training, validation and test) is `splitting.py`.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from reglab.data.loaders import bootstrap_index
from reglab.data.rows import LazyRows, Loaded, ScalerStandardizer, Standardizer


class Preparing:
    """The load, standardize and resample steps of `DataModule.prepare`; the attributes
    are the DataModule's."""

    source: Callable[[], Any]
    task: str
    seed: int
    bootstrap: int | None
    image_shape: tuple[int, ...] | None
    normalize: str
    in_memory: bool
    classes: list[str] | None
    feature_mean: Tensor | None
    feature_std: Tensor | None
    oob_index: Tensor | None
    official_test: bool
    splits: dict[str, tuple[Tensor | LazyRows, Tensor]]
    rows: dict[str, np.ndarray]

    def _load(self) -> tuple[Loaded, bool]:
        """The source's data, and whether it is plain (X, y) arrays (scikit-learn's sets)."""
        out = self.source()
        if isinstance(out, Loaded):
            self.classes = out.classes
            self.image_shape = self.image_shape or out.image_shape
            return out, False
        x, y = out
        return Loaded(np.asarray(x, dtype=np.float32), y), True

    def _standardize(self, loaded: Loaded, parts: dict[str, tuple], arrays: bool) -> None:
        """Each split's rows with the training split's statistics, read now (in memory) or
        per minibatch: scikit-learn's StandardScaler for its own sets, per feature as it
        always was; else `Standardizer` (per feature, or per channel)."""
        shape = self._example_shape(math.prod(loaded.x.shape[1:]))
        channels = shape[0] if self.normalize == "channel" and self.image_shape else None
        train = parts["train"][0]
        if arrays and channels is None:
            scale = ScalerStandardizer(StandardScaler().fit(loaded.x[train]))
        else:
            scale = Standardizer.fit(loaded.x, train, channels)
        self.feature_mean = torch.tensor(scale.mean, dtype=torch.float32)
        self.feature_std = torch.tensor(scale.std, dtype=torch.float32)
        self.official_test = loaded.test is not None
        for name, (rows, ys) in parts.items():
            source = loaded.test[0] if name == "test" and loaded.test else loaded.x
            self.rows[name] = np.asarray(rows, dtype=np.int64)
            split = LazyRows(source, rows, scale, shape)
            self.splits[name] = (split[:] if self.in_memory else split, self._targets(ys))

    def _example_shape(self, features: int) -> tuple[int, ...]:
        """One example's shape as models receive it: (C, H, W) for images, (features,) else."""
        if self.image_shape is None:
            return (features,)
        if math.prod(self.image_shape) != features:
            shown = "×".join(map(str, self.image_shape))
            raise ValueError(
                f"data.image_shape={list(self.image_shape)} holds {math.prod(self.image_shape)}"
                f" values ({shown}), but the data has {features} features per example"
                f" (allowed: a (C, H, W) with C·H·W = {features})"
            )
        return self.image_shape

    def _resample(self) -> None:
        """Bagging's data set i: n rows drawn with replacement from the n training rows;
        the rows never drawn are the out-of-bag set."""
        x, y = self.splits["train"]
        index = bootstrap_index(len(x), self.seed, self.bootstrap)
        drawn = torch.zeros(len(x), dtype=torch.bool)
        drawn[index] = True
        self.oob_index = torch.nonzero(~drawn).squeeze(1)
        rows = x.subset(index) if isinstance(x, LazyRows) else x[index]
        self.splits["train"] = (rows, y[index])
        self.rows["train"] = self.rows["train"][index.numpy()]

    def _targets(self, y: np.ndarray) -> Tensor:
        if self.task == "classification":
            return torch.from_numpy(y.astype(np.int64))
        y = y.astype(np.float32)
        return torch.from_numpy(y.reshape(len(y), -1))
