"""Training and evaluation batches read from disk by torch DataLoader workers
(`data.in_memory=false`), in exactly the order the in-memory loaders give.

The order is decided in the main process by a `ChunkLoader` (or `BootstrapLoader`) over
*row numbers* instead of rows: it permutes them with its seeded generator, cuts them into
blocks of k minibatches, takes this process's part under DDP and, for bagging, maps them
through each member's bootstrap resample. Each block of row numbers (with its targets) is
one DataLoader sample; a worker reads and standardizes those rows. Workers draw nothing at
random, so the batches are the same for any `num_workers`, and the generator, the epoch's
position and the skip on a mid-epoch resume all stay the inner loader's: checkpoints and
resumes work as they do in memory.
"""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from reglab.data.loaders import ChunkLoader
from reglab.data.placement import laid_out
from reglab.data.rows import LazyRows


class BlockReader(Dataset):
    """A block of row numbers (any shape) and its targets → (rows, targets) tensors, image
    rows channels-last if asked (in the worker: the copy to the device keeps the layout)."""

    def __init__(self, split: LazyRows, channels_last: bool = False) -> None:
        self.split, self.channels_last = split, channels_last

    def __getitem__(self, block: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        positions, y = block
        rows = self.split.read(self.split.index[positions.numpy()])
        return laid_out(rows, self.channels_last), y

    def __len__(self) -> int:
        return len(self.split)


class StreamLoader:
    """The blocks of `order` (a ChunkLoader over positions 0…n−1 of `split`), read by
    `num_workers` processes (0: in this one); `pin_memory` for a CUDA device."""

    def __init__(
        self,
        split: LazyRows,
        order: ChunkLoader,
        num_workers: int = 0,
        pin_memory: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.reader, self.order = BlockReader(split, channels_last), order
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._loader: DataLoader | None = None  # made on the first epoch, kept (its workers)

    @classmethod
    def over(
        cls, split: LazyRows, y: Tensor, loader: type[ChunkLoader], *args: Any, **kwargs: Any
    ) -> "StreamLoader":
        """A StreamLoader whose order is `loader(positions, y, *args, …)`."""
        keys = ("num_workers", "pin_memory", "channels_last")
        workers = {k: kwargs.pop(k) for k in keys if k in kwargs}
        positions = torch.arange(len(split))
        return cls(split, loader(positions, y, *args, **kwargs), **workers)

    def __len__(self) -> int:
        return len(self.order)

    def replicated(self, block: int) -> bool:
        return self.order.replicated(block)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """A generator, so nothing is drawn until the first block is asked for: workers
        prefetch from the order at once, and Lightning may create an iterator it never
        reads (which would draw an extra epoch's permutation)."""
        if self._loader is None:
            self._loader = self._dataloader()
        yield from self._loader

    def _dataloader(self) -> DataLoader:
        return DataLoader(
            self.reader,
            batch_size=None,  # a sample is already a whole block
            sampler=_Blocks(self.order),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=_one_thread,
            # its own generator: the workers' base seed must not draw from torch's global
            # one, which dropout and augmentation draw from (the in-memory run's sequence)
            generator=torch.Generator().manual_seed(0),
            # workers live as long as the loader: starting num_workers processes for every
            # epoch and every validation costs more than a small epoch itself
            persistent_workers=self.num_workers > 0,
        )

    def close(self) -> None:
        """Stop the workers (`DataModule.teardown`); the next epoch starts new ones."""
        self._loader = None

    # the inner loader keeps the order's state: generator, epoch start, blocks consumed
    @property
    def consumed(self) -> Callable[[], int]:
        return self.order.consumed

    @consumed.setter
    def consumed(self, value: Callable[[], int]) -> None:
        self.order.consumed = value

    @property
    def steps_per_epoch(self) -> int:
        return self.order.steps_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)


class _Blocks:
    """The inner loader's blocks as a DataLoader sampler (iterated in the main process)."""

    def __init__(self, order: ChunkLoader) -> None:
        self.order = order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def _one_thread(worker: int) -> None:
    # a reading worker needs no intra-op threads; several would compete with training's
    torch.set_num_threads(1)
    np.random.seed(worker)  # nothing here draws, but a user's reader might
