"""The project's network: plain PyTorch, no reglab import (conf/model/my_net.yaml)."""

import torch
from torch import nn


class WaveNet1d(nn.Module):
    """A 1-D ConvNet over a signal: (N, length) → (N, classes).

    reglab passes the sizes the constructor declares: `in_features` (the signal's length)
    and `out_features` (the classes); `width`, `kernel_size` and `p` come from the config.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 16,
        kernel_size: int = 5,
        p: float = 0.0,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, width, kernel_size, padding="same"),
            nn.ReLU(),
            nn.Dropout1d(p),  # whole channels: reglab's inference=mc samples it too
            nn.Conv1d(width, width, kernel_size, padding="same"),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 4, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.unsqueeze(1)))  # (N, length) → (N, 1 channel, length)
