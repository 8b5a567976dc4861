"""The weight statistics a run reports (‖w‖₁, ‖w‖₂, sparsity) and a norm constraint's activity
and KKT multiplier: a mixin of `RegLabModule`, kept apart from its training and test steps."""

import torch
from torch import Tensor

from reglab.regularization.constraints import constraint_metrics


class WeightStatistics:
    """Statistics of the penalized weights `self.weights` (conv and linear weights)."""

    @torch.no_grad()
    def weight_stats(self) -> dict[str, float]:
        """‖w‖₁, ‖w‖₂ and the fraction of exactly-zero entries of the penalized weights."""
        weights = [w.detach() for w in self.weights]
        l1 = torch.stack(torch._foreach_norm(weights, 1)).sum()
        l2 = torch.stack(torch._foreach_norm(weights, 2)).square().sum().sqrt()
        zeros = sum(w.numel() - torch.count_nonzero(w) for w in weights)
        total = sum(w.numel() for w in weights)
        l1, l2, zeros = torch.stack([l1, l2, torch.as_tensor(zeros, dtype=l1.dtype)]).tolist()
        stats = {"weights/l1_norm": l1, "weights/l2_norm": l2, "weights/sparsity": zeros / total}
        if self.constraint is not None:
            stats["constraint/active_fraction"] = self.constraint.active(weights).mean().item()
        return stats

    def constraint_stats(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """The constraint's activity and KKT multiplier at the current weights, from the
        full-batch gradient of the smooth objective on (x, y) (the training split): what
        metrics.json reports, in the matching penalty's units (`constraints.py`)."""
        if self.constraint is None:
            return {}
        self._full_gradient_(x, y)
        stats = constraint_metrics(self.constraint, self.weights)
        self.zero_grad(set_to_none=True)
        return stats

    def _full_gradient_(self, x: Tensor, y: Tensor) -> None:
        """∇(J + smooth α·Ω) over all of (x, y), in eval mode (deterministic: no dropout
        masks, BatchNorm's running statistics left as they are)."""
        was_training = self.net.training
        self.net.eval()
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
                xb, yb = xb.to(self.device), yb.to(self.device)
                (self.step_loss(self.train_output(xb), yb) * (len(xb) / len(x))).backward()
        self.regularizer.add_grad_(self.weights)
        self.net.train(was_training)
