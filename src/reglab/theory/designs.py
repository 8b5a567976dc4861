"""Data sources whose designs reglab's standardization leaves unchanged.

`correlated_design` (H with log-spaced eigenvalues, for eq. 7.13 and 7.40) and
`whitened_design` (H = 2I, for eq. 7.23) are reglab data sources:
`data.source._target_=reglab.theory.correlated_design`. Least squares recovers their
coefficients exactly.
"""

from collections.abc import Sequence

import numpy as np
from scipy.stats import random_correlation


def _orthonormal_columns(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n × d with orthonormal columns, each orthogonal to the ones vector (mean zero)."""
    a = np.column_stack([np.ones(n), rng.standard_normal((n, d))])
    return np.linalg.qr(a)[0][:, 1:]


def _sqrtm(c: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(c)
    return v @ np.diag(np.sqrt(lam)) @ v.T


def exact_design(
    corr: np.ndarray, coef: np.ndarray, bias: float, noise: float, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """X with XᵀX/n = corr exactly, y = b + Xw + e with e ⟂ (1, X): least squares gives w.

    X = √n·U·corr^½ with UᵀU = I and 1ᵀU = 0, so every column has mean 0 and population
    standard deviation √corr_jj = 1: reglab's StandardScaler leaves X as it is, and H of the
    training data is 2·corr. The residual e (root mean square `noise`) is orthogonal to the
    columns and to 1, so the fit is not perfect but w* = coef and b* = bias exactly.
    """
    d = len(corr)
    u = _orthonormal_columns(n, d + 1, np.random.default_rng(seed))
    x = np.sqrt(n) * u[:, :d] @ _sqrtm(corr)
    e = noise * np.sqrt(n) * u[:, d]
    return x, bias + x @ coef + e


def spectrum(n_features: int, condition: float) -> np.ndarray:
    """Eigenvalues of a correlation matrix, log-spaced over `condition`, summing to d."""
    lam = np.geomspace(1.0, condition, n_features)
    return lam * n_features / lam.sum()


def correlated_design(
    n_samples: int = 400,
    n_features: int = 8,
    condition: float = 100.0,
    bias: float = 3.0,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features whose Hessian H = 2XᵀX/n has log-spaced eigenvalues.

    The correlation matrix is random (scipy's random_correlation) with the eigenvalues of
    `spectrum`, so H's eigenvalues spread over a factor `condition`; w* has a component of
    size 1 (alternating sign) along every eigenvector, so each eigen-direction's shrink
    factor (eq. 7.13, 7.40) is measured on a component of the same size.
    """
    rng = np.random.default_rng(seed)
    corr = random_correlation.rvs(spectrum(n_features, condition), random_state=rng)
    corr = (corr + corr.T) / 2
    np.fill_diagonal(corr, 1.0)
    q = np.linalg.eigh(corr)[1]
    coef = q @ np.resize([1.0, -1.0], n_features)
    return exact_design(corr, coef, bias, noise, n_samples, seed)


WHITENED_COEF = (2.0, -1.5, 1.1, -0.8, 0.65, -0.42, 0.3, -0.2, 0.1, 0.0)


def whitened_design(
    n_samples: int = 400,
    coef: Sequence[float] = WHITENED_COEF,
    bias: float = 3.0,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Whitened features, X = √n·U with orthonormal U ⟂ 1: XᵀX/n = I, so H = 2I is diagonal.

    The least-squares solution is `coef`, the setting of eq. 7.23.
    """
    coef = np.asarray(coef, dtype=float)
    return exact_design(np.eye(len(coef)), coef, bias, noise, n_samples, seed)
