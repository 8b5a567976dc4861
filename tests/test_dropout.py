"""Dropout: masks on input and hidden units, weight scaling vs Monte Carlo inference."""

import itertools

import pytest
import torch
from torch import nn

from reglab.config import ConfigError, compose
from reglab.engine.run import build
from reglab.models import MLP
from reglab.regularization import MonteCarlo, predictive_entropy, weight_scaling


def test_masks_input_and_hidden_units_never_outputs():
    net = MLP(8, 3, (16, 16), dropout={"input": 0.2, "hidden": 0.5})
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]


def test_hidden_masks_drop_the_configured_fraction():
    torch.manual_seed(0)
    net = MLP(4, 2, (2000,), dropout={"hidden": 0.3}).train()
    first, relu, dropout = net[0], net[1], net[2]
    active = relu(first(torch.ones(1, 4)))
    hidden = dropout(active)
    active = active > 0
    dropped = (hidden[active] == 0).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.03)


def test_mc_with_rate_zero_equals_weight_scaling_exactly():
    torch.manual_seed(0)
    net = MLP(5, 4, (7,), dropout={"input": 0.0, "hidden": 0.0})
    net.append(nn.Dropout(0.0))  # a dropout module that masks nothing
    net.eval()
    x = torch.randn(9, 5)
    for mean in ("arithmetic", "geometric"):
        mc = MonteCarlo(samples=13, mean=mean)(net, x, "classification")
        torch.testing.assert_close(mc, weight_scaling(net, x, "classification"), rtol=0, atol=1e-6)
    assert not any(m.training for m in net.modules())  # eval mode restored


def test_mc_arithmetic_mean_converges_to_the_sum_over_all_masks():
    """Σ_μ p(μ) p(y|x,μ), enumerated exactly over the 2^3 masks of 3 hidden units."""
    torch.manual_seed(1)
    p = 0.5
    net = MLP(2, 3, (3,), dropout={"hidden": p}).eval()
    x = torch.randn(4, 2)
    first, relu, _, last = net
    exact = torch.zeros(4, 3)
    for mask in itertools.product([0.0, 1.0], repeat=3):
        keep = torch.tensor(mask)
        prob = torch.prod(torch.where(keep == 1, 1 - p, p))
        h = relu(first(x)) * keep / (1 - p)  # inverted dropout
        exact += prob * last(h).softmax(-1)
    torch.manual_seed(2)
    mc = MonteCarlo(samples=40_000)(net, x, "classification").exp()
    torch.testing.assert_close(mc, exact, rtol=0, atol=0.01)


def test_geometric_mean_is_the_softmax_of_the_mean_logits():
    outputs = torch.randn(6, 20, 5, 4)  # (members, T, batch, classes)
    geometric = MonteCarlo(mean="geometric").combine(outputs, "classification")
    torch.testing.assert_close(geometric, outputs.mean(-3).log_softmax(-1))
    assert torch.allclose(geometric.exp().sum(-1), torch.ones(6, 5))


def test_batched_masks_differ_between_samples_and_rows():
    torch.manual_seed(0)
    net = MLP(3, 2, (32,), dropout={"hidden": 0.5}).eval()
    outputs = MonteCarlo(samples=4).sample(net, torch.ones(2, 3))
    assert outputs.shape == (4, 2, 2)
    flat = outputs.reshape(8, 2)
    assert len(torch.unique(flat, dim=0)) == 8  # every (sample, row) its own mask


def test_predictive_entropy_bounds():
    uniform = torch.full((1, 4), 0.25).log()
    certain = torch.tensor([[0.0, -1e9, -1e9, -1e9]])
    assert predictive_entropy(uniform).item() == pytest.approx(torch.log(torch.tensor(4.0)))
    assert predictive_entropy(certain).item() == pytest.approx(0.0, abs=1e-6)


def test_mc_inference_reports_the_metric_as_a_function_of_t(train_api):
    metrics, _ = train_api(
        "model.dropout.hidden=0.5", "inference=mc", "inference.samples=20", "trainer.max_epochs=3"
    )
    curve = [metrics[f"test/acc_mc_T{t}"] for t in (1, 2, 5, 10, 20)]
    assert metrics["test/acc"] == pytest.approx(curve[-1])  # T = samples is the prediction
    assert curve[0] < curve[-1]  # one mask is a worse predictor than the average of 20
    assert 0 < metrics["test/predictive_entropy"] < torch.log(torch.tensor(10.0)).item()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["inference=mc"], "inference=mc"),
        (["model.dropout.hidden=1.0"], "model.dropout.hidden"),
        (["model.dropout.input=-0.1"], "model.dropout.input"),
        (["model.dropout.hidden=0.5", "inference=mc", "inference.samples=0"], "samples"),
        (["model.dropout.hidden=0.5", "inference=mc", "inference.mean=median"], "mean"),
    ],
)
def test_bad_dropout_settings_are_rejected(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        build(compose(overrides, output_dir=tmp_path))
