"""Eq. 7.50, E[(1/k Σᵢ εᵢ)²] = v/k + (k − 1)c/k: on simulated errors, and on k bagged
reglab members' test errors (where, with the empirical moments, it is an identity)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reglab.theory.closed_forms import ensemble_error, error_moments
from reglab.theory.fitting import fit


@dataclass
class EnsembleCheck:
    """Eq. 7.50 against multivariate-normal errors: E[ε̄²] for each c and k."""

    v: float
    cs: np.ndarray
    ks: np.ndarray
    draws: int
    measured: np.ndarray  # len(cs) × len(ks): mean over draws of (1/k Σᵢ εᵢ)²
    predicted: np.ndarray  # v/k + (k − 1)c/k

    @property
    def relative_error(self) -> float:
        return float(np.abs(self.measured / self.predicted - 1).max())


def check_ensemble(
    v: float = 1.0,
    cs: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    max_k: int = 20,
    draws: int = 200_000,
    seed: int = 0,
) -> EnsembleCheck:
    """Draw `draws` error vectors of `max_k` members, εᵢ ~ N(0, v), Cov(εᵢ, εⱼ) = c, and
    average the first k of them: the ensemble's squared error against eq. 7.50."""
    rng = np.random.default_rng(seed)
    ks = np.arange(1, max_k + 1)
    measured = []
    for c in cs:
        cov = np.full((max_k, max_k), c) + (v - c) * np.eye(max_k)
        errors = rng.multivariate_normal(np.zeros(max_k), cov, size=draws)
        running_mean = np.cumsum(errors, axis=1) / ks  # draws × k: ε̄ of the first k members
        measured.append((running_mean**2).mean(axis=0))
    cs_ = np.asarray(cs, dtype=float)
    predicted = ensemble_error(v, cs_[:, None], ks[None, :])
    return EnsembleCheck(v, cs_, ks, draws, np.array(measured), predicted)


@dataclass
class BaggingCheck:
    """Eq. 7.50 on the test errors of k bagged reglab members (an identity of moments)."""

    errors: np.ndarray  # k × m: member i's prediction − y on test example j
    overrides: list[str]

    @property
    def k(self) -> int:
        return len(self.errors)

    def moments(self, k: int | None = None) -> tuple[float, float]:
        """v, c of the first k members (all by default)."""
        return error_moments(self.errors[: k or self.k])

    def ensemble_mse(self, k: int | None = None) -> float:
        """Measured test MSE of the average prediction of the first k members."""
        return float((self.errors[: k or self.k].mean(axis=0) ** 2).mean())

    @property
    def member_mse(self) -> np.ndarray:
        return (self.errors**2).mean(axis=1)

    @property
    def identity_error(self) -> float:
        """max over k of |measured ensemble MSE − (v/k + (k − 1)c/k)| / measured, k = 1 … K."""
        gaps = [
            abs(self.ensemble_mse(k) - ensemble_error(*self.moments(k), k)) / self.ensemble_mse(k)
            for k in range(1, self.k + 1)
        ]
        return float(max(gaps))


BAGGING_MEMBER = (
    "data=diabetes",
    "data.val_fraction=0",
    "data.test_fraction=0.2",
    "model=mlp",
    "model.hidden_sizes=[64]",
    "optimizer=adam",
    "optimizer.lr=0.03",
    "data.batch_size=64",
    "trainer.max_epochs=50",
)


def check_bagging(
    output_dir: str | Path, k: int = 10, member: Sequence[str] = BAGGING_MEMBER
) -> BaggingCheck:
    """Train k reglab members on bootstrap resamples 0 … k−1 of the same training split
    (`data.bootstrap=i`, same seed: same split, same test set); collect their test errors."""
    errors, targets = [], []
    for i in range(k):
        run = fit([*member, f"data.bootstrap={i}"], f"{output_dir}/{i}")
        x, y = (t.to(run.module.device) for t in run.dm.splits["test"])
        run.module.eval()
        with torch.no_grad():
            prediction = run.module(x)
        errors.append((prediction - y).double().cpu().numpy().reshape(len(y)))
        targets.append(y.cpu())
    if not all(torch.equal(t, targets[0]) for t in targets):
        raise RuntimeError("bagging members saw different test sets")
    return BaggingCheck(np.array(errors), list(member))
