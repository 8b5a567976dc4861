"""The floor under `benchmark.py --suite core`: Lightning's loops doing the plain loop's work.

A bare LightningModule trains the same MLP with the same fused Adam, a chunk of an
epoch's minibatches per Lightning step (manual optimization, as reglab's module) and one
validation forward per epoch, with no logger, checkpoint or callback. What a reglab fit
costs above this is reglab's own work at each step, validation and epoch end (its logs,
checkpoints, early stopping), not Lightning's.
"""

import logging
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from reglab.models import MLP


class _Epoch:
    """One Lightning batch per epoch: the whole split (shuffled, for training)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shuffle: bool) -> None:
        self.x, self.y, self.shuffle = x, y, shuffle

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        order = torch.randperm(len(self.x)) if self.shuffle else slice(None)
        yield self.x[order], self.y[order]


class _Bare(pl.LightningModule):
    def __init__(self, n_features: int, batch_size: int) -> None:
        super().__init__()
        self.net = MLP(n_features, 10, (256, 256))
        self.batch_size = batch_size
        self.automatic_optimization = False

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

    def training_step(self, chunk, chunk_idx) -> None:
        opt = self.optimizers().optimizer
        for xb, yb in zip(*(t.split(self.batch_size) for t in chunk), strict=True):
            loss = F.cross_entropy(self.net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def validation_step(self, batch, batch_idx) -> None:
        self.acc = (self.net(batch[0]).argmax(1) == batch[1]).float().mean().item()


def bare_lightning(dm, epochs: int, seed: int, batch_size: int = 64) -> float:
    """Seconds of `trainer.fit` of the bare module on `dm`'s train and val splits."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    torch.manual_seed(seed)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    module = _Bare(dm.n_features, batch_size)
    start = time.perf_counter()
    trainer.fit(module, _Epoch(*dm.splits["train"], True), _Epoch(*dm.splits["val"], False))
    return time.perf_counter() - start
