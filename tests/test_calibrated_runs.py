"""Every classification run reports its calibration, and `inference=mc` and `ensemble=bagging`
their uncertainty, on the MLP, the CNN and a user's nn.Module: metrics.json is recomputed
here with numpy from the run's predictions.npz, whose row numbers must point at the same
rows of scikit-learn's digits, and checked against the definitions' bounds.

One run per (network, strategy), shared by the tests (module scope); tiny and 1–2 epochs.
"""

import math

import numpy as np
import pytest
import torch
from conftest import read_metrics
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_calibration import numpy_ece, numpy_uncertainty
from torch import nn

import reglab

QUIET = ["callbacks.progress_bar=null", "threads=1", "optimizer.lr=0.01", "trainer.max_epochs=2"]
NETWORKS = {
    "mlp": ["model.hidden_sizes=[32]", "model.dropout.hidden=0.3"],
    "cnn": [
        "model=cnn",
        "model.channels=[4,8]",
        "model.hidden_sizes=[16]",
        "model.dropout.hidden=0.3",
    ],
    "user": ["model=linear", "~model.dropout", "model._target_=test_calibrated_runs.SmallNet"],
}
STRATEGIES = {
    "single": [],
    "mc": ["inference=mc", "inference.samples=8"],
    "bagging": ["ensemble=bagging", "ensemble.members=3"],
}


class SmallNet(nn.Module):
    """A user's network: a convolution, dropout, a linear head on the flattened maps."""

    def __init__(self, in_channels: int, out_features: int, image_shape: list[int], p=0.3):
        super().__init__()
        _, h, w = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Dropout(p), nn.Flatten()
        )
        self.head = nn.Linear(4 * h * w, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture(scope="module", params=[(n, s) for n in NETWORKS for s in STRATEGIES])
def run(request, tmp_path_factory):
    network, strategy = request.param
    run_dir = tmp_path_factory.mktemp(f"{network}_{strategy}") / "run"
    cfg = reglab.compose([*QUIET, *NETWORKS[network], *STRATEGIES[strategy]], output_dir=run_dir)
    reglab.train(cfg)
    return strategy, read_metrics(run_dir), dict(np.load(run_dir / "predictions.npz")), run_dir


def test_predictions_npz_reproduces_the_test_accuracy_and_nll(run):
    _, metrics, saved, _ = run
    probs, y = saved["probs"].astype(np.float64), saved["targets"]
    assert probs.shape == (len(y), 10)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y).mean() == pytest.approx(
        metrics["test/acc"], abs=1e-6
    )  # 1/n ≫ 1e-6
    nll = -np.log(probs[np.arange(len(y)), y]).mean()
    assert nll == pytest.approx(metrics["test/nll"], rel=1e-4)
    assert metrics["test/nll"] == metrics["test/loss"]


def test_the_saved_row_numbers_point_at_the_test_rows_of_the_data_set(run):
    _, _, saved, _ = run
    _, targets = load_digits(return_X_y=True)
    index = saved["index"]
    assert len(set(index)) == len(index) == round(0.2 * len(targets))  # data.test_fraction
    np.testing.assert_array_equal(targets[index], saved["targets"])
    assert str(saved["index_into"]) == "source"


def test_ece_and_brier_equal_numpy_on_the_saved_probabilities(run):
    _, metrics, saved, _ = run
    probs, y = saved["probs"].astype(np.float64), saved["targets"]
    assert metrics["test/ece"] == pytest.approx(numpy_ece(probs, y), abs=1e-6)
    brier = ((probs - np.eye(10)[y]) ** 2).sum(1).mean()
    assert metrics["test/brier"] == pytest.approx(brier, rel=1e-5)
    assert 0 < metrics["test/ece"] < 1 and 0 < metrics["test/brier"] < 2


def test_uncertainty_is_reported_by_mc_and_bagging_within_its_bounds(run):
    strategy, metrics, _, _ = run
    keys = ("test/entropy", "test/mutual_info", "test/disagreement")
    if strategy == "single":  # one prediction per example: nothing to spread over
        assert not set(keys) & set(metrics)
        return
    entropy, mi, disagreement = (metrics[k] for k in keys)
    assert 0 < mi <= entropy <= math.log(10)
    assert 0 < disagreement <= 1  # 8 masks or 3 briefly trained members differ somewhere
    if strategy == "mc":  # the arithmetic mean's entropy, as dropout.predictive_entropy has it
        assert entropy == pytest.approx(metrics["test/predictive_entropy"], rel=1e-5)


def test_bagging_uncertainty_equals_numpy_on_the_saved_member_probabilities(run):
    strategy, metrics, saved, _ = run
    if strategy != "bagging":
        assert "member_probs" not in saved
        return
    members = saved["member_probs"].astype(np.float64)
    assert members.shape == (3, *saved["probs"].shape)
    np.testing.assert_allclose(members.mean(0), saved["probs"], atol=1e-5)  # the soft vote
    for key, values in numpy_uncertainty(members).items():
        assert metrics[f"test/{key}"] == pytest.approx(values.mean(), rel=1e-4, abs=1e-6)


def test_reliability_diagram_and_calibration_scalars_reach_tensorboard(run):
    _, metrics, _, run_dir = run
    assert (run_dir / "reliability.png").stat().st_size > 10_000
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert "reliability" in events.Tags()["images"]
    for key in ("test/ece", "test/brier", "test/nll"):
        assert events.Scalars(key)[-1].value == pytest.approx(metrics[key], rel=1e-6)
