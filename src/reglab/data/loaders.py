"""Minibatches as slices of in-memory tensors: a chunk of k minibatches per Lightning step.

A training "chunk" is a block of consecutive minibatches that the module runs as several
optimizer steps inside one Lightning step; this keeps Lightning's per-step bookkeeping off
the hot path while each optimizer step still sees one minibatch (see `objectives/base.py`).
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor


def bootstrap_index(n: int, seed: int, member: int) -> Tensor:
    """Rows of bootstrap resample `member`: n draws with replacement from range(n), by a
    generator seeded with (seed, member), so every member has its own resample and the same
    one in every run (and in `data.bootstrap=member` runs)."""
    rng = np.random.default_rng([seed, member])
    return torch.from_numpy(rng.integers(0, n, size=n))


class ChunkLoader:
    """Iterates over (x, y) blocks of `steps_per_chunk` minibatches of `batch_size` rows.

    With `shuffle`, rows are permuted once per epoch by a seeded generator, so the order is
    a function of the seed alone. Each block is a contiguous slice of the permuted tensors
    (a view: no copy per step); the consumer splits it into minibatches.

    Data-parallel (`trainer=ddp`, `world_size` processes): every process permutes alike and
    walks the same global minibatches, one per block, of which process `rank` takes the
    rank-th of `world_size` equal consecutive parts. DDP averages the parts' mean gradients:
    the mean gradient of the whole minibatch, as in a single-process run. A minibatch whose
    rows do not divide evenly (often the epoch's last) goes whole to every process, since
    parts of unequal size would weigh their rows unequally in that average.

    Resuming mid-epoch (a checkpoint written between two blocks, e.g. when the run was
    signalled): `state_dict` keeps the generator as it was before this epoch's permutation
    and how many blocks training has taken (`consumed`, a callable the data module reads
    off the Trainer), so the resumed epoch draws the same permutation and skips those
    blocks: the same batches as an uninterrupted run.
    """

    batch_dim = 0  # the axis of rows in a block (BootstrapLoader: 1)

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        steps_per_chunk: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        self.steps_per_epoch = math.ceil(len(x) / self.batch_size)
        if self.steps_per_epoch % steps_per_chunk:
            raise ValueError(
                f"steps_per_chunk={steps_per_chunk} must divide {self.steps_per_epoch}"
            )
        if world_size > 1 and steps_per_chunk != 1:
            raise ValueError(f"steps_per_chunk={steps_per_chunk}: DDP takes 1 minibatch a block")
        self.steps_per_chunk = steps_per_chunk
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.consumed: Callable[[], int] = lambda: 0  # blocks of this epoch training took
        self._epoch_start = self.generator.get_state()  # before this epoch's permutation
        self._skip = 0  # blocks of the next epoch already trained on (a mid-epoch resume)

    def __len__(self) -> int:
        return self.steps_per_epoch // self.steps_per_chunk

    def _epoch(self) -> tuple[Tensor, Tensor]:
        """The epoch's rows in training order."""
        if not self.shuffle:
            return self.x, self.y
        perm = torch.randperm(len(self.x), generator=self.generator)
        return self.x[perm], self.y[perm]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self._epoch_start = self.generator.get_state()
        x, y = self._epoch()
        n = self._rows(x)
        rows = self.batch_size * self.steps_per_chunk
        skip, self._skip = self._skip, 0
        for start in range(skip * rows, n, rows):
            size = min(rows, n - start)
            yield self._part(self._take(x, start, size)), self._part(self._take(y, start, size))

    def _rows(self, x: Tensor) -> int:
        """How many rows the epoch has."""
        return x.shape[self.batch_dim]

    def _take(self, t: Tensor, start: int, size: int) -> Tensor:
        """Rows start … start + size of the epoch's tensor `t` (a view)."""
        return t.narrow(self.batch_dim, start, size)

    def _part(self, block: Tensor) -> Tensor:
        """This process's part of a global minibatch (all of it if the rows don't divide)."""
        rows = block.shape[self.batch_dim]
        if rows % self.world_size:
            return block
        part = rows // self.world_size
        return block.narrow(self.batch_dim, self.rank * part, part)

    def replicated(self, block: int) -> bool:
        """Whether every process holds the epoch's block `block` whole (see `_part`): its
        rows count once, not once per process (engine/batchnorm.py's running variance)."""
        rows = self.batch_size * self.steps_per_chunk
        size = min(rows, self._rows(self.x) - block * rows)
        return self.world_size > 1 and size % self.world_size != 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "epoch_start": self._epoch_start,
            "consumed": self.consumed(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        consumed = state.get("consumed", 0)
        if 0 < consumed < len(self):  # mid-epoch: this epoch again, without what was trained
            self.generator.set_state(state["epoch_start"])
            self._skip = consumed
        else:
            self.generator.set_state(state["generator"])
            self._skip = 0


class BootstrapLoader(ChunkLoader):
    """Bagging in one pass: member i draws its minibatches from its own resample index[i].

    Blocks are (k, rows, …): row r of member i is x[index[i, perm[r]]], with the epoch's
    permutation perm drawn as ChunkLoader draws it, so member i sees exactly the batches of
    a separate run on resample i (`data.bootstrap=i`). The rows are gathered block by block:
    the k resamples never exist as k copies of the data, only one block of k minibatches.
    """

    batch_dim = 1

    def __init__(self, *args: Any, index: Tensor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = index  # (members, n)
        self._order = index  # (members, n): the epoch's rows, member by member

    def _epoch(self) -> tuple[Tensor, Tensor]:
        n = self.index.shape[1]
        perm = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        self._order = self.index[:, perm]
        return self.x, self.y

    def _rows(self, x: Tensor) -> int:
        return self._order.shape[1]

    def _take(self, t: Tensor, start: int, size: int) -> Tensor:
        return t[self._order[:, start : start + size]]
