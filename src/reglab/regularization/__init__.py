"""Regularization that acts on any network: norm penalties (hooks around each optimizer
step), norm constraints (projections after it), dropout inference rules, and the
early-stopping callback (Algorithm 7.1)."""

from reglab.regularization.constraints import Constraint, L1Ball, L2Ball, MaxNorm, NoConstraint
from reglab.regularization.dropout import MonteCarlo, predictive_entropy, weight_scaling
from reglab.regularization.early_stopping import EarlyStopping
from reglab.regularization.penalties import (
    L1,
    L2,
    ElasticNet,
    NoPenalty,
    Regularizer,
    WeightDecay,
    penalized_named_parameters,
    penalized_parameters,
    soft_threshold_,
)

__all__ = [
    "L1",
    "L2",
    "Constraint",
    "EarlyStopping",
    "ElasticNet",
    "L1Ball",
    "L2Ball",
    "MaxNorm",
    "MonteCarlo",
    "NoConstraint",
    "NoPenalty",
    "Regularizer",
    "WeightDecay",
    "penalized_named_parameters",
    "penalized_parameters",
    "predictive_entropy",
    "soft_threshold_",
    "weight_scaling",
]
