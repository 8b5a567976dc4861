"""The fast path of bagging's ensemble for reglab's own MLP and Linear members (§7.11).

`models.Ensemble` (torch.func.vmap) takes any network; for these two it is about 1.3–1.4×
slower per step on CPU, because nn.Linear stores W as (out, in) and the batched kernels
then transpose it on every step. Here W is stored as (k, in, out), and each layer is one
torch.baddbmm. `stack` picks the path; a test checks both compute the same members.
"""

import copy
from collections.abc import Sequence

import torch
from torch import nn

from reglab.models.ensemble import Ensemble
from reglab.models.mlp import ACTIVATIONS, MLP, Dropout, Linear


class StackedLinear(nn.Module):
    """k affine maps applied at once: y_i = x_i W_i + b_i for every member i (torch.baddbmm)."""

    affine = True  # its weight is an affine map's: penalized (regularization.penalties)

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach().T for m in layers]))  # k,in,out
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (k, batch, in)
        return torch.baddbmm(self.bias, x, self.weight)


class StackedMLP(nn.Module):
    """k networks of one architecture (exactly MLP or Linear) trained and evaluated as one.

    The members' parameters are stacked along a leading axis and every layer is one batched
    matrix multiplication, so k members cost one pass of k-times-wider matrices instead of
    k passes. Input (k, batch, *example_shape) gives each member its own rows; input
    (batch, *example_shape) or flat (batch, features) is shared by all (`example_shape`: one
    example's, e.g. (C, H, W) for images; default (in_features,)); examples are flattened.
    Output: (k, batch, outputs). Dropout masks are drawn per element, so members see
    different masks. The members' initial values are those of the `members` passed in, so
    a sequential run from the same networks is comparable.
    """

    def __init__(
        self, members: Sequence[nn.Module], example_shape: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        first = members[0]
        layers = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in members]
        self.layers = nn.ModuleList(StackedLinear(group) for group in zip(*layers, strict=True))
        self.example_dims = len(example_shape) if example_shape else 1
        self.activation = ACTIVATIONS[getattr(first, "activation", "relu")]()
        rates = first.dropout_rates
        self.input_dropout = Dropout(rates["input"])
        self.hidden_dropout = Dropout(rates["hidden"])
        self.members = len(members)
        # a blueprint for `member`, kept out of the module tree (not a parameter to train)
        self.__dict__["_template"] = copy.deepcopy(first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() in (2, self.example_dims + 1):  # one batch for all members (or flat)
            x = x.flatten(1)
            x = x.expand(self.members, *x.shape)
        else:
            x = x.flatten(2)
        x = self.input_dropout(x)
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.hidden_dropout(self.activation(x))
            x = layer(x)
        return x

    def member(self, i: int) -> nn.Module:
        """Member i as a standalone network (a copy of its parameters)."""
        net = copy.deepcopy(self._template)
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for linear, stacked in zip(linears, self.layers, strict=True):
                linear.weight.copy_(stacked.weight[i].T)
                linear.bias.copy_(stacked.bias[i, 0])
        return net


def stack(members: Sequence[nn.Module], example_shape: Sequence[int] | None = None) -> nn.Module:
    """k members as one module: StackedMLP for reglab's own MLP or Linear (exactly those
    classes: a subclass may change forward), models.Ensemble for any other network."""
    if all(type(m) in (MLP, Linear) for m in members):
        return StackedMLP(members, example_shape)
    return Ensemble(members, example_shape)
