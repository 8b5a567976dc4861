"""The Trainer of a run, its callbacks and loggers: Lightning's batches are chunks of k
optimizer steps, chosen so that a validation every n optimizer steps (n of Algorithm 7.1)
and every epoch's end fall on chunk boundaries (`build_trainer`, `chunk_steps`).
"""

import logging
import math
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.plugins.environments import SLURMEnvironment

from reglab.data.datamodule import DataModule
from reglab.engine import distributed
from reglab.engine.batchnorm import SyncBatchNorm
from reglab.engine.speed import NetworkSpeed
from reglab.records import CheckpointWriter

log = logging.getLogger("reglab")

# Trainer keys reglab applies itself (manual optimization), not Lightning
REGLAB_TRAINER_KEYS = (
    "val_check_interval",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "checkpoint_min_interval",
    "checkpoint_every_min",
    "sync_batchnorm",
    "channels_last",
    "compile",
)


def validation_schedule(steps_per_epoch: int, val_check_interval: int | float | None) -> int:
    """n of Algorithm 7.1: optimizer steps between validations."""
    if val_check_interval is None:
        return steps_per_epoch
    if isinstance(val_check_interval, float):
        return max(1, round(val_check_interval * steps_per_epoch))
    return val_check_interval


def chunk_steps(n: int, steps: int, members: int = 1) -> int:
    """Optimizer steps per chunk: the largest divisor of gcd(n, steps) whose chunk of k
    members' minibatches holds at most an epoch's rows. Vectorized bagging gathers each
    member's rows a chunk at a time, and a chunk of a whole epoch would be k copies of the
    training split; one model's chunk is at most one copy whatever its size."""
    chunk = math.gcd(n, steps)
    fits = [d for d in range(1, chunk + 1) if chunk % d == 0 and d * members <= steps]
    return max(fits, default=1)


def build_trainer(
    cfg: DictConfig,
    dm: DataModule,
    callbacks: list[pl.Callback],
    loggers: list[pl.loggers.Logger],
    **overrides: Any,
) -> pl.Trainer:
    """The Trainer, with validation every n optimizer steps expressed in Lightning's batches.

    Each Lightning batch is a chunk of k = gcd(n, steps per epoch) optimizer steps, so a
    validation (every n/k chunks) and an epoch's end (every steps/k chunks) both fall on
    chunk boundaries and n stays exact. Under DDP k = 1: each process then gets its part of
    one global minibatch per Lightning batch (data.ChunkLoader), which the module takes as
    one step whatever the part's size. (DDP would synchronize k > 1 steps too: see
    engine/distributed.py.)
    """
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in REGLAB_TRAINER_KEYS:
        kwargs.pop(key, None)
    n = validation_schedule(dm.steps_per_epoch, cfg.trainer.val_check_interval)
    parallel = distributed.world_size(cfg) > 1
    dm.steps_per_chunk = 1 if parallel else chunk_steps(n, dm.steps_per_epoch, dm.members or 1)
    sync = [SyncBatchNorm()] if parallel and cfg.trainer.get("sync_batchnorm") else []
    if parallel:
        callbacks = [*callbacks, distributed.RankSeeds(cfg.seed), *sync]
    speed = {key: bool(cfg.trainer.get(key)) for key in ("channels_last", "compile")}
    dm.channels_last = speed["channels_last"]  # the image batches' layout (data/placement.py)
    if any(speed.values()):
        callbacks = [*callbacks, NetworkSpeed(**speed)]  # the network's (engine/speed.py)
    kwargs.update(
        callbacks=callbacks,
        logger=loggers or False,
        val_check_interval=n // dm.steps_per_chunk,
        check_val_every_n_epoch=None,
        limit_val_batches=kwargs.get("limit_val_batches") if dm.has("val") else 0,
        num_sanity_val_steps=0,
        plugins=[
            CheckpointWriter(
                cfg.trainer.get("checkpoint_min_interval") or 0.0, keep_previous=("last.ckpt",)
            )
        ]
        # under SLURM, submitit requeues preempted jobs; Lightning must not fight it over the
        # signals (Lightning issue 14893), so its own requeueing is off
        + ([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])
        # torch's SyncBatchNorm refuses CPU processes; reglab's also syncs those
        + sync,
        # what the callbacks group lists is what runs: no default checkpointer or bar added
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )
    kwargs.update(overrides)
    return instantiate(kwargs)


def build_callbacks(
    cfg: DictConfig, has_val: bool, skip: tuple[str, ...] = ()
) -> list[pl.Callback]:
    callbacks = []
    for name, conf in (cfg.callbacks or {}).items():
        if conf is None or name in skip:
            continue
        if not has_val and name == "early_stopping":
            log.info("no validation split (data.val_fraction=0): early stopping is off")
            continue
        if not has_val and "monitor" in conf:
            conf = OmegaConf.merge(conf, {"monitor": None})  # then best.ckpt = the last epoch
        callbacks.append(instantiate(conf))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[pl.loggers.Logger]:
    return [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
