"""Data sets split by seed and standardized with the training split's statistics.

A source returns (X, y) arrays (scikit-learn's sets: standardized per feature by
scikit-learn's StandardScaler, as always, in memory or streamed) or a `rows.Loaded` (the publishers'
files, image folders, tables: rows that may stay on disk, the official test split, class
names). In memory (`data.in_memory=true`), batches are slices of tensors, never a
DataLoader's per-sample collate (`loaders.py`); `false` streams them through DataLoader
workers in the same order (`stream.py`).
"""

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from reglab.data.loaders import BootstrapLoader, ChunkLoader, bootstrap_index
from reglab.data.placement import laid_out, place_splits, to_device
from reglab.data.preparing import Preparing
from reglab.data.rows import LazyRows
from reglab.data.splitting import Splitting
from reglab.data.stream import StreamLoader

Task = Literal["classification", "regression", "multitask"]
Split = tuple[Tensor | LazyRows, Tensor]


class DataModule(Splitting, Preparing, pl.LightningDataModule):
    """A data set loaded by `source` (any callable returning X, y), split and standardized.

    Splits are fractions of the whole set, stratified for classification, drawn with
    `random_state=seed`; with `folds=k`, validation is fold `fold` of a seeded k-fold split
    of the non-test rows (`splitting.py`). Features are standardized (`preparing.py`) with
    the training split's mean and population standard deviation (scikit-learn's
    StandardScaler, per feature); regression targets are left as they are. Examples keep
    their natural shape: (N, C, H, W) for image data (`image_shape`; `auto`: the source's),
    (N, features) for tables; `feature_mean` and `feature_std` are per feature, flat (C·H·W
    values for images), also under `normalize=channel` (one mean and std per channel, over
    the training split's pixels).
    """

    def __init__(
        self,
        source: Callable[[], tuple[np.ndarray, np.ndarray]],
        task: Task = "classification",
        batch_size: int = 64,
        eval_batch_size: int = 4096,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        folds: int | None = None,
        fold: int = 0,
        image_shape: tuple[int, ...] | str | None = None,
        train_size: int | None = None,
        bootstrap: int | None = None,
        labeled_fraction: float | None = None,
        keep_unlabeled: bool = False,
        tasks: Mapping[str, Mapping[str, Any]] | None = None,
        use_tasks: Sequence[str] | None = None,
        labels_per_example: int | None = None,
        normalize: Literal["feature", "channel"] = "feature",
        in_memory: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        **source_keys: Any,  # keys of data.* that only the source reads (root, path, …)
    ) -> None:
        super().__init__()
        self.source, self.task = source, task
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.folds, self.fold = folds, fold  # k-fold CV: fold `fold` of `folds` validates
        self.image_shape = tuple(image_shape) if image_shape and image_shape != "auto" else None
        self.normalize, self.in_memory, self.num_workers = normalize, in_memory, num_workers
        self.classes: list[str] | None = None  # class names of a real data set (classes.json)
        self.seed = seed
        self.bootstrap = bootstrap
        self.train_size = train_size  # keep only this many training examples (small data)
        self.labeled_fraction = labeled_fraction  # of the training split; the rest is hidden
        self.keep_unlabeled = keep_unlabeled  # hidden labels become UNLABELED, else rows drop
        # multi-task targets: one column per task, in this order (see models/multitask.py)
        tasks = {k: dict(v) for k, v in (tasks or {}).items()}
        self.task_columns = [list(tasks).index(name) for name in use_tasks or tasks]
        self.tasks = {name: tasks[name] for name in use_tasks or tasks}
        self.labels_per_example = labels_per_example  # tasks each training example keeps
        self.feature_mean: Tensor | None = None  # the training split's, for raw-unit transforms
        self.feature_std: Tensor | None = None
        self.oob_index: Tensor | None = None  # training rows left out of the bootstrap sample
        self.train_on_val = False  # Algorithms 7.2/7.3, phase 2: train on train + val
        self.members: int | None = None  # vectorized bagging: one resample per member
        self.steps_per_chunk = 1
        self.channels_last = False  # image batches channels-last (trainer.channels_last)
        self.splits: dict[str, Split] = {}
        # each split's row numbers in the source (in its own test set if official_test)
        self.rows: dict[str, np.ndarray] = {}
        self.official_test = False
        self._train_loader: ChunkLoader | StreamLoader | None = None
        self._streams: list[StreamLoader] = []  # evaluation loaders, whose workers `teardown` stops

    # -- data ------------------------------------------------------------------------------
    def prepare(self) -> "DataModule":
        """Load, split and standardize (idempotent; also called by `setup`)."""
        if self.splits:
            return self
        loaded, arrays = self._load()
        y = np.asarray(loaded.y)
        parts = self._split(np.arange(len(y)), y, official_test=loaded.test is not None)
        if loaded.test is not None:  # the publisher's test set, as it is
            parts["test"] = (np.arange(len(loaded.test[1])), np.asarray(loaded.test[1]))
        if self.train_size is not None:
            parts["train"] = self._subsample(*parts["train"])
        if self.labels_per_example is not None:
            parts["train"] = self._spread_labels(*parts["train"])
        if self.tasks:
            parts = {name: self._select_tasks(*part) for name, part in parts.items()}
        if self.labeled_fraction is not None and self.labeled_fraction < 1:
            parts["train"] = self._hide_labels(*parts["train"])
        self._standardize(loaded, parts, arrays)
        if self.bootstrap is not None:
            self._resample()
        return self

    # -- shapes the model needs ------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Values per example: C·H·W for images."""
        return self.prepare().splits["train"][0][0].numel()

    @property
    def example_shape(self) -> tuple[int, ...]:
        """One example's shape: (C, H, W) for images, (features,) for tables."""
        return tuple(self.prepare().splits["train"][0].shape[1:])

    @property
    def n_outputs(self) -> int:
        if self.tasks:
            return sum(int(t["outputs"]) for t in self.tasks.values())
        y = torch.cat([ys for _, ys in self.prepare().splits.values()])
        return int(y.max()) + 1 if self.task == "classification" else y.shape[1]

    @property
    def n_train(self) -> int:
        return len(self.training_tensors()[0])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / min(self.batch_size, self.n_train))

    def has(self, split: str) -> bool:
        return split in self.prepare().splits

    def training_tensors(self) -> Split:
        """What the model trains on: the training split, plus validation when `train_on_val`."""
        x, y = self.prepare().splits["train"]
        if self.train_on_val:
            xv, yv = self.splits["val"]
            x = x.cat(xv) if isinstance(x, LazyRows) else torch.cat([x, xv])
            y = torch.cat([y, yv])
        return x, y

    def train_on_all(self) -> None:
        """The second phase of Algorithms 7.2 and 7.3: train on X^(train), i.e. the
        sub-training split and the validation split together (validation still checks)."""
        self.train_on_val = True
        self._train_loader = None

    # -- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        if self.trainer is not None:  # in-memory splits on a CUDA device: moved once, here
            device = self.trainer.strategy.root_device
            self.splits = place_splits(self.splits, device, self.channels_last)
            loader = self._train_loader
            if isinstance(loader, ChunkLoader):  # built before this fit
                loader.x = laid_out(to_device(loader.x, device), self.channels_last)
                loader.y = to_device(loader.y, device)

    def teardown(self, stage: str | None = None) -> None:
        # streamed loaders' worker processes end with the fit (a later fit starts new ones)
        for loader in [*self._streams, self._train_loader]:
            if isinstance(loader, StreamLoader):
                loader.close()
        self._streams.clear()

    def train_dataloader(self) -> ChunkLoader | StreamLoader:
        if self._train_loader is None:
            x, y = self.training_tensors()
            kwargs: dict[str, Any] = {"shuffle": True, "seed": self.seed}
            if self.trainer is not None:  # trainer=ddp: this process's part of each minibatch
                kwargs.update(rank=self.trainer.global_rank, world_size=self.trainer.world_size)
            loader: type[ChunkLoader] = ChunkLoader
            if self.members:  # vectorized bagging: one resample per member
                loader, kwargs["index"] = (
                    BootstrapLoader,
                    torch.stack(
                        [bootstrap_index(len(x), self.seed, i) for i in range(self.members)]
                    ),
                )
            args = (self.batch_size, self.steps_per_chunk)
            self._train_loader = self._loader(loader, x, y, *args, **kwargs)
            # blocks training has started this epoch: where a mid-epoch checkpoint resumes
            # (through a weak reference: a loader that pointed back at this module would make
            # a cycle that only the garbage collector frees, and a streamed loader's workers
            # freed by it wait out a 5 s timeout each before they stop)
            self._train_loader.consumed = _weak(self._blocks_started)
        return self._train_loader

    def _loader(self, loader: type[ChunkLoader], x: Any, y: Tensor, *args: Any, **kwargs: Any):
        """`loader` over in-memory tensors, or the same order streamed from disk."""
        if not isinstance(x, LazyRows):
            return loader(x, y, *args, **kwargs)
        cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = {"num_workers": self.num_workers, "pin_memory": cuda}
        workers["channels_last"] = self.channels_last
        return StreamLoader.over(x, y, loader, *args, **workers, **kwargs)

    def _blocks_started(self) -> int:
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def _eval_loader(self, split: str) -> ChunkLoader | StreamLoader | list:
        if split not in self.splits:
            return []
        loader = self._loader(ChunkLoader, *self.splits[split], batch_size=self.eval_batch_size)
        if isinstance(loader, StreamLoader):
            self._streams.append(loader)
        return loader

    def val_dataloader(self) -> ChunkLoader | StreamLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> ChunkLoader | StreamLoader | list:
        return self._eval_loader("test")

    def state_dict(self) -> dict[str, Any]:
        # the shuffling generator, so a resumed run sees the same batches
        return self._train_loader.state_dict() if self._train_loader else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.train_dataloader().load_state_dict(state)


def _weak(method: Callable[[], int]) -> Callable[[], int]:
    """`method`, not keeping its object alive (0 once the object is gone)."""
    ref = weakref.WeakMethod(method)
    return lambda: (ref() or (lambda: 0))()
