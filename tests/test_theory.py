"""Chapter 7's closed forms hold for what reglab trains (quadratic problems, float32 training).

The closed forms are first checked against independent numpy computations (a direct solve,
a brute-force minimization, explicit gradient-descent iterations); then reglab's trained
weights are checked against them, with the tolerances of `reglab.theory`:

    WEIGHT_RTOL   weights vs closed form, relative to the largest component     1e-4
    FACTOR_ATOL   per-direction shrink factors vs closed form                    1e-4
    GRADIENT_ATOL |∇J̃| (or the L1 optimality violation) at the trained weights   1e-4
    ENSEMBLE_RTOL simulated ensemble error vs eq. 7.50 (≥ 6 standard errors)     2e-2
    IDENTITY_RTOL eq. 7.50 on empirical moments (an identity)                    1e-10

Each test also asserts that a wrong closed form would have been caught.
"""

import numpy as np
import pytest

import reglab
from reglab import theory
from reglab.engine.run import build


@pytest.fixture(scope="module")
def l2(tmp_path_factory):
    return theory.check_l2(tmp_path_factory.mktemp("l2"))


@pytest.fixture(scope="module")
def l1(tmp_path_factory):
    return theory.check_l1(tmp_path_factory.mktemp("l1"))


@pytest.fixture(scope="module")
def early(tmp_path_factory):
    return theory.check_early_stopping(tmp_path_factory.mktemp("es"))


# -- the closed forms themselves -----------------------------------------------------------


def test_correlated_design_has_the_stated_moments_and_survives_standardization(tmp_path):
    x, y = theory.correlated_design()
    n, d = x.shape
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-12)  # StandardScaler has nothing to do
    eig = np.linalg.eigvalsh(theory.hessian(x))
    np.testing.assert_allclose(eig, 2 * theory.spectrum(d, 100.0), rtol=1e-10)
    _, q = theory.eigen(theory.hessian(x))
    np.testing.assert_allclose(np.abs(q.T @ theory.least_squares(x, y)), 1, rtol=1e-10)

    whole = ["data.val_fraction=0", "data.test_fraction=0"]
    cfg = reglab.compose([*theory.QUIET, *theory.source("correlated_design"), *whole], tmp_path)
    x_reglab, y_reglab = build(cfg).dm.splits["train"]
    np.testing.assert_allclose(x_reglab.numpy(), x, atol=1e-5)  # standardization: a no-op
    np.testing.assert_allclose(y_reglab.numpy()[:, 0], y, rtol=1e-6)
    assert len(x_reglab) == n and x_reglab.shape[1] == d


def test_whitened_design_has_identity_hessian_over_two_and_least_squares_coef():
    x, y = theory.whitened_design()
    np.testing.assert_allclose(theory.hessian(x), 2 * np.eye(x.shape[1]), atol=1e-12)
    np.testing.assert_allclose(theory.least_squares(x, y), theory.WHITENED_COEF, atol=1e-12)


def test_l2_closed_form_is_the_ridge_minimizer():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    h, w_star, alpha = theory.hessian(x), theory.least_squares(x, y), 0.7
    w = theory.l2_solution(h, w_star, alpha)
    np.testing.assert_allclose(w, np.linalg.solve(h + alpha * np.eye(4), h @ w_star), rtol=1e-12)
    b = y.mean() - x.mean(0) @ w  # the unpenalized bias at its optimum
    g, gb = theory.objective_gradient(x, y, w, b, l2=alpha)
    np.testing.assert_allclose([*g, gb], 0, atol=1e-12)


def test_l1_closed_form_minimizes_the_separable_objective():
    w_star, h, alpha = np.array([1.3, -0.2, 0.45, -2.0]), np.array([2.0, 0.5, 1.0, 4.0]), 0.5
    w = theory.l1_solution(w_star, h, alpha)
    grid = np.linspace(-3, 3, 600_001)  # brute force per coordinate: ½Hᵢᵢ(w − wᵢ*)² + α|w|
    brute = [
        grid[np.argmin(0.5 * hi * (grid - wi) ** 2 + alpha * np.abs(grid))]
        for wi, hi in zip(w_star, h, strict=True)
    ]
    np.testing.assert_allclose(w, brute, atol=1e-5)
    assert list(w == 0) == [False, True, True, False]  # |wᵢ*| ≤ α/Hᵢᵢ ⇔ wᵢ = 0


def test_early_stopping_factor_is_gradient_descent_from_zero():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    h, w_star, lr = theory.hessian(x), theory.least_squares(x, y), 0.1
    lam, q = theory.eigen(h)
    w = np.zeros(4)
    for tau in range(1, 31):
        w = w - lr * h @ (w - w_star)  # ∇J = H(w − w*) on a quadratic
        factor = theory.early_stopping_factor(lam, lr, tau)
        np.testing.assert_allclose(q.T @ w, factor * (q.T @ w_star), rtol=1e-10, atol=1e-12)
    assert theory.equivalent_alpha(30, lr) == pytest.approx(1 / 3)


def test_ensemble_moments_make_eq_7_50_an_identity():
    errors = np.random.default_rng(0).standard_normal((7, 30)) + 0.5
    v, c = theory.error_moments(errors)
    ensemble = (errors.mean(0) ** 2).mean()
    assert ensemble == pytest.approx(theory.ensemble_error(v, c, 7), rel=1e-12)
    assert v == pytest.approx((errors**2).mean())


# -- reglab's training against them --------------------------------------------------------


def test_l2_shrinks_each_eigen_direction_by_lambda_over_lambda_plus_alpha(l2):
    assert l2.gradient < theory.GRADIENT_ATOL  # converged: ∇J̃ = 0 at reglab's weights
    assert l2.factor_error < theory.FACTOR_ATOL
    assert l2.weight_error < theory.WEIGHT_RTOL
    assert l2.predicted.min() < 0.2 and l2.predicted.max() > 0.99  # factors spread visibly
    assert l2.lam.max() / l2.lam.min() > 50
    for alpha, measured in zip(l2.alphas, l2.measured, strict=True):
        wrong = theory.l2_factor(l2.lam / 2, alpha)  # H = XᵀX/n: the factor 2 forgotten
        assert np.abs(measured - wrong).max() > 0.05


def test_proximal_l1_soft_thresholds_with_diagonal_hessian(l1):
    assert l1.off_diagonal < 1e-6  # H diagonal (up to float32 rounding of X)
    np.testing.assert_allclose(l1.h_diag, 2, atol=1e-5)
    assert l1.violation < theory.GRADIENT_ATOL  # converged to the L1 optimum
    assert l1.weight_error < theory.WEIGHT_RTOL
    assert l1.same_zeros  # exact zeros exactly where |wᵢ*| ≤ α/Hᵢᵢ
    assert 4 <= (l1.measured == 0).sum() <= 6
    wrong = theory.l1_solution(l1.w_star, l1.h_diag, l1.alpha / 2)  # threshold α/(2Hᵢᵢ)
    assert np.abs(l1.measured - wrong).max() > 0.1


def test_early_stopping_trajectory_is_eq_7_40_exactly(early):
    assert list(early.steps) == list(range(1, 301))
    assert early.trajectory_error < theory.WEIGHT_RTOL  # every τ = 1 … 300
    assert early.factor_error < theory.FACTOR_ATOL
    assert early.measured[0].max() < 0.8 and early.measured[-1].min() > 0.9  # w⁽τ⁾ moved


def test_early_stopping_is_l2_with_alpha_one_over_tau_epsilon_only_approximately(early):
    """α = 1/(τε) (eq. 7.45) matches where λ ≪ α with ελ small; near λ ≈ 2.5α it is off by
    up to 0.2; with ελ near 1 (one step nearly reaches w*) it is off by more."""
    gap = np.abs(early.measured - early.l2)
    x = early.steps[:, None] * early.lr * early.lam[None, :]  # λ/α = τελ
    small = (x < 0.1) & (early.lr * early.lam[None, :] < 0.1)
    assert small.sum() > 20 and gap[small].max() < 0.01
    late = early.steps >= 30
    assert 0.15 < gap[late].max() < 0.21  # the limit ελ → 0 peaks at 0.204
    assert gap[early.at(1)].max() > 0.3  # τ = 1: ελ = 0.78 is not small


def test_simulated_ensemble_error_is_v_over_k_plus_covariance_term():
    check = theory.check_ensemble()
    assert check.relative_error < theory.ENSEMBLE_RTOL
    independent, identical = check.measured[0], check.measured[-1]
    assert independent[-1] == pytest.approx(1 / 20, rel=theory.ENSEMBLE_RTOL)  # c = 0: v/k
    np.testing.assert_allclose(identical, 1, rtol=theory.ENSEMBLE_RTOL)  # c = v: no gain
    covariance_ignored = check.v / check.ks  # v/k for every c
    assert np.abs(check.measured / covariance_ignored - 1).max() > 0.5


def test_bagged_reglab_members_obey_eq_7_50_on_test_errors(tmp_path):
    check = theory.check_bagging(tmp_path, k=10)
    v, c = check.moments()
    assert check.identity_error < theory.IDENTITY_RTOL
    assert v == pytest.approx(check.member_mse.mean(), rel=1e-12)
    assert 0 < c < v  # bootstrap members make correlated, not identical, errors
    assert check.ensemble_mse() < check.member_mse.mean()  # averaging helps …
    assert check.ensemble_mse() > c  # … but never below the shared part c


@pytest.mark.slow
def test_gaussian_input_noise_is_l2_with_alpha_two_sigma_squared(tmp_path):
    """Bishop 1995: E[J(X + ε)] = J + σ²‖w‖², i.e. reglab's α/2·‖w‖² with α = 2σ²."""
    check = theory.check_input_noise(tmp_path)
    assert check.error(check.penalized) < theory.WEIGHT_RTOL
    assert check.error(check.noisy) < theory.NOISE_RTOL
    assert check.error(check.wrong) > 5 * theory.NOISE_RTOL  # α = σ² would have been caught
    shrink = np.abs(check.closed_form).max() / np.abs(check.w_star).max()
    assert shrink < 0.99  # the noise regularizes visibly
