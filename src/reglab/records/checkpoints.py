"""Checkpoint files: written atomically, and at most every `trainer.checkpoint_min_interval` s."""

import contextlib
import copy
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from reglab.config import ConfigError


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
    interval has passed at every validation and nothing waits. A checkpoint written at once
    is not copied (the copy of a large model's state would double its memory for a moment).
    """

    def __init__(self, min_interval: float = 0.0, keep_previous: tuple[str, ...] = ()) -> None:
        self.min_interval = min_interval
        # file names whose previous version is kept beside them as NAME.prev.ckpt (last.ckpt:
        # a resume falls back to it if the newest was cut short)
        self.keep_previous = keep_previous
        self._pending: dict[str, dict[str, Any]] = {}
        self._last_write = -math.inf
        self._now = False  # within `now()`: write whatever the interval

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if "://" in str(path) or storage_options is not None:  # remote: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        due = self._now or time.monotonic() - self._last_write >= self.min_interval
        # one that waits is copied: the live tensors move on
        self._pending[str(path)] = checkpoint if due else _copy_tensors(checkpoint)
        if due:
            self.flush()

    @contextlib.contextmanager
    def now(self) -> Iterator[None]:
        """Checkpoints saved within the block are written at once (last.ckpt)."""
        self._now = True
        try:
            yield
        finally:
            self._now = False

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


def check_checkpoint_fits(path: Path, module: torch.nn.Module, shown: int = 3) -> int:
    """ConfigError, in one line, if the checkpoint's parameters do not fit `module` (as
    Lightning would load them), before anything in the run directory is touched; Lightning's
    own error is a page of "size mismatch for …" after its loggers have started. Returns
    the checkpoint's step."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state, step = checkpoint.get("state_dict"), checkpoint.get("global_step", 0)
    if state is None:
        return step  # not a checkpoint of a LightningModule: Lightning says so itself
    model = module.state_dict()
    shapes = [
        f"{k} has shape {tuple(v.shape)} in the checkpoint, {tuple(model[k].shape)} in the model"
        for k, v in state.items()
        if k in model and tuple(v.shape) != tuple(model[k].shape)
    ]
    strict = getattr(module, "strict_loading", True)
    missing = [k for k in model if k not in state] if strict else []
    unexpected = [k for k in state if k not in model] if strict else []
    if not (shapes or missing or unexpected):
        return step

    def listed(items: list[str], sep: str = ", ") -> str:
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        return sep.join(items[:shown]) + more

    problems = [listed(shapes, "; ")] if shapes else []
    problems += [
        f"{what}: {listed(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected))
        if keys
    ]
    raise ConfigError(
        f"checkpoint {path} does not fit model config: {'; '.join(problems)}"
        " (allowed: the model config the checkpoint was trained with)"
    )
