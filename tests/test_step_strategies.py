"""Noise, sparse representations, adversarial training and label mixing on any network, on
training data only: reglab's cnn and resnet and a user's nn.Module, in-process."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reglab
from reglab.data import Augmentation
from reglab.engine.run import build
from reglab.regularization.adversarial import Adversarial
from reglab.regularization.noise import WeightNoise

BASE = ["data.train_size=200", "trainer.max_epochs=2", "optimizer.lr=0.01", "threads=1"]
BASE += ["logger=none", "callbacks.progress_bar=null", "callbacks.weight_histograms=null"]
NETWORKS = {
    "cnn": ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[16]"],
    "resnet": ["model=resnet", "model.depth=8", "model.width=4"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_step_strategies.UserNet"],
}
EVERYTHING = [
    "noise=weights",
    "noise.std=0.02",
    "representation=l1",
    "representation.alpha=0.01",
    "adversarial=pgd",
    "adversarial.steps=2",
    "adversarial.evaluate=[fgsm,pgd]",
    "augmentation=cutmix",
]
LABELS = ["noise=labels", "augmentation=[affine,mixup]", "adversarial=fgsm"]


class UserNet(nn.Module):
    """A user's network: its hidden units are the `act` module's outputs."""

    def __init__(self, in_channels: int, out_features: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(width * 4, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.act(self.conv(x)), 2).flatten(1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], dict[str, float]]:
    base = tmp_path_factory.mktemp("strategies")
    out = {}
    for net, args in NETWORKS.items():
        for name, extra in {"plain": [], "everything": EVERYTHING, "labels": LABELS}.items():
            cfg = reglab.compose([*BASE, *args, *extra], output_dir=base / f"{net}-{name}")
            out[net, name] = reglab.train(cfg)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("net", list(NETWORKS))
def test_every_strategy_trains_any_network(runs, net):
    plain, everything, labels = (runs[net, n] for n in ("plain", "everything", "labels"))
    for metrics in (plain, everything, labels):
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        assert 0 <= metrics["test/representation_sparsity"] <= 1  # every run reports it
    assert everything["test/acc_pgd"] <= everything["test/acc"] + 0.02
    assert {"test/acc_fgsm", "test/acc_pgd"} <= set(everything)
    assert "test/acc_fgsm" in labels and "test/acc_fgsm" not in plain
    assert everything["test/loss"] != plain["test/loss"] != labels["test/loss"]


def test_strategies_act_on_training_batches_only(tmp_path, monkeypatch):
    """Every call to mixing, weight noise and the training attack happens inside a training
    step; validation and test see clean inputs, labels and weights."""
    calls: list[str] = []
    run = build(reglab.compose([*BASE, *NETWORKS["cnn"], *EVERYTHING], output_dir=tmp_path))
    module = run.module

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapped(self, *args, **kwargs):
            state = module.trainer.state.stage
            calls.append(f"{name}:{state.value if state else None}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapped)

    for cls, name in ((Augmentation, "mix"), (WeightNoise, "perturbed"), (Adversarial, "mix")):
        spy(cls, name)
    run.trainer.fit(module, datamodule=run.dm)
    stages = {c.split(":")[1] for c in calls}
    assert stages == {"train"}, stages
    assert {c.split(":")[0] for c in calls} == {"mix", "perturbed"}
