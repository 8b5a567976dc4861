"""Calibration and ensemble uncertainty (objectives/calibration.py) against independent truth:
numpy written from the definitions (Guo et al. 2017 for ECE), hand-computed cases, and
torchmetrics where its binning agrees with the standard one. No training here: the runs
that report these metrics are checked in test_calibrated_runs.py."""

import itertools
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from reglab.objectives.calibration import (
    brier_score,
    confidence_bins,
    expected_calibration_error,
    uncertainty,
)
from reglab.records import reliability


def numpy_ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Guo et al.'s ECE: bins ((m−1)/M, m/M], Σ |B|/n · |acc(B) − conf(B)|."""
    confidence, predicted = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            gap = (predicted[inside] == y[inside]).mean() - confidence[inside].mean()
            total += inside.mean() * abs(gap)
    return total


def random_predictions(n: int, classes: int, seed: int, sharpness: float = 3.0):
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.normal(size=(n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.where(rng.random(n) < 0.7, probs.argmax(1), rng.integers(0, classes, n))
    return probs.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_the_numpy_definition(seed):
    probs, y = random_predictions(500, 10, seed)
    ours = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(y)).item()
    assert ours == pytest.approx(numpy_ece(probs.astype(np.float64), y), abs=1e-12)
    assert ours > 0.01  # these predictions are not calibrated: the test can fail


def test_ece_puts_a_confidence_on_a_bin_edge_in_the_lower_bin():
    """Confidence 1.0 (a saturated softmax) and 0.6 = 9/15 sit on edges: (lo, hi] bins."""
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.4], [0.6, 0.4], [0.95, 0.05]])
    y = np.array([0, 1, 0, 0, 0])
    # by hand: bin (14/15, 1] holds 1.0, 1.0, 0.95 (acc 2/3, conf 2.95/3); bin (8/15, 9/15]
    # holds 0.6, 0.6 (acc 1, conf 0.6)
    by_hand = 3 / 5 * abs(2 / 3 - 2.95 / 3) + 2 / 5 * abs(1 - 0.6)
    ours = expected_calibration_error(torch.tensor(probs), torch.from_numpy(y)).item()
    assert ours == pytest.approx(by_hand, abs=1e-12)
    assert numpy_ece(probs, y) == pytest.approx(by_hand, abs=1e-12)
    # torchmetrics gives 1.0 a bin of its own, which splits the top bin: why reglab bins itself
    theirs = multiclass_calibration_error(torch.tensor(probs), torch.from_numpy(y), 2, n_bins=15)
    assert theirs.item() != pytest.approx(by_hand, abs=1e-3)


def test_ece_agrees_with_torchmetrics_away_from_bin_edges():
    probs, y = random_predictions(1000, 5, seed=3, sharpness=1.5)
    assert np.all(probs.max(1) < 0.999)  # torchmetrics bins [lo, hi): edges differ from ours
    expected = multiclass_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(y), num_classes=5, n_bins=15, norm="l1"
    )
    ours = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(y))
    assert ours.item() == pytest.approx(expected.item(), abs=1e-6)


def test_a_calibrated_predictor_has_a_small_ece():
    """y drawn from the predicted probabilities themselves: ECE → 0 as n grows."""
    rng = np.random.default_rng(4)
    probs, _ = random_predictions(20000, 3, seed=4, sharpness=1.0)
    y = np.array([rng.choice(3, p=p / p.sum()) for p in probs.astype(np.float64)])
    ece = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(y)).item()
    assert ece < 0.02


def test_confidence_bins_count_every_example_and_sum_to_the_ece():
    probs, y = random_predictions(300, 4, seed=5)
    bins = {k: v.numpy() for k, v in confidence_bins(torch.tensor(probs), torch.tensor(y)).items()}
    assert bins["count"].sum() == 300 and len(bins["count"]) == 15
    assert reliability.ece(bins) == pytest.approx(numpy_ece(probs.astype(np.float64), y))
    fig = reliability.plot({"a": bins, "b": bins})
    assert len(fig.axes) == 4  # two classifiers: accuracy and share panels each


def test_brier_score_matches_numpy():
    probs, y = random_predictions(200, 6, seed=6)
    expected = ((probs - np.eye(6)[y]) ** 2).sum(1).mean()
    ours = brier_score(torch.from_numpy(probs), torch.from_numpy(y)).item()
    assert ours == pytest.approx(expected, rel=1e-6)
    perfect = brier_score(torch.eye(3), torch.arange(3)).item()
    wrong = brier_score(torch.eye(3), torch.tensor([1, 2, 0])).item()
    assert (perfect, wrong) == (0.0, 2.0)  # the score's range [0, 2]


def numpy_uncertainty(probs: np.ndarray) -> dict[str, np.ndarray]:
    """From (S, n, C) probabilities, by the definitions (0 log 0 = 0)."""
    mean = probs.mean(0)

    def h(p: np.ndarray) -> np.ndarray:
        return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(-1)

    votes = probs.argmax(-1) != mean.argmax(-1)
    return {
        "entropy": h(mean),
        "mutual_info": h(mean) - h(probs).mean(0),
        "disagreement": votes.mean(0),
    }


def test_uncertainty_by_hand():
    """Two certain members that disagree: H[p̄] = log 2, all of it epistemic, and one of the
    two members differs from p̄'s class; two identical members: no mutual information."""
    split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    agree = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    u = uncertainty(split.log())
    assert u["entropy"].item() == pytest.approx(math.log(2))
    assert u["mutual_info"].item() == pytest.approx(math.log(2))
    assert u["disagreement"].item() == 0.5
    v = uncertainty(agree.log())
    assert v["entropy"].item() == pytest.approx(math.log(2))
    assert v["mutual_info"].item() == pytest.approx(0.0, abs=1e-7)
    assert v["disagreement"].item() == 0.0


def test_uncertainty_matches_numpy_and_its_bounds():
    rng = np.random.default_rng(7)
    logits = 2 * rng.normal(size=(8, 50, 5))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ours = uncertainty(torch.from_numpy(probs).log())
    for key, expected in numpy_uncertainty(probs).items():
        np.testing.assert_allclose(ours[key].numpy(), expected, rtol=1e-6, atol=1e-9)
    mi, h = ours["mutual_info"], ours["entropy"]
    assert bool((mi >= -1e-9).all() and (mi <= h).all() and (h <= math.log(5)).all())
    assert ours["disagreement"].max() > 0  # random members do disagree somewhere


def test_mean_accuracy_is_torchmetrics_and_sklearns_accuracy_over_batches():
    """Validation's and the test's accuracy (objectives/evaluation.py) accumulated over
    batches of different sizes equals torchmetrics' Accuracy to the bit, and sklearn's."""
    import torchmetrics
    from sklearn.metrics import accuracy_score

    from reglab.objectives.evaluation import MeanAccuracy

    g = torch.Generator().manual_seed(0)
    ours = MeanAccuracy()
    theirs = torchmetrics.Accuracy("multiclass", num_classes=7)
    preds, targets = [], []
    for size in (64, 64, 17, 3):
        p, y = torch.randint(0, 7, (size,), generator=g), torch.randint(0, 7, (size,), generator=g)
        ours.update(p, y), theirs.update(p, y)
        preds.append(p), targets.append(y)
    assert torch.equal(ours.compute(), theirs.compute())
    assert ours.compute().item() == pytest.approx(
        accuracy_score(torch.cat(targets), torch.cat(preds)), abs=1e-7
    )
