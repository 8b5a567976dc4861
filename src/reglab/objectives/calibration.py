"""How far to trust a classifier's probabilities: calibration and the uncertainty of ensembles.

A model is calibrated when, of the examples it gives confidence 0.8, 80 % are right. The
main benefit of dropout and bagging (§7.11–7.12) is often not accuracy but probabilities
closer to that; these functions measure it on the test set.

    ECE      Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|, over M = 15 equal-width bins of the
             top-class confidence, B_m = {i : (m−1)/M < confᵢ ≤ m/M} (Guo et al. 2017;
             Naeini et al. 2015). torchmetrics' CalibrationError bins [lo, hi) instead and
             gives confidence 1.0 (common for a saturated float32 softmax) a bin of its own,
             which splits the top bin and changes the sum; the two agree away from edges.
    Brier    (1/n) Σᵢ Σ_c (p_ic − 1[yᵢ = c])²: the multiclass score, in [0, 2].

For S predictions per example (the T dropout masks of `inference=mc`, the k members of
`ensemble=bagging`), with p̄ their arithmetic mean, the total uncertainty splits as

    H[p̄]  =  E_s H[p_s]  +  (H[p̄] − E_s H[p_s])
    entropy   aleatoric      mutual information I(y; s) ≥ 0: the epistemic part,
                             what the members/masks disagree about (Jensen: H is concave)
"""

import torch
from torch import Tensor

BINS = 15  # the standard number of equal-width confidence bins


def confidence_bins(probs: Tensor, y: Tensor, bins: int = BINS) -> dict[str, Tensor]:
    """Per bin of top-class confidence: `count`, mean `confidence` and `accuracy` (0 where
    a bin is empty). In float64, so an edge such as 0.6 compares the same way everywhere."""
    probs = probs.double()
    confidence, predicted = probs.max(-1)
    correct = (predicted == y).double()
    upper = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=probs.device)[1:]
    index = torch.bucketize(confidence, upper, right=False)  # (lo, hi]: first hi ≥ conf
    count = torch.zeros(bins, dtype=torch.float64, device=probs.device)
    count.index_add_(0, index, torch.ones_like(confidence))
    totals = torch.zeros(2, bins, dtype=torch.float64, device=probs.device)
    totals.index_add_(1, index, torch.stack([confidence, correct]))
    mean = totals / count.clamp(min=1)
    return {"count": count, "confidence": mean[0], "accuracy": mean[1]}


def expected_calibration_error(probs: Tensor, y: Tensor, bins: int = BINS) -> Tensor:
    """ECE with `bins` equal-width bins, L1 (the module docstring has the definition)."""
    b = confidence_bins(probs, y, bins)
    return (b["count"] * (b["accuracy"] - b["confidence"]).abs()).sum() / len(y)


def brier_score(probs: Tensor, y: Tensor) -> Tensor:
    """The multiclass Brier score: mean over examples of Σ_c (p_c − 1[y = c])²."""
    one_hot = torch.nn.functional.one_hot(y, probs.shape[-1]).to(probs.dtype)
    return (probs - one_hot).square().sum(-1).mean()


def entropy(log_p: Tensor) -> Tensor:
    """H[p] = −Σ_c p_c log p_c over the last axis, in nats (0 log 0 = 0)."""
    return -(log_p.exp() * log_p.clamp(min=torch.finfo(log_p.dtype).min)).sum(-1)


def uncertainty(log_p: Tensor) -> dict[str, Tensor]:
    """Per example, from S predictions (S, n, classes) of log-probabilities:

    entropy       H[p̄] of the arithmetic mean p̄ = (1/S) Σ_s p_s
    mutual_info   H[p̄] − (1/S) Σ_s H[p_s]: the epistemic part, in [0, entropy]
    disagreement  the fraction of the S predictions whose most likely class is not p̄'s
                  (0: all agree with the ensemble; at most 1 − 1/S when every class
                  gets an equal share)
    """
    s = log_p.shape[0]
    mean = torch.logsumexp(log_p, dim=0) - torch.log(torch.tensor(float(s)))
    total = entropy(mean)
    aleatoric = entropy(log_p).mean(0)
    differs = (log_p.argmax(-1) != mean.argmax(-1)).to(log_p.dtype).mean(0)
    # not clamped at 0: a negative mean would show an error (rounding leaves ~1e-7 at most)
    return {"entropy": total, "mutual_info": total - aleatoric, "disagreement": differs}
