"""Data augmentation: "more data, better generalization" (Goodfellow et al., §7.4).

Transforms act on whole training batches, on the device, with random parameters drawn per
sample, and never on validation or test data (the module calls them in `training_step`
only). Image transforms come from kornia.augmentation and see the batch as (N, C, H, W),
the shape image data has (bagging's (k, N, C, H, W) blocks as k·N images), in the data's
own pixel units: the standardized features are mapped back before and forward again
after, so a rotation fills with the background, not with a pixel's mean. Gaussian input
noise works on any data, tabular too.

A transform is any nn.Module of a batch, declared with `_target_` in conf/augmentation/,
so a new one needs no code: `augmentation=[affine,noise]` composes them in order. Label
mixing (`mixup`, `cutmix`: data/mixing.py) blends examples and their labels; it runs after
the other transforms, through `mix`, since it needs the labels too.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from reglab.config import ConfigError, first_line
from reglab.data.mixing import MixUp, is_mixer, kornia_mix, mix_targets


class GaussianNoise(nn.Module):
    """x + ε, ε ~ N(0, σ²) per element (noise injection on the inputs, §7.5)."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)


def is_image_transform(transform: nn.Module) -> bool:
    return type(transform).__module__.startswith("kornia") and not is_mixer(transform)


class Augmentation(nn.Module):
    """The configured transforms in order, on training batches: (…, C, H, W) for image data,
    (…, features) for tables (`mean`, `std`: the flat per-feature statistics)."""

    def __init__(
        self,
        transforms: Sequence[nn.Module] | Mapping[str, nn.Module],
        image_shape: Sequence[int] | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ) -> None:
        super().__init__()
        items = list(transforms.values() if isinstance(transforms, Mapping) else transforms)
        self.transforms = nn.ModuleList([t for t in items if not is_mixer(t)])
        self.mixers = nn.ModuleList([t for t in items if is_mixer(t)])
        self.image_shape = tuple(image_shape) if image_shape else None
        kornia_mixers = [t for t in self.mixers if type(t).__module__.startswith("kornia")]
        if self.image_shape is None and any(map(is_image_transform, self.transforms)):
            raise ValueError("image transforms need data.image_shape")
        if self.image_shape is None and kornia_mixers:
            raise ValueError("cutmix needs data.image_shape")
        self.register_buffer("mean", mean if mean is not None else torch.zeros(()), False)
        self.register_buffer("std", std if std is not None else torch.ones(()), False)

    @classmethod
    def checked(
        cls, transforms: Mapping[str, nn.Module], example_shape: Sequence[int], **data: Any
    ) -> "Augmentation":
        """The Augmentation of `transforms` (`data`: image_shape, mean, std), after a
        ConfigError for the first transform that does not map 2 examples of
        `example_shape` to 2 of the same shape: the network was sized by the data, so
        such a transform (e.g. CIFAR's 32×32 crop of 8×8 digits) would end the first
        training step in a traceback. The RNG is forked: the check draws nothing a run
        would see. Mixers blend examples of the batch's own shape and are not run."""
        x = torch.zeros(2, *example_shape)
        for name, transform in transforms.items():
            if not is_mixer(transform):
                with torch.random.fork_rng(devices=[]):
                    problem = _shape_problem(cls({name: transform}, **data), x)
                if problem:
                    image = data.get("image_shape")
                    crop = f", e.g. a crop's size = the images' (H, W): {list(image[1:])}"
                    raise ConfigError(
                        f"augmentation.transforms.{name} ({type(transform).__name__}) {problem}"
                        f" for input of shape {tuple(x.shape)} (allowed: a transform that keeps"
                        f" an example's shape, {tuple(example_shape)}{crop if image else ''})"
                    )
        return cls(transforms, **data)

    def __len__(self) -> int:
        return len(self.transforms) + len(self.mixers)

    def mix(self, x: Tensor, y: Tensor, classes: int | None) -> tuple[Tensor, Tensor]:
        """(x̃, q̃): each mixer in turn blends the batch and its targets (one-hot labels of
        `classes` classes, or regression values); without mixers, (x, y) as they are."""
        for mixer in self.mixers:
            if isinstance(mixer, MixUp):
                x, partner, lam = mixer(x)
            else:  # kornia's, on (N, C, H, W)
                images, partner, lam = kornia_mix(mixer, x.reshape(len(x), *self.image_shape))
                x = images.reshape(x.shape)
            y = mix_targets(y, partner, lam, classes)
        return x, y

    def forward(self, x: Tensor) -> Tensor:
        """Transform a batch (any leading axes, then one example's shape; flat images,
        (…, C·H·W), come back flat)."""
        for transform in self.transforms:
            x = self._on_images(transform, x) if is_image_transform(transform) else transform(x)
        return x

    def _on_images(self, transform: nn.Module, x: Tensor) -> Tensor:
        shape = self.image_shape
        flat = tuple(x.shape[-len(shape) :]) != shape  # (…, C·H·W) examples: back to flat
        images = x.unflatten(-1, shape) if flat else x
        lead = images.shape[: images.dim() - len(shape)]
        mean, std = (self._per_pixel(t) for t in (self.mean, self.std))
        pixels = (images * std + mean).reshape(-1, *shape)
        pixels = transform(pixels)
        out = ((pixels.reshape(*lead, *shape) - mean) / std).to(x.dtype)
        return out.flatten(-len(shape)) if flat else out

    def _per_pixel(self, stat: Tensor) -> Tensor:
        """A flat per-feature statistic in the image's (C, H, W), or a scalar as it is."""
        return stat.view(self.image_shape) if stat.dim() else stat


@torch.no_grad()
def _shape_problem(augment: Augmentation, x: Tensor) -> str | None:
    """Why `augment` does not map `x` to a batch of its shape, or None."""
    try:
        out = augment(x)
    except Exception as err:  # any transform's own error: named in one line by `checked`
        return f"fails: {type(err).__name__}: {first_line(err)}"
    return None if out.shape == x.shape else f"returns shape {tuple(out.shape)}"
