"""Parameter norm penalties: J̃(θ; X, y) = J(θ; X, y) + α·Ω(θ) (Goodfellow et al., eq. 7.1).

Every regularizer acts on the penalized weights w, those of the linear and convolutional
layers (biases excluded unless `include_bias`, normalization layers' parameters always),
through three hooks that the training step calls around each optimizer step:

    add_grad_    ∇J ← ∇J + α∇Ω(w), after backward (the penalty's exact gradient, added in
                 place: cheaper than putting Ω in the autograd graph on every step)
    before_step_ w ← (1 − εα)w, for decoupled weight decay
    after_step_  w ← prox(w), the soft-threshold of proximal L1, scaled by the step the
                 optimizer takes at a fixed point (`steps.step_sizes`)

`penalty(w)` returns α·Ω(w) for logging and for J̃ itself.
"""

import logging

import torch
from torch import Tensor, nn

from reglab.regularization.steps import exact, step_sizes

log = logging.getLogger("reglab")
Optimizer = torch.optim.Optimizer | None  # the torch optimizer whose step a hook follows

# the layers whose weight is "the affine transformation" of a layer: fully connected and
# convolutional ones (any nn.Conv*d / ConvTranspose*d); a module class with `affine = True`
# (reglab's models.StackedLinear, or a user's own layer) counts too
AFFINE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def is_affine(module: nn.Module) -> bool:
    return isinstance(module, AFFINE_TYPES) or getattr(type(module), "affine", False) is True


def penalized_named_parameters(
    model: nn.Module, include_bias: bool = False
) -> list[tuple[str, Tensor]]:
    """(name, w) for every w of Ω(w): the weight of each linear and convolutional layer,
    and its bias only when asked; never a normalization layer's scale and shift
    (BatchNorm, LayerNorm, GroupNorm: they belong to no affine map) nor a parameter of any
    other kind of layer. In the order of `model.named_parameters()`."""
    selected = []
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        if not is_affine(module):
            continue
        for name, p in module.named_parameters(recurse=False):
            wanted = name == "weight" or (include_bias and name == "bias")
            if wanted and id(p) not in seen:
                seen.add(id(p))
                selected.append((f"{prefix}.{name}" if prefix else name, p))
    return selected


def penalized_parameters(model: nn.Module, include_bias: bool = False) -> list[Tensor]:
    """The w of Ω(w): the weights of the linear and convolutional layers, and their biases
    only when asked (`penalized_named_parameters` lists them with their names).

    The textbook penalizes "only the weights of the affine transformation at each layer and
    leaves the biases unregularized": a bias controls one unit only, so fitting it needs
    little data, and shrinking it towards zero can cause underfitting.
    """
    return [p for _, p in penalized_named_parameters(model, include_bias)]


class Regularizer:
    """Ω(θ) = 0: no penalty (the control run).

    `ignores`: the constructor's keys a class accepts but does not use; runs record them
    (run.json), so the sweep report counts runs that differ only in them as one configuration.
    """

    ignores: tuple[str, ...] = ()

    def __init__(self, alpha: float = 0.0, include_bias: bool = False) -> None:
        self.alpha = float(alpha)
        self.include_bias = include_bias

    def penalty(self, weights: list[Tensor]) -> Tensor:
        return torch.zeros((), device=weights[0].device) if weights else torch.zeros(())

    # the hooks of a step, no-ops here: they run at every optimizer step, so the ones that
    # do nothing carry no no_grad decorator (its cost is a tenth of a small MLP's step);
    # the subclasses that act add it
    def add_grad_(self, weights: list[Tensor]) -> None:
        pass

    def before_step_(self, weights: list[Tensor], lr: float) -> None:
        pass

    def after_step_(self, weights: list[Tensor], lr: float, optimizer: Optimizer = None) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g}, include_bias={self.include_bias})"


class NoPenalty(Regularizer):
    """Ω = 0, the control: α is accepted, so that a sweep over regularizer.alpha can include
    it, and ignored."""

    ignores = ("alpha",)


def _sum_sq(weights: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(weights, 2)).square().sum()


def _sum_abs(weights: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(weights, 1)).sum()


def _grads(weights: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The weights that received a gradient, and those gradients."""
    pairs = [(w, w.grad) for w in weights if w.grad is not None]
    return [w for w, _ in pairs], [g for _, g in pairs]


@torch.no_grad()
def soft_threshold_(weights: list[Tensor], threshold: float | list[Tensor | float]) -> None:
    """w ← sign(w)·max(|w| − threshold, 0): the proximal operator of threshold·‖w‖₁.

    It is the slide's analytical L1 solution w_i = sign(w_i*)·max(|w_i*| − α/H_ii, 0),
    applied after each gradient step with threshold α·η (η: the optimizer's step, a number
    or one per coordinate, one entry per weight); weights it sets to zero are exactly zero,
    which a subgradient step (α·sign(w)) never achieves.
    """
    thresholds = threshold if isinstance(threshold, list) else [threshold] * len(weights)
    for w, t in zip(weights, thresholds, strict=True):
        w.copy_(w.sign() * (w.abs() - t).clamp_(min=0))


class Proximal:
    """The soft-threshold step of proximal L1, α_L1·η after each optimizer step.

    η is the step the optimizer takes at a fixed point (`steps.step_sizes`: ε(1 − d)/(1 − μ)
    for SGD with momentum, Adam's ε/(√v̂ + δ) per coordinate), so the fixed point is the
    configured penalty's optimum (eq. 7.19) whatever the momentum. Other optimizers get
    η = ε and a one-line notice at the first step.
    """

    warned = False

    def threshold_(self, weights: list[Tensor], l1: float, lr: float, optimizer: Optimizer) -> None:
        if not exact(optimizer) and not self.warned:
            self.warned = True
            log.warning(
                "proximal L1 with %s: the soft-threshold uses lr·α, so training does not"
                " end at the lasso's optimum (exact for SGD, Adam, AdamW)",
                type(optimizer).__name__,
            )
        etas = step_sizes(optimizer, weights, lr)
        soft_threshold_(weights, [l1 * eta for eta in etas])


class L2(Regularizer):
    """Ω(w) = ½‖w‖² = ½wᵀw: J̃ = α/2·wᵀw + J, ∇J̃ = αw + ∇J (eq. 7.2–7.3).

    One SGD step is w ← (1 − εα)w − ε∇J (eq. 7.5); at the optimum of a quadratic J the
    result is w̃ = Q(Λ + αI)⁻¹ΛQᵀw* (eq. 7.13): w* rescaled along H's eigenvectors.
    """

    def penalty(self, weights: list[Tensor]) -> Tensor:
        return 0.5 * self.alpha * _sum_sq(weights)

    @torch.no_grad()
    def add_grad_(self, weights: list[Tensor]) -> None:
        ws, gs = _grads(weights)
        if ws and self.alpha:
            torch._foreach_add_(gs, ws, alpha=self.alpha)


class L1(Proximal, Regularizer):
    """Ω(w) = ‖w‖₁ = Σ|w_i|: J̃ = α‖w‖₁ + J, ∇J̃ = α·sign(w) + ∇J (eq. 7.18–7.20).

    With `proximal`, the penalty is not differentiated; instead each step is followed by
    the soft-threshold w ← sign(w)·max(|w| − ηα, 0) (eq. 7.23 with H_ii = 1/η), i.e.
    proximal gradient descent (ISTA), which gives exact zeros: the sparsity of eq. 7.23.
    η is the optimizer's step at a fixed point (ε for plain SGD, ε(1 − d)/(1 − μ) with
    momentum μ and dampening d, Adam's ε/(√v̂ + δ) per coordinate: `steps.py` derives
    them), so the fixed point is the lasso of the configured α for all of them; a
    threshold of εα under momentum would end at the lasso of α(1 − μ).
    """

    def __init__(self, alpha: float = 0.0, proximal: bool = False, include_bias: bool = False):
        super().__init__(alpha, include_bias)
        self.proximal = proximal

    def penalty(self, weights: list[Tensor]) -> Tensor:
        return self.alpha * _sum_abs(weights)

    @torch.no_grad()
    def add_grad_(self, weights: list[Tensor]) -> None:
        ws, gs = _grads(weights)
        if ws and self.alpha and not self.proximal:
            torch._foreach_add_(gs, torch._foreach_sign(ws), alpha=self.alpha)

    @torch.no_grad()
    def after_step_(self, weights: list[Tensor], lr: float, optimizer: Optimizer = None) -> None:
        if self.proximal and self.alpha:
            self.threshold_(weights, self.alpha, lr, optimizer)


class ElasticNet(Proximal, Regularizer):
    """Ω(w) = ρ‖w‖₁ + (1 − ρ)/2·‖w‖²: L1 (eq. 7.18) and L2 (eq. 7.2) mixed by ρ = l1_ratio.

    Same parametrization as scikit-learn's ElasticNet. With `proximal`, the L1 part is
    applied as the soft-threshold w ← sign(w)·max(|w| − ηρα, 0), η as in `L1`; the L2
    part's gradient goes into the optimizer's step, so the fixed point is the elastic net's.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        l1_ratio: float = 0.5,
        proximal: bool = False,
        include_bias: bool = False,
    ) -> None:
        super().__init__(alpha, include_bias)
        self.l1_ratio = float(l1_ratio)
        self.proximal = proximal

    def penalty(self, weights: list[Tensor]) -> Tensor:
        rho = self.l1_ratio
        return self.alpha * (rho * _sum_abs(weights) + 0.5 * (1 - rho) * _sum_sq(weights))

    @torch.no_grad()
    def add_grad_(self, weights: list[Tensor]) -> None:
        ws, gs = _grads(weights)
        if not ws or not self.alpha:
            return
        torch._foreach_add_(gs, ws, alpha=self.alpha * (1 - self.l1_ratio))
        if not self.proximal:
            torch._foreach_add_(gs, torch._foreach_sign(ws), alpha=self.alpha * self.l1_ratio)

    @torch.no_grad()
    def after_step_(self, weights: list[Tensor], lr: float, optimizer: Optimizer = None) -> None:
        if self.proximal and self.alpha:
            self.threshold_(weights, self.alpha * self.l1_ratio, lr, optimizer)


class WeightDecay(Regularizer):
    """Decoupled weight decay: w ← (1 − εα)w − ε∇J (eq. 7.5).

    The slide's reading of the L2 step, "multiplicatively shrink the weight vector by a
    constant factor on each step, just before performing the usual gradient update",
    taken literally: the shrink happens before the optimizer's update, outside the loss.
    With plain SGD this is exactly L2; with adaptive optimizers (Adam) it is not, and it
    is what AdamW does (Loshchilov & Hutter). J̃ = J: the penalty it reports is zero.
    """

    @torch.no_grad()
    def before_step_(self, weights: list[Tensor], lr: float) -> None:
        if self.alpha:
            torch._foreach_mul_(weights, 1.0 - lr * self.alpha)
