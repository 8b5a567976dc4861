"""Label-mixing augmentation: train on blends of two training examples and of their labels.

Augmentation in the sense of §7.4 ("more data, better generalization"), but the new
examples lie between the training examples and their targets between the labels:

    mixup (Zhang et al. 2018)   x̃ = (1 − λ)x + λx_π,  λ ~ Beta(α, α) per example, any data
    cutmix (Yun et al. 2019)    x̃ = x with a box of x_π pasted in, λ = the box's share of
                                the image (kornia's RandomCutMixV2), image data only
    both                        q̃ = (1 − λ)q + λq_π

with π a random pairing of the batch and q the one-hot label (the target values, for
regression). The loss is J against q̃, the mixed soft target: for cross-entropy that is
(1 − λ)·J(x̃, y) + λ·J(x̃, y_π) exactly. Both are linear in x and position-preserving, so
they act alike on the standardized features and on the raw ones.

A mixer maps a batch x to (x̃, π, λ); `mix_targets` builds q̃. The training step calls them
on training data only (data.Augmentation.mix).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Beta

Mixed = tuple[Tensor, Tensor, Tensor]  # x̃, the partner of each example, λ (its share)


class MixUp(nn.Module):
    """x̃ = (1 − λ)x + λx_π with λ ~ Beta(α, α), one λ per example."""

    def __init__(self, alpha: float = 0.2) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Mixed:
        n = len(x)
        partner = torch.randperm(n, device=x.device)
        concentration = torch.tensor(self.alpha, device=x.device)
        lam = Beta(concentration, concentration).sample((n,)).to(x.dtype)
        share = lam.view(n, *([1] * (x.dim() - 1)))
        return (1 - share) * x + share * x[partner], partner, lam


def is_mixer(transform: nn.Module) -> bool:
    """A transform that mixes examples, and so their labels: MixUp, or kornia's mixes (told
    by their module: importing kornia would cost every run that uses none of it a second)."""
    return isinstance(transform, MixUp) or type(transform).__module__.startswith(
        "kornia.augmentation._2d.mix"
    )


def kornia_mix(transform: nn.Module, images: Tensor) -> Mixed:
    """(x̃, π, λ) from a kornia mix (RandomCutMixV2, one mix): each example's index is given
    as its "class", so the permuted class kornia returns is the partner π."""
    index = torch.arange(len(images), device=images.device, dtype=images.dtype)
    mixed, labels = transform(images, index)
    labels = labels.reshape(-1, len(images), 3)[0]  # (num_mix = 1, N, 3) → (N, 3)
    partner = labels[:, 1].round().long()
    # use_correct_lambda=True: kornia's λ is the share the example keeps
    return mixed, partner, (1 - labels[:, 2]).to(images.dtype)


def mix_targets(y: Tensor, partner: Tensor, lam: Tensor, classes: int | None) -> Tensor:
    """q̃ = (1 − λ)q + λq_π: q one-hot of class indices (`classes` of them), or y itself."""
    q = F.one_hot(y, classes).to(lam.dtype) if classes and not y.is_floating_point() else y
    share = lam.view(len(lam), *([1] * (q.dim() - 1))).to(q.dtype)
    return (1 - share) * q + share * q[partner]
