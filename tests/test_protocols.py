"""Algorithms 7.2 and 7.3 (7.1 is in test_early_stopping.py) and the learning curve."""

import json

import pytest
import torch
from PIL import Image
from torch import nn

from reglab import instantiate
from reglab.config import ConfigError, compose
from reglab.engine.protocols import StopBelow
from reglab.engine.run import build

FAST = [
    "data.val_fraction=0.4",
    "optimizer.lr=0.01",
    "trainer.max_epochs=100",
    "callbacks.early_stopping.patience=3",
    "callbacks.progress_bar=null",
    "logger=none",
    "threads=1",
]
TINY_CNN = ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"]
# image networks: reglab's CNN and ResNet, and a user's module by _target_ (below)
NETS = {
    "cnn": TINY_CNN,
    "resnet": ["model=resnet", "model.depth=8", "model.width=4", "data.train_size=300"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_protocols.UserNet"],
}


class UserNet(nn.Module):
    """A user's network, as reglab never saw it: a convolution, BatchNorm, a linear head."""

    def __init__(self, in_channels: int, out_features: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(width)
        self.head = nn.Linear(width * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(self.norm(self.conv(x)).relu(), 2)
        return self.head(h.flatten(1))


def run_protocol(tmp_path, name, *overrides):
    run = build(compose([*FAST, f"protocol={name}", *overrides], output_dir=tmp_path))
    n_subtrain = run.dm.n_train
    theta_0 = {k: v.clone() for k, v in run.module.net.state_dict().items()}
    outcome = instantiate(run.cfg.protocol).run(run)
    return run, outcome, n_subtrain, theta_0


def test_retrain_all_trains_fresh_parameters_on_all_data_for_i_star_steps(tmp_path):
    run, outcome, n_subtrain, theta_0 = run_protocol(tmp_path, "retrain_all")
    i_star = outcome.metrics["best_step"]
    assert 0 < i_star < outcome.metrics["stopped_step"]
    assert outcome.metrics["protocol/retrain_steps"] == outcome.trainer.global_step == i_star
    # X^(train) = sub-train + validation
    assert run.dm.n_train == n_subtrain + len(run.dm.splits["val"][0])
    # a new module, whose θ started from fresh random values (not 7.1's θ_o)
    assert outcome.module is not run.module
    assert outcome.metrics["phase1/test/acc"] > 0.5
    first = outcome.phases[1][0]
    assert first == outcome.metrics["stopped_step"]  # one timeline: phase 2 starts there
    assert outcome.module.step == first + i_star
    assert not any(torch.equal(v, theta_0[k]) for k, v in outcome.module.net.state_dict().items())


def test_continue_to_loss_stops_at_the_first_check_below_epsilon(tmp_path):
    run, outcome, _, _ = run_protocol(tmp_path, "continue_to_loss")
    m = outcome.metrics
    stop = next(c for c in outcome.trainer.callbacks if isinstance(c, StopBelow))
    epsilon = m["protocol/epsilon"]
    assert stop.target == epsilon
    assert m["protocol/target_met"] == 1
    values = [v for _, v in stop.checks]
    assert values[-1] < epsilon and all(v >= epsilon for v in values[:-1])
    n = run.dm.steps_per_epoch  # validation once per (now larger) epoch
    assert [s for s, _ in stop.checks] == [n * (i + 1) for i in range(len(values))]
    assert m["protocol/extra_steps"] == stop.checks[-1][0]
    assert m["stopped_step"] == outcome.phases[1][0] + m["protocol/extra_steps"]
    # ε is J(θ*, sub-train): the training loss at the best parameters, below their val loss
    assert epsilon < m["val/best"]


def test_continue_to_loss_gives_up_at_the_bound(tmp_path):
    _, outcome, _, _ = run_protocol(
        tmp_path, "continue_to_loss", "protocol.max_extra_steps=5", "trainer.val_check_interval=2"
    )
    stop = next(c for c in outcome.trainer.callbacks if isinstance(c, StopBelow))
    assert outcome.metrics["protocol/target_met"] == 0
    assert outcome.metrics["protocol/extra_steps"] == 5
    assert [s for s, _ in stop.checks] == [2, 4]
    assert all(v >= stop.target for _, v in stop.checks)


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize(
    ("name", "extra"),
    [("retrain_all", []), ("continue_to_loss", ["protocol.max_extra_steps=40"])],
)
def test_protocols_train_image_networks_in_both_phases(tmp_path, name, extra, net):
    run, outcome, _, theta_0 = run_protocol(tmp_path, name, *NETS[net], *extra)
    m = outcome.metrics
    phase2 = outcome.trainer.global_step
    if name == "retrain_all":  # fresh parameters, i* steps on all the training data
        assert outcome.module is not run.module and phase2 == m["best_step"] > 0
    else:  # θ* continued until J(val) < ε or the bound
        assert outcome.module is run.module and 0 < m["protocol/extra_steps"] <= 40
        assert m["protocol/target_met"] == 1 or m["protocol/extra_steps"] == 40
    assert phase2 > 0 and outcome.module.step == outcome.phases[1][0] + phase2
    state = outcome.module.net.state_dict()
    conv = next(k for k, v in theta_0.items() if v.dim() == 4)  # the first convolution
    assert not torch.equal(state[conv], theta_0[conv])  # the convolutions trained
    norms = [k for k in theta_0 if k.endswith("running_mean")]  # BatchNorm's, where there is
    assert all(not torch.equal(state[k], theta_0[k]) for k in norms)
    assert bool(norms) == (net != "cnn")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["protocol=continue_to_loss", "protocol.max_extra_steps=0"], "protocol.max_extra_steps"),
        (["protocol=retrain_all", "data.val_fraction=0"], "data.val_fraction=0"),
        (["protocol=continue_to_loss", "data.val_fraction=0"], "data.val_fraction=0"),
        (["protocol=retrain_all", "callbacks.early_stopping=null"], "callbacks.early_stopping"),
    ],
)
def test_protocols_reject_configs_they_cannot_run(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(compose(overrides, output_dir=tmp_path))


def test_every_run_saves_and_logs_its_learning_curve(train_api):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics, run_dir = train_api("protocol=retrain_all", *FAST[:-2])
    image = Image.open(run_dir / "learning_curve.png")
    assert image.size[0] >= 800
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "learning_curve" in events.Tags()["images"]
    phases = events.Scalars("protocol/phase")
    assert [(p.step, p.value) for p in phases] == [(metrics["stopped_step"], 2.0)]
    assert (run_dir / "checkpoints" / "final.ckpt").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["protocol/retrain_steps"] > 0
