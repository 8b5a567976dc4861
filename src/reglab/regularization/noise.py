"""Noise robustness (Goodfellow et al., §7.5): noise on the weights, or on the labels.

`noise=weights` adds ε ~ N(0, σ²) to every penalized weight (the linear and convolutional
layers' weights, as `regularization.penalties` selects them) before each training forward
pass and removes it before the optimizer's update: the gradient is taken at w + ε and
applied to w. The book reads it as "a stochastic implementation of Bayesian inference over
the weights"; for a regression ŷ it adds, in expectation, ησ²·E[‖∇_W ŷ(x)‖²] to the MSE, a
push towards flat regions of the loss (§7.5, after Graves 2011 and Hochreiter &
Schmidhuber 1995). Validation and test see the weights without noise.

`noise=labels` is label smoothing (§7.5.1): a hard target of one of k classes becomes
(1 − ε)·onehot + ε/k, so the softmax's cross-entropy no longer pushes the logits to
infinity. Targets that are already distributions (mixup's) are smoothed alike.

Input noise is `augmentation=noise` (data/augmentation.py): on a linear regression it is L2
with α = 2σ² in expectation (Bishop 1995), a check of `reglab.theory`.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor


class NoNoise:
    """`noise=none`: weights and targets as they are."""

    def perturbed(self, weights: list[Tensor]) -> AbstractContextManager:
        """Within the block, the weights the forward and backward passes see."""
        return nullcontext()  # entered every optimizer step: cheaper than a generator

    def targets(self, y: Tensor, classes: int) -> Tensor:
        """The targets J is computed against: class indices, or (…, k) distributions."""
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class WeightNoise(NoNoise):
    """w + ε, ε ~ N(0, std²) per weight, during each training forward and backward pass."""

    def __init__(self, std: float = 0.01) -> None:
        self.std = float(std)

    @contextmanager
    def perturbed(self, weights: list[Tensor]) -> Iterator[None]:
        if not self.std:
            yield
            return
        # the clean values are copied back, not ε subtracted: w + ε − ε is not w in float32
        clean = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w in weights:
                w.add_(torch.randn_like(w), alpha=self.std)
        try:
            yield
        finally:
            with torch.no_grad():
                for w, c in zip(weights, clean, strict=True):
                    w.copy_(c)

    def __repr__(self) -> str:
        return f"WeightNoise(std={self.std:g})"


class LabelSmoothing(NoNoise):
    """Targets (1 − ε)·q + ε/k, q the one-hot label (or a mixed distribution), ε = smoothing."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = float(smoothing)

    def targets(self, y: Tensor, classes: int) -> Tensor:
        q = y if y.is_floating_point() else F.one_hot(y, classes).to(torch.float32)
        return q * (1 - self.smoothing) + self.smoothing / classes

    def __repr__(self) -> str:
        return f"LabelSmoothing(smoothing={self.smoothing:g})"
