"""The plain step loop (objectives/stepping.py `plain_steps`) runs exactly when nothing acts
on a step but J's gradient and the optimizer, and trains to the general loop's weights."""

import pytest
import torch
from torch import nn

import reglab
from reglab.engine.run import build
from reglab.objectives import RegLabModule
from reglab.objectives.stepping import DirectSteps

BASE = ["data.train_size=150", "trainer.max_epochs=2", "threads=1", "logger=none"]
BASE += ["callbacks.progress_bar=null", "callbacks.weight_histograms=null"]
NETWORKS = {
    "mlp": [],
    "cnn": ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[16]"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_plain_steps.UserNet"],
}


class UserNet(nn.Module):
    """A user's network with BatchNorm: its running statistics are trained state too."""

    def __init__(self, in_channels: int, out_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
        self.head = nn.LazyLinear(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def _train(tmp_path, overrides: list[str]) -> tuple[dict, dict, int]:
    """(metrics, the final parameters and buffers, how many chunks took the plain loop)."""
    calls = []
    plain = DirectSteps.plain_steps

    def counted(self, *args):
        calls.append(1)
        return plain(self, *args)

    DirectSteps.plain_steps = counted
    try:
        cfg = reglab.compose([*BASE, *overrides], output_dir=tmp_path)
        metrics = reglab.train(cfg)
    finally:
        DirectSteps.plain_steps = plain
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return metrics, state, len(calls)


@pytest.mark.parametrize("net", list(NETWORKS))
def test_plain_steps_train_to_the_general_loops_weights_and_metrics(tmp_path, monkeypatch, net):
    plain_metrics, plain_state, plain_chunks = _train(tmp_path / "plain", NETWORKS[net])
    monkeypatch.setattr(RegLabModule, "only_j_acts", lambda self: False)
    metrics, state, chunks = _train(tmp_path / "general", NETWORKS[net])
    assert plain_chunks > 0 and chunks == 0  # each run took the loop it was meant to
    assert plain_metrics == metrics
    assert state.keys() == plain_state.keys()
    for key, value in state.items():
        assert torch.equal(plain_state[key], value), key


# what acts on a step, each on its own; label smoothing and augmentation act on the chunk
ACTING = {
    "regularizer=l2": True,
    "regularizer=weight_decay": True,
    "noise=weights": True,
    "representation=l1": True,
    "adversarial=fgsm": True,
    "trainer.gradient_clip_val=1.0": True,
    "constraint=max_norm": True,
    "scheduler=cosine scheduler.interval=step": True,
    "ensemble=bagging": True,
    "experiment=semi_supervised": True,
    "experiment=multitask": True,
    "noise=labels": False,
    "augmentation=affine": False,
    "scheduler=cosine": False,
    "regularizer=none": False,
}


@pytest.mark.parametrize("overrides", list(ACTING))
def test_the_general_loop_runs_whenever_a_strategy_acts_on_the_step(tmp_path, overrides):
    cfg = reglab.compose([*BASE, *overrides.split()], output_dir=tmp_path)
    module = build(cfg).module
    assert module.only_j_acts() is not ACTING[overrides]
