"""Semi-supervised learning: a supervised task + unsupervised reconstruction (§7.6).

Labelled examples are few, unlabelled ones many. The lecture's picture ("Supervised Task +
Unsupervised Data Reconstruction") shares one representation h = f(x) between a model of
P(y | x) and an unsupervised model of x, here an autoencoder: x → encoder → h → decoder
→ x̂, with a classifier head on h. Reconstruction asks h to explain every x, so the few
labels fit a representation shaped by all the data instead of by themselves alone:

    J(θ) = (1/|L|) Σ_{i∈L} CE(g(hᵢ), yᵢ)  +  λ · (1/n) Σ_{i=1..n} Σ_j sⱼ²(x̂ᵢⱼ − xᵢⱼ)² / d

with L the labelled examples of a minibatch, n all of them, d the number of features and
λ = `model.recon_weight`. Unlabelled examples carry the class `data.UNLABELED` and are
ignored by the first term: they reach the parameters through reconstruction only.

The network sees standardized features; sⱼ (`model.recon_units`) sets the units the
reconstruction error is measured in. `standardized`: sⱼ = 1. `raw`: sⱼ = σⱼ/rms(σ), the
error in the data's own units (for images, pixels) over the mean feature variance, which
keeps the scale of standardized units (predicting the feature means scores about 1).
Images want raw units: a border pixel that is almost always 0 has a tiny σⱼ, and
standardized it swings by tens, so its rare strokes would outweigh the digit's shape.
`auto` (default) is raw for image data, standardized for tabular data, whose features come
in unrelated units.
"""

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from reglab.data.splitting import UNLABELED
from reglab.objectives.base import RegLabModule, require
from reglab.records import log_images


class SemiSupervisedModule(RegLabModule):
    """RegLabModule minimizing CE on labelled examples + λ·reconstruction MSE on all.

    Logs `train|val|test/recon_mse` beside the classification metrics, and for image data
    a grid of validation inputs over their reconstructions every `image_every_n_epochs`.
    """

    def __init__(self, *args: Any, image_every_n_epochs: int = 5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        needs = ("forward_both", "reconstruct", "out_features", "recon_weight", "recon_units")
        allowed = "model=autoencoder or model=conv_autoencoder, or objective=plain"
        require(self.net, "semi_supervised", needs, allowed)
        self.recon_weight = self.net.recon_weight
        self.n_classes = self.net.out_features
        self.image_every_n_epochs = image_every_n_epochs
        self._last_image_epoch = -1
        # sⱼ; None: standardized units (sⱼ = 1). A buffer, so it moves with the module once
        # instead of being copied to the batch's device every step; not saved in checkpoints
        # (setup derives it from the data again).
        self.register_buffer("recon_scale", None, persistent=False)
        for split in ("val", "test"):
            self.metrics[f"{split}_recon"] = torchmetrics.MeanMetric()

    def setup(self, stage: str) -> None:
        """sⱼ from the data's feature scales (fit, validate and test alike)."""
        dm = self.trainer.datamodule
        units = self.net.recon_units
        if units == "auto":
            units = "raw" if dm is not None and dm.image_shape is not None else "standardized"
        if units == "raw" and dm is not None:
            std = dm.feature_std
            self.recon_scale = (std / std.square().mean().sqrt()).to(self.device)

    def residual(self, reconstruction: Tensor, x: Tensor) -> Tensor:
        """sⱼ(x̂ⱼ − xⱼ): its mean square is the reconstruction error (flat, per feature:
        images are compared as C·H·W values)."""
        residual = reconstruction - x.flatten(1)
        return residual if self.recon_scale is None else residual * self.recon_scale

    def train_output(self, x: Tensor) -> Tensor:
        """[class scores | s⊙(x̂ − x)]: the step loss needs both, and x only through x̂ − x."""
        scores, reconstruction = self.net.forward_both(x)
        return torch.cat([scores, self.residual(reconstruction, x)], dim=-1)

    def _parts(self, output: Tensor) -> tuple[Tensor, Tensor]:
        return output[..., : self.n_classes], output[..., self.n_classes :]

    @staticmethod
    def supervised_loss(scores: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy over the labelled examples (0 if the batch has none)."""
        labeled = (y != UNLABELED).sum().clamp(min=1)
        return F.cross_entropy(scores, y, ignore_index=UNLABELED, reduction="sum") / labeled

    def step_loss(self, output: Tensor, y: Tensor) -> Tensor:
        scores, residual = self._parts(output)
        return self.supervised_loss(scores, y) + self.recon_weight * residual.square().mean()

    @torch.no_grad()
    def train_metrics(self, output: Tensor, y: Tensor) -> dict[str, Tensor]:
        scores, residual = self._parts(output)
        return {
            "train/acc": self._batch_metric(scores, y),
            "train/supervised_loss": self.supervised_loss(scores, y),
            "train/recon_mse": residual.square().mean(),
        }

    def _batch_metric(self, output: Tensor, y: Tensor) -> Tensor:
        """Accuracy on the labelled examples only."""
        labeled = y != UNLABELED
        return (output.argmax(-1)[labeled] == y[labeled]).float().mean()

    def eval_loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        return F.nll_loss(prediction, y, ignore_index=UNLABELED)

    # -- evaluation: the classifier's metrics, plus reconstruction ---------------------------
    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        super()._evaluate(split, batch)
        x = batch[0]
        error = self.residual(self.net.reconstruct(x), x).square().mean()
        self.metrics[f"{split}_recon"].update(error, len(x))

    def _compute(self, split: str) -> dict[str, Tensor]:
        values = super()._compute(split)
        values[f"{split}/recon_mse"] = self.metrics[f"{split}_recon"].compute()
        self.metrics[f"{split}_recon"].reset()
        return values

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        epoch = self.current_epoch
        if epoch % self.image_every_n_epochs == 0 and epoch != self._last_image_epoch:
            self._last_image_epoch = epoch
            self.log_reconstructions("val")

    @torch.no_grad()
    def log_reconstructions(self, split: str, count: int = 16) -> None:
        """Inputs and their reconstructions, side by side in TensorBoard's IMAGES tab."""
        dm = self.trainer.datamodule
        if dm is None or dm.image_shape is None or self.trainer.sanity_checking:
            return
        x = dm.splits[split][0][:count].to(self.device)
        args = (dm.image_shape, dm.feature_mean, dm.feature_std, self.step)
        log_images(self.loggers, "reconstruction/input", x, *args)
        log_images(self.loggers, "reconstruction/output", self.net.reconstruct(x), *args)
