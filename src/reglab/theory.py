"""Chapter 7's closed forms on quadratic problems, and reglab runs to hold them against.

Linear regression with reglab's loss J(w, b) = (1/n)‖Xw + b − y‖² (the MSE, a mean over
samples) is exactly quadratic in w: with X centered, its Hessian is H = 2XᵀX/n and its
minimizer w* is the least-squares solution. The unpenalized bias decouples from w because
every column of X has mean 0 (reglab standardizes the features). On such a problem the
chapter's quadratic analysis is exact (Goodfellow et al., Deep Learning, ch. 7):

    L2               w̃ = Q(Λ + αI)⁻¹ΛQᵀw*, H = QΛQᵀ                            eq. 7.13
    L1, diagonal H   w_i = sign(w_i*)·max(|w_i*| − α/H_ii, 0)                   eq. 7.23
    early stopping   Qᵀw⁽τ⁾ = [I − (I − εΛ)^τ]Qᵀw*  (τ steps of size ε from 0)   eq. 7.40
                     ≈ the L2 solution with α = 1/(τε)                          eq. 7.45
    ensembles        E[(1/k Σᵢ εᵢ)²] = v/k + (k − 1)c/k                         eq. 7.50
    input noise      E_ε[J(w; X + ε)] = J(w; X) + σ²‖w‖², ε ~ N(0, σ²I): L2 with
                     α = 2σ² in reglab's α/2·‖w‖² (§7.5, Bishop 1995)

`correlated_design` and `whitened_design` are data sources for reglab
(`data.source._target_=reglab.theory.correlated_design`) whose designs reglab's
standardization leaves unchanged; `fit` trains through reglab's own path (compose → build
→ Trainer.fit with reglab's regularizers); the `check_*` functions put what reglab learned
next to numpy's closed forms. `scripts/verify_theory.py` prints and plots the checks,
`tests/test_theory.py` asserts them within the tolerances below.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from scipy.stats import random_correlation

import reglab
from reglab.engine.run import Run, build

# Tolerances the test suite and the script hold the checks to. reglab trains in float32
# (unit roundoff 6e-8): what remains after convergence is rounding, ~1e-6 of the weights.
WEIGHT_RTOL = 1e-4  # trained weights vs closed form, relative to the largest |component|
FACTOR_ATOL = 1e-4  # measured shrink factors vs closed form (the factors lie in [0, 1])
GRADIENT_ATOL = 1e-4  # |∂J̃| at the trained weights: converged, not merely close
ENSEMBLE_RTOL = 0.02  # simulated E[ε̄²] vs eq. 7.50: ≥ 6 standard errors at 200,000 draws
IDENTITY_RTOL = 1e-10  # eq. 7.50 on the empirical moments: an identity, float64 rounding
NOISE_RTOL = 0.02  # input-noise weights vs w̃(2σ²): sampled noise, annealed (measured ~1e-3)

# -- data: designs that survive standardization --------------------------------------------


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


# -- closed forms (numpy, float64) ---------------------------------------------------------


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


# -- training through reglab ---------------------------------------------------------------

QUIET = (
    "logger=none",
    "callbacks.model_checkpoint=null",
    "callbacks.weight_histograms=null",
    "callbacks.progress_bar=null",
    "threads=1",  # tiny matrices: extra threads only contend
)


def source(name: str) -> list[str]:
    """Overrides that train on `reglab.theory.<name>` (diabetes' config: a regression set)."""
    return [
        "data=diabetes",
        f"data.source._target_=reglab.theory.{name}",
        "~data.source.return_X_y",
    ]


def gradient_descent(lr: float, steps: int) -> list[str]:
    """Full-batch gradient descent of a linear model: one epoch = one step of size ε = lr."""
    return [
        "model=linear",
        "optimizer=sgd",
        "optimizer.momentum=0",
        f"optimizer.lr={lr}",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "data.batch_size=100000",
        f"trainer.max_steps={steps}",
        f"trainer.max_epochs={steps}",
    ]


class WeightRecorder(pl.Callback):
    """Copies the linear model's weight after every training chunk, keyed by optimizer step.

    Add it with `+callbacks.weight_recorder._target_=reglab.theory.WeightRecorder`; in full
    batch a chunk is one step, so `weights[τ]` is w⁽τ⁾ (and `weights[0]` the start).
    """

    def __init__(self) -> None:
        self.weights: dict[int, np.ndarray] = {}

    def _record(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.weights[trainer.global_step] = module.net.weight.detach().double().numpy()[0].copy()

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._record(trainer, module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self._record(trainer, module)


def fit(overrides: Sequence[str], output_dir: str | Path, from_zero: bool = False) -> Run:
    """Compose, build and fit a reglab run (optionally from w = 0, b = 0); return it."""
    run = build(reglab.compose([*QUIET, *overrides], output_dir=output_dir))
    if from_zero:
        with torch.no_grad():
            for p in run.module.net.parameters():
                p.zero_()
    run.trainer.fit(run.module, datamodule=run.dm)
    return run


def training_data(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The standardized training split reglab trained on, in float64 (y flattened)."""
    x, y = (t.cpu() for t in run.dm.splits["train"])  # on a GPU the splits live there
    return x.double().numpy(), y.double().numpy().reshape(len(y))


def linear_weights(run: Run) -> tuple[np.ndarray, float]:
    """w and b of a one-output linear model, in float64."""
    net = run.module.net
    return net.weight.detach().double().numpy()[0], float(net.bias.detach()[0])


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


# -- the checks ----------------------------------------------------------------------------


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


@dataclass
class EnsembleCheck:
    """Eq. 7.50 against multivariate-normal errors: E[ε̄²] for each c and k."""

    v: float
    cs: np.ndarray
    ks: np.ndarray
    draws: int
    measured: np.ndarray  # len(cs) × len(ks): mean over draws of (1/k Σᵢ εᵢ)²
    predicted: np.ndarray  # v/k + (k − 1)c/k

    @property
    def relative_error(self) -> float:
        return float(np.abs(self.measured / self.predicted - 1).max())


def check_ensemble(
    v: float = 1.0,
    cs: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    max_k: int = 20,
    draws: int = 200_000,
    seed: int = 0,
) -> EnsembleCheck:
    """Draw `draws` error vectors of `max_k` members, εᵢ ~ N(0, v), Cov(εᵢ, εⱼ) = c, and
    average the first k of them: the ensemble's squared error against eq. 7.50."""
    rng = np.random.default_rng(seed)
    ks = np.arange(1, max_k + 1)
    measured = []
    for c in cs:
        cov = np.full((max_k, max_k), c) + (v - c) * np.eye(max_k)
        errors = rng.multivariate_normal(np.zeros(max_k), cov, size=draws)
        running_mean = np.cumsum(errors, axis=1) / ks  # draws × k: ε̄ of the first k members
        measured.append((running_mean**2).mean(axis=0))
    cs_ = np.asarray(cs, dtype=float)
    predicted = ensemble_error(v, cs_[:, None], ks[None, :])
    return EnsembleCheck(v, cs_, ks, draws, np.array(measured), predicted)


@dataclass
class BaggingCheck:
    """Eq. 7.50 on the test errors of k bagged reglab members (an identity of moments)."""

    errors: np.ndarray  # k × m: member i's prediction − y on test example j
    overrides: list[str]

    @property
    def k(self) -> int:
        return len(self.errors)

    def moments(self, k: int | None = None) -> tuple[float, float]:
        """v, c of the first k members (all by default)."""
        return error_moments(self.errors[: k or self.k])

    def ensemble_mse(self, k: int | None = None) -> float:
        """Measured test MSE of the average prediction of the first k members."""
        return float((self.errors[: k or self.k].mean(axis=0) ** 2).mean())

    @property
    def member_mse(self) -> np.ndarray:
        return (self.errors**2).mean(axis=1)

    @property
    def identity_error(self) -> float:
        """max over k of |measured ensemble MSE − (v/k + (k − 1)c/k)| / measured, k = 1 … K."""
        gaps = [
            abs(self.ensemble_mse(k) - ensemble_error(*self.moments(k), k)) / self.ensemble_mse(k)
            for k in range(1, self.k + 1)
        ]
        return float(max(gaps))


BAGGING_MEMBER = (
    "data=diabetes",
    "data.val_fraction=0",
    "data.test_fraction=0.2",
    "model=mlp",
    "model.hidden_sizes=[64]",
    "optimizer=adam",
    "optimizer.lr=0.03",
    "data.batch_size=64",
    "trainer.max_epochs=50",
)


def check_bagging(
    output_dir: str | Path, k: int = 10, member: Sequence[str] = BAGGING_MEMBER
) -> BaggingCheck:
    """Train k reglab members on bootstrap resamples 0 … k−1 of the same training split
    (`data.bootstrap=i`, same seed: same split, same test set); collect their test errors."""
    errors, targets = [], []
    for i in range(k):
        run = fit([*member, f"data.bootstrap={i}"], f"{output_dir}/{i}")
        x, y = (t.to(run.module.device) for t in run.dm.splits["test"])
        run.module.eval()
        with torch.no_grad():
            prediction = run.module(x)
        errors.append((prediction - y).double().cpu().numpy().reshape(len(y)))
        targets.append(y.cpu())
    if not all(torch.equal(t, targets[0]) for t in targets):
        raise RuntimeError("bagging members saw different test sets")
    return BaggingCheck(np.array(errors), list(member))


# -- norm constraints: the constrained optimum is the penalized one (eq. 7.25–7.27) ---------

MULTIPLIER_RTOL = 1e-3  # the recovered KKT multiplier vs the penalty's α


@dataclass
class ConstraintCheck:
    """min J s.t. Ω(w) ≤ k, with k = Ω(w̃(α)) of the penalized optimum w̃(α)."""

    kind: str  # l2_ball (against ridge, eq. 7.13) or l1_ball (against the lasso)
    alpha: float
    radius: float  # k
    penalized: np.ndarray  # w̃(α)
    measured: np.ndarray  # reglab's constrained weights
    multiplier: float  # constraint/multiplier: λ recovered from the KKT condition
    active_fraction: float
    path: np.ndarray  # steps × d: w during training (WeightRecorder)

    @property
    def weight_error(self) -> float:
        return float(
            np.linalg.norm(self.measured - self.penalized) / np.linalg.norm(self.penalized)
        )

    @property
    def multiplier_error(self) -> float:
        return abs(self.multiplier - self.alpha) / self.alpha

    @property
    def same_zeros(self) -> bool:
        return bool(np.array_equal(self.measured == 0, self.penalized == 0))


def penalized_optimum(x: np.ndarray, y: np.ndarray, kind: str, alpha: float) -> np.ndarray:
    """w̃(α): ridge's closed form (eq. 7.13) or scikit-learn's Lasso(α/2) (reglab's J is
    the MSE, scikit-learn's lasso halves it)."""
    if kind == "l2_ball":
        return l2_solution(hessian(x), least_squares(x, y), alpha)
    from sklearn.linear_model import Lasso  # only this check needs it

    return Lasso(alpha=alpha / 2, tol=1e-12, max_iter=100_000).fit(x, y).coef_


def check_constraint(
    output_dir: str | Path,
    kind: str,
    alpha: float,
    data: Sequence[str] = ("data=diabetes",),
    lr: float = 0.1,
    steps: int = 400,
) -> ConstraintCheck:
    """Train `constraint=<kind>` with k = Ω(w̃(α)) (SGD with momentum 0.9, no penalty);
    compare w with w̃(α) and the recovered multiplier with α."""
    probe = fit([*data, *gradient_descent(lr, 1)], f"{output_dir}/probe")  # the same split
    x, y = training_data(probe)
    w_tilde = penalized_optimum(x, y, kind, alpha)
    radius = float(np.linalg.norm(w_tilde, 2 if kind == "l2_ball" else 1))
    recorder = ["+callbacks.weight_recorder._target_=reglab.theory.WeightRecorder"]
    overrides = [*data, *gradient_descent(lr, steps), "optimizer.momentum=0.9", *recorder]
    run = fit([*overrides, f"constraint={kind}", f"constraint.radius={radius}"], output_dir)
    stats = run.module.constraint_stats(*run.dm.splits["train"])
    recorded = next(c for c in run.trainer.callbacks if isinstance(c, WeightRecorder)).weights
    return ConstraintCheck(
        kind,
        alpha,
        radius,
        w_tilde,
        linear_weights(run)[0],
        stats["constraint/multiplier"],
        stats["constraint/active_fraction"],
        np.array([recorded[s] for s in sorted(recorded)]),
    )


@dataclass
class InputNoiseCheck:
    """Gaussian input noise of std σ (`augmentation=noise`) against `regularizer=l2` α = 2σ².

    E_ε[(1/n)‖(X + ε)w + b − y‖²] = (1/n)‖Xw + b − y‖² + σ²‖w‖², and reglab's L2 is
    α/2·‖w‖² (regularization/penalties.py), so the two have the same minimizer w̃ of
    eq. 7.13 with α = 2σ². The noisy run draws fresh noise every step and anneals ε to 0
    (cosine), so it converges to the minimizer of the expected objective, up to sampling.
    """

    sigma: float
    closed_form: np.ndarray  # w̃ of eq. 7.13 with α = 2σ²
    noisy: np.ndarray  # reglab's weights trained with input noise σ
    penalized: np.ndarray  # reglab's weights trained with L2, α = 2σ²
    w_star: np.ndarray
    wrong: np.ndarray  # w̃ with α = σ²: the factor 2 of reglab's ½ forgotten

    def error(self, w: np.ndarray) -> float:
        return float(np.abs(w - self.closed_form).max() / np.abs(self.closed_form).max())


def check_input_noise(
    output_dir: str | Path, sigma: float = 0.5, n: int = 4000, lr: float = 0.1, steps: int = 1500
) -> InputNoiseCheck:
    """Train `augmentation=noise` and `regularizer=l2` (α = 2σ²) on `correlated_design`."""
    data = [*source("correlated_design"), f"+data.source.n_samples={n}"]
    noise = ["augmentation=noise", f"augmentation.transforms.noise.sigma={sigma}"]
    noisy = fit(
        [*data, *gradient_descent(lr, steps), *noise, "scheduler=cosine"], f"{output_dir}/noisy"
    )
    alpha = 2 * sigma**2
    l2 = [*data, *gradient_descent(0.2, 1000), "regularizer=l2", f"regularizer.alpha={alpha}"]
    penalized = fit(l2, f"{output_dir}/l2")
    x, y = training_data(penalized)
    h, w_star = hessian(x), least_squares(x, y)
    return InputNoiseCheck(
        sigma,
        l2_solution(h, w_star, alpha),
        linear_weights(noisy)[0],
        linear_weights(penalized)[0],
        w_star,
        l2_solution(h, w_star, sigma**2),
    )
