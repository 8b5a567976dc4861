"""Training through reglab's own path: compose → build → Trainer.fit, and reading back w, b.

The overrides put a linear model on a `reglab.theory` design under full-batch gradient
descent (one epoch = one step of size ε); `WeightRecorder` keeps w⁽τ⁾ for every step τ.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

import reglab
from reglab.engine.run import Run, build

QUIET = (
    "logger=none",
    "callbacks.model_checkpoint=null",
    "callbacks.weight_histograms=null",
    "callbacks.progress_bar=null",
    "threads=1",  # tiny matrices: extra threads only contend
)


def source(name: str) -> list[str]:
    """Overrides that train on `reglab.theory.<name>` (diabetes' config: a regression set)."""
    return [
        "data=diabetes",
        f"data.source._target_=reglab.theory.{name}",
        "~data.source.return_X_y",
    ]


def gradient_descent(lr: float, steps: int) -> list[str]:
    """Full-batch gradient descent of a linear model: one epoch = one step of size ε = lr."""
    return [
        "model=linear",
        "optimizer=sgd",
        "optimizer.momentum=0",
        f"optimizer.lr={lr}",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "data.batch_size=100000",
        f"trainer.max_steps={steps}",
        f"trainer.max_epochs={steps}",
    ]


class WeightRecorder(pl.Callback):
    """Copies the linear model's weight after every training chunk, keyed by optimizer step.

    Add it with `+callbacks.weight_recorder._target_=reglab.theory.WeightRecorder`; in full
    batch a chunk is one step, so `weights[τ]` is w⁽τ⁾ (and `weights[0]` the start).
    """

    def __init__(self) -> None:
        self.weights: dict[int, np.ndarray] = {}

    def _record(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.weights[trainer.global_step] = module.net.weight.detach().double().numpy()[0].copy()

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._record(trainer, module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self._record(trainer, module)


def fit(overrides: Sequence[str], output_dir: str | Path, from_zero: bool = False) -> Run:
    """Compose, build and fit a reglab run (optionally from w = 0, b = 0); return it."""
    run = build(reglab.compose([*QUIET, *overrides], output_dir=output_dir))
    if from_zero:
        with torch.no_grad():
            for p in run.module.net.parameters():
                p.zero_()
    run.trainer.fit(run.module, datamodule=run.dm)
    return run


def training_data(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The standardized training split reglab trained on, in float64 (y flattened)."""
    x, y = (t.cpu() for t in run.dm.splits["train"])  # on a GPU the splits live there
    return x.double().numpy(), y.double().numpy().reshape(len(y))


def linear_weights(run: Run) -> tuple[np.ndarray, float]:
    """w and b of a one-output linear model, in float64."""
    net = run.module.net
    return net.weight.detach().double().numpy()[0], float(net.bias.detach()[0])
