"""What a person sees while a run trains: a live bar on a terminal, one line per epoch elsewhere.

Sweeps, CI and SLURM write to files, where a redrawn progress bar becomes megabytes of
carriage returns; there each epoch is one line through the `reglab` logger (so it also
lands in Hydra's `train.log`).
"""

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

log = logging.getLogger("reglab")


def _worth_a_glance(key: str) -> bool:
    split, name, *task_metric = key.split("/")
    if task_metric:  # multi-task `split/<task>/<metric>`: each task's validation metric
        return split == "val" and task_metric != ["loss"]
    member = name.startswith("member_") and not key.endswith("_mean")  # bagging: the mean
    return split in ("train", "val") and key != "train/data_loss" and not member


def _shown(trainer: pl.Trainer) -> dict[str, float]:
    """The scalars worth a glance: losses and metrics of the training and validation sets."""
    return {
        k: float(v)
        for k, v in sorted(trainer.callback_metrics.items())
        if "/" in k and _worth_a_glance(k) and v.numel() == 1
    }


class LiveProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, showing the metrics the module publishes (it bypasses self.log)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return {**super().get_metrics(trainer, pl_module), **_shown(trainer)}


class EpochLineProgressBar(ProgressBar):
    """`epoch 3/20  step 51  train/loss 0.21  val/loss 0.25  val/acc 0.93  (0.04 s)`."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        values = "  ".join(f"{k} {v:.4g}" for k, v in _shown(trainer).items())
        epochs = f"{trainer.current_epoch + 1}" + (
            f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        )
        elapsed = time.perf_counter() - self._start
        log.info(f"epoch {epochs}  step {trainer.global_step}  {values}  ({elapsed:.2f} s)")


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """A tqdm bar when stdout is a terminal, one line per epoch otherwise."""
    if sys.stdout.isatty():
        return LiveProgressBar(refresh_rate=refresh_rate)
    return EpochLineProgressBar()
