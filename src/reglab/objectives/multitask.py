"""Multi-task learning: shared parameters, task-specific heads (Goodfellow et al., §7.7).

"When part of a model is shared across tasks, that part of the model is more constrained
towards good values, often yielding better generalization" (the lecture's slide "Multiple
Tasks"). The model is a shared trunk h = f(x; θ_shared) and one head per task,
ŷ_t = g_t(h; θ_t), trained on the weighted sum of the task losses

    J(θ) = Σ_t w_t · J_t(θ_shared, θ_t)                 (+ α·Ω(θ) on trunk and heads alike)

Tasks are declared in the data config, `data.tasks: {name: {kind, outputs, weight, …}}`, so a
new task needs no code: digits' tasks map each digit to a target (`targets: [0, 1, 0, …]`,
e.g. its parity); the synthetic set draws tasks that share a low-dimensional latent factor.
Targets are a (n, tasks) matrix, one column per task in declaration order.
"""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from reglab.models.multitask import Task
from reglab.objectives.base import RegLabModule, require
from reglab.objectives.calibration import brier_score, confidence_bins, expected_calibration_error


class MultiTaskModule(RegLabModule):
    """RegLabModule with J = Σ_t w_t J_t and loss and metric per task for every split
    (`val/<task>/loss`, `val/<task>/acc` or `…/mse`); `val/loss` is the weighted sum, which
    early stopping monitors. A task's target may be missing (NaN: the example was not
    labelled for it); J_t is the mean over the examples that have one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require(self.net, "multitask", ("tasks",), "model=multitask, or objective=plain")
        self.tasks: list[Task] = self.net.tasks
        self.sizes = [t.outputs for t in self.tasks]
        self.metric_name = "loss"  # no single metric: per-task ones carry the task's name
        metrics: dict[str, nn.Module] = {}
        for split in ("val", "test"):
            metrics[f"{split}_loss"] = torchmetrics.MeanMetric(nan_strategy="disable")
            for t in self.tasks:
                metrics[f"{split}_{t.name}_loss"] = torchmetrics.MeanMetric()
                metrics[f"{split}_{t.name}_metric"] = _task_metric(t)
        self.metrics = nn.ModuleDict(metrics)

    def _per_task(self, output: Tensor, y: Tensor) -> list[tuple[Task, Tensor, Tensor]]:
        """(task, outputs, targets) of the examples labelled for the task: classes as
        integers, values as a column."""
        parts = output.split(self.sizes, dim=-1)
        triples = []
        for i, (task, out) in enumerate(zip(self.tasks, parts, strict=True)):
            target = y[..., i]
            labeled = ~target.isnan()
            out, target = out[labeled], target[labeled]
            target = target.long() if task.kind == "classification" else target.unsqueeze(-1)
            triples.append((task, out, target))
        return triples

    @staticmethod
    def _loss(task: Task, output: Tensor, target: Tensor, log_probs: bool = False) -> Tensor:
        """J_t: mean cross-entropy or squared error (0 for a batch with no example of t)."""
        if len(target) == 0:
            return output.sum() * 0.0  # keeps the graph (and the gradient) well-formed
        if task.kind == "regression":
            return F.mse_loss(output, target)
        return F.nll_loss(output, target) if log_probs else F.cross_entropy(output, target)

    def step_loss(self, output: Tensor, y: Tensor) -> Tensor:
        return sum(t.weight * self._loss(t, o, y_t) for t, o, y_t in self._per_task(output, y))

    @torch.no_grad()
    def train_metrics(self, output: Tensor, y: Tensor) -> dict[str, Tensor]:
        values = {}
        for task, out, target in self._per_task(output, y):
            if len(target):
                values[f"train/{task.name}/loss"] = self._loss(task, out, target)
                values[f"train/{task.name}/{task.metric}"] = _score(task, out, target)
        return values

    def predict(self, x: Tensor, split: str = "val", y: Tensor | None = None) -> Tensor:
        """Log-probabilities for classification tasks, values for regression, concatenated."""
        parts = self.net(x).split(self.sizes, dim=-1)
        return torch.cat(
            [
                p.log_softmax(-1) if t.kind == "classification" else p
                for t, p in zip(self.tasks, parts, strict=True)
            ],
            dim=-1,
        )

    def eval_loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        return sum(
            t.weight * self._loss(t, p, y_t, log_probs=True)
            for t, p, y_t in self._per_task(prediction, y)
        )

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> dict[str, float]:
        was_training = self.net.training
        self.net.eval()
        loss = self.eval_loss(self.predict(x), y)
        self.net.train(was_training)
        return {"loss": loss.item()}

    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        prediction = self.predict(x, split)
        self.keep(split, prediction, y)
        total = 0.0
        for task, p, target in self._per_task(prediction, y):
            loss = self._loss(task, p, target, log_probs=True)
            total = total + task.weight * loss
            if len(target):
                self.metrics[f"{split}_{task.name}_loss"].update(loss, weight=len(target))
                self.metrics[f"{split}_{task.name}_metric"].update(_predicted(task, p), target)
        self.metrics[f"{split}_loss"].update(total, weight=len(x))

    def _compute(self, split: str) -> dict[str, Tensor]:
        names = {f"{split}_loss": f"{split}/loss"}
        for t in self.tasks:
            names[f"{split}_{t.name}_loss"] = f"{split}/{t.name}/loss"
            names[f"{split}_{t.name}_metric"] = f"{split}/{t.name}/{t.metric}"
        values = {}
        for key, name in names.items():
            values[name] = self.metrics[key].compute()
            self.metrics[key].reset()
        return values

    # -- the test set's predictions, per task (objectives/test_records.py) -------------------
    def calibration(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """`test/<task>/nll|ece|brier` of each classification task, over its labelled rows."""
        results = {}
        for task, probs, target in self._classified():
            results |= {
                f"test/{task.name}/nll": values[f"test/{task.name}/loss"],
                f"test/{task.name}/ece": expected_calibration_error(probs, target),
                f"test/{task.name}/brier": brier_score(probs, target),
            }
        return results

    def reliability_bins(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            task.name: {k: v.numpy() for k, v in confidence_bins(probs, target).items()}
            for task, probs, target in self._classified()
        }

    def _classified(self) -> list[tuple[Task, Tensor, Tensor]]:
        """(task, probabilities, classes) of each classification task's labelled test rows."""
        out = self.test_outputs
        if out is None:
            return []
        triples = self._per_task(out["prediction"], out["y"])
        return [(t, p.exp(), y) for t, p, y in triples if t.kind == "classification" and len(y)]

    def prediction_arrays(self) -> dict[str, np.ndarray]:
        """`probs_<task>` (n, classes) or `values_<task>` (n, outputs) for every test row,
        `targets` (n, tasks) with NaN where a row has no label for a task, `tasks` (names)."""
        out = self.test_outputs
        if out is None:
            return {}
        parts = out["prediction"].split(self.sizes, dim=-1)
        arrays = {
            f"probs_{t.name}" if t.kind == "classification" else f"values_{t.name}": (
                p.exp() if t.kind == "classification" else p
            ).numpy()
            for t, p in zip(self.tasks, parts, strict=True)
        }
        names = np.array([t.name for t in self.tasks])
        return {**arrays, "targets": out["y"].numpy(), "tasks": names}


def _task_metric(task: Task) -> torchmetrics.Metric:
    if task.kind == "classification":
        return torchmetrics.Accuracy("multiclass", num_classes=task.outputs, validate_args=False)
    return torchmetrics.MeanSquaredError()


def _predicted(task: Task, output: Tensor) -> Tensor:
    return output.argmax(-1) if task.kind == "classification" else output


def _score(task: Task, output: Tensor, target: Tensor) -> Tensor:
    if task.kind == "classification":
        return (output.argmax(-1) == target).float().mean()
    return F.mse_loss(output, target)
