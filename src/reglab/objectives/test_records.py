"""What a test pass measures beyond its loss and metric: a mixin of `RegLabModule`.

- the test set's predictions, kept in order (`keep`): after the pass `test_outputs` holds
  them, `prediction_arrays` gives what `predictions.npz` stores and `reliability_bins` what
  `reliability.png` draws (the engine writes both files);
- calibration of every classification run (`test/nll` = the test loss, `test/ece`,
  `test/brier`: objectives/calibration.py);
- the uncertainty of S predictions per example (`test/entropy`, `test/mutual_info`,
  `test/disagreement`): over the T masks of `inference=mc`, or the k members of
  `ensemble=bagging` (objectives/bagging.py);
- the metric as a function of the number of masks (`test/acc_mc_T<T>`) and on attacked
  inputs (`test/acc_fgsm`, …).

Sums are kept per batch and divided by the number of examples at the end, so the values
are means over the whole test set whatever its batches.
"""

from typing import Any

import numpy as np
import torch
from torch import Tensor

from reglab.objectives.calibration import (
    brier_score,
    confidence_bins,
    expected_calibration_error,
    uncertainty,
)
from reglab.regularization.dropout import predictive_entropy


def _add(sums: dict[str, Any], key: str, value: Tensor | float) -> None:
    sums[key] = sums.get(key, 0) + value


def _means(sums: dict[str, Any]) -> dict[str, Tensor]:
    """Each sum over the `_count` examples it was taken over (empty if none)."""
    count = sums.pop("_count", None)
    return {k: v / count for k, v in sums.items()} if count else {}


class TestRecords:
    """The test pass's predictions, calibration and uncertainty (see the module docstring)."""

    __test__ = False  # not a pytest test class, whatever its name
    test_outputs: dict[str, Tensor | None] | None = None  # the last test pass's predictions

    def keep(
        self,
        split: str,
        prediction: Tensor,
        y: Tensor,
        members: Tensor | None = None,
        predicted: Tensor | None = None,
    ) -> None:
        """Keep a test batch's prediction (log-probabilities or values), targets, the
        members' predictions (k, batch, …) of an ensemble, and the class it predicted (a
        hard vote's, where that is not the most probable one)."""
        if split != "test":
            return
        batch = {"prediction": prediction, "y": y, "members": members, "predicted": predicted}
        kept = self.__dict__.setdefault("_kept", [])
        kept.append({k: _host(v) if v is not None else None for k, v in batch.items()})

    def _gather(self) -> dict[str, Tensor | None] | None:
        """The kept batches, concatenated (members along their example axis, 1)."""
        kept, self._kept = self.__dict__.get("_kept", []), []
        if not kept:
            return None
        dims = {"members": 1}
        return {
            key: torch.cat([b[key] for b in kept], dims.get(key, 0))
            if kept[0][key] is not None
            else None
            for key in kept[0]
        }

    def test_extras(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Everything the test pass adds to the loss and metric in `values`."""
        self.test_outputs = self._gather()
        mc, self._mc_sums = _means(self._mc_sums), {}
        attacked, self._attack_sums = _means(self._attack_sums), {}
        spread = _means(self.__dict__.pop("_uncertainty_sums", {}))
        return {**mc, **attacked, **spread, **self.calibration(values)}

    # -- calibration -----------------------------------------------------------------------
    def calibration(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """`test/nll` (the test loss), `test/ece` and `test/brier` of a classifier."""
        out = self.test_outputs
        if self.task != "classification" or out is None:
            return {}
        probs, y = out["prediction"].exp(), out["y"]
        return {
            "test/nll": values["test/loss"],
            "test/ece": expected_calibration_error(probs, y),
            "test/brier": brier_score(probs, y),
        }

    def reliability_bins(self) -> dict[str, dict[str, np.ndarray]]:
        """Per classifier (one: ""), the confidence bins a reliability diagram draws."""
        out = self.test_outputs
        if self.task != "classification" or out is None:
            return {}
        bins = confidence_bins(out["prediction"].exp(), out["y"])
        return {"": {k: v.numpy() for k, v in bins.items()}}

    def prediction_arrays(self) -> dict[str, np.ndarray]:
        """The test set's predictions as `predictions.npz` stores them (without `index`,
        which the data module knows): `probs` (n, classes), `predicted` (n,) and `targets`
        (n,) of a classifier, `values` and `targets` (n, outputs) of a regression; an
        ensemble adds its members' (k, n, …) as `member_probs` or `member_values`."""
        out = self.test_outputs
        if out is None:
            return {}
        classifies = self.task == "classification"
        name = "probs" if classifies else "values"
        arrays = {name: _values(out["prediction"], classifies), "targets": out["y"].numpy()}
        if classifies:
            chosen = out["predicted"] if out["predicted"] is not None else out["prediction"]
            arrays["predicted"] = (chosen if chosen.dim() == 1 else chosen.argmax(-1)).numpy()
        if out["members"] is not None:
            arrays[f"member_{name}"] = _values(out["members"], classifies)
        return arrays

    # -- Monte Carlo, attacks, uncertainty -------------------------------------------------
    def add_uncertainty(self, log_p: Tensor) -> None:
        """Sums of `uncertainty` (objectives/calibration.py) over S predictions (S, n, C)."""
        sums = self.__dict__.setdefault("_uncertainty_sums", {})
        for key, value in uncertainty(log_p).items():
            _add(sums, f"test/{key}", value.sum())
        _add(sums, "_count", log_p.shape[1])

    def _accumulate_mc(self, outputs: Tensor, y: Tensor, split: str) -> None:
        """Sums for the test metric with the first T masks, T = 1, 2, 5, …, and the entropy."""
        for t in self.inference.curve(outputs, self.task):
            prediction = self.combine_models(
                self.inference.combine(outputs[..., :t, :, :], self.task)
            )
            value = self._batch_metric(prediction, y) * len(y)
            _add(self._mc_sums, f"{split}/{self.metric_name}_mc_T{t}", value)
        if self.task == "classification":  # per model: an ensemble's is its members' mean
            combined = self.inference.combine(outputs, self.task)
            entropy = predictive_entropy(combined).sum() / self.models
            _add(self._mc_sums, f"{split}/predictive_entropy", entropy)
            if self.models == 1 and split == "test":  # an ensemble's spread is its members'
                self.add_uncertainty(outputs.log_softmax(-1))
        _add(self._mc_sums, "_count", len(y))

    def _attacked_metric(self, x: Tensor, y: Tensor) -> None:
        """Sums for the test metric on attacked test inputs (`test/acc_fgsm`, …)."""
        attack = self._bound_adversarial()
        for name in attack.evaluate:
            x_adv = attack.perturb(self.net, self._loss_of(y), x, name)
            value = self._batch_metric(self.predict(x_adv, "test"), y) * len(y)
            _add(self._attack_sums, f"test/{self.metric_name}_{name}", value)
        _add(self._attack_sums, "_count", len(y))


def _host(value: Tensor) -> Tensor:
    """A kept tensor in host memory; half-precision outputs (`trainer.precision=bf16-mixed`
    autocasts the test's forward) as float32, which numpy and the calibration metrics read."""
    value = value.detach().cpu()
    return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value


def _values(prediction: Tensor, classifies: bool) -> np.ndarray:
    """Probabilities from log-probabilities, or the values themselves, as float32."""
    return (prediction.exp() if classifies else prediction).float().numpy()
