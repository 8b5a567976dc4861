"""Backward passes and optimizer steps at the cost of torch's own, when nothing listens.

`manual_backward` and `LightningOptimizer.step` run a small network's step through
Lightning's strategy and precision plugin, a closure, and the `on_before_backward`,
`on_after_backward` and `on_before_optimizer_step` hooks of every callback and the module:
about 0.5 ms of Python per optimizer step here, as much as the step's own kernels for the
default digits MLP. With one device, unscaled gradients (full precision, or bf16-mixed:
its autocast wraps the whole training step, and bfloat16 needs no loss scale) and none of
those hooks overridden, all that machinery does is call `loss.backward()` and
`optimizer.step()`, which is what the direct path calls; the step is still counted through
the optimizer wrapper's own before/after-step callbacks (Lightning's manual loop sets them:
`global_step` and progress stay exact). Anything else (DDP, a listening hook) takes
Lightning's path.

`clip_gradients` clips as Lightning's full-precision plugin does whenever gradients are
unscaled: Lightning's mixed-precision plugin refuses fused optimizers (reglab's Adam) for
any clipping, a check that only a loss scale (16-mixed) needs.
"""

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities import GradClipAlgorithmType
from torch import Tensor

HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _overrides(obj: object, base: type, names: tuple[str, ...] = HOOKS) -> bool:
    return any(getattr(type(obj), name) is not getattr(base, name) for name in names)


def unscaled(plugin: Precision) -> bool:
    """Whether gradients arrive as backward made them: full precision, or autocast without
    a loss scale (bf16-mixed)."""
    if type(plugin) is MixedPrecision:
        return plugin.scaler is None
    return type(plugin) is Precision


def clip_gradients(module: pl.LightningModule, opt: Any, value: float, algorithm: str) -> None:
    """Clip the gradients of `opt`'s parameters (norm or value), as full precision does
    when they are unscaled (see the module docstring); else Lightning's clipping."""
    plugin = module.trainer.precision_plugin
    if unscaled(plugin):
        Precision.clip_gradients(plugin, opt, value, GradClipAlgorithmType(algorithm))
    else:
        module.clip_gradients(opt, value, algorithm)


def direct_path_allowed(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether Lightning's backward/step machinery would do nothing but call torch."""
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and unscaled(trainer.strategy.precision_plugin)
        and not _overrides(module, pl.LightningModule)
        and not any(_overrides(cb, pl.Callback) for cb in trainer.callbacks)
    )


class DirectSteps:
    """Mixin of a manually optimized LightningModule: `backward_` and `step_` take the
    direct path when `direct_path_allowed` held at the start of training."""

    _direct = False
    _plain = False  # whether training steps go through `plain_steps` (set at fit start)

    def on_fit_start(self) -> None:
        self._direct = direct_path_allowed(self.trainer, self)

    def backward_(self, loss: Tensor) -> None:
        if self._direct:
            loss.backward()
        else:
            self.manual_backward(loss)

    def step_(self, opt: Any) -> None:
        """One optimizer step of `opt` (a LightningOptimizer), counted by Lightning."""
        if not self._direct:
            opt.step()
            return
        opt._on_before_step()  # the manual loop's: a step is ready (progress, profiler)
        opt.optimizer.step()
        opt._on_after_step()  # …and completed: `global_step` counts it

    def plain_steps(self, opt: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[list, list]:
        """The chunk's optimizer steps when nothing acts on a step but J's gradient and the
        optimizer (the module's `only_j_acts`, on the direct path): what a hand-written loop
        does, each step counted as `step_` counts it. The no-op calls of the strategies
        that could act cost about 30 µs a step, 3 % of the default digits MLP's fit."""
        optimizer, ready, done = opt.optimizer, opt._on_before_step, opt._on_after_step
        net, loss_fn, max_steps = self.net, self.loss_fn, self.trainer.max_steps
        losses, preds = [], []
        for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
            if 0 <= max_steps <= self.trainer.global_step:
                break
            output = net(xb)
            loss = loss_fn(output, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ready()
            optimizer.step()
            done()
            losses.append(loss.detach())
            preds.append(output.detach())
        return losses, preds
