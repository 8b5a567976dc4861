"""A linear model trained by reglab to convergence is scikit-learn's penalized estimator.

Our objective is J̃ = J + α·Ω with J the mean over samples (MSE or cross-entropy) and Ω over
the weights only. Dividing or multiplying J̃ by a constant does not move its minimizer, which
gives the scikit-learn hyperparameter (n = training-set size):

    ridge        (1/n)‖r‖² + α/2‖w‖²                 × n   → ‖r‖² + (nα/2)‖w‖²     Ridge(nα/2)
    lasso        (1/n)‖r‖² + α‖w‖₁                   ÷ 2   → (1/2n)‖r‖² + (α/2)‖w‖₁ Lasso(α/2)
    elastic net  (1/n)‖r‖² + α(ρ‖w‖₁ + (1−ρ)/2‖w‖²)  ÷ 2   → ElasticNet(α/2, ρ)
    logistic     (1/n)Σℓ(d) + α/4‖d‖²                × 2/α → C·Σℓ(d) + ½‖d‖², C = 2/(nα)

For logistic regression the model has two softmax logits: only d = w₁ − w₀ (and b₁ − b₀)
enter the loss, and for a given d, ‖w₀‖² + ‖w₁‖² is smallest at w₀ = −w₁ = −d/2, where it is
‖d‖²/2; so the penalty α/2(‖w₀‖² + ‖w₁‖²) acts on d as α/4‖d‖².

Each test also checks that the optimization really converged (the gradient, or for L1 the
subgradient optimality condition, of J̃ at the weights found is ~0, computed in float64
independently of torch) and that a wrong mapping would have been caught.
"""

import numpy as np
import pytest
from sklearn.datasets import make_regression
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge

import reglab
from reglab.engine.run import build

FAST = (
    "logger=none",
    "callbacks.model_checkpoint=null",
    "callbacks.weight_histograms=null",
    "callbacks.progress_bar=null",
    "data.val_fraction=0",
    "data.test_fraction=0",
    "data.batch_size=100000",  # full batch: one epoch = one gradient step on J̃
    "model=linear",
    "threads=1",  # tiny matrices: extra threads only contend
)
SGD = ("optimizer=sgd", "optimizer.momentum=0")  # unless the overrides choose an optimizer
# 1000 × 20 standardized Gaussian features, 3 of them informative: (2/n)XᵀX ≈ 2I, so plain
# gradient descent with lr 0.3 contracts the error by ~0.5 per step
SYNTHETIC = dict(n_samples=1000, n_features=20, n_informative=3, noise=10.0, random_state=0)
REGRESSION = (
    "data=synthetic",
    "data.task=regression",
    *(f"data.source.{k}={v}" for k, v in SYNTHETIC.items()),
    "optimizer.lr=0.3",
    "trainer.max_epochs=100",
)
COEF_TOL = dict(rtol=1e-4, atol=1e-4)  # coefficients are O(100); float32 gives ~1e-5


def train_linear(output_dir, *overrides: str):
    """Train reglab's linear model; return (X, y, weight, bias) of its training split in float64."""
    chosen = any(o.startswith("optimizer=") for o in overrides)
    run = build(
        reglab.compose([*FAST, *(() if chosen else SGD), *overrides], output_dir=output_dir)
    )
    run.trainer.fit(run.module, datamodule=run.dm)
    x, y = (t.double().numpy() for t in run.dm.splits["train"])
    weight, bias = (
        p.detach().double().numpy() for p in (run.module.net.weight, run.module.net.bias)
    )
    return x, y.squeeze(-1) if y.ndim == 2 else y, weight, bias


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    """fit(*overrides): `train_linear`, cached per override set (tests share some runs)."""
    cache = {}

    def cached(*overrides: str):
        if overrides not in cache:
            cache[overrides] = train_linear(tmp_path_factory.mktemp("run"), *overrides)
        return cache[overrides]

    return cached


def mse_gradient(x, y, w, b):
    """∇ of (1/n)‖y − Xw − b‖² with respect to (w, b)."""
    residual = x @ w + b - y
    return 2 * x.T @ residual / len(x), 2 * residual.mean()


def optimality_violation(x, y, w, b, l1=0.0, l2=0.0):
    """How far (w, b) is from minimizing (1/n)‖y − Xw − b‖² + l1‖w‖₁ + l2/2‖w‖².

    The optimality condition is 0 ∈ ∇(smooth part) + l1·∂‖w‖₁: on the support the gradient
    equals −l1·sign(w), off it its magnitude is at most l1; the bias' derivative is 0.
    """
    grad_w, grad_b = mse_gradient(x, y, w, b)
    grad_w = grad_w + l2 * w
    nonzero = w != 0
    on_support = np.abs(grad_w[nonzero] + l1 * np.sign(w[nonzero]))
    off_support = np.maximum(np.abs(grad_w[~nonzero]) - l1, 0)
    return max(on_support.max(initial=0), off_support.max(initial=0), abs(grad_b))


def assert_far(a, b, tol=1e-2):
    """What a wrong hyperparameter mapping would give is well outside the tolerances."""
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > tol


def test_l2_linear_regression_is_ridge(fit):
    alpha = 0.1
    x, y, weight, bias = fit(*REGRESSION, "regularizer=l2", f"regularizer.alpha={alpha}")
    w, b = weight[0], bias[0]
    n = len(x)

    assert optimality_violation(x, y, w, b, l2=alpha) < 1e-3  # converged: ∇J̃ = 0

    ridge = Ridge(alpha=n * alpha / 2, tol=1e-12).fit(x, y)
    np.testing.assert_allclose(w, ridge.coef_, **COEF_TOL)
    np.testing.assert_allclose(b, ridge.intercept_, **COEF_TOL)
    assert_far(w, Ridge(alpha=n * alpha).fit(x, y).coef_)
    assert_far(w, Ridge(alpha=1e-9).fit(x, y).coef_)  # the penalty did shrink w


def test_proximal_l1_linear_regression_is_lasso(fit):
    alpha = 4.0
    x, y, weight, bias = fit(
        *REGRESSION, "regularizer=l1", f"regularizer.alpha={alpha}", "regularizer.proximal=true"
    )
    w, b = weight[0], bias[0]
    assert optimality_violation(x, y, w, b, l1=alpha) < 1e-3

    lasso = Lasso(alpha=alpha / 2, tol=1e-12, max_iter=100_000).fit(x, y)
    np.testing.assert_array_equal(w == 0, lasso.coef_ == 0)  # exact zeros, same places
    assert (w == 0).sum() >= 10
    np.testing.assert_allclose(w, lasso.coef_, **COEF_TOL)
    np.testing.assert_allclose(b, lasso.intercept_, **COEF_TOL)
    assert_far(w, Lasso(alpha=alpha).fit(x, y).coef_)


@pytest.mark.parametrize("l1_ratio", [0.2, 0.7])
def test_proximal_elastic_net_linear_regression_is_elastic_net(fit, l1_ratio):
    alpha = 4.0
    x, y, weight, bias = fit(
        *REGRESSION,
        "regularizer=elastic_net",
        f"regularizer.alpha={alpha}",
        f"regularizer.l1_ratio={l1_ratio}",
        "regularizer.proximal=true",
    )
    w, b = weight[0], bias[0]
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio)
    assert optimality_violation(x, y, w, b, l1=l1, l2=l2) < 1e-3

    net = ElasticNet(alpha=alpha / 2, l1_ratio=l1_ratio, tol=1e-12, max_iter=100_000).fit(x, y)
    np.testing.assert_array_equal(w == 0, net.coef_ == 0)
    assert (w == 0).sum() >= 1
    np.testing.assert_allclose(w, net.coef_, **COEF_TOL)
    np.testing.assert_allclose(b, net.intercept_, **COEF_TOL)
    assert_far(w, ElasticNet(alpha=alpha, l1_ratio=l1_ratio).fit(x, y).coef_)


def test_l1_zeros_uninformative_weights_l2_zeros_none(fit):
    """Sparsity (eq. 7.23): proximal L1 sets the noise features' weights to exactly 0."""
    *_, true_coef = make_regression(**SYNTHETIC, coef=True)
    informative = true_coef != 0
    assert informative.sum() == 3

    def weights(*overrides):
        return fit(*REGRESSION, *overrides)[2][0]

    l2 = weights("regularizer=l2", "regularizer.alpha=0.1")
    l1_subgradient = weights("regularizer=l1", "regularizer.alpha=4.0")
    l1_proximal = weights("regularizer=l1", "regularizer.alpha=4.0", "regularizer.proximal=true")

    assert (l2 == 0).sum() == 0
    assert (l1_subgradient == 0).sum() == 0  # α·sign(w) steps jitter around 0, never onto it
    assert (l1_proximal[~informative] == 0).sum() >= 15  # of 17 uninformative
    assert np.all(l1_proximal[informative] != 0)
    assert np.all(np.abs(l1_proximal[informative]) > 10)


def test_l2_logistic_regression_is_sklearn_logistic_regression(fit):
    alpha = 1e-2
    x, y, weight, bias = fit(
        "data=breast_cancer",
        "regularizer=l2",
        f"regularizer.alpha={alpha}",
        "optimizer.lr=2.0",
        "trainer.max_epochs=1500",
    )
    n = len(x)
    assert weight.shape == (2, x.shape[1])
    d, c = weight[1] - weight[0], bias[1] - bias[0]
    p = 1 / (1 + np.exp(-(x @ d + c)))  # softmax of two logits = sigmoid of their difference
    # converged: ∇_d[(1/n)Σℓ + α/4‖d‖²] = 0 and ∂/∂c = 0
    np.testing.assert_allclose(x.T @ (p - y) / n + alpha / 2 * d, 0, atol=1e-5)
    assert abs((p - y).mean()) < 1e-5

    logistic = LogisticRegression(C=2 / (n * alpha), tol=1e-12, max_iter=100_000).fit(x, y)
    np.testing.assert_allclose(d, logistic.coef_[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(c, logistic.intercept_[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(p, logistic.predict_proba(x)[:, 1], atol=1e-5)
    wrong = LogisticRegression(C=1 / (n * alpha), tol=1e-12, max_iter=100_000).fit(x, y)
    assert_far(d, wrong.coef_[0])


def test_ridge_experiment_reaches_sklearn_ridge_on_diabetes(tmp_path):
    """`experiment=ridge` (the README's ridge example) ends at scikit-learn's ridge solution:
    the same test MSE on the same split, far from the untrained model's."""
    cfg = reglab.compose(["experiment=ridge", *FAST[:4]], output_dir=tmp_path)
    metrics = reglab.train(cfg)
    dm = reglab.instantiate(cfg.data).prepare()
    (x, y), (xt, yt) = (tuple(t.double().numpy() for t in dm.splits[s]) for s in ("train", "test"))
    ridge = Ridge(alpha=len(x) * cfg.regularizer.alpha / 2).fit(x, y.ravel())
    expected = np.mean((ridge.predict(xt) - yt.ravel()) ** 2)
    assert metrics["test/mse"] == pytest.approx(expected, rel=1e-4)
    assert expected < 0.5 * np.mean(yt**2)  # predicting 0 (no training) would be far off


# -- proximal L1 under momentum and Adam: the threshold follows the optimizer's step -----------
# diabetes (442 × 10, correlated features): the recipe, with the optimizer as configured
DIABETES = ("data=diabetes", "regularizer.proximal=true")
OPTIMIZERS = {  # (overrides, epochs): each converges to float32 rounding within its budget
    "sgd-momentum0": (("optimizer.lr=0.2",), 800),  # SGD's momentum 0 (`SGD`)
    "sgd-momentum0.9": (("optimizer.lr=0.1", "optimizer.momentum=0.9"), 250),
    "sgd-nesterov": (
        ("optimizer.lr=0.1", "optimizer.momentum=0.9", "+optimizer.nesterov=true"),
        250,
    ),
    "sgd-dampening": (
        ("optimizer.lr=0.1", "optimizer.momentum=0.9", "+optimizer.dampening=0.5"),
        300,
    ),
    "adam": (("optimizer=adam", "optimizer.lr=0.5"), 800),
}
LASSO_ALPHA = 4.0  # zeroes 3 of diabetes' 10 coefficients


def relative_distance(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def diabetes_fit(fit, optimizer: str, *regularizer: str):
    overrides, epochs = OPTIMIZERS[optimizer]
    x, y, weight, _ = fit(*DIABETES, *regularizer, *overrides, f"trainer.max_epochs={epochs}")
    return x, y, weight[0]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_proximal_l1_is_lasso_at_any_momentum_and_under_adam(fit, optimizer):
    """The fixed point is Lasso(α/2) whatever the optimizer's momentum (the soft-threshold
    scales with the heavy-ball step ε(1 − d)/(1 − μ), or Adam's per-coordinate step)."""
    x, y, w = diabetes_fit(fit, optimizer, "regularizer=l1", f"regularizer.alpha={LASSO_ALPHA}")
    lasso = Lasso(alpha=LASSO_ALPHA / 2, tol=1e-12, max_iter=100_000).fit(x, y).coef_
    np.testing.assert_array_equal(w == 0, lasso == 0)
    assert (lasso == 0).sum() >= 3
    assert relative_distance(w, lasso) < 1e-4
    # the old threshold ε·α under momentum 0.9 ended at the lasso of α(1 − μ): far from it
    stale = Lasso(alpha=LASSO_ALPHA * 0.1 / 2, tol=1e-12, max_iter=100_000).fit(x, y).coef_
    assert relative_distance(w, stale) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd-momentum0", "sgd-momentum0.9", "sgd-nesterov"])
def test_proximal_elastic_net_is_elastic_net_at_any_momentum(fit, optimizer):
    alpha, rho = 6.0, 0.7
    x, y, w = diabetes_fit(
        fit,
        optimizer,
        "regularizer=elastic_net",
        f"regularizer.alpha={alpha}",
        f"regularizer.l1_ratio={rho}",
    )
    net = ElasticNet(alpha=alpha / 2, l1_ratio=rho, tol=1e-12, max_iter=100_000).fit(x, y).coef_
    np.testing.assert_array_equal(w == 0, net == 0)
    assert (net == 0).sum() >= 1
    assert relative_distance(w, net) < 1e-4
