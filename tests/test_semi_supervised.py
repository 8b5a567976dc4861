"""Semi-supervised learning: CE on the labelled examples + λ·reconstruction on all (§7.6).

The data hides labels deterministically per seed and never in validation or test; the
loss is checked by hand; unlabelled examples are shown to reach the parameters through
reconstruction only; and (slow) the autoencoder beats the same network trained on the
labelled 5% alone.
"""

import functools
import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reglab.data import UNLABELED, DataModule
from reglab.models import MLP, Autoencoder
from reglab.objectives import SemiSupervisedModule
from reglab.regularization import NoPenalty


def _digits(**kwargs) -> DataModule:
    source = lambda: load_digits(return_X_y=True)  # noqa: E731
    return DataModule(source, **{"seed": 0, **kwargs}).prepare()


def test_labeled_fraction_hides_labels_of_the_training_split_only():
    full = _digits()
    semi = _digits(labeled_fraction=0.05, keep_unlabeled=True)
    y = semi.splits["train"][1]
    n = len(full.splits["train"][1])
    assert len(y) == n  # every training example stays, for reconstruction
    labelled = y != UNLABELED
    assert int(labelled.sum()) == round(0.05 * n) == semi.n_labeled
    assert set(y[labelled].tolist()) == set(range(10))  # stratified: every class keeps some
    # the kept labels are the true ones, and validation and test are untouched
    assert torch.equal(y[labelled], full.splits["train"][1][labelled])
    for split in ("val", "test"):
        assert torch.equal(semi.splits[split][1], full.splits[split][1])
    # a function of the seed: the same rows again, other rows for another seed
    assert torch.equal(_digits(labeled_fraction=0.05, keep_unlabeled=True).splits["train"][1], y)
    other = _digits(labeled_fraction=0.05, keep_unlabeled=True, seed=1).splits["train"][1]
    assert not torch.equal(other != UNLABELED, labelled)


def test_supervised_models_train_on_the_labelled_examples_only():
    semi = _digits(labeled_fraction=0.05, keep_unlabeled=True)
    baseline = _digits(labeled_fraction=0.05)
    xb, yb = baseline.splits["train"]
    assert len(yb) == semi.n_labeled and (yb != UNLABELED).all()
    labelled = semi.splits["train"][1] != UNLABELED
    raw = lambda dm, x: x * dm.feature_std + dm.feature_mean  # noqa: E731
    torch.testing.assert_close(raw(baseline, xb), raw(semi, semi.splits["train"][0][labelled]))


def _module(recon_weight: float = 0.5, features: int = 6, **kwargs) -> SemiSupervisedModule:
    torch.manual_seed(0)
    coder = functools.partial(MLP, hidden_sizes=[8])
    net = Autoencoder(features, 3, coder, coder, code_size=4, recon_weight=recon_weight, **kwargs)
    return SemiSupervisedModule(net, NoPenalty(), torch.optim.SGD, "classification", 3)


def _attached(module: SemiSupervisedModule, dm: DataModule) -> SemiSupervisedModule:
    module._trainer = SimpleNamespace(datamodule=dm)  # what setup() reads of its Trainer
    module.setup("fit")
    return module


def test_raw_units_measure_reconstruction_in_pixels():
    """recon_units=raw: the error of the reconstructed image in pixel units, over the mean
    pixel variance, whatever the standardization did to rarely inked pixels."""
    dm = _digits(image_shape=(1, 8, 8))
    module = _attached(_module(recon_weight=1.0, features=64, recon_units="raw"), dm)
    x = dm.splits["train"][0][:32]
    unlabelled = torch.full((32,), UNLABELED)
    loss = module.step_loss(module.train_output(x), unlabelled)
    pixels = lambda z: z * dm.feature_std + dm.feature_mean  # noqa: E731
    expected = (
        F.mse_loss(pixels(module.net.reconstruct(x)), pixels(x.flatten(1)))  # x: (32, 1, 8, 8)
        / dm.feature_std.square().mean()
    )
    torch.testing.assert_close(loss, expected)
    assert dm.feature_std.max() / dm.feature_std.min() > 100  # the units do differ here


@pytest.mark.parametrize(("image_shape", "scaled"), [((1, 8, 8), True), (None, False)])
def test_auto_units_are_raw_for_images_and_standardized_for_tabular_data(image_shape, scaled):
    module = _attached(_module(features=64), _digits(image_shape=image_shape))
    assert (module.recon_scale is not None) == scaled


def test_loss_is_labelled_cross_entropy_plus_weighted_reconstruction():
    module = _module(recon_weight=0.5)
    x = torch.randn(5, 6)
    y = torch.tensor([2, UNLABELED, 0, UNLABELED, 1])
    labelled = y != UNLABELED
    scores, reconstruction = module.net(x), module.net.reconstruct(x)
    expected = F.cross_entropy(scores[labelled], y[labelled]) + 0.5 * F.mse_loss(reconstruction, x)
    torch.testing.assert_close(module.step_loss(module.train_output(x), y), expected)
    # a batch without labels: reconstruction alone, not NaN
    none = torch.full((5,), UNLABELED)
    torch.testing.assert_close(
        module.step_loss(module.train_output(x), none), 0.5 * F.mse_loss(reconstruction, x)
    )


@pytest.mark.parametrize("recon_weight", [0.0, 1.0])
def test_unlabelled_examples_never_reach_the_supervised_loss(recon_weight):
    """The gradient of the loss with respect to an unlabelled example's input is zero
    without reconstruction and non-zero with it: the supervised term never sees it."""
    module = _module(recon_weight)
    x = torch.randn(6, 6, requires_grad=True)
    y = torch.tensor([0, UNLABELED, 1, UNLABELED, 2, UNLABELED])
    module.step_loss(module.train_output(x), y).backward()
    per_example = x.grad.abs().sum(1)
    unlabelled = y == UNLABELED
    assert (per_example[~unlabelled] > 0).all()
    if recon_weight == 0:
        assert (per_example[unlabelled] == 0).all()
    else:
        assert (per_example[unlabelled] > 0).all()


def test_autoencoder_run_reports_accuracy_and_reconstruction(train_api):
    metrics, run_dir = train_api(
        "model=autoencoder", "data.labeled_fraction=0.1", "debug=fast", "trainer.max_epochs=2",
        "callbacks.progress_bar=null",
    )  # fmt: skip
    assert {"test/acc", "test/recon_mse", "test/loss"} <= set(metrics)
    assert 0 < metrics["test/recon_mse"] < 1.5  # standardized pixels: 1 = predicting the mean
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"reconstruction/input", "reconstruction/output"} <= set(events.Tags()["images"])
    assert {"train/recon_mse", "val/recon_mse", "train/supervised_loss"} <= set(
        events.Tags()["scalars"]
    )


@pytest.mark.slow
def test_semi_supervised_beats_labelled_only_at_five_percent(train_api):
    """experiment=semi_supervised: with 54 labelled digits, reconstruction of all 1,078
    raises test accuracy over seeds 0–4 (measured: 0.836 ± 0.016 against 0.815 ± 0.018,
    better on every seed by 0.008 to 0.039)."""
    accuracy: dict[float, list[float]] = {0: [], 1: []}
    for seed in range(5):
        for weight in accuracy:
            metrics, _ = train_api(
                "experiment=semi_supervised", f"model.recon_weight={weight}", f"seed={seed}",
                "logger=none", "callbacks.progress_bar=null",
            )  # fmt: skip
            accuracy[weight].append(metrics["test/acc"])
    gains = np.array(accuracy[1]) - np.array(accuracy[0])
    assert statistics.mean(gains) > 0.01, accuracy
    assert (gains > 0).sum() >= 4, accuracy  # not one lucky seed
