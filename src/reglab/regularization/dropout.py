"""Inference rules for a network trained with dropout (Goodfellow et al., §7.12).

Dropout trains "the ensemble consisting of all sub-networks that can be formed by removing
non-output units"; each mask μ defines a model p(y | x, μ), and the ensemble predicts

    Σ_μ p(μ) p(y | x, μ)                                     (the slide; eq. 7.54)

which has exponentially many terms. Two ways to evaluate it:

    weight scaling   one pass with all units on and weights scaled by the keep probability
                     (inverted dropout does the scaling while training, so eval mode is it)
    Monte Carlo      average p(y | x, μ) over T sampled masks; `mean=geometric` takes the
                     renormalized geometric mean instead (eq. 7.56–7.57)

Both return log-probabilities for classification and values for regression, so the loss is
`nll_loss` (= cross-entropy for weight scaling) or the MSE either way.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# every dropout layer: torch's (nn.Dropout, Dropout1d/2d/3d, AlphaDropout, …), reglab's
# models.Dropout (a subclass of nn.Dropout) and a user's that subclasses one of them
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd,)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The network's dropout layers (those with p = 0 too)."""
    return [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]


def has_dropout(model: nn.Module) -> bool:
    """Whether the network masks anything: a dropout layer of any kind with p > 0."""
    return any(m.p > 0 for m in dropout_layers(model))


def _predictive(outputs: Tensor, task: str) -> Tensor:
    return outputs.log_softmax(-1) if task == "classification" else outputs


def weight_scaling(net: nn.Module, x: Tensor, task: str) -> Tensor:
    """The network in eval mode: every unit on (inverted dropout already scaled the weights)."""
    return _predictive(net(x), task)


class MonteCarlo:
    """Average the predictions of `samples` sampled dropout masks (all in one forward pass)."""

    def __init__(self, samples: int = 100, mean: str = "arithmetic", max_rows: int = 512) -> None:
        self.samples, self.mean = samples, mean
        self.max_rows = max_rows

    @torch.no_grad()
    def sample(self, net: nn.Module, x: Tensor, samples: int | None = None) -> Tensor:
        """Outputs under T independent masks, shape (…, T, batch, outputs), for x of shape
        (batch, …) (images: (batch, C, H, W)).

        Only the dropout layers (any kind: `DROPOUT_TYPES`) are in training mode meanwhile;
        every other layer, BatchNorm's included, is in eval mode, whatever the network's
        mode was (restored afterwards).

        The batch is repeated T times and sent through in blocks of at most `max_rows` rows,
        so the masks are drawn many at a time (different per row) instead of in a Python
        loop of T passes. Blocks keep activations in cache: on CPU one 36,000-row pass is
        slower than 100 small ones, and 512-row blocks (512 KB per 256-unit layer) beat
        1,024-row ones, whose fresh allocations sometimes cost page faults. Drawing the masks
        is most of the cost either way (about 60 %, on CPU), which bounds what batching saves
        on a large input.
        """
        t = samples or self.samples
        modules = list(net.modules())
        modes = [m.training for m in modules]
        net.eval()  # BatchNorm and the like use their running statistics, and keep them
        for m in modules:
            if isinstance(m, DROPOUT_TYPES):
                m.train()  # masks on, and only these
        try:
            expanded = x.repeat(t, *([1] * (x.dim() - 1)))  # (T·batch, …): examples first
            blocks = [net(block) for block in expanded.split(self.max_rows, dim=0)]
            out = torch.cat(blocks, dim=-2)  # outputs (…, T·batch, outputs)
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.training = mode
        return out.unflatten(-2, (t, len(x)))

    def combine(self, outputs: Tensor, task: str) -> Tensor:
        """Reduce the mask axis (-3) to one prediction per example."""
        if task != "classification":
            return outputs.mean(-3)
        log_p = outputs.log_softmax(-1)
        if self.mean == "geometric":
            return log_p.mean(-3).log_softmax(-1)  # renormalized geometric mean
        return torch.logsumexp(log_p, dim=-3) - math.log(outputs.shape[-3])

    def __call__(self, net: nn.Module, x: Tensor, task: str) -> Tensor:
        return self.combine(self.sample(net, x), task)

    def curve(self, outputs: Tensor, task: str, steps: Sequence[int] | None = None) -> list[int]:
        """The numbers of masks T at which to report the metric: 1, 2, 5, 10, … ≤ samples."""
        t = outputs.shape[-3]
        grid = steps or [m * 10**e for e in range(6) for m in (1, 2, 5)]
        return sorted({s for s in grid if s <= t} | {t})


def predictive_entropy(log_p: Tensor) -> Tensor:
    """H[p(y | x)] = −Σ_y p log p per example: how unsure the averaged prediction is."""
    return -(log_p.exp() * log_p).sum(-1)
