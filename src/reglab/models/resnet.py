"""The CIFAR-style residual network of He et al. (2016, §4.2), for small images.

depth = 6n + 2 layers with weights: a 3×3 convolution to `width` channels, three stages of
n basic blocks (two 3×3 convolutions each, BatchNorm after each) at widths width·(1, 2, 4),
the second and third stage starting with stride 2, then global average pooling and one
linear layer. A block adds its input to its output (through a 1×1 convolution with
BatchNorm where the shape changes). `preact=true` is the pre-activation variant (He et al.,
"Identity mappings in deep residual networks"): BN → activation → conv inside the block,
nothing after the addition, and a final BN → activation before the pooling. Global average
pooling makes any image size work: 8×8 digits end at 2×2 maps, 32×32 images at 8×8.
"""

import torch
from torch import nn

from reglab.models.mlp import ACTIVATIONS


def _conv3x3(fan_in: int, fan_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(fan_in, fan_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """x + F(x), F = conv–BN–act–conv–BN, then the activation (post-activation, He 2016a)."""

    def __init__(self, fan_in: int, fan_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = _conv3x3(fan_in, fan_out, stride)
        self.bn1 = nn.BatchNorm2d(fan_out)
        self.conv2 = _conv3x3(fan_out, fan_out)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.act = ACTIVATIONS[activation]()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or fan_in != fan_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(fan_in, fan_out, 1, stride=stride, bias=False), nn.BatchNorm2d(fan_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """x + F(x), F = BN–act–conv–BN–act–conv (pre-activation, He 2016b)."""

    def __init__(self, fan_in: int, fan_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(fan_in)
        self.conv1 = _conv3x3(fan_in, fan_out, stride)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.conv2 = _conv3x3(fan_out, fan_out)
        self.act = ACTIVATIONS[activation]()
        self.shortcut: nn.Module | None = None
        if stride != 1 or fan_in != fan_out:
            self.shortcut = nn.Conv2d(fan_in, fan_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(h)
        out = self.conv2(self.act(self.bn2(self.conv1(h))))
        return out + shortcut


class ResNet(nn.Module):
    """(N, C, H, W) → ResNet-`depth` (6n + 2) at widths width·(1, 2, 4) → out_features."""

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        depth: int = 20,
        width: int = 16,
        preact: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth={depth}: must be 6n + 2 with n ≥ 1 (8, 14, 20, …)")
        n = (depth - 2) // 6
        block = PreActBlock if preact else BasicBlock
        stem: list[nn.Module] = [_conv3x3(in_channels, width)]
        if not preact:
            stem += [nn.BatchNorm2d(width), ACTIVATIONS[activation]()]
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        fan_in = width
        for i, multiple in enumerate((1, 2, 4)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(block(fan_in, width * multiple, stride, activation))
                fan_in = width * multiple
        self.stages = nn.Sequential(*stages)
        tail: list[nn.Module] = (
            [nn.BatchNorm2d(fan_in), ACTIVATIONS[activation]()] if preact else []
        )
        self.head = nn.Sequential(
            *tail, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(fan_in, out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
