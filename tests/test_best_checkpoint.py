"""BestCheckpoint (best.ckpt, θ*) against Lightning's own ModelCheckpoint on the same fits:
the same file names, scores, steps and weights, without the full state dump."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from reglab.models import CNN
from reglab.records import BestCheckpoint, CheckpointWriter


class Tiny(nn.Module):  # a user's own network
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x.flatten(1))))


NETS = {
    "user": (Tiny, (4,)),
    "cnn": (lambda: CNN(1, 2, (1, 4, 4), channels=(2,), hidden_sizes=(4,)), (1, 4, 4)),
}


class Module(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def training_step(self, batch, i):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def on_save_checkpoint(self, checkpoint):  # a module's additions reach best.ckpt too
        checkpoint["seen_at_step"] = self.trainer.global_step

    def validation_step(self, batch, i):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("val/loss", loss)
        self.log("val/noisy", loss + torch.rand(()))  # a monitor that goes up and down


def _fit(callback: ModelCheckpoint, net: str, tmp_path) -> ModelCheckpoint:
    make, shape = NETS[net]
    torch.manual_seed(0)
    x = torch.randn(64, *shape)
    y = (x.flatten(1).sum(1) > 0).long()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    torch.manual_seed(1)
    trainer = pl.Trainer(
        max_epochs=6,
        accelerator="cpu",
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[CheckpointWriter()],
        default_root_dir=tmp_path,
    )
    trainer.fit(Module(make()), data, data)
    return callback


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("top_k", [1, 2])
def test_best_checkpoint_keeps_what_model_checkpoint_keeps(tmp_path, net, top_k):
    kwargs = dict(monitor="val/noisy", save_top_k=top_k, save_weights_only=True)
    kwargs |= dict(filename="best-{epoch}", auto_insert_metric_name=False)
    theirs = _fit(ModelCheckpoint(dirpath=tmp_path / "lightning", **kwargs), net, tmp_path)
    ours = _fit(BestCheckpoint(dirpath=tmp_path / "reglab", **kwargs), net, tmp_path)
    assert ours.best_model_score == theirs.best_model_score
    assert {p.rsplit("/", 1)[1] for p in ours.best_k_models} == {
        p.rsplit("/", 1)[1] for p in theirs.best_k_models
    }
    assert len(ours.best_k_models) == top_k
    assert ours.state_key == theirs.state_key  # either's saved state resumes the other
    for name in {p.name for p in (tmp_path / "lightning").iterdir()}:
        a = torch.load(tmp_path / "lightning" / name, weights_only=True)
        b = torch.load(tmp_path / "reglab" / name, weights_only=True)
        for key in ("epoch", "global_step", "pytorch-lightning_version", "seen_at_step"):
            assert a[key] == b[key]
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), key
        assert "loops" not in b and "state_dict" in b  # θ* alone; last.ckpt has the rest


def test_monitor_candidates_are_copies_as_lightnings_deepcopy_makes_them():
    """The scores kept (best_model_score, best_k_models) must not move with a logged tensor
    that is later changed in place; epoch and step become integer tensors, as Lightning's."""
    logged = {"val/loss": torch.tensor(0.5), "note": [1, 2]}
    trainer = SimpleNamespace(callback_metrics=logged, current_epoch=3, global_step=7)
    ours = BestCheckpoint(monitor="val/loss")._monitor_candidates(trainer)
    theirs = ModelCheckpoint(monitor="val/loss")._monitor_candidates(trainer)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value) if torch.is_tensor(value) else ours[key] == value
        assert type(ours[key]) is type(value)
    assert ours["epoch"].dtype == theirs["epoch"].dtype and int(ours["step"]) == 7
    logged["val/loss"].add_(1.0)
    logged["note"].append(3)
    assert ours["val/loss"] == 0.5 and ours["note"] == [1, 2]
