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

`scripts/verify_theory.py` prints and plots the checks, `tests/test_theory.py` asserts
them within the tolerances of tolerances.py.

    designs.py        data sources reglab's standardization leaves unchanged
                      (`data.source._target_=reglab.theory.correlated_design`)
    closed_forms.py   numpy's closed forms above, and the optimality conditions
    fitting.py        training through reglab's own path (compose → build → Trainer.fit),
                      WeightRecorder (w⁽τ⁾ for every step)
    shrinkage.py      the checks of eq. 7.13, 7.23, 7.40/7.45: reglab's weights vs closed form
    ensembles.py      the checks of eq. 7.50: simulated errors, bagged reglab members
    equivalences.py   norm constraints (eq. 7.25–7.27) and input noise: the penalized optimum
"""

from reglab.theory.closed_forms import (
    early_stopping_factor,
    eigen,
    ensemble_error,
    equivalent_alpha,
    error_moments,
    hessian,
    l1_solution,
    l1_violation,
    l2_factor,
    l2_solution,
    least_squares,
    objective_gradient,
)
from reglab.theory.designs import (
    WHITENED_COEF,
    correlated_design,
    exact_design,
    spectrum,
    whitened_design,
)
from reglab.theory.ensembles import (
    BAGGING_MEMBER,
    BaggingCheck,
    EnsembleCheck,
    check_bagging,
    check_ensemble,
)
from reglab.theory.equivalences import (
    ConstraintCheck,
    InputNoiseCheck,
    check_constraint,
    check_input_noise,
    penalized_optimum,
)
from reglab.theory.fitting import (
    QUIET,
    WeightRecorder,
    fit,
    gradient_descent,
    linear_weights,
    source,
    training_data,
)
from reglab.theory.shrinkage import (
    EarlyStoppingCheck,
    L1Check,
    L2Check,
    check_early_stopping,
    check_l1,
    check_l2,
)
from reglab.theory.tolerances import (
    ENSEMBLE_RTOL,
    FACTOR_ATOL,
    GRADIENT_ATOL,
    IDENTITY_RTOL,
    MULTIPLIER_RTOL,
    NOISE_RTOL,
    WEIGHT_RTOL,
)

__all__ = [
    "BAGGING_MEMBER",
    "ENSEMBLE_RTOL",
    "FACTOR_ATOL",
    "GRADIENT_ATOL",
    "IDENTITY_RTOL",
    "MULTIPLIER_RTOL",
    "NOISE_RTOL",
    "QUIET",
    "WEIGHT_RTOL",
    "WHITENED_COEF",
    "BaggingCheck",
    "ConstraintCheck",
    "EarlyStoppingCheck",
    "EnsembleCheck",
    "InputNoiseCheck",
    "L1Check",
    "L2Check",
    "WeightRecorder",
    "check_bagging",
    "check_constraint",
    "check_early_stopping",
    "check_ensemble",
    "check_input_noise",
    "check_l1",
    "check_l2",
    "correlated_design",
    "early_stopping_factor",
    "eigen",
    "ensemble_error",
    "equivalent_alpha",
    "error_moments",
    "exact_design",
    "fit",
    "gradient_descent",
    "hessian",
    "l1_solution",
    "l1_violation",
    "l2_factor",
    "l2_solution",
    "least_squares",
    "linear_weights",
    "objective_gradient",
    "penalized_optimum",
    "source",
    "spectrum",
    "training_data",
    "whitened_design",
]
