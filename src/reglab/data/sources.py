"""Data sources: callables returning (X, y), for `data.source` (scikit-learn's loaders serve too).

`make_synthetic` puts scikit-learn's generators behind one signature; `digit_tasks` and
`make_multitask` give one target column per task of `data.tasks` (multi-task learning, §7.7).
"""

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from sklearn.datasets import load_digits, make_classification, make_regression


def make_synthetic(
    task: Literal["classification", "regression"] = "classification",
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 5,
    n_classes: int = 2,
    noise: float = 0.1,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's make_classification / make_regression behind one signature.

    `noise` is the standard deviation of Gaussian noise on regression targets, and the
    fraction of randomly flipped labels for classification.
    """
    if task == "regression":
        return make_regression(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            noise=noise,
            random_state=random_state,
        )
    return make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        flip_y=noise,
        random_state=random_state,
    )


def digit_tasks(tasks: Mapping[str, Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The digits images with one target column per task: task t's target for digit d is
    `targets[d]` (a class index, or a value for regression), or d itself when unset."""
    x, digit = load_digits(return_X_y=True)
    columns = []
    for spec in tasks.values():
        table = np.asarray(spec.get("targets") or range(10), dtype=np.float64)
        columns.append(table[digit])
    return x, np.stack(columns, axis=1)


def make_multitask(
    tasks: Mapping[str, Mapping[str, Any]],
    n_samples: int = 1000,
    n_features: int = 30,
    rank: int = 2,
    noise: float = 0.5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Tasks that share a `rank`-dimensional factor z = xU of x ~ N(0, I_d), d = `n_features`.

    Regression task t: y = z·a_t + noise·ε. Classification task t with K outputs: the class
    of the largest of z·A_t + noise·ε (K scores). Scores are scaled to unit standard deviation
    before the noise is added. Alone, a task has to find its direction among d; together,
    the tasks pin down the shared U (d·rank numbers), which a shared trunk can learn.
    """
    rng = np.random.default_rng(random_state)
    x = rng.standard_normal((n_samples, n_features))
    u = np.linalg.qr(rng.standard_normal((n_features, rank)))[0]  # orthonormal columns
    z = x @ u
    columns = []
    for spec in tasks.values():
        width = 1 if spec["kind"] == "regression" else int(spec["outputs"])
        scores = z @ rng.standard_normal((rank, width))
        scores = scores / scores.std(0) + noise * rng.standard_normal(scores.shape)
        columns.append(scores[:, 0] if spec["kind"] == "regression" else scores.argmax(1))
    return x, np.stack(columns, axis=1)
