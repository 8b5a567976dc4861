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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from sklearn.datasets import load_digits
from torch import Tensor, nn

from reglab.models import ACTIVATIONS, MLP, Dropout
from reglab.module import RegLabModule

KINDS = ("classification", "regression")


@dataclass(frozen=True)
class Task:
    """One task: its name, kind, number of outputs and weight in the total loss."""

    name: str
    kind: str
    outputs: int
    weight: float = 1.0

    @property
    def metric(self) -> str:
        return "acc" if self.kind == "classification" else "mse"


def parse_tasks(tasks: Mapping[str, Mapping[str, Any]]) -> list[Task]:
    """Task specs from config (extra keys, such as digits' `targets`, are the data's)."""
    return [
        Task(name, spec["kind"], int(spec["outputs"]), float(spec.get("weight", 1.0)))
        for name, spec in tasks.items()
    ]


# -- data ----------------------------------------------------------------------------------
def digit_tasks(tasks: Mapping[str, Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The digits images with one target column per task: task t's target for digit d is
    `targets[d]` (a class index, or a value for regression), or d itself when unset."""
    x, digit = load_digits(return_X_y=True)
    columns = []
    for spec in tasks.values():
        table = np.asarray(spec.get("targets") or range(10), dtype=np.float64)
        columns.append(table[digit])
    return x, np.stack(columns, axis=1)


def make_multitask(
    tasks: Mapping[str, Mapping[str, Any]],
    n_samples: int = 1000,
    n_features: int = 30,
    rank: int = 2,
    noise: float = 0.5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Tasks that share a `rank`-dimensional factor z = xU of x ~ N(0, I_d), d = `n_features`.

    Regression task t: y = z·a_t + noise·ε. Classification task t with K outputs: the class
    of the largest of z·A_t + noise·ε (K scores). Scores are scaled to unit standard deviation
    before the noise is added. Alone, a task has to find its direction among d; together,
    the tasks pin down the shared U (d·rank numbers), which a shared trunk can learn.
    """
    rng = np.random.default_rng(random_state)
    x = rng.standard_normal((n_samples, n_features))
    u = np.linalg.qr(rng.standard_normal((n_features, rank)))[0]  # orthonormal columns
    z = x @ u
    columns = []
    for spec in tasks.values():
        width = 1 if spec["kind"] == "regression" else int(spec["outputs"])
        scores = z @ rng.standard_normal((rank, width))
        scores = scores / scores.std(0) + noise * rng.standard_normal(scores.shape)
        columns.append(scores[:, 0] if spec["kind"] == "regression" else scores.argmax(1))
    return x, np.stack(columns, axis=1)


# -- model ---------------------------------------------------------------------------------
class MultiTaskNet(nn.Module):
    """A shared MLP trunk and one MLP head per task; outputs concatenated in task order."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        tasks: Sequence[Task] | Mapping[str, Mapping[str, Any]],
        trunk_sizes: Sequence[int] = (256,),
        head_sizes: Sequence[int] = (),
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = parse_tasks(tasks) if isinstance(tasks, Mapping) else list(tasks)
        assert out_features == sum(t.outputs for t in self.tasks), "outputs: Σ of the tasks'"
        rates = {"input": 0.0, "hidden": 0.0, **(dropout or {})}
        *hidden, width = trunk_sizes
        # the trunk ends in a hidden layer: an MLP to `width` units, then its non-linearity
        self.trunk = nn.Sequential(
            MLP(in_features, width, hidden, activation, rates),
            ACTIVATIONS[activation](),
            Dropout(rates["hidden"]),
        )
        self.dropout_rates = rates
        self.heads = nn.ModuleDict(
            {
                t.name: MLP(width, t.outputs, head_sizes, activation, {"hidden": rates["hidden"]})
                for t in self.tasks
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        return torch.cat([head(h) for head in self.heads.values()], dim=-1)


# -- objective -----------------------------------------------------------------------------
class MultiTaskModule(RegLabModule):
    """RegLabModule with J = Σ_t w_t J_t and loss and metric per task for every split
    (`val/<task>/loss`, `val/<task>/acc` or `…/mse`); `val/loss` is the weighted sum, which
    early stopping monitors. A task's target may be missing (NaN: the example was not
    labelled for it); J_t is the mean over the examples that have one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        total = 0.0
        for task, p, target in self._per_task(self.predict(x, split), y):
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
