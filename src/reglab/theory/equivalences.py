"""Two other routes to the penalized optimum w̃(α) of a norm penalty.

Norm constraints: min J s.t. Ω(w) ≤ k, with k = Ω(w̃(α)), has the solution w̃(α) and the KKT
multiplier α (eq. 7.25–7.27). Gaussian input noise of std σ: L2 with α = 2σ² (§7.5,
Bishop 1995).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reglab.theory.closed_forms import hessian, l2_solution, least_squares
from reglab.theory.fitting import (
    WeightRecorder,
    fit,
    gradient_descent,
    linear_weights,
    source,
    training_data,
)


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
