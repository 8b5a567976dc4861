"""The networks whose parameters the regularizers act on.

`MLP` is the deep feedforward network of the course: affine maps W^[k] a^[k-1] + b^[k]
with a non-linearity between them. `Linear` is the single affine map, the model the
chapter's closed forms (ridge, lasso, logistic regression) are stated for.
"""

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class Dropout(nn.Dropout):
    """Inverted dropout: keep each unit with probability 1 − p, scale kept ones by 1/(1 − p).

    Same distribution as nn.Dropout; the mask is `rand ≥ p` rather than torch's bernoulli_,
    which on CPU costs 2–3× more per element, and masks are most of the cost of Monte Carlo
    inference (T masks per example) and a noticeable part of a dropout training step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class MLP(nn.Sequential):
    """in_features → hidden_sizes[0] → … → out_features, `activation` between affine layers.

    Dropout (Srivastava et al.; the lecture's "ensemble of sub-networks formed by removing
    non-output units") masks input units with probability `dropout.input` and every hidden
    unit with `dropout.hidden`, never the outputs. Masks are inverted (kept units scaled by
    1/(1 − p) in training), so evaluation mode is the weight-scaling inference rule.
    Input of any shape (N, …) is flattened to (N, features): images (N, C, H, W) too.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
    ) -> None:
        rates = {"input": 0.0, "hidden": 0.0, **(dropout or {})}
        sizes = [in_features, *hidden_sizes, out_features]
        layers: list[nn.Module] = []
        if rates["input"]:
            layers.append(Dropout(rates["input"]))
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            if i > 0:
                layers.append(ACTIVATIONS[activation]())
                if rates["hidden"]:
                    layers.append(Dropout(rates["hidden"]))
            layers.append(nn.Linear(fan_in, fan_out))
        super().__init__(*layers)
        self.activation = activation
        self.dropout_rates = rates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


class Linear(nn.Linear):
    """ŷ = Wx + b: linear/logistic regression, depending on the loss (`dropout.input` masks
    input units; there are no hidden ones). Input (N, …) is flattened to (N, features)."""

    def __init__(
        self, in_features: int, out_features: int, dropout: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(in_features, out_features)
        self.input_dropout = Dropout((dropout or {}).get("input", 0.0))
        self.dropout_rates = {"input": self.input_dropout.p, "hidden": 0.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return super().forward(self.input_dropout(x) if self.input_dropout.p else x)
