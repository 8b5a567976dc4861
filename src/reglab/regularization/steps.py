"""The step an optimizer takes at a fixed point: what a proximal threshold must scale with.

Proximal L1 (eq. 7.23) follows every optimizer step by w ← prox_τ(w) with τ·‖w‖₁. If the
iteration settles, with the data gradient g constant, the step moved w by −η·g, and
prox_τ(v) = w holds exactly when v − w ∈ τ·∂‖w‖₁. So −η·g ∈ τ·∂‖w‖₁, that is

    0 ∈ g + (τ/η)·∂‖w‖₁,

the optimality condition of J + α‖w‖₁ (eq. 7.19) when τ = α·η. The threshold is the
penalty times the step the optimizer takes *at a fixed point*, η, which is the learning
rate ε only for plain SGD:

* SGD, momentum μ, dampening d (torch's buffer b ← μb + (1 − d)g): at a fixed point
  b = μb + (1 − d)g, so b = (1 − d)g/(1 − μ) and the heavy-ball step is
  η = ε(1 − d)/(1 − μ). Nesterov steps along g + μb: η = ε(1 − μd)/(1 − μ) (torch allows
  Nesterov with d = 0 only, where both are ε/(1 − μ)).
* Adam and AdamW: the step is ε·m̂/(√v̂ + δ) per coordinate, with m̂ → g at a fixed point,
  so η is the diagonal metric ε/(√v̂ + δ), coordinate by coordinate (a proximal step in
  Adam's own metric; v̂ bias-corrected, its running maximum with amsgrad).
* Any other optimizer: η = ε, and `exact` is False (the run says so in one line).
"""

import torch
from torch import Tensor

# optimizers whose fixed-point step `step_sizes` knows exactly (torch's class names)
EXACT = ("SGD", "Adam", "AdamW")


def exact(optimizer: torch.optim.Optimizer | None) -> bool:
    """Whether proximal steps under `optimizer` reach the configured penalty's optimum."""
    return optimizer is None or type(optimizer).__name__ in EXACT


def _groups(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def _sgd_step(group: dict) -> float:
    mu, d = group.get("momentum", 0.0), group.get("dampening", 0.0)
    if not mu:
        return group["lr"]
    gain = (1 - mu * d) if group.get("nesterov") else (1 - d)
    return group["lr"] * gain / (1 - mu)


def _adam_step(group: dict, state: dict) -> Tensor | float:
    """ε/(√v̂ + δ): Adam's step per unit of m̂ (the bias correction of m̂ cancels)."""
    if "exp_avg_sq" not in state:  # no step taken yet
        return group["lr"]
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    correction = 1 - group["betas"][1] ** float(state["step"])
    return group["lr"] / ((v / correction).sqrt() + group["eps"])


def step_sizes(
    optimizer: torch.optim.Optimizer | None, weights: list[Tensor], lr: float
) -> list[Tensor | float]:
    """η for each weight (a number, or a tensor of w's shape): see the module docstring.
    Without an optimizer (a unit test calling the hook by hand), η = lr."""
    kind = type(optimizer).__name__ if optimizer is not None else None
    if kind not in EXACT:
        return [lr] * len(weights)
    groups = _groups(optimizer)
    if kind == "SGD":
        return [_sgd_step(groups[id(w)]) for w in weights]
    return [_adam_step(groups[id(w)], optimizer.state[w]) for w in weights]
