"""In-memory data on the training device: moved there once when a fit or test starts.

Lightning copies every batch to the device before the step (`transfer_batch_to_device`);
for in-memory splits that is a host-to-device copy per optimizer step (per chunk of them),
of data that never changes. On a CUDA device the splits move there once instead, in the
DataModule's `setup` hook (Lightning calls it after choosing the device, before it asks
for any dataloader): the loaders then slice and permute tensors already on the device, and
Lightning's per-batch transfer finds nothing to copy. Streamed splits (`LazyRows`) stay
where they are: their minibatches travel from the DataLoader workers in pinned memory.
On the CPU nothing moves: `Tensor.to` returns the same tensors.

With `trainer.channels_last` the in-memory image splits are also laid out channels-last
(`laid_out`), once, wherever they are: the permutation of an epoch (`x[perm]`), a chunk
(`narrow`) and its minibatches (`split`) keep that layout, so every batch reaches the
network as its convolutions want it (engine/speed.py converts the network) without a copy
per step. Streamed splits' batches are converted as they are read (data/stream.py).
"""

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def resident(device: torch.device | str) -> bool:
    """Whether in-memory data lives on `device` for training: CUDA devices only (on the
    CPU it already does; other accelerators keep Lightning's per-batch copy)."""
    return torch.device(device).type == "cuda"


def to_device(value: Any, device: torch.device | str) -> Any:
    """A tensor on `device` (itself when it is there already); anything else as it is."""
    return value.to(device) if isinstance(value, Tensor) else value


def laid_out(value: Any, channels_last: bool) -> Any:
    """A 4-D (N, C, H, W) tensor in channels-last format when asked (itself if it is
    already); anything else, tabular rows and targets included, as it is."""
    if channels_last and isinstance(value, Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def place_splits(
    splits: Mapping[str, tuple[Any, ...]], device: torch.device | str, channels_last: bool = False
) -> dict[str, tuple[Any, ...]]:
    """Every in-memory tensor of `splits` on `device` where it is resident, laid out
    channels-last if asked (else the very same objects): one copy per split for the run."""
    move = resident(device)
    if not move and not channels_last:
        return dict(splits)
    return {
        name: tuple(laid_out(to_device(v, device) if move else v, channels_last) for v in split)
        for name, split in splits.items()
    }
