"""k networks of one architecture as one module: bagging's members in a single pass (§7.11).

Any nn.Module can be a member. `torch.func.stack_module_state` stacks the members'
parameters and buffers along a new leading axis of size k, and `torch.func.vmap` maps one
member's forward (`functional_call` with member i's slice of every tensor) over that axis:
k members cost one pass of batched kernels (batched matrix multiplications, grouped
convolutions) instead of k passes of small ones. Each member keeps its own state: BatchNorm's
running statistics are stacked buffers, which the members' forward updates in place, slice
by slice; dropout draws its masks per member (`randomness="different"`).
"""

import copy
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def _install(module: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]) -> None:
    """Put the stacked tensors in place of `module`'s own, name by name.

    By identity, not by name: a tensor that two layers share (tied weights) is listed once
    by `named_parameters`, and both layers must get the same stacked tensor."""
    new: dict[int, Any] = {id(t): nn.Parameter(params[n]) for n, t in module.named_parameters()}
    new |= {id(t): buffers[n] for n, t in module.named_buffers()}
    for m in module.modules():
        for store in (m._parameters, m._buffers):
            for leaf, t in store.items():
                if t is not None and id(t) in new:
                    store[leaf] = new[id(t)]


class Ensemble(nn.Module):
    """k networks of one architecture (any nn.Module) trained and evaluated as one.

    `stacked` is a copy of the first member whose every parameter and buffer has a leading
    axis of size k (member i's is slice i), so the layers keep their types and names:
    penalties find the weights of its linear and convolutional layers, Monte Carlo dropout
    its dropout layers, and checkpoints hold `stacked.<name>` of shape (k, …).

    Input (k, batch, *example_shape) gives each member its own rows; any other input, e.g.
    (batch, *example_shape), is shared by all (`example_shape`: one example's, (C, H, W) for
    images; default (in_features,)). Output: (k, batch, outputs). The members' initial values
    are those of the `members` passed in, so a sequential run from the same networks
    (`member(i)`) is comparable.
    """

    def __init__(
        self, members: Sequence[nn.Module], example_shape: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        params, buffers = stack_module_state(list(members))
        self.stacked = copy.deepcopy(members[0])
        _install(self.stacked, params, buffers)
        self.members = len(members)
        self.example_dims = len(example_shape) if example_shape else 1
        # a blueprint for `member`, kept out of the module tree (not a parameter to train)
        self.__dict__["_template"] = copy.deepcopy(members[0])

    def _member_forward(self, params: dict, buffers: dict, x: Tensor) -> Tensor:
        return functional_call(self.stacked, (params, buffers), (x,))

    def forward(self, x: Tensor) -> Tensor:
        own = x.dim() == self.example_dims + 2  # (k, batch, …): each member its own rows
        # the registered tensors themselves go in: BatchNorm's in-place updates of its
        # running statistics land in the stacked buffers, each member in its own slice
        params = dict(self.stacked.named_parameters())
        buffers = dict(self.stacked.named_buffers())
        mapped = vmap(
            self._member_forward, in_dims=(0, 0, 0 if own else None), randomness="different"
        )
        return mapped(params, buffers, x)

    def member(self, i: int) -> nn.Module:
        """Member i as a standalone network (a copy of its parameters and buffers)."""
        net = copy.deepcopy(self._template)
        net.load_state_dict({name: t[i] for name, t in self.stacked.state_dict().items()})
        return net
