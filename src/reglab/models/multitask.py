"""Multi-task network (§7.7): a shared trunk and one head per task of `data.tasks`."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reglab.models.mlp import ACTIVATIONS, MLP, Dropout


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


class MultiTaskNet(nn.Module):
    """A shared MLP trunk and one MLP head per task; outputs concatenated in task order.
    Input (N, …) is flattened to (N, features)."""

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
        h = self.trunk(x.flatten(1))
        return torch.cat([head(h) for head in self.heads.values()], dim=-1)
