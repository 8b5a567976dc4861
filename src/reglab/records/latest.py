"""checkpoints/last.ckpt: the run's latest state, for resuming it after any interruption.

best.ckpt is θ* (the early-stopping callback's business); last.ckpt is where training *is*:
model, optimizer, loops, the early-stopping state with θ*, the data order. It is written

- every `every_min` minutes of training, at the next block of steps;
- at the end of an epoch, when writing it costs under `cheap` of the time since the last
  write and at least `min_interval` seconds have passed (`trainer.checkpoint_min_interval`:
  epochs of seconds get one each; for large models the clock above decides; a run of
  20-ms epochs would otherwise spend a tenth of its time writing last.ckpt);
- at the end of the last epoch, so a finished run's last.ckpt is where it finished
  (before early stopping puts θ* back: resuming with more epochs continues from there);
- when the run is signalled: SIGTERM (preemption, `scancel`), SIGINT (Ctrl-C), SIGUSR1 and
  SIGUSR2 (SLURM's warning before a time limit). Then the block of steps in progress ends,
  last.ckpt is written at that step and `config.Interrupted` stops the run; once the run
  has recorded it (run.json), the handler that was installed before is called (e.g.
  submitit's, which requeues the job: SLURM then ends the process).

Writes go through `CheckpointWriter` at once (atomically), keeping the previous last.ckpt
as last.prev.ckpt: a file cut short by a crash leaves the one before it to resume from.
"""

import contextlib
import functools
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch

from reglab.config import Interrupted

log = logging.getLogger("reglab")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
LAST, PREVIOUS = "last.ckpt", "last.prev.ckpt"


class LatestCheckpoint(pl.Callback):
    """Keeps `dirpath`/last.ckpt the latest state: by the clock, at cheap epoch ends, on signals."""

    def __init__(
        self,
        dirpath: str | Path,
        every_min: float = 5.0,
        cheap: float = 0.02,
        min_interval: float = 0.0,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_s = every_min * 60
        self.cheap, self.min_interval = cheap, min_interval
        self.received: int | None = None  # the signal, until the next block of steps ends
        self._chain: dict[int, Any] = {}  # the handlers ours replaced, called after the record
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
        signalled, due = self._decide(trainer, time.monotonic() - self._last_write >= self.every_s)
        if signalled:
            self.save(trainer)
            signum = self.received or signal.SIGTERM  # (DDP: another rank got it)
            chained = functools.partial(self._call_chained, signum)
            raise Interrupted(signum, trainer.global_step, str(self.dirpath.parent), chained)
        if due:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        since = time.monotonic() - self._last_write
        cheap = self._write_cost <= self.cheap * since and since >= self.min_interval
        if self._decide(trainer, cheap or _last_epoch(trainer))[1]:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """last.ckpt at this step, written now (the writer keeps the one before)."""
        start = time.monotonic()
        now = getattr(trainer.strategy.checkpoint_io, "now", contextlib.nullcontext)
        with now():  # CheckpointWriter: written at once (and what waits with it), not copied
            trainer.save_checkpoint(self.dirpath / LAST)
        self._last_write = time.monotonic()
        self._write_cost = self._last_write - start

    def _decide(self, trainer: pl.Trainer, due: bool) -> tuple[bool, bool]:
        """(whether any process got a signal, whether a write is due by rank 0's clock).
        Under DDP every rank must save together (a checkpoint is a collective), so both
        are agreed on in one all-reduce; rank 0's clocks decide what is due."""
        if trainer.world_size == 1:
            return self.received is not None, due
        votes = torch.tensor([self.received is not None, due and trainer.is_global_zero])
        votes = votes.float().to(trainer.strategy.root_device)
        votes = trainer.strategy.reduce(votes, reduce_op="sum")
        return bool(votes[0] > 0), bool(votes[1] > 0)

    def _call_chained(self, signum: int) -> None:
        chained = self._chain.get(signum)
        # Python's own Ctrl-C handler would raise KeyboardInterrupt mid-shutdown
        if callable(chained) and chained is not signal.default_int_handler:
            log.info("passing %s on to the handler installed before", signal.Signals(signum).name)
            chained(signum, None)

    def state_dict(self) -> dict[str, Any]:
        return {}  # what it keeps is about this process (the clock, signals), not the run


def _last_epoch(trainer: pl.Trainer) -> bool:
    """Whether training ends after this epoch: stopped (early stopping's validation came
    before this hook), or at `max_steps` or `max_epochs`."""
    if trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step:
        return True
    return trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
