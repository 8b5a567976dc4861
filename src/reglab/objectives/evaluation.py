"""How a `RegLabModule` predicts, is scored and reports: a mixin of the objective, kept apart
from its training step.

- `predict`: weight scaling for validation, the configured inference rule (e.g. Monte Carlo
  dropout) for the test; `evaluate` and `scores` give J and the metric of a prediction (for
  protocols, not logging);
- the validation and test passes: per-batch updates of torchmetrics (`_evaluate`), their
  values over the split (`_compute`) and the epoch ends that publish them (a non-finite
  validation loss fails the run);
- `publish`: scalars to the loggers at the optimizer step, the x-axis of every log.
"""

import math

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from reglab.regularization.dropout import weight_scaling


class NonFiniteLossError(RuntimeError):
    """The training objective became NaN or infinite."""


class MeanAccuracy(torchmetrics.MeanMetric):
    """The fraction of predicted classes equal to the targets, as the mean of their
    correctness: `torchmetrics.Accuracy`'s (micro) value to the bit, at half its cost per
    validation (no per-class counts); synced across processes as every MeanMetric."""

    def __init__(self) -> None:
        super().__init__(nan_strategy="disable")  # booleans: nothing to check

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update((preds == target).float())


def _metric(task: str) -> torchmetrics.Metric:
    return MeanAccuracy() if task == "classification" else torchmetrics.MeanSquaredError()


def split_metrics(task: str) -> nn.ModuleDict:
    """The validation and test splits' metric and loss, accumulated over their batches."""
    # ("val" would do as a key, "train" not: it is an nn.Module method, hence the suffix)
    return nn.ModuleDict(
        {f"{split}_metric": _metric(task) for split in ("val", "test")}
        # NaN losses are kept (the default drops them with a warning): a NaN val/loss
        # fails the run instead of hiding in the mean of the other batches
        | {
            f"{split}_loss": torchmetrics.MeanMetric(nan_strategy="disable")
            for split in ("val", "test")
        }
    )


class Evaluation:
    """Prediction, the validation and test passes, and publishing (see the module docstring)."""

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """J and the metric on (x, y) in one pass, in eval mode (for protocols, not logging)."""
        was_training = self.net.training
        self.net.eval()
        # [:] reads a streamed split (data.in_memory=false), which stays in host memory
        x, y = x[:].to(self.device), y.to(self.device)
        prediction = self.predict(x)
        self.net.train(was_training)
        return self.scores(prediction, y)

    def scores(self, prediction: Tensor, y: Tensor) -> dict[str, float]:
        """J and the metric of a `predict` output (an ensemble combines its members first)."""
        return {
            "loss": self.eval_loss(prediction, y).item(),
            self.metric_name: self._batch_metric(prediction, y).item(),
        }

    def _prediction(self, output: Tensor) -> Tensor:
        return output.argmax(-1) if self.task == "classification" else output

    def predict(self, x: Tensor, split: str = "val", y: Tensor | None = None) -> Tensor:
        """Log-probabilities (classification) or values (regression) for x.

        Validation uses weight scaling (cheap, every n steps); the test uses the configured
        inference rule (`inference=mc`: Monte Carlo over sampled dropout masks), and with
        targets `y` also tallies the metric as a function of the number of masks.
        """
        if split == "test" and self.inference is not None:
            outputs = self.inference.sample(self.net, x)
            if y is not None:
                self._accumulate_mc(outputs, y, split)
            return self.inference.combine(outputs, self.task)
        return weight_scaling(self.net, x, self.task)

    def combine_models(self, prediction: Tensor) -> Tensor:
        """The one prediction scored from the models' (one model's is its own; an ensemble
        votes: objectives/bagging.py)."""
        return prediction

    def eval_loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return F.nll_loss(prediction, y)
        return F.mse_loss(prediction, y)

    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        prediction = self.predict(x, split, y)
        self.keep(split, prediction, y)  # the test set's, for predictions.npz and calibration
        self.metrics[f"{split}_metric"].update(self._prediction(prediction), y)
        self.metrics[f"{split}_loss"].update(self.eval_loss(prediction, y), weight=len(x))

    def _compute(self, split: str) -> dict[str, Tensor]:
        """The split's loss and metric over all its batches; resets them for the next pass."""
        values = {}
        for name in ("loss", self.metric_name):
            metric = self.metrics[f"{split}_{'metric' if name != 'loss' else 'loss'}"]
            values[f"{split}/{name}"] = metric.compute()
            metric.reset()
        return values

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        loss = self.publish({**self._compute("val"), **self.weight_stats()})["val/loss"]
        if not math.isfinite(loss):  # logged, then the run fails before any callback acts
            raise NonFiniteLossError(
                f"validation loss became {loss} at step {self.trainer.global_step}"
                " (lower optimizer.lr or regularizer.alpha)"
            )

    def on_test_start(self) -> None:
        self.representation.hook()  # the test's hidden units: test/representation_sparsity

    def on_test_end(self) -> None:
        self.representation.unhook()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.representation.record()  # the hidden units of the test forward: their zeros
        self._evaluate("test", batch)
        self.representation.tally()
        if self.adversarial is not None and self.adversarial.evaluate:
            self._attacked_metric(*batch)

    def on_test_epoch_end(self) -> None:
        # at the optimizer step the run ended on, like every other scalar (Lightning's own
        # logging would put them at its count of chunks); training.py reads test_results
        values = self._compute("test")
        sparsity = self.representation.sparsity()
        self.publish_test({**values, **self.test_extras(values), **sparsity})

    def publish_test(self, values: dict[str, Tensor]) -> None:
        """Publish test-time results and keep them for the run's summary (metrics.json)."""
        self.publish(values)
        self.test_results = {**getattr(self, "test_results", {}), **values}

    def publish(
        self, metrics: dict[str, Tensor | float], callbacks: bool = True
    ) -> dict[str, float]:
        """Send scalars to the loggers at the current step and to `trainer.callback_metrics`;
        returns them as floats.

        This is what `self.log(..., on_step=True)` does, minus its per-call bookkeeping
        (about half a millisecond per key, as much as an optimizer step of a small MLP);
        the values here are already reduced (per chunk, or per validation by torchmetrics).
        `callbacks=False` sends them to the loggers only: callbacks copy callback_metrics
        at every validation, so per-member details of an ensemble stay out of it.
        """
        if not metrics:
            return {}
        names = list(metrics)
        stacked = torch.stack([torch.as_tensor(v).detach().float().cpu() for v in metrics.values()])
        if callbacks:
            self.trainer.callback_metrics.update(zip(names, stacked.unbind(), strict=True))
        scalars = dict(zip(names, stacked.tolist(), strict=True))  # one sync, not one per key
        if self.trainer.sanity_checking:
            return scalars
        step = self.step
        self.history += [(step, k, scalars[k]) for k in ("train/loss", "val/loss") if k in scalars]
        for logger in self.loggers:
            logger.log_metrics(scalars, step)
        return scalars

    @property
    def step(self) -> int:
        """Optimizer steps so far, counting earlier protocol phases (the x-axis of all logs)."""
        return self.step_offset + (self.trainer.global_step if self._trainer else 0)
