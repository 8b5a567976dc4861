"""Compose a run from the config and train it: `python train.py regularizer=l1`.

This file only wires things together (data → model → regularizer → module → Trainer) and
writes the run's summary; the modules compute. The path of a number from config to
TensorBoard is drawn in docs/architecture.md.
"""

import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from reglab.config import CONFIG_DIR, ConfigError, validate
from reglab.data import DataModule
from reglab.early_stopping import EarlyStopping
from reglab.module import NonFiniteLossError, RegLabModule
from reglab.records import (
    CheckpointWriter,
    close_loggers,
    flat_hparams,
    format_table,
    log_final,
    write_json,
)

log = logging.getLogger("reglab")


class RunFailed(RuntimeError):
    """Training stopped on an error after the run directory was set up; logs are kept."""


def _quiet_libraries() -> None:
    # Lightning's device banner and product tips are INFO; our own lines carry what matters
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",  # in-memory chunks need no workers
        ".*exists and is not empty.*",  # the run directory Hydra just made (holds .hydra/)
        ".*LeafSpec.*",
        ".*`isinstance.*treespec.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def validation_schedule(steps_per_epoch: int, val_check_interval: int | float | None) -> int:
    """n of Algorithm 7.1: optimizer steps between validations."""
    if val_check_interval is None:
        return steps_per_epoch
    if isinstance(val_check_interval, float):
        return max(1, round(val_check_interval * steps_per_epoch))
    return val_check_interval


def build_trainer(cfg: DictConfig, dm: DataModule, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer, with validation every n optimizer steps expressed in Lightning's batches.

    Each Lightning batch is a chunk of k = gcd(n, steps per epoch) optimizer steps, so a
    validation (every n/k chunks) and an epoch's end (every steps/k chunks) both fall on
    chunk boundaries and n stays exact.
    """
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    reglab_keys = ("val_check_interval", "gradient_clip_val", "gradient_clip_algorithm")
    for key in (*reglab_keys, "checkpoint_min_interval"):
        kwargs.pop(key, None)  # reglab handles these itself (manual optimization)
    n = validation_schedule(dm.steps_per_epoch, cfg.trainer.val_check_interval)
    dm.steps_per_chunk = math.gcd(n, dm.steps_per_epoch)
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    return instantiate(
        kwargs,
        callbacks=callbacks,
        logger=loggers or False,
        val_check_interval=n // dm.steps_per_chunk,
        check_val_every_n_epoch=None,
        limit_val_batches=kwargs.get("limit_val_batches") if dm.has("val") else 0,
        num_sanity_val_steps=0,
        plugins=[CheckpointWriter(cfg.trainer.get("checkpoint_min_interval") or 0.0)],
        # what the callbacks group lists is what runs: no default checkpointer or bar added
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )


def build_callbacks(cfg: DictConfig, has_val: bool) -> list[pl.Callback]:
    callbacks = []
    for name, conf in (cfg.callbacks or {}).items():
        if conf is None:
            continue
        if not has_val and name == "early_stopping":
            log.info("no validation split (data.val_fraction=0): early stopping is off")
            continue
        if not has_val and "monitor" in conf:
            conf = OmegaConf.merge(conf, {"monitor": None})  # then best.ckpt = the last epoch
        callbacks.append(instantiate(conf))
    return callbacks


def summarize(module: RegLabModule, trainer: pl.Trainer, test: dict[str, float]) -> dict[str, Any]:
    """The flat metrics of metrics.json (what a sweeper optimizes)."""
    metrics: dict[str, Any] = dict(test)
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if stopper is not None:
        metrics["val/best"] = stopper.best_value
        metrics["best_step"] = stopper.best_step
        metrics["stopped_step"] = stopper.stopped_step
    else:
        metrics["stopped_step"] = trainer.global_step
    metrics.update(module.weight_stats())
    return metrics


@dataclass
class Run:
    """Everything one run is made of, composed from its config but not yet trained."""

    cfg: DictConfig
    dm: DataModule
    module: RegLabModule
    trainer: pl.Trainer
    run_dir: Path


def build(cfg: DictConfig) -> Run:
    """Validate `cfg`, seed, and compose data → model → regularizer → module → Trainer."""
    validate(cfg)
    _quiet_libraries()
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    dm: DataModule = instantiate(cfg.data).prepare()
    net = instantiate(cfg.model, in_features=dm.n_features, out_features=dm.n_outputs)
    scheduler = cfg.get("scheduler") or {}
    module = RegLabModule(
        net=net,
        regularizer=instantiate(cfg.regularizer),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler.get("scheduler")) if scheduler else None,
        scheduler_interval=scheduler.get("interval", "epoch"),
        task=dm.task,
        n_outputs=dm.n_outputs,
        batch_size=dm.batch_size,
        gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
        gradient_clip_algorithm=cfg.trainer.get("gradient_clip_algorithm") or "norm",
    )
    trainer = build_trainer(cfg, dm, build_callbacks(cfg, dm.has("val")))
    return Run(cfg, dm, module, trainer, run_dir)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run described by `cfg`; return its final metrics (also in metrics.json)."""
    run = build(cfg)
    dm, module, trainer, run_dir = run.dm, run.module, run.trainer, run.run_dir
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm)
        fit_seconds = round(time.perf_counter() - start, 3)
        if dm.has("test"):
            trainer.test(module, datamodule=dm, verbose=False)
        test = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    except NonFiniteLossError as err:
        seconds = round(time.perf_counter() - start, 3)
        failure = {"status": "failed", "error": str(err), "seconds": seconds}
        write_json(run_dir / "run.json", failure)
        close_loggers(trainer.loggers)
        raise RunFailed(f"{err}; best checkpoint and logs kept in {run_dir}") from err
    seconds = round(time.perf_counter() - start, 3)

    metrics = summarize(module, trainer, {k: float(v) for k, v in test.items()})
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else None
    log_final(trainer.loggers, flat_hparams(cfg, choices), metrics, trainer.global_step)
    close_loggers(trainer.loggers)
    write_json(run_dir / "metrics.json", metrics)
    timing = {"seconds": seconds, "fit_seconds": fit_seconds}
    write_json(run_dir / "run.json", {"status": "completed", **timing})
    log.info("final metrics:\n%s", format_table(metrics))
    log.info("run directory: %s", run_dir)
    log.info("inspect it with: tensorboard --logdir %s", run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float | None:
    with open_dict(cfg):
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = train(cfg)
    except (ConfigError, RunFailed) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records the failed job and the sweep goes on
        print(f"reglab: error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
    return metrics.get(cfg.get("optimized_metric") or "", None)


def main() -> None:
    _hydra_entry()


if __name__ == "__main__":
    main()
