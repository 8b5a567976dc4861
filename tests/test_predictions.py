"""predictions.npz beyond a single classifier: multi-task (per task), semi-supervised,
regression, hard-voting and sequential ensembles, a publisher's own test set. Each run's
file is reloaded here, its test metrics recomputed with numpy and compared with
metrics.json, and its row numbers checked to select the same targets from the source data
set (scikit-learn's digits and diabetes, the MNIST-format files written for the test).

The MLP and a second network each (a CNN trunk, the convolutional autoencoder, a user's
tabular module); one run per case, shared by the tests (module scope).
"""

import numpy as np
import pytest
import torch
from conftest import read_metrics
from publisher_files import write_mnist
from sklearn.datasets import load_diabetes, load_digits
from test_calibration import numpy_ece
from torch import nn

import reglab

QUIET = ["callbacks.progress_bar=null", "logger=none", "threads=1", "trainer.max_epochs=2"]
TINY_CNN = ["model.trunk.channels=[4,8]", "model.shared_size=16"]
CASES = {
    "multitask_mlp": ["data=digits_multitask", "model=multitask", "model.shared_size=16"],
    "multitask_cnn": ["data=digits_multitask", "model=multitask", "model/trunk=cnn", *TINY_CNN],
    "semi_mlp": ["model=autoencoder", "data.labeled_fraction=0.2"],
    "semi_conv": ["model=conv_autoencoder", "data.labeled_fraction=0.2"],
    "regression_mlp": ["data=diabetes", "model.hidden_sizes=[16]", "optimizer.lr=0.01"],
    "regression_user": [
        "data=diabetes",
        "model=linear",
        "~model.dropout",
        "model._target_=test_predictions.TabularNet",
        "optimizer.lr=0.01",
    ],
    "bagging_hard": ["ensemble=bagging", "ensemble.members=3", "ensemble.vote=hard"],
    "bagging_sequential": ["ensemble=bagging", "ensemble.members=2", "ensemble.vectorized=false"],
}
TASKS = {  # digits_multitask's targets as functions of the digit (conf/data/digits_multitask.yaml)
    "digit": lambda d: d,
    "parity": lambda d: d % 2,
    "at_least_5": lambda d: (d >= 5).astype(int),
    "loops": lambda d: np.array([1, 0, 0, 0, 1, 0, 1, 0, 2, 1])[d],
}


class TabularNet(nn.Module):
    """A user's network for tables: one hidden layer of 8 tanh units."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 8), nn.Tanh(), nn.Linear(8, out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def cases(prefix: str = "") -> pytest.MarkDecorator:
    """Run the test on the shared runs whose case names start with `prefix`."""
    return pytest.mark.parametrize("run", [c for c in CASES if c.startswith(prefix)], indirect=True)


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    reglab.train(reglab.compose([*QUIET, *CASES[request.param]], output_dir=run_dir))
    return request.param, read_metrics(run_dir), dict(np.load(run_dir / "predictions.npz"))


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(probs.astype(np.float64)[np.arange(len(y)), y]).mean())


@cases()
def test_the_row_numbers_select_the_saved_targets_from_the_source(run):
    case, _, saved = run
    index = saved["index"]
    if case.startswith("regression"):
        np.testing.assert_allclose(saved["targets"][:, 0], load_diabetes()["target"][index])
        return
    digit = load_digits()["target"][index]
    if case.startswith("multitask"):
        assert list(saved["tasks"]) == list(TASKS)
        for i, target in enumerate(TASKS.values()):
            np.testing.assert_array_equal(saved["targets"][:, i], target(digit))
    else:
        np.testing.assert_array_equal(saved["targets"], digit)


@cases("multitask")
def test_multitask_predictions_reproduce_each_tasks_metrics(run):
    _, metrics, saved = run
    for i, name in enumerate(TASKS):
        y = saved["targets"][:, i]
        if name == "loops":  # the regression task: values, its MSE
            mse = ((saved["values_loops"][:, 0] - y) ** 2).mean()
            assert mse == pytest.approx(metrics["test/loops/mse"], rel=1e-5)
            assert "test/loops/ece" not in metrics
            continue
        probs, y = saved[f"probs_{name}"], y.astype(int)
        acc = (probs.argmax(1) == y).mean()
        assert acc == pytest.approx(metrics[f"test/{name}/acc"], abs=1e-6)
        assert nll(probs, y) == pytest.approx(metrics[f"test/{name}/nll"], rel=1e-4)
        assert metrics[f"test/{name}/nll"] == metrics[f"test/{name}/loss"]
        ece = numpy_ece(probs.astype(np.float64), y)
        assert ece == pytest.approx(metrics[f"test/{name}/ece"], abs=1e-6)
        assert ((probs - np.eye(probs.shape[1])[y]) ** 2).sum(1).mean() == pytest.approx(
            metrics[f"test/{name}/brier"], rel=1e-5
        )


@pytest.mark.parametrize(
    "run", ["semi_mlp", "semi_conv", "bagging_hard", "bagging_sequential"], indirect=True
)
def test_classifier_predictions_reproduce_accuracy_nll_and_ece(run):
    case, metrics, saved = run
    probs, y = saved["probs"], saved["targets"]
    assert (saved["predicted"] == y).mean() == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert nll(probs, y) == pytest.approx(metrics["test/nll"], rel=1e-4)  # the soft vote's
    assert numpy_ece(probs.astype(np.float64), y) == pytest.approx(metrics["test/ece"], abs=1e-6)
    if case == "bagging_hard":  # the vote's class is the most members', not the mean's
        members = saved["member_probs"].argmax(-1)
        counts = np.stack([(members == c).sum(0) for c in range(10)], axis=1)
        np.testing.assert_array_equal(saved["predicted"], counts.argmax(1))


@cases("regression")
def test_regression_predictions_reproduce_the_mse(run):
    _, metrics, saved = run
    values, y = saved["values"].astype(np.float64), saved["targets"]
    assert values.shape == y.shape == (round(0.2 * 442), 1)
    mse = ((values - y) ** 2).mean()
    assert mse == pytest.approx(metrics["test/mse"], rel=1e-5)
    assert mse == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert not {"test/ece", "test/nll", "probs"} & (set(metrics) | set(saved))


def test_an_official_test_set_is_indexed_in_its_own_rows(tmp_path):
    """MNIST-format files: the test split is the publisher's t10k file, in its order."""
    written = write_mnist(tmp_path / "mnist", n_train=60, n_test=20)
    data = ["data=mnist", f"data.root={tmp_path}", "data.download=false", "data.val_fraction=0.5"]
    run_dir = tmp_path / "run"
    overrides = [*QUIET, *data, "model.hidden_sizes=[8]", "trainer.max_epochs=1"]
    reglab.train(reglab.compose(overrides, output_dir=run_dir))
    saved = np.load(run_dir / "predictions.npz")
    assert str(saved["index_into"]) == "official_test"
    np.testing.assert_array_equal(saved["index"], np.arange(20))
    np.testing.assert_array_equal(saved["targets"], written["ty"][saved["index"]])
    assert (saved["predicted"] == saved["targets"]).mean() == pytest.approx(
        read_metrics(run_dir)["test/acc"], abs=1e-6
    )
