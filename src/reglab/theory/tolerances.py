"""Tolerances the test suite and scripts/verify_theory.py hold the checks to.

reglab trains in float32 (unit roundoff 6e-8): what remains after convergence is rounding,
~1e-6 of the weights.
"""

WEIGHT_RTOL = 1e-4  # trained weights vs closed form, relative to the largest |component|
FACTOR_ATOL = 1e-4  # measured shrink factors vs closed form (the factors lie in [0, 1])
GRADIENT_ATOL = 1e-4  # |∂J̃| at the trained weights: converged, not merely close
ENSEMBLE_RTOL = 0.02  # simulated E[ε̄²] vs eq. 7.50: ≥ 6 standard errors at 200,000 draws
IDENTITY_RTOL = 1e-10  # eq. 7.50 on the empirical moments: an identity, float64 rounding
NOISE_RTOL = 0.02  # input-noise weights vs w̃(2σ²): sampled noise, annealed (measured ~1e-3)
MULTIPLIER_RTOL = 1e-3  # the recovered KKT multiplier vs the penalty's α
