"""Norm constraints: the projections against independent solutions, the constrained linear
regression against the penalized one (ridge, lasso with its zeros) and its KKT multiplier
against α, the constraints holding after training on cnn, resnet and a user's module, and
bad values as one-line errors."""

import numpy as np
import pytest
import torch
from torch import nn

import reglab
from reglab import theory
from reglab.config import ConfigError, validate
from reglab.engine.run import build
from reglab.regularization import L1Ball, L2Ball, MaxNorm

QUICK = ("logger=none", "callbacks.model_checkpoint=null", "callbacks.weight_histograms=null")
QUICK += ("callbacks.progress_bar=null", "threads=1")


def l1_projection_by_bisection(v: np.ndarray, radius: float) -> np.ndarray:
    """argmin ‖w − v‖ s.t. ‖w‖₁ ≤ k: soft-threshold at the θ with Σ max(|v| − θ, 0) = k,
    found by bisection (independent of the sort-based algorithm)."""
    if np.abs(v).sum() <= radius:
        return v
    lo, hi = 0.0, np.abs(v).max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(np.abs(v) - mid, 0).sum() > radius else (lo, mid)
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


def weights(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(4, 3), (6,)]]


def flat(ws) -> np.ndarray:
    return torch.cat([w.flatten() for w in ws]).numpy()


@pytest.mark.parametrize("radius", [0.5, 3.0, 100.0])
def test_l1_ball_projection_is_the_euclidean_projection(radius):
    ws = weights()
    expected = l1_projection_by_bisection(flat(ws), radius)
    L1Ball(radius).project_(ws)
    np.testing.assert_allclose(flat(ws), expected, atol=1e-12)
    assert np.abs(flat(ws)).sum() <= radius + 1e-9
    if radius < 10:  # an active L1 ball sets weights to exactly 0
        assert (flat(ws) == 0).any()


def test_per_layer_balls_project_each_layer_alone():
    ws, each = weights(), weights()
    L2Ball(1.0, per_layer=True).project_(ws)
    for w, alone in zip(ws, each, strict=True):
        np.testing.assert_allclose(w.numpy(), (alone / max(1.0, alone.norm().item())).numpy())
    ws = weights()
    L1Ball(2.0, per_layer=True).project_(ws)
    for w, alone in zip(ws, each, strict=True):
        np.testing.assert_allclose(
            w.flatten().numpy(),
            l1_projection_by_bisection(alone.flatten().numpy(), 2.0),
            atol=1e-12,
        )


def test_max_norm_renorms_each_output_unit():
    """Rows of a Linear's (out, in) weight, output channels of a conv, axis 1 of a
    transposed conv's (in, out, …) weight; units inside the bound are left alone."""
    net = nn.Sequential(nn.Linear(5, 7), nn.Conv2d(2, 3, 3), nn.ConvTranspose2d(3, 4, 2))
    constraint = MaxNorm(max_norm=1.0).bind(net, include_bias=False)
    assert constraint.axes == [0, 0, 1]
    ws = [m.weight for m in net]
    with torch.no_grad():
        ws[0][0].mul_(1e-3)  # one unit well inside the bound
    before = [w.detach().clone() for w in ws]
    constraint.project_(ws)
    for w, old, axis in zip(ws, before, constraint.axes, strict=True):
        units, old_units = (t.movedim(axis, 0).flatten(1) for t in (w.detach(), old))
        norms = old_units.norm(dim=1, keepdim=True)
        torch.testing.assert_close(units, old_units * (1.0 / norms).clamp(max=1))
    assert torch.equal(ws[0][0], before[0][0])


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("constraints")
    return {
        kind: theory.check_constraint(out / kind, kind, alpha)
        for kind, alpha in [("l2_ball", 1.0), ("l1_ball", 4.0)]
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["l2_ball", "l1_ball"])
def test_constrained_linear_regression_is_the_penalized_one(checks, kind):
    """k = Ω(w̃(α)) gives w̃(α) (ridge's closed form, scikit-learn's Lasso with its zeros),
    and the KKT multiplier recovered from the constrained solution is α (eq. 7.25–7.27)."""
    c = checks[kind]
    assert c.weight_error < theory.WEIGHT_RTOL
    np.testing.assert_array_equal(c.measured == 0, c.penalized == 0)
    assert (c.penalized == 0).sum() >= (3 if kind == "l1_ball" else 0)
    assert c.multiplier == pytest.approx(c.alpha, rel=theory.MULTIPLIER_RTOL)
    assert c.active_fraction == 1.0
    split = ["data=diabetes", "data.val_fraction=0", "data.test_fraction=0"]  # the check's
    x, y = (
        t.double().numpy()
        for t in reglab.instantiate(reglab.compose(split).data).prepare().splits["train"]
    )
    w_star = theory.least_squares(x, y.ravel())
    assert np.linalg.norm(w_star - c.penalized) > 0.1 * np.linalg.norm(w_star)  # it did bind


class TinyNet(nn.Module):
    """A user's module: a conv and a linear layer of its own."""

    def __init__(self, in_channels: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.head = nn.Linear(6 * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(self.conv(x).relu(), 4).flatten(1))


NETWORKS = {
    "cnn": ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[16]"],
    "resnet": ["model=resnet", "model.depth=8", "model.width=4"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_constraints.TinyNet"],
}
CONSTRAINTS = {
    "max_norm": ["constraint=max_norm", "constraint.max_norm=0.5"],
    "l2_ball": ["constraint=l2_ball", "constraint.radius=2.0", "constraint.per_layer=true"],
    "l1_ball": ["constraint=l1_ball", "constraint.radius=20.0"],
}


@pytest.mark.parametrize(
    ("network", "kind"), [("cnn", "max_norm"), ("resnet", "l2_ball"), ("user", "l1_ball")]
)
def test_constraint_holds_after_training_any_network(tmp_path, network, kind):
    overrides = [
        *QUICK,
        *NETWORKS[network],
        *CONSTRAINTS[kind],
        "data=digits",
        "trainer.max_epochs=1",
    ]
    run = build(
        reglab.compose([*overrides, "regularizer=l2", "data.batch_size=128"], output_dir=tmp_path)
    )
    c = run.module.constraint
    assert c.norms(run.module.weights).max() > c.radius  # the initial weights violate it
    run.trainer.fit(run.module, datamodule=run.dm)
    assert c.norms(run.module.weights).max() <= c.radius * (1 + 1e-5)
    stats = run.module.constraint_stats(*run.dm.splits["train"])
    assert 0 < stats["constraint/active_fraction"] <= 1
    assert np.isfinite(stats["constraint/multiplier"])


def test_metrics_json_reports_the_multiplier_and_activity(train_api):
    metrics, _ = train_api(*QUICK, "debug=fast", "constraint=max_norm", "constraint.max_norm=0.3")
    assert metrics["constraint/active_fraction"] > 0.5
    assert metrics["constraint/multiplier"] > 0
    plain, _ = train_api(*QUICK, "debug=fast")
    assert not any(k.startswith("constraint/") for k in plain)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["constraint=l2_ball", "constraint.radius=0"],
            "constraint.radius=0 is not allowed (allowed: a number > 0)",
        ),
        (
            ["constraint=l1_ball", "constraint.radius=-1"],
            "constraint.radius=-1 is not allowed (allowed: a number > 0)",
        ),
        (
            ["constraint=max_norm", "constraint.max_norm=0"],
            "constraint.max_norm=0 is not allowed (allowed: a number > 0)",
        ),
        (["constraint=max_norm", "ensemble=bagging"], "not ensemble=bagging's stacked members"),
    ],
)
def test_bad_constraint_values_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        validate(reglab.compose(overrides))
    assert "\n" not in str(err.value)
