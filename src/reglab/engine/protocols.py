"""Early-stopping protocols: how the validation set is used (Goodfellow et al., §7.8).

    Algorithm 7.1  `EarlyStopping71`  train on sub-train, validate every n steps, stop after
                                      p validations without improvement, keep θ* and i*
    Algorithm 7.2  `RetrainAll`       7.1 to find i*; fresh θ; train on all of X^(train)
                                      (sub-train + validation) for exactly i* steps
    Algorithm 7.3  `ContinueToLoss`   7.1 (keeping θ*); ε ← J(θ*, X^(subtrain)); continue on
                                      all of X^(train), checking every n steps, until
                                      J(θ, X^(valid)) < ε (or `max_extra_steps` have passed)

A protocol runs the phases and returns what was trained last, with its own metrics. The
global step keeps counting across phases (module.step_offset), so TensorBoard shows one
timeline, and `protocol/phase` marks where each phase starts.
"""

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl

from reglab.engine.run import Run, build_module
from reglab.engine.trainer import build_callbacks, build_trainer
from reglab.objectives.base import RegLabModule
from reglab.regularization.early_stopping import EarlyStopping

log = logging.getLogger("reglab")


@dataclass
class Outcome:
    """The module and Trainer to test, the protocol's own metrics, and where phases began."""

    module: RegLabModule
    trainer: pl.Trainer
    metrics: dict[str, Any] = field(default_factory=dict)
    phases: list[tuple[int, str]] = field(default_factory=list)  # (first step, name)


def _stopper(trainer: pl.Trainer) -> EarlyStopping | None:
    return next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)


def _mark_phase(module: RegLabModule, loggers: list, phase: int) -> None:
    for logger in loggers:
        logger.log_metrics({"protocol/phase": phase}, module.step_offset)


class EarlyStopping71:
    """Algorithm 7.1 alone (the default): fit once, end with θ* (see early_stopping.py)."""

    name = "early_stopping"

    def run(self, run: Run) -> Outcome:
        # weights_only: a checkpoint file cannot run code when it is loaded
        run.trainer.fit(run.module, datamodule=run.dm, ckpt_path=run.ckpt_path, weights_only=True)
        stopper = _stopper(run.trainer)
        metrics = {}
        if stopper is not None:
            metrics = {
                "val/best": stopper.best_value,
                "best_step": stopper.best_step,
                "stopped_step": stopper.stopped_step,
            }
        else:
            metrics = {"stopped_step": run.trainer.global_step}
        return Outcome(run.module, run.trainer, metrics, [(0, "7.1")])

    def _phase_one(self, run: Run) -> tuple[Outcome, EarlyStopping]:
        if not run.dm.has("val"):
            raise ValueError("needs a validation split")  # config.validate says it first
        outcome = EarlyStopping71.run(self, run)
        stopper = _stopper(run.trainer)
        assert stopper is not None, "the protocol needs callbacks.early_stopping"
        phase1 = run.module.evaluate(*run.dm.splits["test"]) if run.dm.has("test") else {}
        outcome.metrics.update({f"phase1/test/{k}": v for k, v in phase1.items()})
        return outcome, stopper

    def _phase_two_trainer(self, run: Run, **overrides: Any) -> pl.Trainer:
        # resume= continues phase 1 (last.ckpt is its latest state), so phase 2 writes none
        skip = ("early_stopping", "model_checkpoint", "latest_checkpoint")
        callbacks = build_callbacks(run.cfg, True, skip=skip)
        return build_trainer(
            run.cfg,
            run.dm,
            callbacks + overrides.pop("callbacks", []),
            run.trainer.loggers,
            max_epochs=-1,
            **overrides,
        )


class RetrainAll(EarlyStopping71):
    """Algorithm 7.2: find i* with 7.1, then retrain fresh parameters on all data for i* steps.

    The new θ is drawn from a new seed stream (seed + 1), so it differs from 7.1's θ_o.
    metrics: best_step = i*, protocol/retrain_steps = the steps phase 2 actually ran (= i*),
    phase1/test/* = θ*'s test metrics; test/* are those of the retrained parameters.
    """

    name = "retrain_all"

    def run(self, run: Run) -> Outcome:
        outcome, stopper = self._phase_one(run)
        i_star, offset = stopper.best_step, run.trainer.global_step
        pl.seed_everything(run.cfg.seed + 1, workers=True, verbose=False)
        run.dm.train_on_all()
        module = build_module(run.cfg, run.dm)
        module.step_offset = offset
        module.history = list(run.module.history)
        trainer = self._phase_two_trainer(run, max_steps=i_star, limit_val_batches=0)
        _mark_phase(module, trainer.loggers, 2)
        if i_star > 0:
            trainer.fit(module, datamodule=run.dm)
        outcome.metrics["protocol/retrain_steps"] = trainer.global_step
        log.info("7.2: retrained fresh parameters on all training data for %d steps", i_star)
        return Outcome(module, trainer, outcome.metrics, [(0, "7.1"), (offset, "7.2 retrain")])


class StopBelow(pl.Callback):
    """Stop at the first validation whose `monitor` is below `target` (Algorithm 7.3's test)."""

    def __init__(self, target: float, monitor: str = "val/loss") -> None:
        self.target, self.monitor = target, monitor
        self.checks: list[tuple[int, float]] = []  # (global step, value)
        self.met_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = float(trainer.callback_metrics[self.monitor])
        self.checks.append((trainer.global_step, value))
        if value < self.target:
            self.met_at = trainer.global_step
            trainer.should_stop = True


class ContinueToLoss(EarlyStopping71):
    """Algorithm 7.3: keep θ* from 7.1, set ε = J(θ*, sub-train), and continue on all of the
    training data until the validation loss J(θ, X^(valid)) < ε, checking every n steps.

    Phase 2 continues the optimizer too (its state as training stopped); `max_extra_steps`
    bounds it.
    metrics: protocol/epsilon, protocol/extra_steps, protocol/target_met (1 or 0).
    """

    name = "continue_to_loss"

    def __init__(self, max_extra_steps: int = 10_000) -> None:
        self.max_extra_steps = max_extra_steps

    def run(self, run: Run) -> Outcome:
        outcome, _ = self._phase_one(run)
        module, offset = run.module, run.trainer.global_step
        epsilon = module.evaluate(*run.dm.splits["train"])["loss"]  # J(θ*, X^(subtrain))
        start_val = module.evaluate(*run.dm.splits["val"])["loss"]
        run.dm.train_on_all()
        module.step_offset = offset
        module.carried_optimizer_state = copy.deepcopy(run.trainer.optimizers[0].state_dict())
        stop = StopBelow(epsilon)
        trainer = self._phase_two_trainer(run, max_steps=self.max_extra_steps, callbacks=[stop])
        _mark_phase(module, trainer.loggers, 2)
        if start_val < epsilon:  # "while J(valid) > ε": already there, no step to take
            stop.met_at = 0
        else:
            trainer.fit(module, datamodule=run.dm)
        met = stop.met_at is not None
        if not met:
            last = stop.checks[-1][1] if stop.checks else start_val
            log.warning(
                "7.3: validation loss never fell below ε = %.4g within protocol.max_extra_steps"
                " = %d (last: %.4g)",
                epsilon,
                self.max_extra_steps,
                last,
            )
        outcome.metrics.update(
            {
                "protocol/epsilon": epsilon,
                "protocol/extra_steps": trainer.global_step,
                "protocol/target_met": int(met),
                "stopped_step": offset + trainer.global_step,
            }
        )
        return Outcome(module, trainer, outcome.metrics, [(0, "7.1"), (offset, "7.3 continue")])
