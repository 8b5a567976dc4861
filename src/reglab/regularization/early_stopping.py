"""Early stopping, Algorithm 7.1 of Goodfellow et al.: "the early stopping meta-algorithm".

    θ ← θ_o; i ← 0; j ← 0; v ← ∞; θ* ← θ; i* ← i
    while j < p:
        run the training algorithm for n steps; i ← i + n
        v' ← ValidationSetError(θ)
        if v' < v: j ← 0; θ* ← θ; i* ← i; v ← v'
        else:      j ← j + 1
    the best parameters are θ*, the best number of training steps is i*

Lightning's EarlyStopping already is the loop over j, p and v (strict improvement, counted
per validation); `engine.trainer.build_trainer` makes every validation fall
n = `trainer.val_check_interval` optimizer steps apart. What it lacks is θ* and i*: this
subclass remembers both at every improvement and, when training ends, loads θ* back into
the module, so whatever runs next (testing, saving, the next protocol phase) sees the best
parameters, not the last ones.
"""

import functools
import logging
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger("reglab")


class EarlyStopping(pl.callbacks.EarlyStopping):
    """Algorithm 7.1: stop after `patience` validations without improvement, restore θ*."""

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int = 10,
        mode: str = "min",
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        # validate-based, not epoch-based: the check happens exactly at each validation
        super().__init__(
            monitor=monitor,
            patience=patience,
            mode=mode,
            min_delta=min_delta,
            check_on_train_epoch_end=False,
            check_finite=True,
        )
        self.restore_best = restore_best
        self.best_step = 0  # i*
        self.stopped_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None  # θ*

    @functools.cached_property
    def state_key(self) -> str:
        """Lightning's key (from monitor and mode), built once: Lightning formats it into a
        profiler label at every hook call of every callback."""
        return super().state_key

    def _remember(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.best_step = trainer.global_step
        self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is None:  # θ* ← θ_o, i* ← 0 (unless resumed)
            self._remember(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = self.best_score.clone()
        super().on_validation_end(trainer, pl_module)
        if not torch.equal(self.best_score, before):  # v' < v
            self._remember(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stopped_step = trainer.global_step
        if not torch.isfinite(self.best_score):
            # no validation ran (n > the steps trained): θ* would be θ_o, which no one wants
            log.warning(
                "no validation ran in %d steps (trainer.val_check_interval is larger):"
                " keeping the last parameters, not θ*",
                trainer.global_step,
            )
            self.best_step = trainer.global_step
            return
        if self.restore_best and self.best_state is not None:
            pl_module.load_state_dict(self.best_state)

    @property
    def best_value(self) -> float:
        return float(self.best_score)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_step": self.best_step, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.best_step = state.pop("best_step", 0)
        self.best_state = state.pop("best_state", None)
        super().load_state_dict(state)
