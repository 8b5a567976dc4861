"""Autoencoder with a classifier on its code: the network of semi-supervised learning (§7.6).

Its objective, CE on labelled examples + λ·reconstruction on all, is
`objectives.semi_supervised.SemiSupervisedModule` (the equation is in that docstring).

Encoder, decoder and classifier are any networks (`model.encoder|decoder|classifier`, each
a `_target_`: conf/model/encoder/, decoder/, classifier/), sized by the size contract
(models/sizes.py):

    encoder     the data's sizes, out_features = code_size        x → h  (N, d)
    decoder     in_features = d, out_features = the data's in_features, and for image
                data in_channels and image_shape: the shape it reconstructs   h → x̂
    classifier  in_features = d, out_features = the classes        h → class scores

`model=autoencoder` builds all three as MLPs, `model=conv_autoencoder` a convolutional
encoder (models.CNN) and decoder (models.ConvDecoder) for images.
"""

import functools
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from reglab.models.mlp import ACTIVATIONS, MLP, Dropout
from reglab.models.sizes import Part, build_part, input_sizes, output_width

# the parts of model=autoencoder, for use from Python (the YAMLs of conf/model/*/ say the same)
MLP_CODER = functools.partial(MLP, hidden_sizes=(256,))
LINEAR_CLASSIFIER = functools.partial(MLP, hidden_sizes=())


class Autoencoder(nn.Module):
    """x → Dropout(input) → encoder → act = h; decoder(h) = x̂; classifier(Dropout(hidden)(h)).

    `forward` is the supervised model x → class scores, so validation, test and dropout
    inference treat it as any classifier; `reconstruct` is the unsupervised one. Input is
    in the data's shape; the reconstruction is returned flat, (N, features), for images too
    (the decoder may return (N, C, H, W)). `dropout.input` masks the input but not the
    reconstruction target (a denoising autoencoder); `dropout.hidden` masks the code on its
    way to the classifier (and, through their configs, the MLP parts' hidden units).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        encoder: Part = MLP_CODER,
        decoder: Part = MLP_CODER,
        classifier: Part = LINEAR_CLASSIFIER,
        code_size: int = 32,
        activation: str = "relu",
        dropout: Mapping[str, float] | None = None,
        recon_weight: float = 1.0,
        recon_units: str = "auto",
        in_channels: int | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        rates = {"input": 0.0, "hidden": 0.0, **(dropout or {})}
        sizes = input_sizes(in_features, in_channels, image_shape)
        self.encoder = nn.Sequential(
            Dropout(rates["input"]),
            build_part(encoder, {**sizes, "out_features": code_size}, "model.encoder"),
            ACTIVATIONS[activation](),
        )
        self.code_size = output_width(self.encoder, image_shape or (in_features,), "model.encoder")
        code = {"in_features": self.code_size}
        to_input = {**sizes, **code, "out_features": in_features}  # image sizes: what it rebuilds
        self.decoder = build_part(decoder, to_input, "model.decoder")
        self.code_dropout = Dropout(rates["hidden"])
        to_classes = {**code, "out_features": out_features}
        self.classifier = build_part(classifier, to_classes, "model.classifier")
        self.out_features = out_features  # the classes: the objective splits its outputs here
        self.recon_weight = recon_weight  # λ: read by SemiSupervisedModule
        self.recon_units = recon_units  # auto | raw | standardized: see the module docstring

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.code_dropout(self.encoder(x)))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x)).flatten(1)

    def forward_both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class scores and (flat) reconstruction from one pass through the encoder."""
        h = self.encoder(x)
        return self.classifier(self.code_dropout(h)), self.decoder(h).flatten(1)
