"""Train one run from its config: `python train.py regularizer=l1`.

This file only wires things together: `run.build` composes the pieces, the protocol
(Algorithm 7.1, 7.2 or 7.3, as the ensemble strategy has it) trains them, and the summary
goes to metrics.json, predictions.npz, the loggers and the console. The path of a number
from config to TensorBoard is drawn in docs/architecture.md.
"""

import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from reglab.config import Interrupted, RunFailed
from reglab.engine import distributed
from reglab.engine.protocols import EarlyStopping71, Outcome
from reglab.engine.run import Run, build
from reglab.objectives.evaluation import NonFiniteLossError
from reglab.records import (
    close_loggers,
    flat_hparams,
    format_table,
    learning_curve,
    log_figure,
    log_final,
    log_run_files,
    reliability,
    save_png,
    ui_commands,
    write_json,
    write_npz,
)

log = logging.getLogger("reglab")


def test(outcome: Outcome, run: Run) -> dict[str, float]:
    """Test metrics of the parameters the protocol ended with (θ* under Algorithm 7.1)."""
    if not run.dm.has("test"):
        return {}
    outcome.module.test_results = {}
    outcome.trainer.test(outcome.module, datamodule=run.dm, verbose=False)
    return {k: float(v) for k, v in outcome.module.test_results.items()}


def final_validation(outcome: Outcome, run: Run) -> dict[str, float]:
    """`val/final_loss` and `val/final_<acc|mse>` of the parameters the run ended with: what
    the sweep report averages over the folds of k-fold cross-validation. None when the last
    phase trained on the validation split (7.2, 7.3), which then measures nothing."""
    if not run.dm.has("val") or run.dm.train_on_val:
        return {}
    values = outcome.module.evaluate(*run.dm.splits["val"])
    return {f"val/final_{key}": value for key, value in values.items()}


def save_learning_curve(outcome: Outcome, metrics: dict[str, Any], run_dir: Path) -> None:
    fig = learning_curve.plot(
        outcome.module.history,
        metrics.get("best_step"),
        metrics.get("stopped_step"),
        outcome.phases,
        title=f"Learning curve: {run_dir.name}",
    )
    png = save_png(fig, run_dir / "learning_curve.png")
    log_figure(outcome.trainer.loggers, "learning_curve", png, outcome.module.step)


def save_test_records(outcome: Outcome, run: Run) -> None:
    """predictions.npz (the test set's predictions, targets and row numbers) and, for a
    classifier, reliability.png (also to TensorBoard); nothing without a test split."""
    module = outcome.module
    arrays = module.prediction_arrays()
    if not arrays:
        return
    # the test batches go in order: `trainer.limit_test_batches` keeps the first rows
    index = run.dm.rows["test"][: len(arrays["targets"])]
    into = "official_test" if run.dm.official_test else "source"  # which rows index counts
    write_npz(run.run_dir / "predictions.npz", {**arrays, "index": index, "index_into": into})
    panels = module.reliability_bins()
    if panels:
        fig = reliability.plot(panels, title=f"Reliability: {run.run_dir.name}")
        png = save_png(fig, run.run_dir / "reliability.png")
        log_figure(outcome.trainer.loggers, "reliability", png, module.step)


def stop(run: Run, trainer: pl.Trainer, record: dict[str, Any], seconds: float) -> None:
    """A run that ends early keeps what it wrote: run.json says why, loggers are closed."""
    if trainer.is_global_zero:
        record = {**record, "seconds": round(seconds, 3), "ignored": run.ignored}
        write_json(run.run_dir / "run.json", record)
    close_loggers(trainer.loggers, "failed" if record["status"] == "failed" else "KILLED")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run described by `cfg`; return its final metrics (also in metrics.json)."""
    if distributed.needs_launch(cfg):  # trainer=ddp on this machine: start the other ranks
        return distributed.launch(train, cfg)
    run = build(cfg)
    configured = instantiate(cfg.protocol) if cfg.get("protocol") else EarlyStopping71()
    protocol = run.ensemble.protocol(configured)  # sequential bagging has its own
    start = time.perf_counter()
    trainer: pl.Trainer = run.trainer
    try:
        outcome = protocol.run(run)
        trainer = outcome.trainer
        fit_seconds = round(time.perf_counter() - start, 3)
        metrics = {**test(outcome, run), **outcome.metrics, **outcome.module.weight_stats()}
        metrics |= final_validation(outcome, run)
        metrics |= outcome.module.constraint_stats(*run.dm.splits["train"])
    except NonFiniteLossError as err:
        record = {"status": "failed", "error": str(err)}
        stop(run, trainer, record, time.perf_counter() - start)
        raise RunFailed(f"{err}; best checkpoint and logs kept in {run.run_dir}") from err
    except Interrupted as err:  # last.ckpt holds the state at err.step (records.latest)
        record = {"status": "interrupted", "signal": signal.Signals(err.signum).name}
        stop(run, trainer, {**record, "step": err.step}, time.perf_counter() - start)
        err.pass_on()  # e.g. submitit's handler: requeue the job (SLURM then ends this process)
        raise
    except SIGTERMException as err:  # Lightning's own handler (a protocol's phase 2)
        record = {"status": "interrupted", "signal": "SIGTERM", "error": "no checkpoint written"}
        stop(run, trainer, record, time.perf_counter() - start)
        raise RunFailed(f"interrupted by SIGTERM; logs kept in {run.run_dir}") from err
    seconds = round(time.perf_counter() - start, 3)

    if len(outcome.phases) > 1:  # the parameters phase 2 ended with, beside phase 1's θ*
        trainer.save_checkpoint(run.run_dir / "checkpoints" / "final.ckpt")
        trainer.strategy.checkpoint_io.teardown()
    if not trainer.is_global_zero:  # trainer=ddp: rank 0 writes the run's records
        return metrics
    save_learning_curve(outcome, metrics, run.run_dir)
    save_test_records(outcome, run)
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else None
    hparams = flat_hparams(cfg, choices)
    logged = getattr(outcome.module, "test_results", {})
    log_final(trainer.loggers, hparams, metrics, outcome.module.step, logged)
    write_json(run.run_dir / "metrics.json", metrics)
    timing = {"seconds": seconds, "fit_seconds": fit_seconds, "threads": torch.get_num_threads()}
    write_json(run.run_dir / "run.json", {"status": "completed", **timing, "ignored": run.ignored})
    log_run_files(trainer.loggers, run.run_dir)  # MLflow's artifacts: the files just written
    close_loggers(trainer.loggers)
    log.info("final metrics:\n%s", format_table(metrics))
    log.info("run directory: %s", run.run_dir)
    log.info("inspect it with: tensorboard --logdir %s", run.run_dir)
    for command in ui_commands(trainer.loggers):
        log.info("or with: %s", command)
    return metrics
