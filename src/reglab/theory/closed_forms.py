"""Chapter 7's closed forms on the quadratic J(w, b) = (1/n)‖Xw + b − y‖² (numpy, float64).

H = 2XᵀX/n, w* its least-squares minimizer; L2 (eq. 7.13), L1 with diagonal H (eq. 7.23),
early stopping (eq. 7.40, 7.45), ensembles (eq. 7.50), and the optimality conditions that
say a trained w is the minimizer.
"""

import numpy as np


def hessian(x: np.ndarray) -> np.ndarray:
    """H = 2XᵀX/n of the MSE in w, X centered (the bias absorbs the means)."""
    xc = x - x.mean(0)
    return 2 * xc.T @ xc / len(x)


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """w* = argmin (1/n)‖Xw + b − y‖², the unregularized optimum (bias eliminated)."""
    return np.linalg.lstsq(x - x.mean(0), y - y.mean(), rcond=None)[0]


def eigen(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H = QΛQᵀ: the eigenvalues λ (ascending) and the eigenvectors Q as columns."""
    return np.linalg.eigh(h)


def l2_factor(lam: np.ndarray, alpha: float) -> np.ndarray:
    """λᵢ/(λᵢ + α): how much L2 keeps of w* along eigenvector i (eq. 7.13)."""
    return lam / (lam + alpha)


def l2_solution(h: np.ndarray, w_star: np.ndarray, alpha: float) -> np.ndarray:
    """w̃ = Q(Λ + αI)⁻¹ΛQᵀw*, the minimizer of J + α/2‖w‖² (eq. 7.13)."""
    lam, q = eigen(h)
    return q @ (l2_factor(lam, alpha) * (q.T @ w_star))


def l1_solution(w_star: np.ndarray, h_diag: np.ndarray, alpha: float) -> np.ndarray:
    """wᵢ = sign(wᵢ*)·max(|wᵢ*| − α/Hᵢᵢ, 0), the minimizer of J + α‖w‖₁ when H is diagonal
    (eq. 7.23): a shift towards 0 by α/Hᵢᵢ, and exactly 0 where |wᵢ*| ≤ α/Hᵢᵢ."""
    return np.sign(w_star) * np.maximum(np.abs(w_star) - alpha / h_diag, 0.0)


def early_stopping_factor(lam: np.ndarray, lr: float, steps: int | np.ndarray) -> np.ndarray:
    """1 − (1 − ελᵢ)^τ: what τ gradient steps of size ε from w = 0 keep of w* (eq. 7.40)."""
    return 1 - (1 - lr * lam) ** steps


def equivalent_alpha(steps: int | np.ndarray, lr: float) -> float | np.ndarray:
    """α ≈ 1/(τε): the L2 coefficient that early stopping after τ steps imitates (eq. 7.45)."""
    return 1 / (steps * lr)


def ensemble_error(v: float, c: float, k: int | np.ndarray) -> float | np.ndarray:
    """E[(1/k Σᵢ εᵢ)²] = v/k + (k − 1)c/k for k members with error variance v and covariance c
    (eq. 7.50)."""
    return v / k + (k - 1) * c / k


def error_moments(errors: np.ndarray) -> tuple[float, float]:
    """v = mean εᵢ² and c = mean over i ≠ j of εᵢεⱼ, averaged over the columns (examples).

    `errors` is k × m: member i's error on example j. With these empirical moments eq. 7.50
    is an identity: mean (1/k Σᵢ εᵢ)² = (1/k²)Σᵢⱼ mean εᵢεⱼ = v/k + (k − 1)c/k.
    """
    k, m = errors.shape
    gram = errors @ errors.T / m
    v = np.trace(gram) / k
    c = (gram.sum() - np.trace(gram)) / (k * (k - 1)) if k > 1 else 0.0
    return float(v), float(c)


def objective_gradient(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, l2: float = 0.0
) -> tuple[np.ndarray, float]:
    """∇ of (1/n)‖Xw + b − y‖² + l2/2‖w‖² with respect to w and b."""
    r = x @ w + b - y
    return 2 * x.T @ r / len(x) + l2 * w, float(2 * r.mean())


def l1_violation(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, alpha: float) -> float:
    """Distance from the optimality of (1/n)‖Xw + b − y‖² + α‖w‖₁: 0 ∈ ∇J + α∂‖w‖₁, ∂J/∂b = 0."""
    g, gb = objective_gradient(x, y, w, b)
    on = w != 0
    violation = np.concatenate([np.abs(g[on] + alpha * np.sign(w[on])), np.abs(g[~on]) - alpha])
    return max(float(violation.max(initial=0.0)), abs(gb))
