"""Adversarial examples (§7.13): within ε of x in input units, in the valid pixel range, and
worse for the network than x; training on them and attacking the test set."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reglab
from reglab import instantiate
from reglab.regularization.adversarial import Adversarial, loss_gradient

EPS = 2.0  # pixels, of digits' 0–16


@pytest.fixture(scope="module")
def digits():
    """Standardized digits, their statistics and a linear classifier trained briefly on them."""
    dm = instantiate(reglab.compose([], output_dir="unused").data).prepare()
    x, y = dm.splits["train"]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return dm, x[:200], y[:200], net


def _attack(dm, images: bool = True, **kwargs) -> Adversarial:
    attack = Adversarial(epsilon=EPS, **kwargs)
    attack.bind(dm.feature_mean, dm.feature_std, dm.splits["train"][0], images=images)
    return attack


def _raw(dm, x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1) * dm.feature_std + dm.feature_mean


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_attack_stays_within_epsilon_pixels_and_the_pixel_range(digits, method):
    dm, x, y, net = digits
    adv = _attack(dm, steps=5).perturb(net, lambda v: F.cross_entropy(net(v), y), x, method)
    delta = _raw(dm, adv) - _raw(dm, x)
    assert delta.abs().max().item() <= EPS + 1e-4
    assert delta.abs().max().item() > EPS - 1e-3  # the whole budget is used somewhere
    raw = _raw(dm, adv)
    assert raw.min().item() >= -1e-4 and raw.max().item() <= 16 + 1e-4  # digits' pixels
    clean, attacked = (F.cross_entropy(net(v), y).item() for v in (x, adv))
    assert attacked > clean + 0.1


def test_fgsm_is_epsilon_times_the_sign_of_the_input_gradient(digits):
    """Where the range does not clip, δ = ε·sign(∇ₓJ) in pixels, exactly."""
    dm, x, y, net = digits
    loss_of = lambda v: F.cross_entropy(net(v), y)  # noqa: E731
    adv = _attack(dm).perturb(net, loss_of, x, "fgsm")
    sign = loss_gradient(loss_of, x).flatten(1).sign()
    delta = _raw(dm, adv) - _raw(dm, x)
    raw = _raw(dm, x) + EPS * sign
    free = (raw > 0) & (raw < 16) & (sign != 0)
    assert free.float().mean() > 0.3
    torch.testing.assert_close(delta[free], EPS * sign[free], atol=1e-4, rtol=0)


def test_pgd_hurts_at_least_as_much_as_fgsm_and_leaves_parameter_gradients_alone(digits):
    dm, x, y, net = digits
    loss_of = lambda v: F.cross_entropy(net(v), y)  # noqa: E731
    before = [p.grad.clone() for p in net.parameters()]
    torch.manual_seed(0)
    fgsm = loss_of(_attack(dm).perturb(net, loss_of, x, "fgsm")).item()
    pgd = loss_of(_attack(dm, steps=10).perturb(net, loss_of, x, "pgd")).item()
    assert pgd >= fgsm - 1e-3
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), before, strict=True))


def test_tables_take_epsilon_in_standard_deviations_without_a_box():
    mean, std = torch.tensor([5.0, -1.0]), torch.tensor([2.0, 10.0])
    attack = Adversarial(epsilon=0.5)
    attack.bind(mean, std, torch.randn(20, 2), images=False)
    w = torch.tensor([1.0, -1.0])
    x = torch.zeros(3, 2)
    adv = attack.perturb(nn.Identity(), lambda v: (v @ w).sum(), x, "fgsm")
    torch.testing.assert_close(adv, torch.tensor([[0.5, -0.5]]).expand(3, 2))


@pytest.mark.slow
def test_adversarial_training_and_evaluation_report_attacked_accuracy(train_api):
    small = ["model.hidden_sizes=[32]", "trainer.max_epochs=4", "logger=none", "threads=1"]
    small += ["callbacks.progress_bar=null", "adversarial.evaluate=[fgsm,pgd]"]
    plain, _ = train_api(*small)
    robust, _ = train_api(*small, "adversarial=fgsm", "adversarial.evaluate=[fgsm,pgd]")
    for m in (plain, robust):
        assert m["test/acc_pgd"] <= m["test/acc_fgsm"] + 0.02 <= m["test/acc"] + 0.02
    assert plain["test/acc_fgsm"] < plain["test/acc"] - 0.1  # the attack bites
    assert robust["test/acc_fgsm"] > plain["test/acc_fgsm"] + 0.05  # training on it helps
