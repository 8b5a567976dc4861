"""Autoencoder with a classifier on its code: the network of semi-supervised learning (§7.6).

Its objective, CE on labelled examples + λ·reconstruction on all, is
`objectives.semi_supervised.SemiSupervisedModule` (the equation is in that docstring).
"""

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from reglab.models.mlp import ACTIVATIONS, MLP


class Autoencoder(nn.Module):
    """Encoder MLP → code h → decoder MLP (the mirror image), and a classifier on h.

    `forward` is the supervised model x → class scores, so validation, test and dropout
    inference treat it as any classifier; `reconstruct` is the unsupervised one. Input
    (N, …) is flattened: the reconstruction is flat, (N, features), for images too.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (256,),
        code_size: int = 32,
        head_sizes: Sequence[int] = (),
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
        recon_weight: float = 1.0,
        recon_units: str = "auto",
    ) -> None:
        super().__init__()
        rates = {"input": 0.0, "hidden": 0.0, **(dropout or {})}
        self.encoder = nn.Sequential(
            MLP(in_features, code_size, hidden_sizes, activation, rates),
            ACTIVATIONS[activation](),
        )
        self.decoder = MLP(code_size, in_features, list(reversed(hidden_sizes)), activation)
        head_rates = {"input": rates["hidden"], "hidden": rates["hidden"]}
        self.classifier = MLP(code_size, out_features, head_sizes, activation, head_rates)
        self.recon_weight = recon_weight  # λ: read by SemiSupervisedModule
        self.recon_units = recon_units  # auto | raw | standardized: see the module docstring
        self.dropout_rates = rates

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.encoder(x.flatten(1)))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x.flatten(1)))

    def forward_both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class scores and (flat) reconstruction from one pass through the encoder."""
        h = self.encoder(x.flatten(1))
        return self.classifier(h), self.decoder(h)
