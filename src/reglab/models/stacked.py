"""The fast paths of bagging's ensemble for reglab's own MLP, Linear and CNN members (§7.11).

`models.Ensemble` (torch.func.vmap) takes any network. For MLP and Linear it is about
1.3–1.4× slower per step on CPU, because nn.Linear stores W as (out, in) and the batched
kernels then transpose it on every step: StackedMLP stores W as (k, in, out), and each
layer is one torch.baddbmm. For CNN, vmap's convolution rule moves the member axis into
the channels, (k, N, C, H, W) → (N, k·C, H, W), and back around every convolution, so a
step saves its activations in both layouts: StackedCNN keeps the whole convolutional
trunk in the grouped layout (N, k·C, H, W), each convolution one conv2d with groups=k,
and only the classifier's input goes back to (k, N, features). `stack` picks the path;
tests check the paths compute the same members.
"""

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reglab.models.cnn import CNN
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


class StackedConv2d(nn.Module):
    """k convolutions of one shape applied at once, as one conv2d with groups=k.

    The weight is stored (k, out, in, kh, kw) and the bias (k, out), member i's at index i
    (the leading axis bagging's per-member clipping and the checkpoints expect); forward
    views them as (k·out, in, kh, kw), so member i's filters are output channels
    i·out … (i+1)·out − 1. Input (N, k·in, H, W), member i's channels at i·in … (i+1)·in − 1,
    or (N, in, H, W) shared by all members (then one ungrouped conv2d computes every
    member's filters on it). Output (N, k·out, H', W').
    """

    affine = True  # its weight is a convolution's: penalized (regularization.penalties)

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        if any(c.groups != 1 or c.padding_mode != "zeros" for c in convs):
            raise ValueError("StackedConv2d stacks ungrouped, zero-padded convolutions only")
        self.weight = nn.Parameter(torch.stack([c.weight.detach() for c in convs]))
        if first.bias is not None:
            self.bias = nn.Parameter(torch.stack([c.bias.detach() for c in convs]))
        else:
            self.register_parameter("bias", None)
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.flatten(0, 1)  # (k·out, in, kh, kw)
        bias = self.bias.flatten() if self.bias is not None else None
        groups = x.shape[1] // self.weight.shape[2]  # k, or 1 for a shared input
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


def _stacked_layers(groups: Sequence[Sequence[nn.Module]]) -> list[nn.Module]:
    """Layer j of every member as one layer: convolutions and linear maps stacked, the
    other layers (activations, pooling, dropout) the first member's (they hold no state)."""
    layers: list[nn.Module] = []
    for group in groups:
        first = group[0]
        if isinstance(first, nn.Conv2d):
            layers.append(StackedConv2d(group))
        elif isinstance(first, nn.Linear):
            layers.append(StackedLinear(group))
        elif not isinstance(first, nn.Flatten):  # StackedCNN.forward flattens per member
            layers.append(copy.deepcopy(first))
    return layers


class StackedCNN(nn.Module):
    """k networks of exactly reglab's models.CNN trained and evaluated as one.

    `features` runs on the grouped layout (N, k·C, H, W), member i's feature maps being
    channels i·C … (i+1)·C − 1: each convolution is a StackedConv2d (one conv2d, groups=k),
    activations and max pooling act per channel, spatial dropout (nn.Dropout2d) drops each
    member's maps on its own, input dropout masks pixels one by one. The maps are then
    flattened per member to (k, N, features) and `classifier` is StackedMLP's batched
    matrix multiplications (StackedLinear). Activations therefore exist in one layout
    only, as k separate CNNs would hold them.

    Input (k, batch, C, H, W) gives each member its own rows; (batch, C, H, W) is shared by
    all. Output: (k, batch, outputs). The members' initial values are those of the
    `members` passed in, so a sequential run from the same networks (`member(i)`) is
    comparable. The CNN has no BatchNorm, so there are no buffers to stack.
    """

    def __init__(
        self, members: Sequence[nn.Module], example_shape: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        features = zip(*(m.features for m in members), strict=True)
        self.features = nn.Sequential(*_stacked_layers(list(features)))
        classifiers = zip(*(m.classifier for m in members), strict=True)
        self.classifier = nn.Sequential(*_stacked_layers(list(classifiers)))
        self.members = len(members)
        self.example_dims = len(example_shape) if example_shape else 3
        # a blueprint for `member`, kept out of the module tree (not a parameter to train)
        self.__dict__["_template"] = copy.deepcopy(members[0])

    def _masks_input(self) -> bool:
        """Whether input dropout draws masks now (its own mode: Monte Carlo dropout turns on
        the dropout layers alone)."""
        first = self.features[0]
        return isinstance(first, nn.Dropout) and first.training and first.p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.members
        if x.dim() == self.example_dims + 2:  # (k, batch, C, H, W): each member its own rows
            x = x.transpose(0, 1).flatten(1, 2)  # (batch, k·C, H, W)
        elif self._masks_input():  # a shared batch, but each member draws its own mask
            x = x.repeat(1, k, 1, 1)
        h = self.features(x)  # (batch, k·C', H', W'); a shared x: the first conv is ungrouped
        h = h.unflatten(1, (k, -1)).flatten(2).transpose(0, 1)  # (k, batch, C'·H'·W')
        return self.classifier(h)

    def member(self, i: int) -> nn.Module:
        """Member i as a standalone CNN (a copy of its parameters)."""
        net = copy.deepcopy(self._template)
        kinds = (nn.Conv2d, nn.Linear)
        own = [m for m in net.modules() if isinstance(m, kinds)]
        stacked = [m for m in self.modules() if isinstance(m, (StackedConv2d, StackedLinear))]
        with torch.no_grad():
            for layer, s in zip(own, stacked, strict=True):
                if isinstance(layer, nn.Linear):
                    layer.weight.copy_(s.weight[i].T)
                    layer.bias.copy_(s.bias[i, 0])
                else:
                    layer.weight.copy_(s.weight[i])
                    if layer.bias is not None:
                        layer.bias.copy_(s.bias[i])
        return net


def stack(members: Sequence[nn.Module], example_shape: Sequence[int] | None = None) -> nn.Module:
    """k members as one module: StackedMLP for reglab's own MLP or Linear, StackedCNN for
    its CNN (exactly those classes: a subclass may change forward), models.Ensemble for any
    other network."""
    if all(type(m) in (MLP, Linear) for m in members):
        return StackedMLP(members, example_shape)
    if all(type(m) is CNN for m in members):
        return StackedCNN(members, example_shape)
    return Ensemble(members, example_shape)
