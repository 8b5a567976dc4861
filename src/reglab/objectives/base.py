"""The LightningModule that minimizes the regularized objective J̃(θ) = J(θ) + α·Ω(θ) (eq. 7.1).

J is cross-entropy for classification and the mean squared error (mean over samples) for
regression. The regularizer is applied by hooks around each optimizer step (see
`regularization/penalties.py`), so one module serves L2, L1, proximal L1, elastic net and decoupled
weight decay alike. The other strategies of a step come from their own config groups:
label mixing (`augmentation=mixup|cutmix`, data/mixing.py) and label smoothing
(`noise=labels`) change the targets, `noise=weights` the weights the step's gradient is
taken at, `adversarial` adds J at attacked inputs, `representation` α·Ω(h) of the hidden
units (regularization/noise.py, adversarial.py, representation.py).

Speed: Lightning's per-step machinery costs more than a small network's forward and
backward pass, so the module uses manual optimization and runs a *chunk* of consecutive
minibatches (several optimizer steps) per Lightning step. Every optimizer step still goes
through Lightning's optimizer wrapper, so `global_step` counts optimizer steps (the i of
Algorithm 7.1), `on_before_optimizer_step` callbacks fire, and gradient clipping and
step-wise schedulers act per step; `engine.trainer.build_trainer` chooses the chunk boundaries
to fall on every validation point.

This file is the objective and its training step; mixins hold the rest: prediction, the
validation and test passes and publishing scalars (evaluation.py), what a test pass records
beyond them (test_records.py), weight statistics (statistics.py) and the direct
backward/step path (stepping.py).
"""

import math
from collections.abc import Callable
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reglab.config import ConfigError
from reglab.data.augmentation import Augmentation
from reglab.objectives.evaluation import Evaluation, NonFiniteLossError, split_metrics
from reglab.objectives.statistics import WeightStatistics
from reglab.objectives.stepping import DirectSteps, clip_gradients
from reglab.objectives.test_records import TestRecords
from reglab.records import log_augmented_samples
from reglab.regularization.adversarial import Adversarial
from reglab.regularization.constraints import Constraint
from reglab.regularization.dropout import MonteCarlo
from reglab.regularization.noise import NoNoise
from reglab.regularization.penalties import Regularizer, penalized_named_parameters
from reglab.regularization.representation import Representation


def require(net: nn.Module, objective: str, attributes: tuple[str, ...], allowed: str) -> None:
    """A one-line ConfigError if `net` lacks what `objective` trains on: any network can be
    configured with any objective, so the objective checks the network it is given."""
    missing = [a for a in attributes if not hasattr(net, a)]
    if missing:
        raise ConfigError(
            f"objective={objective} needs a network with {', '.join(missing)}, not"
            f" {type(net).__name__} (allowed: {allowed})"
        )


class RegLabModule(Evaluation, DirectSteps, TestRecords, WeightStatistics, pl.LightningModule):
    """`net` trained on J̃ = J + α·Ω with `optimizer`, one minibatch per optimizer step."""

    def __init__(
        self,
        net: nn.Module,
        regularizer: Regularizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        task: Literal["classification", "regression"],
        n_outputs: int,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: Literal["step", "epoch"] = "epoch",
        batch_size: int = 64,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        inference: MonteCarlo | None = None,
        augment: Augmentation | None = None,
        constraint: Constraint | None = None,
        noise: NoNoise | None = None,
        representation: Representation | None = None,
        adversarial: Adversarial | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net, self.regularizer, self.task = net, regularizer, task
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.batch_size = batch_size
        self.clip_val, self.clip_algorithm = gradient_clip_val, gradient_clip_algorithm
        self.inference = inference  # test-time rule: None = weight scaling, or Monte Carlo
        self.augment = augment if augment is not None and len(augment) else None  # training only
        self.n_outputs = n_outputs
        self.noise = noise if noise is not None else NoNoise()
        self.adversarial = adversarial  # training on attacked inputs, and/or attacks at test
        self._adversarial_bound = False
        self._attack_sums: dict[str, Tensor] = {}
        # α·Ω(h) in training; every run measures the hidden units' sparsity at test time
        self.representation = representation if representation is not None else Representation()
        if self.hooks_hidden_units:
            self.representation.attach(net)
        self._mc_sums: dict[str, Tensor] = {}  # test metric as a function of T (Monte Carlo)
        penalized = penalized_named_parameters(net, regularizer.include_bias)
        self.weights = [w for _, w in penalized]  # the w of Ω(w): conv and linear weights
        self.weight_names = [f"net.{name}" for name, _ in penalized]
        # projected onto Ω(w) ≤ k after every step: the same w as the penalty's
        self.constraint = constraint.bind(net, regularizer.include_bias) if constraint else None
        self.step_offset = 0  # steps of earlier protocol phases: one timeline across them
        self.carried_optimizer_state: dict | None = None  # from an earlier phase (7.3)
        self.history: list[tuple[int, str, float]] = []  # (step, tag, value): learning curves
        self.loss_fn = F.cross_entropy if task == "classification" else F.mse_loss
        self.metric_name = "acc" if task == "classification" else "mse"
        self.metrics = split_metrics(task)  # validation's and the test's

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- optimization ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}

    def on_train_start(self) -> None:
        if self.augment is not None:  # a few training images, before and after, to TensorBoard
            x = self.trainer.datamodule.splits["train"][0]
            log_augmented_samples(self.loggers, self.augment, x, self.device, self.step)
        if self.carried_optimizer_state is not None:  # continue, don't restart, the optimizer
            self.optimizers().optimizer.load_state_dict(self.carried_optimizer_state)
            self.carried_optimizer_state = None

    # the batch axis of training blocks and the number of models summed in the loss
    # (an ensemble trains k models on (k, batch, …) blocks: see objectives/bagging.py)
    batch_dim, models = 0, 1
    hooks_hidden_units = True  # forward hooks read the hidden units (not inside vmap)

    def train_output(self, x: Tensor) -> Tensor:
        """What a training step computes from a minibatch (the network's output; a model
        with more than one output concatenates them: see `objectives/semi_supervised.py`)."""
        return self.net(x)

    def step_loss(self, output: Tensor, y: Tensor) -> Tensor:
        """The loss one optimizer step minimizes: J on the minibatch (for k models, the sum
        of their J, so each gets the gradient of its own)."""
        loss = self.loss_fn(output.flatten(0, self.batch_dim), y.flatten(0, self.batch_dim))
        return loss * self.models if self.models != 1 else loss  # ×1 would add a graph node

    def clip_(self, opt: Any) -> None:
        clip_gradients(self, opt, self.clip_val, self.clip_algorithm)

    def on_fit_start(self) -> None:
        super().on_fit_start()  # DirectSteps: whether Lightning's step machinery can be skipped
        self._plain = self._direct and self.only_j_acts()

    def only_j_acts(self) -> bool:
        """Whether a step is J's gradient and the optimizer's update alone (no penalty hook,
        constraint, weight noise, attack, hidden-unit penalty, clipping or per-step
        schedule; one model, this class's loss): then `plain_steps` runs the chunk. Label
        smoothing and augmentation act on the whole chunk, before either loop."""
        reg, hooks = type(self.regularizer), ("add_grad_", "before_step_", "after_step_")
        own = ("train_output", "step_loss", "regularized_loss", "regularized_steps")
        return (
            all(getattr(reg, h) is getattr(Regularizer, h) for h in hooks)
            and type(self.noise).perturbed is NoNoise.perturbed
            and not (self.adversarial is not None and self.adversarial.trains)
            and not (self.representation.active or self.clip_val)
            and self.constraint is None
            and (self.scheduler_factory is None or self.scheduler_interval != "step")
            and (self.models, self.batch_dim) == (1, 0)
            and all(getattr(type(self), m) is getattr(RegLabModule, m) for m in own)
        )

    def training_step(self, chunk: tuple[Tensor, Tensor], chunk_idx: int) -> None:
        x, y = self.training_targets(*chunk)
        steps = self.plain_steps if self._plain else self.regularized_steps
        losses, preds = steps(self.optimizers(), x, y)
        if losses:
            dim = self.batch_dim
            output = torch.cat(preds, dim)
            self._log_chunk(torch.stack(losses), output, y.narrow(dim, 0, output.shape[dim]))

    def regularized_steps(self, opt: Any, x: Tensor, y: Tensor) -> tuple[list, list]:
        """One optimizer step per minibatch of the chunk (x, y), each strategy acting in
        its place; returns the steps' losses and outputs (for the chunk's log)."""
        scheduler = self.lr_schedulers() if self.scheduler_interval == "step" else None
        max_steps = self.trainer.max_steps
        dim = self.batch_dim
        losses, preds = [], []
        for xb, yb in zip(
            x.split(self.batch_size, dim), y.split(self.batch_size, dim), strict=True
        ):
            if 0 <= max_steps <= self.trainer.global_step:
                break
            with self.noise.perturbed(self.weights):  # weight noise: gone before the update
                output, loss = self.regularized_loss(xb, yb)
                opt.zero_grad(set_to_none=True)
                self.backward_(loss)
            self.regularizer.add_grad_(self.weights)
            if self.clip_val:
                self.clip_(opt)
            lr = opt.param_groups[0]["lr"]
            self.regularizer.before_step_(self.weights, lr)
            self.step_(opt)
            self.regularizer.after_step_(self.weights, lr, opt.optimizer)
            if self.constraint is not None:
                self.constraint.project_(self.weights)
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach() / self.models if self.models != 1 else loss.detach())
            preds.append(output.detach())
        return losses, preds

    def training_targets(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """A chunk's inputs and targets after augmentation, label mixing and smoothing (the
        whole chunk at once: random parameters per sample; soft targets (…, k) if mixed)."""
        if self.augment is None:
            return x, self.noise.targets(y, self.n_outputs) if self._classifies else y
        classes = self.n_outputs if self._classifies else None
        x, y = self.augment.mix(self.augment(x), y, classes)
        return x, self.noise.targets(y, self.n_outputs) if self._classifies else y

    @property
    def _classifies(self) -> bool:
        return self.task == "classification"

    def regularized_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(output, loss) of one step: J, mixed with J at adversarial inputs (§7.13), plus
        α·Ω(h) of the clean forward's hidden units (§7.10)."""
        adversarial = self.adversarial is not None and self.adversarial.trains
        if adversarial:
            attack = self._bound_adversarial()
            x_adv = attack.perturb(self.net, self._loss_of(y), x, attack.method)
        if self.representation.active:
            self.representation.record()
        output = self.train_output(x)
        loss = self.step_loss(output, y)
        # the clean forward's units only (penalty() stops recording); no `+ 0.0` without
        # a penalty: it would be a kernel and a graph node every step
        penalty = self.representation.penalty() if self.representation.active else None
        if adversarial:
            loss = attack.mix(loss, self.step_loss(self.train_output(x_adv), y))
        return output, loss if penalty is None else loss + penalty

    def _loss_of(self, y: Tensor) -> Callable[[Tensor], Tensor]:
        """x ↦ the step's J at inputs x: what an attack increases."""

        def loss(x: Tensor) -> Tensor:
            return self.step_loss(self.train_output(x), y)

        return loss

    def _bound_adversarial(self) -> Adversarial:
        """The attack, with ε converted to the standardized units of the data it trains on."""
        if not self._adversarial_bound:
            dm = self.trainer.datamodule
            images = dm.image_shape is not None
            self.adversarial.bind(dm.feature_mean, dm.feature_std, dm.splits["train"][0], images)
            self._adversarial_bound = True
        return self.adversarial

    def _log_chunk(self, losses: Tensor, output: Tensor, y: Tensor) -> None:
        data_loss = losses.mean()
        with torch.no_grad():  # per model: an ensemble's penalty is the sum over its members
            penalty = self.regularizer.penalty(self.weights) / self.models
        objective = data_loss + penalty
        metrics = {"train/loss": objective, "train/data_loss": data_loss, "train/penalty": penalty}
        loss = self.publish({**metrics, **self.train_metrics(output, y)})["train/loss"]
        if not math.isfinite(loss):  # logged at its step, then the run fails
            raise NonFiniteLossError(
                f"training loss became {loss} by step {self.trainer.global_step}"
                " (lower optimizer.lr or regularizer.alpha)"
            )

    def train_metrics(self, output: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Metrics of the outputs a chunk's steps produced, beside the loss."""
        return {f"train/{self.metric_name}": self._batch_metric(output, y)}

    @torch.no_grad()
    def _batch_metric(self, output: Tensor, y: Tensor) -> Tensor:
        """Accuracy or MSE of the outputs the chunk's steps produced (no state to keep);
        against soft targets (mixed, smoothed), accuracy counts their most likely class."""
        if self.task == "classification":
            y = y.argmax(-1) if y.is_floating_point() else y
            return (output.argmax(-1) == y).float().mean()
        return F.mse_loss(output, y)

    def on_train_epoch_end(self) -> None:
        if self.scheduler_factory is not None and self.scheduler_interval == "epoch":
            self.lr_schedulers().step()
