"""Sparse representations (Goodfellow et al., §7.10): a penalty on the activations, not the weights.

"Representational regularization is accomplished by the same sorts of mechanisms that we
have used in parameter regularization": J̃(θ; X, y) = J(θ; X, y) + α·Ω(h) (eq. 7.49), here
with Ω(h) = ‖h‖₁, the hidden units' absolute values summed over units and averaged over the
minibatch. Where eq. 7.19 drives weights to zero, this drives hidden units' outputs to zero,
so that each example is represented by few active units.

The hidden units are the outputs of the modules `layers` names, read by forward hooks, so
any nn.Module works: a pattern matches a module's dotted name (`features.*`,
`classifier.1`) or its class name (`ReLU`); the default is every activation module (ReLU,
Tanh, …), the hidden units of reglab's mlp, cnn and resnet. Every run also reports the
fraction of exactly-zero hidden outputs on the test set (`test/representation_sparsity`).
"""

from collections.abc import Sequence
from fnmatch import fnmatchcase

import torch
from torch import Tensor, nn

from reglab.config import ConfigError

# the default `layers`: the activation modules of torch.nn a hidden layer ends with
ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU)


def matching_modules(net: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Module]:
    """name → module for every module of `net` that a pattern matches (by name or class)."""
    found = {}
    for name, module in net.named_modules():
        if layers is None:
            wanted = isinstance(module, ACTIVATION_TYPES)
        else:
            labels = (name, type(module).__name__)
            wanted = bool(name) and any(fnmatchcase(s, p) for s in labels for p in layers)
        if wanted:
            found[name] = module
    return found


class Representation:
    """Ω(h) = ‖h‖₁ of the hidden outputs, weighted by `alpha` (0: measured only, `none`)."""

    def __init__(self, alpha: float = 0.0, layers: Sequence[str] | None = None) -> None:
        self.alpha = float(alpha)
        self.layers = list(layers) if layers is not None else None
        self.names: list[str] = []
        self._modules: list[nn.Module] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._outputs: list[Tensor] | None = None  # None: not recording
        self.zeros, self.total = 0, 0

    def attach(self, net: nn.Module) -> None:
        """Hook the modules `layers` names; a ConfigError if a penalty has none to act on."""
        modules = matching_modules(net, self.layers)
        if self.alpha and not modules:
            shown = "every activation module" if self.layers is None else self.layers
            raise ConfigError(
                f"representation.layers={shown} matches no module of {type(net).__name__}"
                " (allowed: patterns of module names or classes, e.g. [ReLU] or [features.*])"
            )
        self.names = list(modules)
        self._modules = list(modules.values())
        if self.active:  # training reads them every step; otherwise only tests do (`hook`)
            self.hook()

    def hook(self) -> None:
        """Register the forward hooks (idempotent). A hooked module takes torch's slower
        call path, a few percent of a small network's step: without a penalty they are
        registered for the test pass only."""
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook) for m in self._modules]

    def unhook(self) -> None:
        """Remove the hooks again, unless training needs them (α > 0)."""
        if not self.active:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    # eager even in a compiled network (trainer.compile): traced, the hook would make the
    # compiled code guard on the length of the recorded list, which grows with every
    # forward (Monte Carlo's blocks): a recompilation per call, until torch gives up. A
    # graph break at each hooked module instead: the hooks run in the test pass, or in
    # training only with a penalty.
    @torch.compiler.disable
    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._outputs is not None and isinstance(output, Tensor):
            self._outputs.append(output)

    @property
    def active(self) -> bool:
        """Whether training adds a penalty (and so must record the hidden outputs)."""
        return bool(self.alpha and self.names)

    def record(self) -> None:
        """Start collecting the hooked modules' outputs of the next forward passes."""
        self._outputs = [] if self.names else None

    def penalty(self) -> Tensor:
        """α·Σ_layers mean over the batch of ‖h‖₁ for what was recorded; stops recording."""
        outputs, self._outputs = self._outputs or [], None
        if not outputs:
            return torch.zeros(())
        return self.alpha * sum(h.abs().flatten(1).sum(1).mean() for h in outputs)

    @torch.no_grad()
    def tally(self) -> None:
        """Count the exact zeros of what was recorded (test time); stops recording."""
        outputs, self._outputs = self._outputs or [], None
        self.zeros += sum(int((h == 0).sum()) for h in outputs)
        self.total += sum(h.numel() for h in outputs)

    def sparsity(self) -> dict[str, float]:
        """{'test/representation_sparsity': fraction of zeros tallied} (empty if none); resets."""
        zeros, total, self.zeros, self.total = self.zeros, self.total, 0, 0
        return {"test/representation_sparsity": zeros / total} if total else {}

    def __repr__(self) -> str:
        return f"Representation(alpha={self.alpha:g}, layers={self.layers})"
