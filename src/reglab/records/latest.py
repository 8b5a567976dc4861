"""checkpoints/last.ckpt: the run's latest state, for resuming it after any interruption.

best.ckpt is θ* (the early-stopping callback's business); last.ckpt is where training *is*:
model, optimizer, loops, the early-stopping state with θ*, the data order. It is written

- every `every_min` minutes of training, at the next block of steps;
- at the end of an epoch, when writing it costs under `cheap` of the time since the last
  write (for small models: every epoch; for large ones, the clock above decides);
- when the run is signalled: SIGTERM (preemption, `scancel`), SIGINT (Ctrl-C), SIGUSR1 and
  SIGUSR2 (SLURM's warning before a time limit). Then the block of steps in progress ends,
  last.ckpt is written at that step, the handler that was installed before (e.g.
  submitit's, which requeues the job) is called, and `config.Interrupted` stops the run.

Writes go through `CheckpointWriter` at once (atomically), keeping the previous last.ckpt
as last.prev.ckpt: a file cut short by a crash leaves the one before it to resume from.
"""

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from reglab.config import Interrupted

log = logging.getLogger("reglab")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
LAST, PREVIOUS = "last.ckpt", "last.prev.ckpt"


class LatestCheckpoint(pl.Callback):
    """Keeps `dirpath`/last.ckpt the latest state: by the clock, at cheap epoch ends, on signals."""

    def __init__(self, dirpath: str | Path, every_min: float = 5.0, cheap: float = 0.02) -> None:
        self.dirpath = Path(dirpath)
        self.every_s = every_min * 60
        self.cheap = cheap
        self.received: int | None = None  # the signal, until the next block of steps ends
        self._chain: dict[int, Any] = {}  # the handlers ours replaced, called after saving
        self._last_write = time.monotonic()
        self._write_cost = 0.0  # seconds the last write took

    # -- signals -------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # the handlers from before fit (submitit's, say): Lightning adds its own at fit start
        self._chain = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning's own SIGTERM handler, which would end the run with exit status 0
        # at the epoch's end and no checkpoint; Lightning puts the handlers from before fit
        # back when fit ends
        self._last_write = time.monotonic()
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second signal: stop now, the way it would have
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signum

    # -- writes --------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._signalled(trainer):
            self.save(trainer)
            signum = self.received or signal.SIGTERM  # (DDP: another rank got it)
            self._call_chained(signum)
            raise Interrupted(signum, trainer.global_step, str(self.dirpath.parent))
        if time.monotonic() - self._last_write >= self.every_s:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._write_cost <= self.cheap * (time.monotonic() - self._last_write):
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """last.ckpt at this step, written now (the writer keeps the one before)."""
        start = time.monotonic()
        trainer.save_checkpoint(self.dirpath / LAST)
        flush = getattr(trainer.strategy.checkpoint_io, "flush", None)
        if flush is not None:
            flush()
        self._last_write = time.monotonic()
        self._write_cost = self._last_write - start

    def _signalled(self, trainer: pl.Trainer) -> bool:
        """Whether any process got a signal (under DDP every rank must save together)."""
        if trainer.world_size == 1:
            return self.received is not None
        return trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)

    def _call_chained(self, signum: int) -> None:
        chained = self._chain.get(signum)
        # Python's own Ctrl-C handler would raise KeyboardInterrupt mid-shutdown
        if callable(chained) and chained is not signal.default_int_handler:
            log.info("passing %s on to the handler installed before", signal.Signals(signum).name)
            chained(signum, None)

    def state_dict(self) -> dict[str, Any]:
        return {}  # what it keeps is about this process (the clock, signals), not the run
