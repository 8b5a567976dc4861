"""In-memory data sets, split by seed, standardized with the training split's statistics.

Every data set here fits in memory (scikit-learn ships or generates them), so batches are
slices of tensors, never a DataLoader's per-sample collate (`loaders.py`).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from reglab.data.loaders import BootstrapLoader, ChunkLoader, bootstrap_index

Task = Literal["classification", "regression", "multitask"]
UNLABELED = -1  # the class of a training example whose label is hidden (semi-supervised)


class DataModule(pl.LightningDataModule):
    """A data set loaded by `source` (any callable returning X, y), split and standardized.

    Splits are fractions of the whole set, stratified for classification, drawn with
    `random_state=seed`. Features are standardized with the training split's mean and
    population standard deviation (scikit-learn's StandardScaler, per feature); regression
    targets are left as they are. Examples keep their natural shape: (N, C, H, W) for image
    data (`image_shape`), (N, features) for tables; `feature_mean` and `feature_std` are
    per feature, flat (C·H·W values for images).
    """

    def __init__(
        self,
        source: Callable[[], tuple[np.ndarray, np.ndarray]],
        task: Task = "classification",
        batch_size: int = 64,
        eval_batch_size: int = 4096,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        image_shape: tuple[int, ...] | None = None,
        train_size: int | None = None,
        bootstrap: int | None = None,
        labeled_fraction: float | None = None,
        keep_unlabeled: bool = False,
        tasks: Mapping[str, Mapping[str, Any]] | None = None,
        use_tasks: Sequence[str] | None = None,
        labels_per_example: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source, self.task = source, task
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.image_shape = tuple(image_shape) if image_shape else None
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
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._train_loader: ChunkLoader | None = None

    # -- data ------------------------------------------------------------------------------
    def prepare(self) -> "DataModule":
        """Load, split and standardize (idempotent; also called by `setup`)."""
        if self.splits:
            return self
        x, y = self.source()
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        parts = self._split(x, y)
        if self.train_size is not None:
            parts["train"] = self._subsample(*parts["train"])
        if self.labels_per_example is not None:
            parts["train"] = self._spread_labels(*parts["train"])
        if self.tasks:
            parts = {name: self._select_tasks(*part) for name, part in parts.items()}
        if self.labeled_fraction is not None and self.labeled_fraction < 1:
            parts["train"] = self._hide_labels(*parts["train"])
        scaler = StandardScaler().fit(parts["train"][0])
        self.feature_mean = torch.tensor(scaler.mean_, dtype=torch.float32)
        self.feature_std = torch.tensor(scaler.scale_, dtype=torch.float32)
        shape = self._example_shape(x.shape[1])
        for name, (xs, ys) in parts.items():
            xs = scaler.transform(xs).astype(np.float32).reshape(len(xs), *shape)
            self.splits[name] = (torch.from_numpy(xs), self._targets(ys))
        if self.bootstrap is not None:
            self._resample()
        return self

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
        self.splits["train"] = (x[index], y[index])

    def _split(self, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        parts = {}
        rest = (x, y)
        for name, fraction in (("test", self.test_fraction), ("val", self.val_fraction)):
            if fraction <= 0:
                continue
            # fractions are of the whole set, not of what the previous split left
            size = round(fraction * len(x))
            stratify = rest[1] if self.task == "classification" else None
            x_rest, x_part, y_rest, y_part = train_test_split(
                *rest, test_size=size, random_state=self.seed, stratify=stratify
            )
            parts[name] = (x_part, y_part)
            rest = (x_rest, y_rest)
        parts["train"] = rest
        return parts

    def _subsample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`train_size` examples of the training split (stratified, a function of the seed)."""
        if self.train_size > len(x):
            raise ValueError(
                f"data.train_size={self.train_size} is more than the {len(x)} training examples"
                f" (allowed: 1 … {len(x)})"
            )
        if self.train_size == len(x):
            return x, y
        stratify = y if self.task == "classification" else None
        x, _, y, _ = train_test_split(
            x, y, train_size=self.train_size, random_state=self.seed, stratify=stratify
        )
        return x, y

    def _spread_labels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Multi-task data where tasks are labelled on different examples: training example
        i keeps the targets of `labels_per_example` tasks (in turn over a seeded shuffle, so
        every task gets the same share), the others become NaN (missing)."""
        tasks = y.shape[1]
        order = np.random.default_rng([self.seed, tasks]).permutation(len(y))
        spread = np.full(y.shape, np.nan)
        for j in range(min(self.labels_per_example, tasks)):
            column = (order + j) % tasks
            spread[np.arange(len(y)), column] = y[np.arange(len(y)), column]
        return x, spread

    def _select_tasks(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The columns of `use_tasks`, and the examples with a target for one of them (all
        tasks are split and spread first, so a single-task run sees exactly the examples
        that task has in the multi-task run)."""
        y = y[:, self.task_columns].astype(np.float64)
        labeled = ~np.isnan(y).all(axis=1)
        return x[labeled], y[labeled]

    def _hide_labels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep the labels of `labeled_fraction` of the training examples (stratified when
        possible, a function of the seed); the others become UNLABELED, or are dropped."""
        n = len(y)
        count = max(1, round(self.labeled_fraction * n))
        self.n_labeled = count
        if count >= n:
            return x, y
        rows = np.arange(n)
        try:
            stratify = y if self.task == "classification" else None
            labeled = train_test_split(
                rows, train_size=count, random_state=self.seed, stratify=stratify
            )[0]
        except ValueError:  # fewer labelled examples than classes: a plain random draw
            labeled = train_test_split(rows, train_size=count, random_state=self.seed)[0]
        labeled = np.sort(labeled)
        if not self.keep_unlabeled:
            return x[labeled], y[labeled]
        hidden = np.full_like(y, UNLABELED)
        hidden[labeled] = y[labeled]
        return x, hidden

    def _targets(self, y: np.ndarray) -> Tensor:
        if self.task == "classification":
            return torch.from_numpy(y.astype(np.int64))
        y = y.astype(np.float32)
        return torch.from_numpy(y.reshape(len(y), -1))

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

    def training_tensors(self) -> tuple[Tensor, Tensor]:
        """What the model trains on: the training split, plus validation when `train_on_val`."""
        x, y = self.prepare().splits["train"]
        if self.train_on_val:
            xv, yv = self.splits["val"]
            x, y = torch.cat([x, xv]), torch.cat([y, yv])
        return x, y

    def train_on_all(self) -> None:
        """The second phase of Algorithms 7.2 and 7.3: train on X^(train), i.e. the
        sub-training split and the validation split together (validation still checks)."""
        self.train_on_val = True
        self._train_loader = None

    # -- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def train_dataloader(self) -> ChunkLoader:
        if self._train_loader is None:
            x, y = self.training_tensors()
            args = (x, y, self.batch_size, self.steps_per_chunk)
            kwargs = {"shuffle": True, "seed": self.seed}
            if self.trainer is not None:  # trainer=ddp: this process's part of each minibatch
                kwargs.update(rank=self.trainer.global_rank, world_size=self.trainer.world_size)
            if self.members:
                index = torch.stack(
                    [bootstrap_index(len(x), self.seed, i) for i in range(self.members)]
                )
                self._train_loader = BootstrapLoader(*args, **kwargs, index=index)
            else:
                self._train_loader = ChunkLoader(*args, **kwargs)
            # blocks training has started this epoch: where a mid-epoch checkpoint resumes
            self._train_loader.consumed = self._blocks_started
        return self._train_loader

    def _blocks_started(self) -> int:
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def _eval_loader(self, split: str) -> ChunkLoader | list:
        if split not in self.splits:
            return []
        return ChunkLoader(*self.splits[split], batch_size=self.eval_batch_size)

    def val_dataloader(self) -> ChunkLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> ChunkLoader | list:
        return self._eval_loader("test")

    def state_dict(self) -> dict[str, Any]:
        # the shuffling generator, so a resumed run sees the same batches
        return self._train_loader.state_dict() if self._train_loader else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.train_dataloader().load_state_dict(state)
