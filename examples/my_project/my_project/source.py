"""The project's data source: any callable returning (X, y) is one (conf/data/my_data.yaml)."""

import numpy as np


def waves(
    n_samples: int = 600, length: int = 32, classes: int = 3, noise: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine waves of `length` samples whose class is their frequency (1 to `classes`
    periods per window), at a random phase: X (n_samples, length), y (n_samples,).

    The class is in the shape of the whole signal, not in any one sample, which is what a
    convolution over time picks up and a per-feature model does not.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n_samples)
    phase = rng.uniform(0, 2 * np.pi, size=(n_samples, 1))
    t = np.arange(length) / length
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t + phase)
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32), y
