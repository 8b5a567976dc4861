"""Bagging (bootstrap aggregating, Goodfellow et al. §7.11).

"Train several different models separately, then have all of the models vote on the output
for test examples." Member i trains on its own bootstrap resample of the training split
(n rows drawn with replacement: `data.bootstrap_index`). With errors εᵢ of variance v and
covariance c, the ensemble's expected squared error is

    E[(1/k Σᵢ εᵢ)²] = v/k + (k − 1)c/k                                         (eq. 7.50)

so the ensemble gains exactly as much as its members' errors are uncorrelated.

Two ways to train the k members, with the same initial values and the same batches:
    vectorized (default)  one BaggingModule over a models.Ensemble (any network, vmapped;
                          models.StackedMLP for reglab's MLP and Linear, models.StackedCNN
                          for its CNN): all members step together, each on its own
                          minibatch, in one pass
    sequential            `ensemble.vectorized=false`: k ordinary runs one after another,
                          then stacked for evaluation (the reference path)
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from reglab.data.datamodule import DataModule
from reglab.data.loaders import bootstrap_index
from reglab.objectives.base import RegLabModule


def vote(predictions: Tensor, task: str, rule: str = "soft") -> Tensor:
    """Combine member predictions (k, batch, …) into the ensemble's.

    soft: the mean of the members' probabilities (log-probabilities in, log-probabilities
    out), or of their values for regression; hard: the class most members predict (ties go
    to the lowest class index), as a one-hot log-probability.
    """
    k = predictions.shape[0]
    if task != "classification":
        return predictions.mean(0)
    if rule == "soft":
        return torch.logsumexp(predictions, dim=0) - torch.log(torch.tensor(float(k)))
    classes = predictions.shape[-1]
    counts = F.one_hot(predictions.argmax(-1), classes).sum(0)  # (batch, classes)
    winner = counts.argmax(-1)  # argmax returns the first maximum: the lowest class
    return F.one_hot(winner, classes).float().log()


class BaggingModule(RegLabModule):
    """k members in one module: `net` is a models.stack, training blocks are (k, batch, …).

    Validation and test score the ensemble (its soft-vote loss is what early stopping
    monitors) and every member; the test adds the eq. 7.50 diagnostics, out-of-bag error
    and the members' spread (objectives/calibration.py): `test/entropy` of the soft vote,
    `test/mutual_info` (that minus the members' mean entropy) and `test/disagreement`, the
    mean over examples of the fraction of members whose most likely class is not the soft
    vote's. `test/nll`, `test/ece` and `test/brier` are the soft vote's.
    """

    batch_dim = 1
    hooks_hidden_units = False  # the members run stacked: hooks would see batched tensors

    def __init__(self, *args: Any, vote: str = "soft", eval_rows: int = 512, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = self.net.members
        self.vote = vote
        # examples per evaluation pass: each goes through all k members, so k × eval_rows
        # rows of activations exist at once; Bagging passes the training batch size, so an
        # evaluation pass holds no more than a training step's forward
        self.eval_rows = eval_rows
        self.oob: tuple[Tensor, Tensor, Tensor] | None = None  # x, y, (k, n) out-of-bag mask
        self._sums: dict[str, Tensor] = {}

    @torch.no_grad()
    def clip_(self, opt: Any) -> None:
        """Clip each member's gradient norm on its own: a global norm would couple them."""
        if self.clip_algorithm != "norm":
            return super().clip_(opt)  # clipping by value is per element anyway
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()
        scale = (self.clip_val / (norms + 1e-6)).clamp(max=1.0)  # (k,)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))

    # -- evaluation ------------------------------------------------------------------------
    def _add(self, key: str, value: Tensor) -> None:
        self._sums[key] = self._sums.get(key, 0) + value

    def predict_members(self, x: Tensor, split: str = "val", y: Tensor | None = None) -> Tensor:
        """Every member's prediction (k, batch, …) for x, `eval_rows` examples at a time."""
        chunks = x.split(self.eval_rows)
        targets = y.split(self.eval_rows) if y is not None else (None,) * len(chunks)
        parts = [self.predict(c, split, t) for c, t in zip(chunks, targets, strict=True)]
        return torch.cat(parts, dim=1)

    def combine_models(self, prediction: Tensor) -> Tensor:
        """The members' predictions (k, batch, …) as the ensemble's: the configured vote (so
        the Monte Carlo curve `test/acc_mc_T<T>` is the ensemble's, as `test/acc` is)."""
        return vote(prediction, self.task, self.vote)

    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        members = self.predict_members(x, split, y)  # (k, batch, …)
        ensemble = vote(members, self.task, self.vote)
        soft = vote(members, self.task, "soft")
        self.metrics[f"{split}_metric"].update(self._prediction(ensemble), y)
        self.metrics[f"{split}_loss"].update(self.eval_loss(soft, y), weight=len(x))
        classifies = self.task == "classification"
        self.keep(split, soft, y, members, ensemble.argmax(-1) if classifies else None)
        if split == "test" and classifies:  # the spread over members (under mc: their means)
            self.add_uncertainty(members)
        target = y.expand(self.models, *y.shape)
        flat = members.flatten(0, 1), target.flatten(0, 1)
        per_member = self._unreduced_loss(*flat).view(self.models, -1).sum(1)
        self._add(f"{split}/member_loss", per_member)
        self._add(f"{split}/member_{self.metric_name}", self._member_metric(members, y) * len(x))
        self._add(f"{split}/count", torch.tensor(float(len(x))))
        if split == "test":
            self._add_error_moments(members, y)

    def scores(self, prediction: Tensor, y: Tensor) -> dict[str, float]:
        """The ensemble's, as validation scores it: the soft vote's J, the configured vote's
        metric (`prediction` is the members' (k, batch, …))."""
        soft, chosen = (vote(prediction, self.task, rule) for rule in ("soft", self.vote))
        return {
            "loss": self.eval_loss(soft, y).item(),
            self.metric_name: self._batch_metric(chosen, y).item(),
        }

    def _unreduced_loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return F.nll_loss(prediction, y, reduction="none")
        return F.mse_loss(prediction, y, reduction="none").flatten(1).mean(1)

    def _member_metric(self, members: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return (members.argmax(-1) == y).float().mean(1)
        return (members - y).square().flatten(1).mean(1)

    def _add_error_moments(self, members: Tensor, y: Tensor) -> None:
        """Sums for v = E[εᵢ²], c = E[εᵢεⱼ] (i ≠ j) and the ensemble's E[(Σεᵢ/k)²].

        εᵢ is member i's error: prediction − y for regression, the probability vector minus
        the one-hot label for classification (its squared norm is the Brier score).
        """
        if self.task == "classification":
            errors = members.exp() - F.one_hot(y, members.shape[-1]).float()
        else:
            errors = members - y
        errors = errors.flatten(2)  # (k, batch, dims)
        self._add("sq_each", errors.square().sum())  # Σᵢ Σ_b ‖εᵢ‖²
        self._add("sq_sum", errors.sum(0).square().sum())  # Σ_b ‖Σᵢ εᵢ‖²

    def _member_values(self, split: str) -> dict[str, Tensor]:
        count = self._sums.pop(f"{split}/count")
        values = {}
        for name in ("loss", self.metric_name):
            per_member = self._sums.pop(f"{split}/member_{name}") / count
            values |= {f"{split}/member_{name}_{i}": v for i, v in enumerate(per_member)}
            values[f"{split}/member_{name}_mean"] = per_member.mean()
        if split == "test":
            k, n = self.models, count
            sq_each, sq_sum = self._sums.pop("sq_each"), self._sums.pop("sq_sum")
            v = sq_each / (k * n)
            c = (sq_sum - sq_each) / (k * (k - 1) * n) if k > 1 else torch.zeros(())
            values |= {
                "ensemble/v": v,
                "ensemble/c": c,
                "ensemble/predicted_mse": v / k + (k - 1) * c / k,  # eq. 7.50
                "ensemble/measured_mse": sq_sum / (k * k * n),  # of the mean error directly
            }
        return values

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        values = self._member_values("val")
        means = {k: v for k, v in values.items() if k.endswith("_mean")}
        self.publish(means)  # what callbacks and the progress line may read
        self.publish({k: v for k, v in values.items() if k not in means}, callbacks=False)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.publish_test({**self._member_values("test"), **self.out_of_bag()})

    @torch.no_grad()
    def out_of_bag(self) -> dict[str, Tensor]:
        """Each training row predicted by the members that never saw it (soft vote)."""
        if self.oob is None:
            return {}
        x, y, mask = (t.to(self.device) for t in self.oob)
        was_training = self.net.training
        self.net.eval()
        members = self.predict_members(x)  # (k, n, …)
        self.net.train(was_training)
        covered = mask.any(0)
        weights = mask.float() / mask.sum(0).clamp(min=1)  # average over out-of-bag members
        if self.task == "classification":
            probs = torch.einsum("kn,knc->nc", weights, members.exp())[covered]
            metric = (probs.argmax(-1) == y[covered]).float().mean()
        else:
            mean = torch.einsum("kn,kn...->n...", weights, members)[covered]
            metric = (mean - y[covered]).square().mean()
        return {f"oob/{self.metric_name}": metric, "oob/coverage": covered.float().mean()}


def out_of_bag_mask(dm: DataModule, members: int) -> Tensor:
    """(k, n): True where training row j is not in member i's resample."""
    n = dm.n_train
    mask = torch.ones(members, n, dtype=torch.bool)
    for i in range(members):
        mask[i, bootstrap_index(n, dm.seed, i)] = False
    return mask
