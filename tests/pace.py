"""A user's callback by `_target_` (`+callbacks.pace._target_=pace.Pace`, tests/ on the
PYTHONPATH): a run that lasts in wall-clock time without spending the CPU on it."""

import time

import pytorch_lightning as pl


class Pace(pl.Callback):
    """Sleeps `seconds` after each training epoch; changes nothing the run computes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
