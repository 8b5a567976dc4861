"""Norm constraints: minimize J(w) subject to Ω(w) ≤ k, by projecting after every step.

The slide "L2 and L1 comparison (regularization as constraint)": a penalty α·Ω is the
Lagrangian L(θ, α) = J(θ) + α(Ω(θ) − k) of the constrained problem (Goodfellow et al.,
eq. 7.25–7.26); at the constrained optimum θ*, α* solves the outer max and
θ* = argmin J + α*Ω (eq. 7.27). So for a convex J (linear regression) the constrained
optimum with k = Ω(w̃(α)) is the penalized optimum w̃(α) — ridge for the L2 ball, lasso for
the L1 ball, zeros included — and the KKT multiplier at it is α (`multipliers`).

Projected gradient descent: after each optimizer step the constrained weights w (the
penalized ones, `penalized_named_parameters`) are replaced by their Euclidean projection
onto the feasible set. That enforces the constraint exactly at every step and, unlike a
penalty, never pulls weights that already satisfy it (the book's reason to prefer
explicit constraints with high learning rates, §7.2).
"""

import torch
from torch import Tensor, nn

from reglab.regularization.penalties import penalized_named_parameters, soft_threshold_

ACTIVE_RTOL = 1e-4  # a group on the boundary: its norm within this fraction of the radius


def l1_ball_threshold(magnitudes: Tensor, radius: float) -> Tensor:
    """θ ≥ 0 such that sign(v)·max(|v| − θ, 0) is v's projection onto ‖·‖₁ ≤ radius.

    Duchi et al. (2008), Fig. 1: u = |v| sorted descending, ρ = max{j : u_j − (Σ_{i≤j} u_i −
    k)/j > 0}, θ = (Σ_{i≤ρ} u_i − k)/ρ. The condition holds for j ≤ ρ and fails after, so ρ
    is its count (no host sync); inside the ball θ ≤ 0, clamped to 0 (no change).
    """
    u = magnitudes.flatten().sort(descending=True).values
    excess = u.cumsum(0) - radius
    j = torch.arange(1, len(u) + 1, device=u.device, dtype=u.dtype)
    rho = (u - excess / j > 0).sum().clamp(min=1)
    return (excess[rho - 1] / rho).clamp(min=0)


def unit_axes(net: nn.Module, include_bias: bool) -> list[int]:
    """The axis of each penalized weight that indexes its output units: 0 for a Linear's
    (out, in) and a conv's (out, in, …) weight, 1 for a transposed conv's (in, out, …)."""
    axes = []
    for name, _ in penalized_named_parameters(net, include_bias):
        module = net.get_submodule(name.rpartition(".")[0])
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        axes.append(1 if transposed and name.endswith("weight") else 0)
    return axes


class Constraint:
    """No constraint (`constraint=none`); the base of the others.

    `groups` are the sets of weights that share one norm bound, as rows of a matrix
    (one row per group); `norms`, `project_` and `multipliers` act on them.
    """

    def __init__(self, radius: float = 1.0, per_layer: bool = False) -> None:
        self.radius, self.per_layer = float(radius), per_layer
        self.axes: list[int] = []

    def bind(self, net: nn.Module, include_bias: bool) -> "Constraint":
        self.axes = unit_axes(net, include_bias)
        return self

    def groups(self, weights: list[Tensor]) -> list[list[Tensor]]:
        return [[w] for w in weights] if self.per_layer else [weights]

    def norm(self, group: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def dual(self, group: list[Tensor]) -> Tensor:
        """⟨w, ∇Ω(w)⟩ of the matching penalty: ‖w‖² for α/2‖w‖², ‖w‖₁ for α‖w‖₁."""
        raise NotImplementedError

    @torch.no_grad()
    def project_(self, weights: list[Tensor]) -> None:
        pass

    @torch.no_grad()
    def norms(self, weights: list[Tensor]) -> Tensor:
        return torch.stack([self.norm(g) for g in self.groups(weights)])

    @torch.no_grad()
    def multipliers(self, weights: list[Tensor]) -> Tensor:
        """KKT: 0 = ∇J + λ∇Ω on the boundary, so λ = −⟨∇J, w⟩/⟨w, ∇Ω(w)⟩ (0 inside).

        ∇J is each weight's `.grad` (the caller fills it with the full-batch gradient of
        the smooth objective); λ is in the units of the matching penalty's α."""
        values = []
        for group in self.groups(weights):
            inner = sum((w.grad * w).sum() for w in group if w.grad is not None)
            values.append(-inner / self.dual(group).clamp(min=1e-30))
        return torch.stack(values) * self.active(weights)

    @torch.no_grad()
    def active(self, weights: list[Tensor]) -> Tensor:
        """1 for each group on the boundary of its constraint, 0 for one inside it."""
        return (self.norms(weights) >= (1 - ACTIVE_RTOL) * self.radius).float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(radius={self.radius:g}, per_layer={self.per_layer})"


NoConstraint = Constraint


class L2Ball(Constraint):
    """‖w‖₂ ≤ k (the whole network's w, or each layer's with `per_layer`): the constraint
    form of α/2‖w‖² (eq. 7.2). Projection: w ← w·min(1, k/‖w‖₂)."""

    def norm(self, group: list[Tensor]) -> Tensor:
        return torch.stack(torch._foreach_norm(group, 2)).square().sum().sqrt()

    def dual(self, group: list[Tensor]) -> Tensor:
        return self.norm(group).square()

    @torch.no_grad()
    def project_(self, weights: list[Tensor]) -> None:
        for group in self.groups(weights):  # a tensor factor: no host sync on a GPU
            torch._foreach_mul_(group, (self.radius / self.norm(group)).clamp(max=1))


class L1Ball(Constraint):
    """‖w‖₁ ≤ k: the constraint form of α‖w‖₁ (eq. 7.19). The exact Euclidean projection
    is a soft-threshold by the θ of `l1_ball_threshold`, so it sets weights exactly to 0."""

    def norm(self, group: list[Tensor]) -> Tensor:
        return torch.stack(torch._foreach_norm(group, 1)).sum()

    def dual(self, group: list[Tensor]) -> Tensor:
        return self.norm(group)

    @torch.no_grad()
    def project_(self, weights: list[Tensor]) -> None:
        for group in self.groups(weights):
            magnitudes = torch.cat([w.detach().abs().flatten() for w in group])
            soft_threshold_(group, l1_ball_threshold(magnitudes, self.radius))


class MaxNorm(Constraint):
    """‖w_u‖₂ ≤ c for every unit u's incoming weights (Srebro & Shraibman 2005; the dropout
    paper's recipe): the rows of a Linear's (out, in) weight, each output channel of a
    conv's (out, in, kh, kw) one. Each unit is its own group; `per_layer` does not apply."""

    def __init__(self, max_norm: float = 3.0) -> None:
        super().__init__(radius=max_norm)

    def _rows(self, w: Tensor, axis: int) -> Tensor:
        return w.movedim(axis, 0).reshape(w.shape[axis], -1)

    def _row_norms(self, weights: list[Tensor]) -> list[Tensor]:
        return [self._rows(w, a).norm(dim=1) for w, a in zip(weights, self.axes, strict=True)]

    @torch.no_grad()
    def norms(self, weights: list[Tensor]) -> Tensor:
        return torch.cat(self._row_norms(weights))

    @torch.no_grad()
    def project_(self, weights: list[Tensor]) -> None:
        for w, axis, norms in zip(weights, self.axes, self._row_norms(weights), strict=True):
            shape = [-1 if d == axis else 1 for d in range(w.dim())]
            w.mul_((self.radius / norms).clamp(max=1).view(shape))

    @torch.no_grad()
    def multipliers(self, weights: list[Tensor]) -> Tensor:
        """Per unit, in the units of α/2‖w_u‖²: λ_u = −⟨∇J_u, w_u⟩/‖w_u‖²."""
        values = []
        for w, axis in zip(weights, self.axes, strict=True):
            grad = w.grad if w.grad is not None else torch.zeros_like(w)
            rows, grads = self._rows(w, axis), self._rows(grad, axis)
            values.append(-(rows * grads).sum(1) / rows.square().sum(1).clamp(min=1e-30))
        return torch.cat(values) * self.active(weights)

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.radius:g})"


@torch.no_grad()
def constraint_metrics(constraint: Constraint, weights: list[Tensor]) -> dict[str, float]:
    """`constraint/active_fraction` (groups on the boundary) and `constraint/multiplier`
    (the mean KKT multiplier of the active groups, 0 when none is active: an inactive
    constraint has λ = 0 by complementary slackness). Needs the weights' `.grad`."""
    active = constraint.active(weights)
    lam = constraint.multipliers(weights)
    mean = (lam.sum() / active.sum()) if active.sum() > 0 else lam.new_zeros(())
    return {
        "constraint/active_fraction": active.mean().item(),
        "constraint/multiplier": mean.item(),
    }
