"""A LeNet-style convolutional network: conv–pool blocks, then a fully connected classifier.

Each block is conv (`kernel_size`, "same" padding) → activation → 2×2 max pooling, the
pooling only while the feature map is at least 2×2 (so 8×8 digits go 8 → 4 → 2 → 1 and no
further, whatever the number of blocks). Dropout, as in MLP: `dropout.input` masks input
pixels, `dropout.channel` drops whole feature maps after each block (spatial dropout,
nn.Dropout2d: neighbouring pixels of a map are correlated, so masking them one by one
would hardly remove information), `dropout.hidden` masks the classifier's hidden units.

`ConvDecoder` is its mirror image, the decoder of `model=conv_autoencoder`: from a code
vector back up through the same map sizes to an image.
"""

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from reglab.models.mlp import ACTIVATIONS, Dropout


def pooled_shapes(height: int, width: int, blocks: int) -> list[tuple[int, int]]:
    """Feature-map sizes before the first block and after each: halved (2×2 max pooling)
    while the map is at least 2×2, e.g. 8×8 with 2 blocks → [(8, 8), (4, 4), (2, 2)]."""
    shapes = [(height, width)]
    for _ in range(blocks):
        if height >= 2 and width >= 2:
            height, width = height // 2, width // 2
        shapes.append((height, width))
    return shapes


class CNN(nn.Module):
    """(N, C, H, W) → `channels` conv–pool blocks → flatten → `hidden_sizes` → out_features."""

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        rates = {"input": 0.0, "channel": 0.0, "hidden": 0.0, **(dropout or {})}
        shapes = pooled_shapes(*image_shape[1:], len(channels))
        blocks: list[nn.Module] = [Dropout(rates["input"])] if rates["input"] else []
        fan_in = in_channels
        for c, (before, after) in zip(channels, itertools.pairwise(shapes), strict=True):
            blocks += [nn.Conv2d(fan_in, c, kernel_size, padding="same"), ACTIVATIONS[activation]()]
            if after != before:
                blocks.append(nn.MaxPool2d(2))
            if rates["channel"]:
                blocks.append(nn.Dropout2d(rates["channel"]))
            fan_in = c
        height, width = shapes[-1]
        self.features = nn.Sequential(*blocks)
        layers: list[nn.Module] = [nn.Flatten()]
        size = fan_in * height * width
        for h in hidden_sizes:
            layers += [nn.Linear(size, h), ACTIVATIONS[activation]()]
            if rates["hidden"]:
                layers.append(Dropout(rates["hidden"]))
            size = h
        layers.append(nn.Linear(size, out_features))
        self.classifier = nn.Sequential(*layers)
        self.dropout_rates = rates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ConvDecoder(nn.Module):
    """Code (N, in_features) → image (N, C, H, W): CNN's blocks in reverse.

    A linear map to `channels[0]` maps at the size CNN's last block leaves (2×2 for 8×8
    input and two blocks), then per block nearest-neighbour upsampling to the next larger
    size and a "same" convolution, the last one to the image's C channels without an
    activation (the reconstruction is in the standardized units the input arrives in).
    Upsampling then convolving, rather than transposed convolution, avoids its
    checkerboard artefacts (Odena et al., 2016).
    """

    def __init__(
        self,
        in_features: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        kernel_size: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        in_channels, *size = image_shape
        shapes = pooled_shapes(*size, len(channels))[::-1]  # smallest first
        layers: list[nn.Module] = [
            nn.Linear(in_features, channels[0] * shapes[0][0] * shapes[0][1]),
            ACTIVATIONS[activation](),
            nn.Unflatten(1, (channels[0], *shapes[0])),
        ]
        outs = [*channels[1:], in_channels]
        for fan_in, fan_out, shape in zip(channels, outs, shapes[1:], strict=True):
            conv = nn.Conv2d(fan_in, fan_out, kernel_size, padding="same")
            layers += [nn.Upsample(size=shape), conv, ACTIVATIONS[activation]()]
        self.layers = nn.Sequential(*layers[:-1])  # no activation on the reconstruction

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)
