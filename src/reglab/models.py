"""The networks whose parameters the regularizers act on.

`MLP` is the deep feedforward network of the course: affine maps W^[k] a^[k-1] + b^[k]
with a non-linearity between them. `Linear` is the single affine map, the model the
chapter's closed forms (ridge, lasso, logistic regression) are stated for.
"""

import itertools
from collections.abc import Sequence

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


class MLP(nn.Sequential):
    """in_features → hidden_sizes[0] → … → out_features, `activation` between affine layers."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        sizes = [in_features, *hidden_sizes, out_features]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            if i > 0:
                layers.append(ACTIVATIONS[activation]())
            layers.append(nn.Linear(fan_in, fan_out))
        super().__init__(*layers)


class Linear(nn.Linear):
    """ŷ = Wx + b: linear/logistic regression, depending on the loss."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)


def penalized_parameters(model: nn.Module, include_bias: bool = False) -> list[torch.Tensor]:
    """The w of Ω(w): every weight, and the biases only when asked.

    The textbook penalizes "only the weights of the affine transformation at each layer and
    leaves the biases unregularized": a bias controls one unit only, so fitting it needs
    little data, and shrinking it towards zero can cause underfitting.
    """
    return [p for name, p in model.named_parameters() if include_bias or not name.endswith("bias")]
