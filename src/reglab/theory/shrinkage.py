"""Shrinkage along H's eigen-directions: L2 (eq. 7.13), L1's soft threshold (eq. 7.23),
and early stopping (eq. 7.40), read as L2 with α = 1/(τε) (eq. 7.45).

Each check trains reglab on a `designs` problem and puts its weights next to the closed form.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reglab.theory.closed_forms import (
    early_stopping_factor,
    eigen,
    equivalent_alpha,
    hessian,
    l1_solution,
    l1_violation,
    l2_factor,
    l2_solution,
    least_squares,
    objective_gradient,
)
from reglab.theory.fitting import (
    WeightRecorder,
    fit,
    gradient_descent,
    linear_weights,
    source,
    training_data,
)


@dataclass
class L2Check:
    """Eq. 7.13 per eigen-direction of H, for each α."""

    alphas: list[float]
    lam: np.ndarray  # eigenvalues of H (ascending)
    projected_w_star: np.ndarray  # Qᵀw*
    predicted: np.ndarray  # len(alphas) × d: λᵢ/(λᵢ + α)
    measured: np.ndarray  # len(alphas) × d: (Qᵀw̃)ᵢ/(Qᵀw*)ᵢ of reglab's weights
    weight_error: float  # max over α of max|w − w̃| / max|w̃|
    gradient: float  # max over α of max|∇J̃| at reglab's weights (w and b)

    @property
    def factor_error(self) -> float:
        return float(np.abs(self.measured - self.predicted).max())


def check_l2(
    output_dir: str | Path,
    alphas: Sequence[float] = (0.05, 0.5),
    lr: float = 0.2,
    steps: int = 1000,
) -> L2Check:
    """Train `regularizer=l2` on `correlated_design` to convergence; compare with eq. 7.13."""
    predicted, measured, weight_errors, gradients = [], [], [], []
    for i, alpha in enumerate(alphas):
        overrides = [*source("correlated_design"), *gradient_descent(lr, steps)]
        run = fit([*overrides, "regularizer=l2", f"regularizer.alpha={alpha}"], f"{output_dir}/{i}")
        x, y = training_data(run)
        w, b = linear_weights(run)
        h, w_star = hessian(x), least_squares(x, y)
        lam, q = eigen(h)
        w_tilde = l2_solution(h, w_star, alpha)
        predicted.append(l2_factor(lam, alpha))
        measured.append((q.T @ w) / (q.T @ w_star))
        weight_errors.append(np.abs(w - w_tilde).max() / np.abs(w_tilde).max())
        g, gb = objective_gradient(x, y, w, b, l2=alpha)
        gradients.append(max(np.abs(g).max(), abs(gb)))
    return L2Check(
        list(alphas),
        lam,
        q.T @ w_star,
        np.array(predicted),
        np.array(measured),
        float(max(weight_errors)),
        float(max(gradients)),
    )


@dataclass
class L1Check:
    """Eq. 7.23 per weight, on a design with diagonal H."""

    alpha: float
    h_diag: np.ndarray  # Hᵢᵢ
    off_diagonal: float  # max |Hᵢⱼ|, i ≠ j: 0 up to rounding (H is diagonal)
    w_star: np.ndarray
    predicted: np.ndarray  # sign(wᵢ*)·max(|wᵢ*| − α/Hᵢᵢ, 0)
    measured: np.ndarray  # reglab's weights
    violation: float  # distance from the L1 optimality condition at reglab's weights

    @property
    def weight_error(self) -> float:
        return float(np.abs(self.measured - self.predicted).max() / np.abs(self.w_star).max())

    @property
    def same_zeros(self) -> bool:
        return bool(np.array_equal(self.measured == 0, self.predicted == 0))


def check_l1(
    output_dir: str | Path, alpha: float = 1.0, lr: float = 0.25, steps: int = 100
) -> L1Check:
    """Train proximal L1 (plain SGD) on `whitened_design`; compare with eq. 7.23."""
    overrides = [*source("whitened_design"), *gradient_descent(lr, steps)]
    regularizer = ["regularizer=l1", f"regularizer.alpha={alpha}", "regularizer.proximal=true"]
    run = fit([*overrides, *regularizer], output_dir)
    x, y = training_data(run)
    w, b = linear_weights(run)
    h, w_star = hessian(x), least_squares(x, y)
    h_diag = np.diag(h)
    return L1Check(
        alpha,
        h_diag,
        float(np.abs(h - np.diag(h_diag)).max()),
        w_star,
        l1_solution(w_star, h_diag, alpha),
        w,
        l1_violation(x, y, w, b, alpha),
    )


@dataclass
class EarlyStoppingCheck:
    """Eq. 7.40 (exact) and its L2 reading α = 1/(τε) (eq. 7.45), per eigen-direction and τ."""

    lr: float
    steps: np.ndarray  # the τ recorded, 1 … max
    lam: np.ndarray
    projected_w_star: np.ndarray  # Qᵀw*
    measured: np.ndarray  # len(steps) × d: (Qᵀw⁽τ⁾)ᵢ/(Qᵀw*)ᵢ of reglab's weights
    predicted: np.ndarray  # len(steps) × d: 1 − (1 − ελᵢ)^τ
    l2: np.ndarray  # len(steps) × d: λᵢ/(λᵢ + α), α = 1/(τε)
    trajectory_error: float  # max over τ, i of |Qᵀw⁽τ⁾ − eq. 7.40| / max|Qᵀw*|

    @property
    def factor_error(self) -> float:
        return float(np.abs(self.measured - self.predicted).max())

    def at(self, tau: int) -> int:
        return int(np.flatnonzero(self.steps == tau)[0])


def check_early_stopping(
    output_dir: str | Path, lr: float = 0.1, max_steps: int = 300
) -> EarlyStoppingCheck:
    """Full-batch gradient descent from w = 0 on `correlated_design`, unregularized: w⁽τ⁾ for
    every τ ≤ `max_steps` (recorded by `WeightRecorder`) against eq. 7.40 and eq. 7.45."""
    recorder = ["+callbacks.weight_recorder._target_=reglab.theory.WeightRecorder"]
    overrides = [*source("correlated_design"), *gradient_descent(lr, max_steps), *recorder]
    run = fit(overrides, output_dir, from_zero=True)
    (record,) = (c for c in run.trainer.callbacks if isinstance(c, WeightRecorder))
    steps = np.arange(1, max_steps + 1)
    x, y = training_data(run)
    h, w_star = hessian(x), least_squares(x, y)
    lam, q = eigen(h)
    qw_star = q.T @ w_star
    qw = np.array([q.T @ record.weights[int(t)] for t in steps])
    predicted = early_stopping_factor(lam[None, :], lr, steps[:, None])
    l2 = l2_factor(lam[None, :], equivalent_alpha(steps[:, None], lr))
    error = np.abs(qw - predicted * qw_star).max() / np.abs(qw_star).max()
    return EarlyStoppingCheck(lr, steps, lam, qw_star, qw / qw_star, predicted, l2, float(error))
