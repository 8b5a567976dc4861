"""Checkpoint files: written atomically, and at most every `trainer.checkpoint_min_interval` s."""

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO


def _copy_tensors(obj: Any) -> Any:
    """A copy of a checkpoint's containers and tensors; other leaves are shared."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        new = copy.copy(obj)  # keeps the type and attributes (a state_dict's _metadata)
        new.update((k, _copy_tensors(v)) for k, v in obj.items())
        return new
    if isinstance(obj, list | tuple):
        return type(obj)(_copy_tensors(v) for v in obj)
    return obj


def previous(path: Path) -> Path:
    """Where the version of `path` before the newest is kept: last.ckpt → last.prev.ckpt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


class CheckpointWriter(TorchCheckpointIO):
    """Writes checkpoints atomically (temporary file + rename) and at most every
    `min_interval` seconds.

    A checkpoint that falls due sooner is copied at once (so it is the state of that
    moment) and kept in memory until the interval has passed, the run ends, or it fails:
    Lightning calls `teardown` in every case but SIGKILL, which loses at most `min_interval`
    seconds of checkpoints. For a small model a validation takes a millisecond and a write
    several, so writing every improvement would dominate training; for a large one the
    interval has passed at every validation and nothing waits.
    """

    def __init__(self, min_interval: float = 0.0, keep_previous: tuple[str, ...] = ()) -> None:
        self.min_interval = min_interval
        # file names whose previous version is kept beside them as NAME.prev.ckpt (last.ckpt:
        # a resume falls back to it if the newest was cut short)
        self.keep_previous = keep_previous
        self._pending: dict[str, dict[str, Any]] = {}
        self._last_write = -math.inf

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if "://" in str(path) or storage_options is not None:  # remote: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        self._pending[str(path)] = _copy_tensors(checkpoint)  # the live tensors move on
        if time.monotonic() - self._last_write >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        for path, checkpoint in self._pending.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            torch.save(checkpoint, tmp)
            if target.name in self.keep_previous and target.is_file():
                os.replace(target, previous(target))
            os.replace(tmp, target)  # a crash never leaves half a checkpoint
        self._pending.clear()
        self._last_write = time.monotonic()

    def remove_checkpoint(self, path: str | Path) -> None:
        self._pending.pop(str(path), None)
        if Path(path).exists():
            super().remove_checkpoint(path)

    def teardown(self) -> None:
        self.flush()
