"""Noise robustness (§7.5): weight noise is gone before the update, label smoothing is the
smoothed cross-entropy computed by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab.regularization.noise import LabelSmoothing, NoNoise, WeightNoise


def test_weight_noise_has_the_configured_std_and_is_removed_exactly():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(300, 300))
    clean = w.detach().clone()
    with WeightNoise(std=0.2).perturbed([w]):
        noise = (w.detach() - clean).flatten()
    assert noise.std().item() == pytest.approx(0.2, rel=0.01)
    assert abs(noise.mean().item()) < 0.002
    assert torch.equal(w.detach(), clean)  # bit for bit, not w + ε − ε


def test_weight_noise_gradient_is_taken_at_the_noisy_weights():
    """Linear regression: ∇_w (1/n)‖Xw − y‖² = 2Xᵀ(Xw − y)/n, at w + ε, not at w."""
    torch.manual_seed(1)
    x, y = torch.randn(50, 4), torch.randn(50)
    w = nn.Parameter(torch.randn(4))
    with WeightNoise(std=0.5).perturbed([w]):
        noisy = w.detach().clone()
        F.mse_loss(x @ w, y).backward()
    expected = 2 * x.T @ (x @ noisy - y) / len(x)
    at_clean = 2 * x.T @ (x @ w.detach() - y) / len(x)
    torch.testing.assert_close(w.grad, expected)
    assert (w.grad - at_clean).abs().max() > 0.1  # the noise mattered
    assert not torch.equal(noisy, w.detach())


def test_zero_std_and_no_noise_leave_everything_alone():
    w = nn.Parameter(torch.ones(3))
    for noise in (WeightNoise(0.0), NoNoise()):
        with noise.perturbed([w]):
            assert torch.equal(w.detach(), torch.ones(3))
    y = torch.tensor([0, 2])
    assert NoNoise().targets(y, 3) is y


def test_label_smoothing_is_the_hand_computed_smoothed_cross_entropy():
    torch.manual_seed(2)
    logits, eps, k = 4 * torch.randn(6, 5), 0.2, 5
    y = logits.argmax(-1)  # confident and right: smoothing costs it visibly
    q = LabelSmoothing(eps).targets(y, k)
    log_p = logits.log_softmax(-1)
    by_hand = sum(
        -sum(((1 - eps) * (c == y[i]) + eps / k) * log_p[i, c] for c in range(k))
        for i in range(len(y))
    ) / len(y)
    assert F.cross_entropy(logits, q).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # torch's own label smoothing agrees; the unsmoothed loss does not
    assert F.cross_entropy(logits, y, label_smoothing=eps).item() == pytest.approx(
        by_hand.item(), rel=1e-6
    )
    assert abs(F.cross_entropy(logits, y).item() - by_hand.item()) > 0.05
    torch.testing.assert_close(q.sum(-1), torch.ones(6))
    assert q.min().item() == pytest.approx(eps / k)


def test_label_smoothing_of_a_mixed_target_smooths_the_distribution():
    soft = torch.tensor([[0.7, 0.3, 0.0]])
    expected = torch.tensor([[0.7 * 0.9 + 0.1 / 3, 0.3 * 0.9 + 0.1 / 3, 0.1 / 3]])
    torch.testing.assert_close(LabelSmoothing(0.1).targets(soft, 3), expected)
