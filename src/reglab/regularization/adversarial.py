"""Adversarial training (Goodfellow et al., §7.13): train on the inputs that hurt the network most.

An adversarial example x' = x + δ with ‖δ‖∞ ≤ ε maximizes the loss near x. The fast gradient
sign method (FGSM, Goodfellow et al. 2015, the book's Fig. 7.8) takes one step,
δ = ε·sign(∇ₓJ(θ; x, y)); projected gradient descent (PGD, Madry et al. 2018) starts at a
random point of the ε-ball and takes `steps` steps of `step_size`·sign(∇ₓJ), projecting
back onto the ball (and the valid range) after each. Training minimizes

    (1 − w)·J(θ; x, y) + w·J(θ; x', y),  w = `weight`                 (Goodfellow 2015: w = ½)

which "encourages the network to be locally constant in the neighborhood of the training
data". `evaluate` (fgsm, pgd or both: [fgsm,pgd]) reports the test accuracy (or MSE)
under that attack, with or without adversarial training.

Units: reglab standardizes inputs per feature, and attacks act on the standardized inputs;
ε is converted so that it means, for image data, pixels in the data's own units (digits:
0–16, so ε = 1 is 1/16 of the range), and for tables, each feature's standard deviation.
For images x' also stays within the training pixels' range [min, max] (digits: [0, 16]).
The network is in eval mode while an attack searches (no dropout, BatchNorm statistics
untouched).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

Attack = Literal["fgsm", "pgd"]
LossOf = Callable[[Tensor], Tensor]  # inputs → the scalar loss an attack increases


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def loss_gradient(loss_of: LossOf, x: Tensor) -> Tensor:
    """∇ₓ loss_of(x), leaving the parameters' .grad as they were (inference mode too)."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone().requires_grad_(True)  # a clone: test batches may be inference tensors
        (grad,) = torch.autograd.grad(loss_of(x), x)
    return grad


class Adversarial:
    """Attacks for training (`method`) and for the test (`evaluate`), ε in input units."""

    def __init__(
        self,
        method: Literal["none", "fgsm", "pgd"] = "none",
        epsilon: float = 1.0,
        steps: int = 1,
        step_size: float | None = None,
        weight: float = 0.5,
        evaluate: Attack | Sequence[Attack] | None = None,
    ) -> None:
        self.method, self.epsilon, self.steps = method, float(epsilon), int(steps)
        self.step_size = 2.5 * self.epsilon / self.steps if step_size is None else float(step_size)
        self.weight = float(weight)
        # the attacks the test reports (`test/acc_<attack>`): none, one, or a list
        self.evaluate = [evaluate] if isinstance(evaluate, str) else list(evaluate or [])
        self.scale = self.low = self.high = torch.zeros(())  # set by `bind`

    @property
    def trains(self) -> bool:
        return self.method != "none"

    def bind(self, mean: Tensor, std: Tensor, x_train: Tensor, images: bool) -> None:
        """Input units → standardized: ε·scale per feature, the box [low, high] for images."""
        flat_std = std.reshape(-1)
        self.scale = 1 / flat_std if images else torch.ones_like(flat_std)
        if images:
            raw = x_train.reshape(len(x_train), -1) * flat_std + mean.reshape(-1)
            self.low = (raw.min() - mean.reshape(-1)) / flat_std
            self.high = (raw.max() - mean.reshape(-1)) / flat_std
        else:
            self.low = torch.full_like(flat_std, -torch.inf)
            self.high = torch.full_like(flat_std, torch.inf)

    def _per_feature(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shape = x.shape[1:]
        return tuple(t.to(x.device, x.dtype).view(shape) for t in (self.scale, self.low, self.high))

    def perturb(self, net: nn.Module, loss_of: LossOf, x: Tensor, attack: Attack) -> Tensor:
        """x' within ε (input units) of x and within the valid range, detached."""
        scale, low, high = self._per_feature(x)
        radius = self.epsilon * scale
        steps, size = (1, radius) if attack == "fgsm" else (self.steps, self.step_size * scale)
        start = x if attack == "fgsm" else x + (2 * torch.rand_like(x) - 1) * radius
        adv = torch.maximum(torch.minimum(start, high), low).detach()
        with eval_mode(net):
            for _ in range(steps):
                adv = adv + size * loss_gradient(loss_of, adv).sign()
                adv = torch.minimum(torch.maximum(adv, x - radius), x + radius)
                adv = torch.maximum(torch.minimum(adv, high), low).detach()
        return adv

    def mix(self, clean: Tensor, adversarial: Tensor) -> Tensor:
        """(1 − w)·J(x) + w·J(x'): the loss adversarial training minimizes."""
        return (1 - self.weight) * clean + self.weight * adversarial

    def __repr__(self) -> str:
        return (
            f"Adversarial(method={self.method}, epsilon={self.epsilon:g}, steps={self.steps},"
            f" step_size={self.step_size:g}, weight={self.weight:g}, evaluate={self.evaluate})"
        )
