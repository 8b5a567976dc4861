"""A LeNet-style convolutional network: conv–pool blocks, then a fully connected classifier.

Each block is conv (`kernel_size`, "same" padding) → activation → 2×2 max pooling, the
pooling only while the feature map is at least 2×2 (so 8×8 digits go 8 → 4 → 2 → 1 and no
further, whatever the number of blocks). Dropout, as in MLP: `dropout.input` masks input
pixels, `dropout.channel` drops whole feature maps after each block (spatial dropout,
nn.Dropout2d: neighbouring pixels of a map are correlated, so masking them one by one
would hardly remove information), `dropout.hidden` masks the classifier's hidden units.
"""

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from reglab.models.mlp import ACTIVATIONS, Dropout


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
        _, height, width = image_shape
        blocks: list[nn.Module] = [Dropout(rates["input"])] if rates["input"] else []
        fan_in = in_channels
        for c in channels:
            blocks += [nn.Conv2d(fan_in, c, kernel_size, padding="same"), ACTIVATIONS[activation]()]
            if height >= 2 and width >= 2:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            if rates["channel"]:
                blocks.append(nn.Dropout2d(rates["channel"]))
            fan_in = c
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
