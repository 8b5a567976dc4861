"""The regularizers' hooks against closed forms and autograd, then one optimizer step of the
module against the update rules of Goodfellow et al. ch. 7 computed independently."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reglab
from reglab.engine.run import build
from reglab.models import MLP, Linear
from reglab.regularization import (
    L1,
    L2,
    ElasticNet,
    NoPenalty,
    WeightDecay,
    penalized_parameters,
    soft_threshold_,
)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """`threads=1` (fast for these tiny problems) is process-wide: give the old value back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def random_weights(seed: int = 0) -> list[torch.Tensor]:
    """Leaf tensors of two shapes, entries bounded away from 0 (where |·| is not smooth)."""
    gen = torch.Generator().manual_seed(seed)
    weights = []
    for shape in [(4, 3), (5,)]:
        w = torch.randn(shape, generator=gen)
        weights.append((w + 0.1 * w.sign()).requires_grad_())
    return weights


def set_random_grads(weights: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    """Give every weight a random .grad (the data gradient ∇J); return copies of them."""
    gen = torch.Generator().manual_seed(seed)
    for w in weights:
        w.grad = torch.randn(w.shape, generator=gen)
    return [w.grad.clone() for w in weights]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in tensors])


def soft_threshold(w: torch.Tensor, t: float) -> torch.Tensor:
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)


# -- penalty() and add_grad_() -----------------------------------------------------------------
ALPHA = 0.3
CLOSED_FORMS = [
    (NoPenalty(ALPHA), lambda w: 0 * w.sum()),
    (L2(ALPHA), lambda w: ALPHA / 2 * (w**2).sum()),
    (L1(ALPHA), lambda w: ALPHA * w.abs().sum()),
    (L1(ALPHA, proximal=True), lambda w: ALPHA * w.abs().sum()),
    (ElasticNet(ALPHA, 0.3), lambda w: ALPHA * (0.3 * w.abs().sum() + 0.7 / 2 * (w**2).sum())),
    (WeightDecay(ALPHA), lambda w: 0 * w.sum()),  # outside the loss: J̃ = J
]


@pytest.mark.parametrize(
    ("reg", "closed_form"), [pytest.param(*case, id=repr(case[0])) for case in CLOSED_FORMS]
)
def test_penalty_matches_closed_form(reg, closed_form):
    weights = random_weights()
    expected = closed_form(flat(weights).double())
    torch.testing.assert_close(reg.penalty(weights).double(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "reg", [L2(ALPHA), L1(ALPHA), ElasticNet(ALPHA, 0.3), ElasticNet(ALPHA, 0.8)], ids=repr
)
def test_add_grad_adds_the_autograd_gradient_of_the_penalty(reg):
    weights = random_weights()
    penalty_grads = torch.autograd.grad(reg.penalty(weights), weights)
    data_grads = set_random_grads(weights)
    reg.add_grad_(weights)
    for w, g, pg in zip(weights, data_grads, penalty_grads, strict=True):
        torch.testing.assert_close(w.grad, g + pg)
        assert not torch.allclose(pg, torch.zeros_like(pg))


@pytest.mark.parametrize(
    "reg", [NoPenalty(ALPHA), L1(ALPHA, proximal=True), WeightDecay(ALPHA)], ids=repr
)
def test_add_grad_adds_nothing_when_the_penalty_is_not_differentiated(reg):
    weights = random_weights()
    data_grads = set_random_grads(weights)
    reg.add_grad_(weights)
    torch.testing.assert_close(flat(w.grad for w in weights), flat(data_grads), rtol=0, atol=0)


def test_add_grad_skips_weights_without_a_gradient():
    weights = random_weights()
    weights[0].grad = torch.zeros_like(weights[0])
    L2(ALPHA).add_grad_(weights)
    torch.testing.assert_close(weights[0].grad, ALPHA * weights[0].detach())
    assert weights[1].grad is None


# -- proximal and decoupled steps --------------------------------------------------------------
def test_soft_threshold_is_sign_times_shrunk_magnitude():
    w = torch.tensor([-3.0, -0.5, -0.2, 0.0, 0.1, 0.5, 0.7, 2.0])
    expected = soft_threshold(w, 0.5)
    soft_threshold_([w], 0.5)
    torch.testing.assert_close(w, torch.tensor([-2.5, 0, 0, 0, 0, 0, 0.2, 1.5]))
    torch.testing.assert_close(w, expected)
    assert (w == 0).sum() == 5  # |w| ≤ threshold: exactly zero, not merely small


def test_soft_threshold_on_random_weights():
    weights = random_weights()
    expected = [soft_threshold(w.detach(), 0.4) for w in weights]
    soft_threshold_(weights, 0.4)
    torch.testing.assert_close(flat(weights), flat(expected), rtol=0, atol=0)
    assert 0 < (flat(weights) == 0).sum() < flat(weights).numel()


def test_proximal_l1_soft_thresholds_by_lr_times_alpha_after_the_step():
    weights = random_weights()
    expected = [soft_threshold(w.detach(), 0.5 * ALPHA) for w in weights]
    L1(ALPHA, proximal=True).after_step_(weights, lr=0.5)
    torch.testing.assert_close(flat(weights), flat(expected), rtol=0, atol=0)
    unchanged = random_weights()
    L1(ALPHA).after_step_(unchanged, lr=0.5)  # the subgradient variant does nothing here
    torch.testing.assert_close(flat(unchanged), flat(random_weights()), rtol=0, atol=0)


def test_proximal_elastic_net_differentiates_l2_part_and_thresholds_l1_part():
    rho, lr = 0.3, 0.5
    reg = ElasticNet(ALPHA, rho, proximal=True)
    weights = random_weights()
    data_grads = set_random_grads(weights)
    reg.add_grad_(weights)
    for w, g in zip(weights, data_grads, strict=True):
        torch.testing.assert_close(w.grad, g + ALPHA * (1 - rho) * w.detach())
    expected = [soft_threshold(w.detach(), lr * ALPHA * rho) for w in weights]
    reg.after_step_(weights, lr)
    torch.testing.assert_close(flat(weights), flat(expected), rtol=0, atol=0)


def test_weight_decay_shrinks_before_the_step():
    weights = random_weights()
    expected = [(1 - 0.5 * ALPHA) * w.detach() for w in weights]
    WeightDecay(ALPHA).before_step_(weights, lr=0.5)
    torch.testing.assert_close(flat(weights), flat(expected))
    for reg in [L2(ALPHA), L1(ALPHA, proximal=True), ElasticNet(ALPHA, proximal=True)]:
        before = flat(weights)
        reg.before_step_(weights, lr=0.5)  # only weight decay acts before the step
        torch.testing.assert_close(flat(weights), before, rtol=0, atol=0)


@pytest.mark.parametrize("proximal", [False, True])
def test_elastic_net_limits_are_l1_and_l2(proximal):
    for net, single in [
        (ElasticNet(ALPHA, 1.0, proximal=proximal), L1(ALPHA, proximal=proximal)),
        (ElasticNet(ALPHA, 0.0, proximal=proximal), L2(ALPHA)),
    ]:
        a, b = random_weights(), random_weights()
        torch.testing.assert_close(net.penalty(a), single.penalty(b))
        for reg, weights in [(net, a), (single, b)]:
            set_random_grads(weights)
            reg.add_grad_(weights)
            reg.after_step_(weights, lr=0.5)
        torch.testing.assert_close(flat(w.grad for w in a), flat(w.grad for w in b))
        torch.testing.assert_close(flat(a), flat(b))


# -- which parameters are penalized ------------------------------------------------------------
@pytest.mark.parametrize(
    "net", [MLP(6, 3, hidden_sizes=(5, 4)), Linear(6, 3)], ids=["mlp", "linear"]
)
def test_penalized_parameters_exclude_biases_unless_asked(net):
    weights = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    biases = [m.bias for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(weights) == (3 if isinstance(net, MLP) else 1)

    def ids(params):
        return sorted(map(id, params))

    assert ids(penalized_parameters(net)) == ids(weights)
    assert ids(penalized_parameters(net, include_bias=True)) == ids(weights + biases)


# -- one optimizer step of the module ----------------------------------------------------------
FAST = (
    "logger=none",
    "callbacks.model_checkpoint=null",
    "callbacks.weight_histograms=null",
    "callbacks.progress_bar=null",
    "data=breast_cancer",
    "data.val_fraction=0",
    "data.test_fraction=0",
    "data.batch_size=100000",  # full batch: one epoch = one optimizer step
    "model=mlp",
    "model.hidden_sizes=[8]",
    "model.activation=tanh",
    "threads=1",
)
LR, STEP_ALPHA = 0.5, 0.4


def build_run(tmp_path, *overrides: str):
    cfg = reglab.compose([*FAST, *overrides], output_dir=tmp_path)
    return build(cfg)


def fit_run(run) -> None:
    run.trainer.fit(run.module, datamodule=run.dm)


def data_gradient(net: nn.Module, run) -> dict[str, torch.Tensor]:
    """∇J(θ) by autograd on a copy of `net`: mean cross-entropy over the training split."""
    net = copy.deepcopy(net)
    x, y = run.dm.splits["train"]
    loss = F.cross_entropy(net(x), y)
    names, params = zip(*net.named_parameters(), strict=True)
    return dict(zip(names, torch.autograd.grad(loss, params), strict=True))


def penalized_step(w, g):
    """The penalized parameter's update, by regularizer: one SGD step on J̃, as in ch. 7."""
    a, r = STEP_ALPHA, 0.25
    return {
        "l2": w - LR * (g + a * w),
        "weight_decay": (1 - LR * a) * w - LR * g,  # eq. 7.5
        "l1": w - LR * (g + a * w.sign()),
        "l1_proximal": soft_threshold(w - LR * g, LR * a),  # eq. 7.23 with H_ii = 1/ε
        "elastic_net": w - LR * (g + a * (1 - r) * w + a * r * w.sign()),
        "elastic_net_proximal": soft_threshold(w - LR * (g + a * (1 - r) * w), LR * a * r),
    }


@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize(
    "variant",
    ["l2", "weight_decay", "l1", "l1_proximal", "elastic_net", "elastic_net_proximal"],
)
def test_one_sgd_step_follows_the_update_rule(tmp_path, variant, include_bias):
    name, proximal = variant.removesuffix("_proximal"), variant.endswith("_proximal")
    overrides = [
        f"regularizer={name}",
        f"regularizer.alpha={STEP_ALPHA}",
        f"regularizer.include_bias={include_bias}",
        *(["regularizer.proximal=true"] if proximal else []),
        *(["regularizer.l1_ratio=0.25"] if name == "elastic_net" else []),
        "optimizer=sgd",
        "optimizer.momentum=0",
        f"optimizer.lr={LR}",
        "trainer.max_epochs=1",
    ]
    run = build_run(tmp_path, *overrides)
    initial = {k: p.detach().clone() for k, p in run.module.net.named_parameters()}
    grads = data_gradient(run.module.net, run)
    fit_run(run)
    assert run.trainer.global_step == 1

    for key, p in run.module.net.named_parameters():
        w, g = initial[key], grads[key]
        penalized = include_bias or not key.endswith("bias")
        expected = penalized_step(w, g)[variant] if penalized else w - LR * g
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6, msg=key)
        if penalized:  # the penalty moved it: the comparison could tell them apart
            assert (p.detach() - (w - LR * g)).abs().max() > 1e-3


def train_weights(tmp_path, *overrides: str, epochs: int = 5) -> torch.Tensor:
    run = build_run(tmp_path, *overrides, f"trainer.max_epochs={epochs}")
    fit_run(run)
    assert run.trainer.global_step == epochs
    return flat(run.module.net.parameters())


def test_weight_decay_is_l2_under_sgd_but_not_under_adam(tmp_path):
    """Shrink-then-update (7.5) is the L2 gradient step for SGD; Adam rescales ∇J̃ instead."""
    sgd = ["optimizer=sgd", "optimizer.momentum=0", f"optimizer.lr={LR}"]
    adam = ["optimizer=adam", "optimizer.lr=0.05"]

    def weights(regularizer, optimizer):
        return train_weights(
            tmp_path / f"{regularizer}-{optimizer[0]}",
            f"regularizer={regularizer}",
            f"regularizer.alpha={STEP_ALPHA}",
            *optimizer,
        )

    unregularized = train_weights(tmp_path / "none", "regularizer=none", *sgd)
    l2_sgd, decay_sgd = weights("l2", sgd), weights("weight_decay", sgd)
    torch.testing.assert_close(decay_sgd, l2_sgd, rtol=1e-5, atol=1e-6)
    assert (l2_sgd - unregularized).abs().max() > 1e-2

    l2_adam, decay_adam = weights("l2", adam), weights("weight_decay", adam)
    assert (l2_adam - decay_adam).abs().max() > 1e-2


def test_weight_decay_with_adam_is_adamw(tmp_path):
    """Decoupled decay of every parameter followed by Adam is torch's AdamW."""
    ours = train_weights(
        tmp_path / "ours",
        "regularizer=weight_decay",
        f"regularizer.alpha={STEP_ALPHA}",
        "regularizer.include_bias=true",
        "optimizer=adam",
        "optimizer.lr=0.05",
    )
    adamw = train_weights(
        tmp_path / "adamw",
        "regularizer=none",
        "optimizer=adamw",
        "optimizer.lr=0.05",
        f"optimizer.weight_decay={STEP_ALPHA}",
    )
    torch.testing.assert_close(ours, adamw, rtol=1e-5, atol=1e-6)


# -- proximal steps follow the optimizer's step at a fixed point (regularization/steps.py) ----
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.0, amsgrad=True),
    ],
)
def test_step_sizes_are_the_step_per_unit_gradient_at_a_fixed_point(optimizer):
    """Under a constant gradient g the optimizer's step settles at −η·g: measured by running
    torch's own update, it is what `step_sizes` predicts (and proximal L1 thresholds by α·η)."""
    from reglab.regularization.steps import step_sizes

    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.5, -2.0, 1e-3, 3.0, -0.1], dtype=torch.float64)
    opt = optimizer([w])
    for _ in range(3000):
        before = w.detach().clone()
        w.grad = g.clone()
        opt.step()
    eta = torch.as_tensor(step_sizes(opt, [w], 0.1)[0], dtype=torch.float64)
    torch.testing.assert_close((before - w.detach()) / g, eta.expand(5), rtol=1e-6, atol=0)


def test_proximal_l1_says_in_one_line_when_its_optimizer_has_no_exact_step(caplog):
    weights = random_weights()
    opt = torch.optim.RMSprop(weights, lr=0.1)
    reg = L1(ALPHA, proximal=True)
    with caplog.at_level("WARNING", logger="reglab"):
        reg.after_step_(weights, 0.1, opt)
        reg.after_step_(weights, 0.1, opt)
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "RMSprop" in notices[0] and "\n" not in notices[0]
