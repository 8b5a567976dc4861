"""Backward passes and optimizer steps at the cost of torch's own, when nothing listens.

`manual_backward` and `LightningOptimizer.step` run a small network's step through
Lightning's strategy and precision plugin, a closure, and the `on_before_backward`,
`on_after_backward` and `on_before_optimizer_step` hooks of every callback and the module:
about 0.5 ms of Python per optimizer step here, as much as the step's own kernels for the
default digits MLP. With one device, full precision and none of those hooks overridden,
all that machinery does is call `loss.backward()` and `optimizer.step()`, which is what the
direct path calls; the step is still counted through the optimizer wrapper's own
before/after-step callbacks (Lightning's manual loop sets them: `global_step` and progress
stay exact). Anything else (DDP, mixed precision, a listening hook) takes Lightning's path.
"""

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import Tensor

HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _overrides(obj: object, base: type, names: tuple[str, ...] = HOOKS) -> bool:
    return any(getattr(type(obj), name) is not getattr(base, name) for name in names)


def direct_path_allowed(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether Lightning's backward/step machinery would do nothing but call torch."""
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and type(trainer.strategy.precision_plugin) is Precision
        and not _overrides(module, pl.LightningModule)
        and not any(_overrides(cb, pl.Callback) for cb in trainer.callbacks)
    )


class DirectSteps:
    """Mixin of a manually optimized LightningModule: `backward_` and `step_` take the
    direct path when `direct_path_allowed` held at the start of training."""

    _direct = False

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
