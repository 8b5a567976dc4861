"""Sparse representations (§7.10): α·‖h‖₁ of the hooked hidden units, averaged over the batch."""

import pytest
import torch
from torch import nn

from reglab.config import ConfigError
from reglab.regularization.representation import Representation, matching_modules


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def test_penalty_is_alpha_times_the_batch_mean_of_the_hidden_units_l1_norm():
    net, x = _net(), torch.randn(10, 5)
    rep = Representation(alpha=0.1)
    rep.attach(net)
    assert rep.names == ["1", "3"]  # the activations: the hidden units, not the output
    rep.record()
    net(x)
    penalty = rep.penalty()
    h1 = net[1](net[0](x))  # by hand, outside the hooks
    h2 = net[3](net[2](h1))
    by_hand = 0.1 * (h1.abs().sum(1).mean() + h2.abs().sum(1).mean())
    assert penalty.item() == pytest.approx(by_hand.item(), rel=1e-6)
    penalty.backward()  # in the graph: the penalty's gradient reaches the weights
    assert net[0].weight.grad.abs().sum() > 0
    assert rep.penalty().item() == 0  # recording stopped with the penalty


def test_sparsity_counts_exact_zeros_of_the_recorded_units():
    net, x = _net(), torch.randn(20, 5)
    rep = Representation(layers=["1"])  # by module name: the ReLU only
    rep.attach(net)
    assert not net[1]._forward_hooks  # α = 0: training runs unhooked, the test pass hooks
    rep.hook()
    rep.record()
    net(x)
    rep.tally()
    h = net[1](net[0](x))
    expected = (h == 0).float().mean().item()
    assert rep.sparsity()["test/representation_sparsity"] == pytest.approx(expected)
    assert rep.sparsity() == {}  # reset
    rep.unhook()
    assert not net[1]._forward_hooks


def test_layer_patterns_match_names_and_classes():
    net = _net()
    assert list(matching_modules(net, ["Tanh"])) == ["3"]
    assert list(matching_modules(net, ["[02]"])) == ["0", "2"]
    assert list(matching_modules(net, None)) == ["1", "3"]
    with pytest.raises(ConfigError, match=r"representation\.layers"):
        Representation(alpha=1.0, layers=["conv*"]).attach(net)
    Representation(alpha=0.0, layers=["conv*"]).attach(net)  # measured only: nothing to say


def test_l1_on_the_hidden_units_makes_them_sparser(train_api):
    small = ["model.hidden_sizes=[64]", "trainer.max_epochs=5", "logger=none", "threads=1"]
    small += ["callbacks.progress_bar=null"]
    plain, _ = train_api(*small)
    sparse, _ = train_api(*small, "representation=l1", "representation.alpha=0.1")
    assert 0 < plain["test/representation_sparsity"] < 0.8
    assert sparse["test/representation_sparsity"] > plain["test/representation_sparsity"] + 0.08
    assert sparse["test/acc"] > 0.7  # still a classifier
