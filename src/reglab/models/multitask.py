"""Multi-task network (§7.7): a shared trunk and one head per task of `data.tasks`.

The trunk is any network (`model.trunk`, a `_target_`: conf/model/trunk/): it gets the
data's sizes by the size contract (models/sizes.py), with `out_features` = `shared_size`,
and maps x to the representation every task shares, h = act(trunk(x)) ∈ R^d. A trunk that
declares no `out_features` returns features of its own width d, measured once here.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reglab.models.mlp import ACTIVATIONS, MLP, Dropout
from reglab.models.sizes import Part, build_part, input_sizes, output_width


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


LINEAR_TRUNK = functools.partial(MLP, hidden_sizes=())  # one affine map: conf/model/trunk/mlp.yaml


class MultiTaskNet(nn.Module):
    """x → Dropout(input) → trunk → act → Dropout(hidden) = h, then one MLP head per task on
    h; outputs concatenated in task order. Input in the data's shape: (N, C, H, W) or
    (N, features), as the trunk expects it.

    The shared parameters θ_shared are the trunk's, each head's are its task's θ_t (eq. of
    objectives/multitask.py: J = Σ_t w_t J_t). `dropout.hidden` also masks the heads' hidden
    units; the trunk's own dropout is the trunk's config (conf/model/trunk/*.yaml follow
    `model.dropout.hidden`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        tasks: Sequence[Task] | Mapping[str, Mapping[str, Any]],
        trunk: Part = LINEAR_TRUNK,
        shared_size: int = 256,
        head_sizes: Sequence[int] = (),
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
        in_channels: int | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = parse_tasks(tasks) if isinstance(tasks, Mapping) else list(tasks)
        assert out_features == sum(t.outputs for t in self.tasks), "outputs: Σ of the tasks'"
        rates = {"input": 0.0, "hidden": 0.0, **(dropout or {})}
        sizes = input_sizes(in_features, in_channels, image_shape)
        self.trunk = nn.Sequential(
            Dropout(rates["input"]),
            build_part(trunk, {**sizes, "out_features": shared_size}, "model.trunk"),
            ACTIVATIONS[activation](),  # the trunk's outputs are pre-activations, as an MLP's
            Dropout(rates["hidden"]),
        )
        width = output_width(self.trunk, image_shape or (in_features,), "model.trunk")
        self.heads = nn.ModuleDict(
            {
                t.name: MLP(width, t.outputs, head_sizes, activation, {"hidden": rates["hidden"]})
                for t in self.tasks
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        return torch.cat([head(h) for head in self.heads.values()], dim=-1)
